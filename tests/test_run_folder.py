"""The folder a `sacbook train` writes (sacbook.cli.run_folder) and the CLI
around it: fresh folders, the runs/latest link, what --overwrite removes,
the lock, the disk-space check, a read-only --out, and --resume past a
damaged checkpoint. Every refusal is one line of sacbook's, no traceback.

(Two writers at once, SIGINT and kill -9 of real runs: test_faults.py.)"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import types
import warnings

import numpy as np
import pytest
from conftest import CLI_SMALL, same_state, without_times

from sacbook import checkpoint, cli
from sacbook.cli import run_folder
from sacbook.cli.args import CliError

# a small, fast `sacbook train`: 2 chunks of 20 iterations of 64 envs
SMALL = [*CLI_SMALL[:6], "--buffer-capacity", "4096", "--total-env-steps", "2560"]
SMALL += CLI_SMALL[6:]
# the same with the default replay buffer (a million rows): 36 MB checkpoints
LARGE = SMALL[:6] + SMALL[8:]


def _one_line(err: str) -> str:
    """sacbook's one line on stderr, and nothing else."""
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("sacbook train"), err
    return lines[0]


# ----------------------------------------------------------------------------
# choose, point_latest_at, holds_run, clear
# ----------------------------------------------------------------------------


def test_choose_makes_a_fresh_folder_each_time(tmp_path, monkeypatch):
    """Without --out, each run gets its own new runs/<date>-<time>, even two
    in the same second; --resume without --out means runs/latest; an
    explicit --out is used as given (made if missing)."""
    monkeypatch.chdir(tmp_path)
    instant = datetime.datetime(2026, 12, 4, 7, 54, 17)
    fixed = types.SimpleNamespace(datetime=types.SimpleNamespace(now=lambda: instant))
    monkeypatch.setattr(run_folder, "datetime", fixed)
    folders = [run_folder.choose(None, resume=False) for _ in range(3)]
    assert [str(f) for f in folders] == [
        "runs/20261204-075417",
        "runs/20261204-075417-2",
        "runs/20261204-075417-3",
    ]
    assert all(f.is_dir() and not any(f.iterdir()) for f in folders)
    assert run_folder.choose(None, resume=True) == run_folder.RUNS / "latest"
    assert run_folder.choose("mine/run", resume=False).is_dir()


def test_point_latest_at_replaces_the_link_at_once(tmp_path, monkeypatch):
    """runs/latest is a relative link to the newest fresh folder; repointing
    it never leaves a moment without it (a reader polling all along always
    finds it) and leaves no temporary link behind."""
    monkeypatch.chdir(tmp_path)
    runs = run_folder.RUNS
    for name in ("a", "b"):
        (runs / name).mkdir(parents=True)
    run_folder.point_latest_at(runs / "a")
    assert os.readlink(runs / "latest") == "a" and (runs / "latest").is_dir()
    missing, done = [], threading.Event()

    def reader():
        while not done.is_set():
            try:
                os.readlink(runs / "latest")
            except FileNotFoundError:
                missing.append(1)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(300):
            run_folder.point_latest_at(runs / "ab"[i % 2])
    finally:
        done.set()
        thread.join()
    assert not missing
    assert os.readlink(runs / "latest") == "b"
    assert sorted(p.name for p in runs.iterdir()) == ["a", "b", "latest"]


def test_point_latest_at_leaves_a_real_latest_folder_alone(tmp_path, monkeypatch):
    """A runs/latest that is a folder (sacbook 0.4 wrote runs there) keeps
    its run: it is not replaced by a link."""
    monkeypatch.chdir(tmp_path)
    latest = run_folder.RUNS / "latest"
    latest.mkdir(parents=True)
    (latest / "metrics.jsonl").write_text("{}\n")
    (run_folder.RUNS / "new").mkdir()
    run_folder.point_latest_at(run_folder.RUNS / "new")
    assert latest.is_dir() and not latest.is_symlink()
    assert (latest / "metrics.jsonl").read_text() == "{}\n"


def test_holds_run_and_clear_touch_only_the_runs_files(tmp_path):
    """A folder with a run's files (or a --seeds run's seed_* folders) holds
    a run; one with only a log, the lock and the user's files does not.
    clear (--overwrite) removes the run's files and nothing else."""
    folder = tmp_path / "run"
    folder.mkdir()
    for name in ("notes.txt", ".lock", "sacbook.log"):
        (folder / name).write_text("keep")
    assert not run_folder.holds_run(folder)
    (folder / "seed_3" / "checkpoint").mkdir(parents=True)
    assert run_folder.holds_run(folder)
    (folder / "checkpoint" / "40").mkdir(parents=True)
    for name in ("metrics.jsonl", "learning_curve.png", "policy.gif"):
        (folder / name).write_text("run")
    (folder / "data").mkdir()
    (folder / "data" / "mine.csv").write_text("keep")
    run_folder.clear(folder)
    assert not run_folder.holds_run(folder)
    assert sorted(p.name for p in folder.iterdir()) == [".lock", "data", "notes.txt"]
    assert (folder / "notes.txt").read_text() == "keep"
    assert (folder / "data" / "mine.csv").read_text() == "keep"


