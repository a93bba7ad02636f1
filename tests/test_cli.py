"""Tests for the sacbook command line: `render` writes a GIF; bad options end
with a one-line error and a non-zero exit status, never a traceback."""

from __future__ import annotations

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
