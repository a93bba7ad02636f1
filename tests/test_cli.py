"""Tests for the sacbook command line: `render` writes a GIF; bad options end
with a one-line error and a non-zero exit status, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from sacbook import cli  # noqa: E402


def test_render_writes_gif(tmp_path, capsys):
    """`sacbook render` returns 0 and writes a GIF with ceil((steps + 1) / every)
    frames (the start state is drawn too), creating missing parent directories."""
    from PIL import Image

    out = tmp_path / "sub" / "x.gif"
    rc = cli.main(["render", "--out", str(out), "--steps", "10", "--num-envs", "2"])
    assert rc == 0
    assert out.is_file()
    with Image.open(out) as im:
        assert im.format == "GIF"
        assert im.n_frames == 6  # 11 rows, default --every 2
    assert "wrote" in capsys.readouterr().out


def test_render_gymnasium_preset_with_torque(tmp_path, capsys):
    """The gymnasium preset with a constant torque and --every 1 renders too."""
    from PIL import Image

    out = tmp_path / "g.gif"
    assert cli.main(["render", "--out", str(out), "--preset", "gymnasium", "--steps", "3",
                     "--num-envs", "1", "--every", "1", "--torque", "1.5"]) == 0
    with Image.open(out) as im:
        assert im.n_frames == 4  # steps + 1 rows, every one kept


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["render", "--num-envs", "-1"], "--num-envs"),
        (["render", "--num-envs", "two"], "--num-envs"),
        (["render", "--steps", "0"], "--steps"),
        (["render", "--preset", "nope"], "--preset"),
        (["bench", "--repeats", "0"], "--repeats"),
        (["fly"], "invalid choice"),
        ([], "required"),
    ],
)
def test_bad_options_exit_2_in_process(argv, needle, capsys):
    """argparse rejects bad options with SystemExit(2) and an error line
    naming the option."""
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    error_lines = [line for line in err.splitlines() if "error:" in line]
    assert len(error_lines) == 1 and needle in error_lines[0]


def test_out_inside_a_file_is_a_one_line_error_in_process(tmp_path, capsys):
    """--out below a regular file (not a directory) returns 2 with exactly
    one line on stderr and writes nothing."""
    afile = tmp_path / "afile"
    afile.write_text("x")
    rc = cli.main(["render", "--out", str(afile / "x.gif"), "--steps", "2", "--num-envs", "1"])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("sacbook render: error:") and "--out" in err
    assert afile.read_text() == "x"


REPO_ROOT = Path(__file__).resolve().parents[1]


def _run_cli(args, cwd):
    pythonpath = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=pythonpath)
    return subprocess.run([sys.executable, "-m", "sacbook.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    "args, one_line",
    [
        (["render", "--num-envs", "-1"], False),  # argparse: usage lines, then one error line
        (["render", "--preset", "nope"], False),
        (["render", "--out", "afile/x.gif", "--steps", "2"], True),
    ],
    ids=["num-envs", "preset", "out-in-file"],
)
def test_bad_options_subprocess_no_traceback(tmp_path, args, one_line):
    """Run as `python -m sacbook.cli`: bad options exit with status 2, one
    error line on stderr, no traceback, nothing on stdout."""
    (tmp_path / "afile").write_text("x")
    proc = _run_cli(args, tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    error_lines = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(error_lines) == 1, proc.stderr
    if one_line:
        assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stdout == ""


def test_unknown_gif_extension_is_a_one_line_error(tmp_path, capsys):
    """An --out whose extension Pillow cannot write ends with status 2 and
    one error line (the ValueError path of main), not a traceback."""
    rc = cli.main(["render", "--out", str(tmp_path / "x.notanimage"), "--steps", "2", "--num-envs", "1"])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("sacbook render: error:")


def test_out_is_an_existing_directory(tmp_path, capsys):
    """--out naming an existing directory is a user error: status 2 and a
    one-line message, not a traceback."""
    target = tmp_path / "d.gif"
    target.mkdir()
    rc = cli.main(["render", "--out", str(target), "--steps", "2", "--num-envs", "1"])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a directory" in err


# ----------------------------------------------------------------------------
# sacbook train / bench
# ----------------------------------------------------------------------------

def _sacbook(*args, timeout=600):
    import subprocess

    return subprocess.run([sys.executable, "-m", "sacbook.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("args, needle", [
    (["--num-envs", "-4"], "--num-envs"),
    (["--num-envs", "0"], "--num-envs"),
    (["--total-env-steps", "-1"], "--total-env-steps"),
    (["--preset", "moon"], "--preset"),
    (["--batch-size", "5000", "--buffer-capacity", "4096"], "batch_size"),
])
def test_train_bad_options_one_line_error(args, needle, tmp_path, capsys):
    """Bad train options end with status 2 and one error line naming the option, no traceback."""
    with pytest.raises(SystemExit) as exit_info:
        rc = cli.main(["train", "--out", str(tmp_path / "run"), *args])
        raise SystemExit(rc)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("sacbook train: error:")


def test_train_unwritable_out_and_missing_resume(tmp_path):
    """An --out that cannot be a directory, or --resume with no checkpoint: one line, status 2."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for args in (["--out", str(blocker / "run")], ["--out", str(tmp_path / "empty"), "--resume"]):
        proc = _sacbook("train", *args, "--quiet")
        assert proc.returncode == 2
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_train_writes_outputs_and_resumes(tmp_path):
    """A short run writes metrics, curve, GIF and checkpoint; --resume continues to a longer total."""
    out = tmp_path / "run"
    common = ["--num-envs", "64", "--batch-size", "64", "--updates-per-iteration", "1", "--quiet", "--no-cache",
              "--out", str(out)]
    proc = _sacbook("train", "--total-env-steps", str(64 * 20), *common)
    assert proc.returncode == 0, proc.stderr
    assert "final evaluation return" in proc.stdout
    for name in ("metrics.jsonl", "learning_curve.png", "policy.gif"):
        assert (out / name).stat().st_size > 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["env_steps"] == 64 * 20 and "eval_return" in records[-1]
    proc = _sacbook("train", "--resume", "--total-env-steps", str(64 * 40), *common)
    assert proc.returncode == 0, proc.stderr
    assert "resuming" in proc.stdout
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["env_steps"] for r in records] == [64 * 20 * k for k in (1, 2)]
    # a fresh run into the same --out replaces the old one (the README's main command, run twice)
    proc = _sacbook("train", "--total-env-steps", str(64 * 20), *common)
    assert proc.returncode == 0, proc.stderr
    assert "replacing" in proc.stdout
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1


def test_bench_json_simulation_only():
    """`sacbook bench --json --skip-training` prints valid JSON with device info and one row per size."""
    proc = _sacbook("bench", "--json", "--skip-training", "--sizes", "1", "64")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["device"]["platform"] == "cpu" and "jax" in report["device"]["versions"]
    assert [row["num_envs"] for row in report["simulation"]] == [1, 64]
    assert all(row["env_steps_per_second"] > 0 for row in report["simulation"])


def test_bench_repeats_report_the_median_run(monkeypatch):
    """--repeats N runs each time-to-solve N times and reports the run with the
    median time (an unsolved run counts as slowest), listing every run's time."""
    from sacbook import bench

    times = iter([3.0, None, 1.0])
    monkeypatch.setattr(bench, "run_isolated", lambda function, **kw: {"solve_seconds_total": next(times), "id": function})
    row = cli._median_run("time_to_solve", 3, config="default")
    assert row["solve_seconds_total"] == 3.0
    assert row["runs_solve_seconds_total"] == [3.0, None, 1.0]
    monkeypatch.setattr(bench, "run_isolated", lambda function, **kw: None)
    assert cli._median_run("rejax_time_to_solve", 2) is None
