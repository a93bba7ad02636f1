"""Fault injection (issue 18): real ``sacbook train`` processes killed and
interrupted, and run folders used the way a careless user would.

* **kill -9 at a random moment**, then ``--resume`` to the end: at least 20
  trials, stratified over the four phases of a run (start-up and compile, a
  chunk, a checkpoint write, the final outputs), each classified by what the
  folder held when the process died. (A kill before the run recorded its
  settings leaves nothing to resume: ``--resume`` says so in one line, and
  the trial starts the run again.) Every trial must end with the metrics of
  an uninterrupted run (bit-identical on the CPU, timing fields aside),
  ``metrics.jsonl`` holding each chunk once in valid JSON, and a policy that
  loads and acts as the uninterrupted run's. The table of trials is printed
  and written to ``_build/fault_trials.txt``.
* **SIGINT while starting up** (importing, compiling): one line, exit 130,
  and the run can be started or resumed afterwards.
* **two writers** on one ``--out``, **a second run** into a folder that holds
  one, and **the default output** used twice.

Every failure prints exactly one line of sacbook's own on stderr; what the
libraries print goes to ``DIR/sacbook.log``.

All subprocesses share one JAX compilation cache (``XDG_CACHE_HOME``), so only
the first one compiles.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import without_times

REPO_ROOT = Path(__file__).resolve().parents[1]
ITERATIONS = 20  # the default config's iterations per chunk
CHUNKS = 4
NUM_ENVS = 64
# A run whose chunks (24 updates per iteration) and checkpoint writes (a
# 20,000-row buffer) each take 0.1-0.2 s on a 2-core CPU, so that a random
# kill lands in either; a checkpoint after every chunk.
OPTIONS = [
    "--num-envs",
    str(NUM_ENVS),
    "--batch-size",
    "128",
    "--buffer-capacity",
    "20000",
    "--updates-per-iteration",
    "24",
    "--total-env-steps",
    str(NUM_ENVS * ITERATIONS * CHUNKS),
    "--checkpoint-every",
    "1",
    "--quiet",
]
PHASES = ("start-up/compile", "chunk", "checkpoint write", "final outputs")
AFTER_END = "after the end"
TRIALS = 20
PARALLEL = 2  # trials at once: 2 cores run two ~25% faster than one after the other
MANIFEST = "sacbook_manifest.json"  # sacbook.integrity.MANIFEST
# observations (cos, sin, angular velocity) the policies are compared on
OBSERVATIONS = np.array(
    [[1.0, 0.0, 0.0], [0.0, 1.0, 1.0], [-1.0, 0.0, -2.0], [0.6, -0.8, 5.0]],
    np.float32,
)


# ----------------------------------------------------------------------------
# Running sacbook
# ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """The subprocesses' environment: one shared compilation cache."""
    cache = tmp_path_factory.mktemp("xdg-cache")
    pythonpath = os.pathsep.join(
        filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])
    )
    return dict(
        os.environ, XDG_CACHE_HOME=str(cache), MPLBACKEND="Agg", PYTHONPATH=pythonpath
    )


def _command(*args) -> list[str]:
    return [sys.executable, "-m", "sacbook.cli", "train", *args]


def _start(args, env, cwd, piped: bool = False) -> subprocess.Popen:
    """``sacbook train`` started; its output read back (``piped``) or dropped."""
    stream = subprocess.PIPE if piped else subprocess.DEVNULL
    return subprocess.Popen(
        _command(*args), env=env, cwd=cwd, text=True, stdout=stream, stderr=stream
    )