# ----------------------------------------------------------------------------
# the lock
# ----------------------------------------------------------------------------

HOLD = """
import sys, time
from pathlib import Path
from sacbook.cli import run_folder
with run_folder.locked(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(120)
"""


def test_lock_names_its_holder_and_dies_with_it(tmp_path):
    """While another process holds the folder's lock, taking it is refused
    at once with one line naming that process's pid (the refusal changes
    nothing); once the holder is killed with SIGKILL, which leaves it no
    chance to clean up, the lock is free at once."""
    folder = tmp_path / "run"
    folder.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        start = time.monotonic()
        with pytest.raises(CliError) as error, run_folder.locked(folder):
            pass
        assert time.monotonic() - start < 1  # refused at once, not waiting
        message = str(error.value)
        assert f"pid {holder.pid}" in message and str(folder) in message
        assert "\n" not in message
        assert (folder / ".lock").read_text().strip() == str(holder.pid)
    finally:
        holder.kill()
        holder.wait(timeout=30)
    with run_folder.locked(folder):
        assert (folder / ".lock").read_text().strip() == str(os.getpid())
        # one process, two holders: refused too (each open of the file is one)
        with pytest.raises(CliError, match=f"pid {os.getpid()}"):
            with run_folder.locked(folder):
                pass


def test_a_seed_folder_has_one_writer_too(tmp_path, capsys, monkeypatch):
    """A --seeds run's seed_S folder is a run folder of its own (resumed with
    --out DIR/seed_S --resume): while the --seeds run trains, it holds each
    seed folder's lock, so a second writer there is refused; and while a run
    writes in seed_S, --overwrite refuses to remove it. Each refusal is one
    line naming the writer's pid; the seed's files stay as they were."""
    from sacbook.cli import train as cli_train

    out = tmp_path / "seeds"
    seen = []

    def training(*args, **kwargs):  # instead of training: try a second writer
        try:
            with run_folder.locked(out / "seed_1"):
                seen.append("taken")
        except CliError as e:
            seen.append(str(e))
        raise CliError("stopped by the test")

    monkeypatch.setattr(cli_train, "_train", training)
    argv = ["train", "--seeds", "0-1", "--out", str(out), *SMALL]
    assert cli.main(argv) == 2
    assert f"{out / 'seed_1'} is in use" in seen[0] and f"pid {os.getpid()}" in seen[0]
    # stopped before a checkpoint, a seed resumes from its own run.json
    config, seed = run_folder.read_run_config(out / "seed_1")
    assert seed == 1 and config.num_envs == 64
    capsys.readouterr()
    (out / "seed_1" / "metrics.jsonl").write_text('{"chunk": 1}\n')
    with run_folder.locked(out / "seed_1"):  # free again; now held by "another run"
        assert cli.main([*argv, "--overwrite"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"pid {os.getpid()}" in err
    assert f"{out / 'seed_1'} is in use" in err
    assert (out / "seed_1" / "metrics.jsonl").read_text() == '{"chunk": 1}\n'


def test_resume_where_there_is_nothing_to_resume(tmp_path, capsys):
    """--resume on a folder that does not exist makes none; on a --seeds
    run's folder it points to the seed folders; each in one line."""
    missing = tmp_path / "missing"
    assert cli.main(["train", "--resume", "--out", str(missing), *SMALL]) == 2
    assert not missing.exists()
    assert "--resume: no run in" in capsys.readouterr().err
    (tmp_path / "seeds" / "seed_0").mkdir(parents=True)
    argv = ["train", "--resume", "--out", str(tmp_path / "seeds"), *SMALL]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "holds a --seeds run" in err
    assert f"--out {tmp_path / 'seeds' / 'seed_S'} --resume" in err


@pytest.mark.slow
def test_resume_without_a_checkpoint_keeps_the_records(tmp_path, capsys):
    """A run whose checkpoint folder is gone starts again from the beginning
    on --resume, saying so; the records it had are moved aside, not lost."""
    out = tmp_path / "run"
    from sacbook.config import TrainConfig

    config = TrainConfig(num_envs=64, total_env_steps=64 * 20)
    out.mkdir()
    run_folder.write_run_config(out, config, 3)
    (out / "metrics.jsonl").write_text('{"chunk": 1}\n{"chunk": 2}\n')
    (out / "checkpoint").write_text("not a folder")
    argv = ["train", "--resume", "--out", str(out), "--quiet", "--no-cache"]
    assert cli.main(argv) == 2
    assert "checkpoint is not a folder" in capsys.readouterr().err
    (out / "checkpoint").unlink()
    assert cli.main(argv) == 0
    said = capsys.readouterr().out
    assert "the run starts from the beginning; its 2 earlier records are kept" in said
    kept = (out / run_folder.RESTARTED).read_text()
    assert kept == '{"chunk": 1}\n{"chunk": 2}\n'
    records = [json.loads(line) for line in (out / "metrics.jsonl").open()]
    assert [r["chunk"] for r in records] == [1] and records[0]["env_steps"] == 64 * 20


# ----------------------------------------------------------------------------
# sacbook train: disk space, read-only --out, --resume past a damaged checkpoint
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("disk", ["tmpfs", "faked"])
def test_train_refuses_an_out_without_room_before_training(
    tmp_path, tmpfs, monkeypatch, capsys, disk
):
    """--out on a disk without room for the checkpoints (a 2 MB tmpfs, or a
    disk whose free space is faked to 1 MB) is refused before training, in
    one line naming --out, its free space and what the checkpoints need;
    nothing of a run is written."""
    if disk == "tmpfs":
        mount = tmpfs("disk", size="2m")
        if mount is None:
            pytest.skip("cannot mount a tmpfs here: the faked free space stands in")
        out = mount / "run"
    else:
        out = tmp_path / "run"
        usage = shutil.disk_usage(tmp_path)
        monkeypatch.setattr(
            shutil, "disk_usage", lambda path: usage._replace(free=2**20)
        )
    rc = cli.main(["train", "--out", str(out), *LARGE])
    captured = capsys.readouterr()
    line = _one_line(captured.err)
    assert rc == 2
    assert f"--out {out} has" in line and "free" in line
    assert "checkpoints need about" in line
    assert "training on" not in captured.out  # refused before training began
    assert not (out / "metrics.jsonl").exists() and not (out / "checkpoint").exists()
    assert not run_folder.holds_run(out)  # with room, the next try is not refused


def test_train_refuses_a_read_only_out(tmp_path, tmpfs, capsys):
    """A read-only --out (a read-only filesystem where one can be mounted,
    else a folder without write permission) ends with status 2 and one line."""
    out = tmpfs("read-only", size="1m", read_only=True)
    if out is None:
        out = tmp_path / "read-only"
        out.mkdir()
        out.chmod(0o555)
        if os.access(out, os.W_OK):
            pytest.skip("this user writes into read-only folders (root)")
    rc = cli.main(["train", "--out", str(out), *SMALL])
    line = _one_line(capsys.readouterr().err)
    assert rc == 2 and f"--out {str(out)!r} is not a writable directory" in line


def _sacbook(*args):
    return subprocess.run(
        [sys.executable, "-m", "sacbook.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


def _records(out):
    return [
        json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()
    ]


@pytest.mark.slow
def test_resume_past_a_damaged_newest_checkpoint(tmp_path):
    """--resume when the newest checkpoint (step 40) has a truncated data
    file: one line on stderr naming step 40 and step 20, where it resumes;
    status 0; the same metrics as the uninterrupted run, bit for bit; and the
    run's final checkpoint is a good step 40 again (the damaged one moved to
    40.damaged), equal to the uninterrupted run's."""
    out = tmp_path / "run"
    args = ["train", "--out", str(out), "--checkpoint-every", "1", *SMALL]
    proc = _sacbook(*args)
    assert proc.returncode == 0, proc.stderr
    uninterrupted = _records(out)
    ckpt_dir = out / "checkpoint"
    assert checkpoint.all_steps(ckpt_dir) == [20, 40]
    shutil.copytree(ckpt_dir / "40", tmp_path / "good" / "40")
    data = max((ckpt_dir / "40").glob("state/**/d/*"), key=lambda p: p.stat().st_size)
    with open(data, "r+b") as f:
        f.truncate(data.stat().st_size // 2)

    proc = _sacbook(*args[: -len(SMALL)], "--resume", "--quiet", "--no-cache")
    assert proc.returncode == 0, proc.stderr
    line = _one_line(proc.stderr)
    assert "checkpoint step 40" in line and "damaged" in line and data.name in line
    assert "using step 20" in line
    assert "at step 20" in proc.stdout
    resumed = _records(out)
    assert [r["env_steps"] for r in resumed] == [64 * 20, 64 * 40]
    np.testing.assert_equal(without_times(resumed), without_times(uninterrupted))
    assert (ckpt_dir / "40.damaged").is_dir()
    with warnings.catch_warnings():
        warnings.simplefilter("error", checkpoint.CheckpointWarning)
        state, *_ = checkpoint.restore(out)
        good, *_ = checkpoint.restore(tmp_path / "good")
    assert int(state.iteration) == 40 and same_state(state, good)