def _sacbook(args, env, cwd, timeout=240) -> subprocess.CompletedProcess:
    return subprocess.run(
        _command(*args),
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _one_line(err: str) -> str:
    """The one line a failure prints: sacbook's own, no library noise."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    assert "Traceback" not in err and not err.startswith(("WARNING", "ERROR")), err
    assert lines[0].startswith("sacbook train:"), err
    return lines[0]


def _records(out: Path) -> list[dict]:
    """Every line of ``out/metrics.jsonl``, each of which must be JSON."""
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def _check_complete(out: Path, reference: list[dict]) -> None:
    """``out`` holds a finished run equal to ``reference``'s metrics."""
    records = _records(out)
    assert [r["chunk"] for r in records] == list(range(1, CHUNKS + 1))
    np.testing.assert_equal(without_times(records), without_times(reference))
    assert (out / "learning_curve.png").is_file() and (out / "policy.gif").is_file()


def _lines(out: Path) -> int:
    """Complete lines in ``out/metrics.jsonl`` (0 if none)."""
    try:
        return (out / "metrics.jsonl").read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _saved(out: Path, chunk: int) -> bool:
    """Whether the checkpoint after ``chunk`` is complete (its manifest, the
    last thing a save writes, is there)."""
    return (out / "checkpoint" / str(ITERATIONS * chunk) / MANIFEST).exists()


def _files(folder: Path) -> dict[str, tuple]:
    """Every file under ``folder``: its size, mtime and CRC-32."""
    return {
        str(p.relative_to(folder)): (
            p.stat().st_size,
            p.stat().st_mtime_ns,
            zlib.crc32(p.read_bytes()),
        )
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# ----------------------------------------------------------------------------
# The uninterrupted run and its timeline
# ----------------------------------------------------------------------------


def _timeline(out: Path, env, cwd) -> dict:
    """Run to the end, polling ``out`` every 2 ms: when the run recorded its
    settings (run.json, then it compiles), when each metrics line and each
    complete checkpoint appeared, and when the process ended (seconds from
    its start)."""
    t0 = time.perf_counter()
    proc = _start([*OPTIONS, "--out", str(out)], env, cwd, piped=True)
    line_at, saved_at, begun_at = {}, {}, None
    while proc.poll() is None:
        t = time.perf_counter() - t0
        if begun_at is None and (out / "run.json").exists():
            begun_at = t
        for chunk in range(1, _lines(out) + 1):
            line_at.setdefault(chunk, t)
        for chunk in range(1, CHUNKS + 1):
            if chunk not in saved_at and _saved(out, chunk):
                saved_at[chunk] = t
        time.sleep(0.002)
    exit_at = time.perf_counter() - t0
    _, err = proc.communicate()
    assert proc.returncode == 0, err
    assert err == "", err
    assert sorted(line_at) == sorted(saved_at) == list(range(1, CHUNKS + 1))
    assert begun_at is not None
    return {"begun": begun_at, "line": line_at, "saved": saved_at, "exit": exit_at}


@pytest.fixture(scope="module")
def reference(env, tmp_path_factory):
    """The uninterrupted run: its records, its policy's torques, and how long
    each phase took. Run twice: the first fills the compilation cache (and
    must agree with the second), the second gives the timeline."""
    from sacbook import checkpoint

    base = tmp_path_factory.mktemp("reference")
    first = _sacbook([*OPTIONS, "--out", str(base / "cold")], env, base)
    assert first.returncode == 0 and first.stderr == "", first.stderr
    out = base / "warm"
    times = _timeline(out, env, base)
    records = _records(out)
    np.testing.assert_equal(
        without_times(records), without_times(_records(base / "cold"))
    )
    assert [r["chunk"] for r in records] == list(range(1, CHUNKS + 1))
    line, saved = times["line"], times["saved"]
    durations = {
        # 0: Python starts, imports; 1: from run.json, compiles, first chunk
        "start-up/compile": {0: times["begun"], 1: line[1] - times["begun"]},
        "chunk": {c: line[c] - saved[c - 1] for c in range(2, CHUNKS + 1)},
        "checkpoint write": {c: saved[c] - line[c] for c in range(1, CHUNKS + 1)},
        "final outputs": {CHUNKS: times["exit"] - saved[CHUNKS]},
    }
    torques = np.asarray(checkpoint.load_policy(out)(OBSERVATIONS))
    assert np.all(np.isfinite(torques))
    return {"out": out, "records": records, "torques": torques, "durations": durations}


# ----------------------------------------------------------------------------
# kill -9 at a random moment, then --resume
# ----------------------------------------------------------------------------


def _draw(rng: random.Random, phase: str) -> dict:
    """A kill aimed at ``phase``: which chunk (for start-up: 0 before the run
    records its settings, 1 after, while it compiles), and how far into the
    phase (a fraction of its length in the uninterrupted run)."""
    chunk = {
        "start-up/compile": rng.randint(0, 1),
        "chunk": rng.randint(2, CHUNKS),
        "checkpoint write": rng.randint(1, CHUNKS),
        "final outputs": CHUNKS,
    }[phase]
    return {"phase": phase, "chunk": chunk, "fraction": rng.random()}


def _wait_for_start(plan: dict, out: Path, proc: subprocess.Popen) -> None:
    """Poll until the phase ``plan`` aims at begins (or the process ends):
    start-up at once, compiling once run.json is written, a chunk once the
    checkpoint before it is complete, a
    checkpoint write once its chunk's metrics line is there, the final
    outputs once the last checkpoint is complete."""
    phase, chunk = plan["phase"], plan["chunk"]
    if phase == "start-up/compile" and chunk == 0:
        return
    while proc.poll() is None:
        if phase == "start-up/compile" and (out / "run.json").exists():
            return
        if phase == "checkpoint write" and _lines(out) >= chunk:
            return
        if phase == "chunk" and _saved(out, chunk - 1):
            return
        if phase == "final outputs" and _saved(out, CHUNKS):
            return
        time.sleep(0.002)


def _landed(out: Path) -> str:
    """Where a kill landed, from what the folder holds after it: no metrics
    line yet = start-up/compile (the first chunk runs the compiled program
    for the first time); a temporary checkpoint folder, or a chunk's line
    without its complete checkpoint = a checkpoint write; every chunk saved =
    the final outputs; otherwise a chunk."""
    lines = _lines(out)
    folder = out / "checkpoint"
    temporary = folder.is_dir() and any(
        ".orbax-checkpoint-tmp" in p.name for p in folder.iterdir()
    )
    if lines == 0 and not temporary:
        return "start-up/compile"
    if temporary or not _saved(out, lines):
        return "checkpoint write"
    return "chunk" if lines < CHUNKS else "final outputs"


def _trial(number: int, plan: dict, base: Path, env, reference) -> dict:
    """One trial: start a run, kill -9 it at the planned moment, classify
    where it landed, resume to the end and check the result."""
    out = base / f"trial{number:02d}"
    t0 = time.perf_counter()
    proc = _start([*OPTIONS, "--out", str(out)], env, base)
    _wait_for_start(plan, out, proc)
    length = reference["durations"][plan["phase"]][plan["chunk"]]
    if plan["phase"] == "start-up/compile" and plan["chunk"] == 0:
        # from 0.3 s, when Python runs
        delay = 0.3 + plan["fraction"] * (length - 0.3)
    else:
        delay = plan["fraction"] * length
    time.sleep(delay)
    row = {"trial": number, **plan, "kill": time.perf_counter() - t0}
    if proc.poll() is not None:
        row.update(landed=AFTER_END, outcome=f"ended first (exit {proc.returncode})")
        return row
    proc.kill()
    proc.wait()
    row["landed"] = _landed(out)
    resumed = _sacbook(["--resume", "--out", str(out), "--quiet"], env, base)
    outcome = "identical"
    if resumed.returncode == 2 and row["landed"] == "start-up/compile":
        # killed before the run recorded its settings (run.json): nothing to
        # resume, one line says so, and the run starts again as it was
        line = resumed.stderr.strip()
        if "\n" not in line and (
            "holds no run to resume" in line or "no run in" in line
        ):
            resumed = _sacbook([*OPTIONS, "--out", str(out)], env, base)
            outcome = "identical (nothing to resume: started again)"
    if resumed.returncode != 0 or resumed.stderr:
        row["outcome"] = f"resume exit {resumed.returncode}: {resumed.stderr.strip()}"
        return row
    try:
        _check_complete(out, reference["records"])
    except (AssertionError, ValueError, OSError) as e:
        row["outcome"] = f"differs: {str(e).strip().splitlines()[0][:100]}"
        return row
    row["outcome"] = outcome
    return row


def _table(rows: list[dict], seconds: float) -> str:
    landed = {p: sum(r["landed"] == p for r in rows) for p in (*PHASES, AFTER_END)}
    outcomes = {}
    for r in rows:
        outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
    lines = [
        "kill -9 of `sacbook train` at a random moment, then --resume to the end",
        f"run: {' '.join(OPTIONS)}",
        "",
        f"{'trial':>5}  {'aimed at':<22} {'kill (s)':>8}  {'landed':<17} outcome",
    ]
    for r in rows:
        aimed = f"{r['phase']} {r['chunk']}"
        if r["phase"] == "start-up/compile":
            aimed = ("start-up", "compile")[r["chunk"]]
        lines.append(
            f"{r['trial']:>5}  {aimed:<22} {r['kill']:>8.3f}  "
            f"{r['landed']:<17} {r['outcome']}"
        )
    counted = [r for r in rows if r["landed"] != AFTER_END]
    lines += [
        "",
        f"trials: {len(counted)} (and {landed[AFTER_END]} re-drawn: the run had "
        "ended before the kill)",
        "landed: " + ", ".join(f"{p} {landed[p]}" for p in PHASES),
        "outcomes: " + ", ".join(f"{k} {v}" for k, v in outcomes.items()),
        f"wall time: {seconds:.1f} s, {PARALLEL} trials at a time",
    ]
    return "\n".join(lines) + "\n"


def _write_table(text: str, tmp_path: Path) -> Path:
    for folder in (REPO_ROOT / "_build", tmp_path):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "fault_trials.txt").write_text(text)
            return folder / "fault_trials.txt"
        except OSError:
            continue
    raise AssertionError("nowhere to write fault_trials.txt")


@pytest.mark.slow
def test_kill_9_at_random_moments_then_resume_ends_as_an_uninterrupted_run(
    env, reference, tmp_path
):
    """At least 20 trials, stratified over the four phases of a run (and
    more for a phase that got fewer than two hits, a trial that ended before
    its kill drawn again): each resumes to the uninterrupted run's metrics,
    each chunk once in valid JSON, and its policy."""
    from sacbook import checkpoint

    rng = random.Random(18)
    plans = [_draw(rng, p) for p in PHASES for _ in range(TRIALS // len(PHASES))]
    rng.shuffle(plans)
    rows: list[dict] = []
    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(PARALLEL) as pool:
        while plans and len(rows) < 3 * TRIALS:
            jobs = [
                pool.submit(_trial, len(rows) + i + 1, plan, tmp_path, env, reference)
                for i, plan in enumerate(plans)
            ]
            rows += [job.result() for job in jobs]
            landed = [r["landed"] for r in rows]
            # again: each trial whose run ended before its kill; and two more
            # aimed at a phase hit fewer than twice
            plans = [_draw(rng, r["phase"]) for r in rows[-len(jobs) :]]
            plans = [
                p for p, r in zip(plans, rows[-len(jobs) :]) if r["landed"] == AFTER_END
            ]
            plans += [
                _draw(rng, phase)
                for phase in PHASES
                if landed.count(phase) < 2
                for _ in range(2)
            ]
    seconds = time.perf_counter() - t0

    # the policy of every finished trial acts as the uninterrupted run's
    for row in rows:
        if not row["outcome"].startswith("identical"):
            continue
        torques = np.asarray(
            checkpoint.load_policy(tmp_path / f"trial{row['trial']:02d}")(OBSERVATIONS)
        )
        if not (
            np.all(np.isfinite(torques))
            and np.array_equal(torques, reference["torques"])
        ):
            row["outcome"] = f"policy differs: {torques} vs {reference['torques']}"

    text = _table(rows, seconds)
    print(text)
    print(f"(written to {_write_table(text, tmp_path)})")
    counted = [r for r in rows if r["landed"] != AFTER_END]
    assert len(counted) >= TRIALS, text
    for phase in PHASES:
        assert sum(r["landed"] == phase for r in counted) >= 2, text
    assert all(r["outcome"].startswith("identical") for r in counted), text


# ----------------------------------------------------------------------------
# SIGINT while starting up
# ----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("when", ["importing", "compiling"])
def test_sigint_while_starting_ends_with_one_line_and_the_run_can_go_on(
    env, tmp_path, when
):
    """Ctrl-C 0.5 s after the start (Python imports JAX) or once the run has
    begun (its run.json is written, the program compiles): the process ends
    with one line of its own and exit 130, no traceback. Then a plain run
    starts (nothing was saved) or ``--resume`` goes to the end."""
    out = tmp_path / "run"
    proc = _start([*OPTIONS, "--out", str(out)], env, tmp_path, piped=True)
    if when == "importing":
        time.sleep(0.5)
    else:
        deadline = time.time() + 120
        while not (out / "run.json").exists() and time.time() < deadline:
            time.sleep(0.005)
        assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    # 130 = 128 + SIGINT; Python may also end by re-raising SIGINT on itself
    # (-2 here), which a shell reports as 130 too
    assert proc.returncode in (130, -signal.SIGINT), err
    line = _one_line(err)
    assert "interrupted" in line or "stopped by SIGINT" in line, line

    args = (
        ["--resume", "--out", str(out)]
        if out.is_dir() and (out / "run.json").exists()
        else [*OPTIONS, "--out", str(out)]
    )
    after = _sacbook([*args, "--quiet"], env, tmp_path)
    assert after.returncode == 0 and after.stderr == "", after.stderr
    assert [r["chunk"] for r in _records(out)] == list(range(1, CHUNKS + 1))


# ----------------------------------------------------------------------------
# Run folders used carelessly
# ----------------------------------------------------------------------------


@pytest.mark.slow
def test_a_second_writer_on_the_same_out_is_refused_at_once(env, tmp_path):
    """Two ``sacbook train --out DIR`` at once: the second exits 2 with one
    line naming the first one's pid while the first goes on, and the first
    finishes with a valid metrics.jsonl."""
    out = tmp_path / "run"
    first = _start([*OPTIONS, "--out", str(out)], env, tmp_path, piped=True)
    deadline = time.time() + 120
    while not (out / "run.json").exists() and time.time() < deadline:
        time.sleep(0.005)
    second = _sacbook([*OPTIONS, "--out", str(out)], env, tmp_path, timeout=60)
    assert first.poll() is None, "the first run ended before the second was refused"
    assert second.returncode == 2, second.stderr
    line = _one_line(second.stderr)
    assert f"pid {first.pid}" in line and "in use" in line, line
    _, err = first.communicate(timeout=240)
    assert first.returncode == 0 and err == "", err
    assert [r["chunk"] for r in _records(out)] == list(range(1, CHUNKS + 1))
    # the lock died with its holder: the folder can be resumed now
    again = _sacbook(["--resume", "--out", str(out), "--quiet"], env, tmp_path)
    assert again.returncode == 0 and again.stderr == "", again.stderr


@pytest.mark.slow
def test_a_second_run_into_an_out_that_holds_one_is_refused(env, reference, tmp_path):
    """``sacbook train --out DIR`` into a finished run's folder, without
    --resume or --overwrite: refused in one line that offers them and another
    --out; not a file of the first run changes."""
    out = tmp_path / "run"
    shutil.copytree(reference["out"], out)
    before = _files(out)
    second = _sacbook([*OPTIONS, "--out", str(out)], env, tmp_path, timeout=60)
    assert second.returncode == 2, second.stderr
    line = _one_line(second.stderr)
    for offer in ("--resume", "another --out", "--overwrite"):
        assert offer in line, line
    after = _files(out)
    after.pop(".lock", None)  # the refusing run held the lock: its pid
    before.pop(".lock", None)
    assert after == before


@pytest.mark.slow
def test_the_default_output_is_a_fresh_folder_per_run_and_resume_takes_latest(
    env, tmp_path
):
    """Without --out: each run gets its own runs/<date>-<time> folder and
    runs/latest links to the newest; ``--resume`` alone continues it (here
    to a longer run), and the older run is left alone."""
    one_chunk = [*OPTIONS, "--total-env-steps", str(NUM_ENVS * ITERATIONS)]
    for _ in range(2):
        done = _sacbook(one_chunk, env, tmp_path)
        assert done.returncode == 0 and done.stderr == "", done.stderr
    runs = tmp_path / "runs"
    folders = sorted(p for p in runs.iterdir() if not p.is_symlink())
    assert len(folders) == 2, folders
    latest = runs / "latest"
    assert latest.is_symlink() and latest.resolve() == folders[-1].resolve()
    older = _files(folders[0])

    resumed = _sacbook(
        ["--resume", "--total-env-steps", str(2 * NUM_ENVS * ITERATIONS), "--quiet"],
        env,
        tmp_path,
    )
    assert resumed.returncode == 0 and resumed.stderr == "", resumed.stderr
    assert [r["chunk"] for r in _records(folders[-1])] == [1, 2]
    assert [r["chunk"] for r in _records(folders[0])] == [1]
    assert _files(folders[0]) == older
