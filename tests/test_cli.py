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

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from conftest import CLI_SMALL as SMALL  # noqa: E402

from sacbook import checkpoint, cli, export  # noqa: E402
from sacbook.cli import args as cli_args  # noqa: E402
from sacbook.cli import options  # noqa: E402


def test_metrics_are_written_as_strict_json(tmp_path):
    """A chunk without updates has NaN losses: written as null, so that
    jq and JavaScript's JSON.parse read metrics.jsonl too."""
    from sacbook.cli import run_folder

    record = {"chunk": 1, "critic_loss": float("nan"), "q": [1.5, float("inf")]}
    with (tmp_path / "m.jsonl").open("w") as file:
        run_folder.write_record(file, record)
    line = (tmp_path / "m.jsonl").read_text()
    assert "NaN" not in line and "Infinity" not in line
    assert json.loads(line) == {"chunk": 1, "critic_loss": None, "q": [1.5, None]}


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
    assert (
        cli.main(
            [
                "render",
                "--out",
                str(out),
                "--preset",
                "gymnasium",
                "--steps",
                "3",
                "--num-envs",
                "1",
                "--every",
                "1",
                "--torque",
                "1.5",
            ]
        )
        == 0
    )
    with Image.open(out) as im:
        assert im.n_frames == 4  # steps + 1 rows, every one kept


def test_preset_choices_and_defaults():
    """`render` and `train` offer the presets point_mass and gymnasium; render
    defaults to point_mass; the old name "seed" is refused."""
    parser = cli.build_parser()
    assert parser.parse_args(["render"]).preset == "point_mass"
    for command in ("render", "train"):
        assert (
            parser.parse_args([command, "--preset", "point_mass"]).preset
            == "point_mass"
        )
        with pytest.raises(SystemExit):
            parser.parse_args([command, "--preset", "seed"])


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


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["render", "--num-envs", "65"], "--num-envs"),
        (["render", "--steps", "5001"], "--steps"),
        (["render", "--out", "{tmp}/a/x.gif", "--torque", "2.5"], "--torque must be"),
        (["render", "--out", "{tmp}/a/x.gif", "--torque", "1e39"], "--torque must be"),
        (["bench", "--min-window", "1e9"], "--min-window"),
        (["bench", "--skip-training", "--sizes", "10**12"], "--sizes 10**12: "),
        (["bench", "--train-sizes", "10**12"], "--train-sizes 10**12: "),
        (["bench", "--save", "{file}/x.json"], "--save"),
        (["bench", "--save", "{tmp}/x.txt"], "--save"),
        (["bench", "--save", ""], "--save is empty"),
        (["train", "--out", ""], "--out is empty"),
    ],
)
def test_refused_before_any_work(argv, needle, tmp_path, capsys, monkeypatch):
    """What would fail late (after minutes of measuring) or deep inside (XLA,
    NumPy) is refused first, in one line naming the option, before anything
    is measured or written."""
    from sacbook import bench

    def measured(*args, **kwargs):
        raise AssertionError("measured before refusing")

    monkeypatch.setattr(bench, "device_info", measured)  # a bench's first step
    (tmp_path / "file").write_text("x")
    big = str(10**12)
    argv = [
        a.format(file=tmp_path / "file", tmp=tmp_path).replace("10**12", big)
        for a in argv
    ]
    needle = needle.replace("10**12", big)
    with pytest.raises(SystemExit) as exit_info:
        raise SystemExit(cli.main(argv))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert "Traceback" not in err and len(errors) == 1 and needle in errors[0]
    assert not (tmp_path / "a").exists()  # nothing made


def test_out_inside_a_file_is_a_one_line_error_in_process(tmp_path, capsys):
    """--out below a regular file (not a directory) returns 2 with exactly
    one line on stderr and writes nothing."""
    afile = tmp_path / "afile"
    afile.write_text("x")
    rc = cli.main(
        ["render", "--out", str(afile / "x.gif"), "--steps", "2", "--num-envs", "1"]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert (
        err.count("\n") == 1
        and err.startswith("sacbook render: error:")
        and "--out" in err
    )
    assert afile.read_text() == "x"


REPO_ROOT = Path(__file__).resolve().parents[1]


def _run_cli(args, cwd):
    pythonpath = os.pathsep.join(
        filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])
    )
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=pythonpath)
    return subprocess.run(
        [sys.executable, "-m", "sacbook.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "args, one_line",
    [
        (
            ["render", "--num-envs", "-1"],
            False,
        ),  # argparse: usage lines, then one error line
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
    rc = cli.main(
        [
            "render",
            "--out",
            str(tmp_path / "x.notanimage"),
            "--steps",
            "2",
            "--num-envs",
            "1",
        ]
    )
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

    return subprocess.run(
        [sys.executable, "-m", "sacbook.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--num-envs", "-4"], "--num-envs"),
        (["--num-envs", "0"], "--num-envs"),
        (["--total-env-steps", "-1"], "--total-env-steps"),
        (["--preset", "moon"], "--preset"),
        (
            ["--batch-size", "5000", "--buffer-capacity", "4096"],
            "--batch-size (5000) must be <= --buffer-capacity (4096)",
        ),
        # --seeds and --devices
        (["--seeds", "3-1"], "low <= high"),
        (["--seeds", "a-b"], "seeds like 0-7 or 0,3,5"),
        (["--seeds", "0-5000"], "at most 4096 seeds"),
        (["--devices", "0"], "'all' or an integer >= 1"),
        (["--devices", "2"], "devices must be 'all' or an integer in [1, 1]"),
        (["--seeds", "0-1", "--seed", "3"], "either --seed or --seeds"),
        (["--seeds", "0-1", "--resume"], "--out DIR/seed_S --resume"),
        (["--spread", "runs"], "--spread runs spreads the seeds of --seeds"),
        (["--seeds", "0-1", "--spread", "seeds"], "invalid choice: 'seeds'"),
    ],
)
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
    for args in (
        ["--out", str(blocker / "run")],
        ["--out", str(tmp_path / "empty"), "--resume"],
    ):
        proc = _sacbook("train", *args, "--quiet")
        assert proc.returncode == 2
        assert (
            "Traceback" not in proc.stderr
            and len(proc.stderr.strip().splitlines()) == 1
        )


@pytest.mark.slow
def test_train_writes_outputs_and_resumes(tmp_path):
    """A short run writes metrics, curve, GIF and checkpoint; --resume continues to a longer total."""
    out = tmp_path / "run"
    common = [*SMALL, "--out", str(out)]
    proc = _sacbook("train", "--total-env-steps", str(64 * 20), *common)
    assert proc.returncode == 0, proc.stderr
    assert "final evaluation return" in proc.stdout
    for name in ("metrics.jsonl", "learning_curve.png", "policy.gif"):
        assert (out / name).stat().st_size > 0
    # the exported policy is the checkpoint's actor, bit for bit
    params, _, env, info = export.read_policy(out / "policy.json")
    state = checkpoint.restore(out / "checkpoint")[0]
    for want, got in zip(
        jax.tree.leaves(state.sac.actor_params), jax.tree.leaves(params)
    ):
        assert np.array_equal(np.asarray(want), got)
    assert env.episode_length == 200 and info["env_steps"] == 64 * 20
    records = [
        json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()
    ]
    assert records[-1]["env_steps"] == 64 * 20 and "eval_return" in records[-1]
    proc = _sacbook("train", "--resume", "--total-env-steps", str(64 * 40), *common)
    assert proc.returncode == 0, proc.stderr
    assert "resuming" in proc.stdout
    records = [
        json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["env_steps"] for r in records] == [64 * 20 * k for k in (1, 2)]
    # a fresh run into the same --out is refused in one line, the run untouched
    before = (out / "metrics.jsonl").read_bytes()
    proc = _sacbook("train", "--total-env-steps", str(64 * 20), *common)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "holds a run already" in proc.stderr and "--overwrite" in proc.stderr
    assert (out / "metrics.jsonl").read_bytes() == before
    assert sorted(int(p.name) for p in (out / "checkpoint").iterdir()) == [20, 40]
    # --overwrite replaces it, and says so
    proc = _sacbook("train", "--overwrite", "--total-env-steps", str(64 * 20), *common)
    assert proc.returncode == 0, proc.stderr
    assert "replacing" in proc.stdout
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1


@pytest.mark.slow
def test_bench_json_simulation_only():
    """`sacbook bench --json --skip-training` prints valid JSON with device info and one row per size."""
    proc = _sacbook("bench", "--json", "--skip-training", "--sizes", "1", "64")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert (
        report["device"]["platform"] == "cpu" and "jax" in report["device"]["versions"]
    )
    assert [row["num_envs"] for row in report["simulation"]] == [1, 64]
    assert all(row["env_steps_per_second"] > 0 for row in report["simulation"])


def test_bench_repeats_report_the_median_run(monkeypatch):
    """--repeats N runs each time-to-solve N times and reports the run with the
    median time (an unsolved run counts as slowest), listing every run's time."""
    from sacbook import bench

    times = iter([3.0, None, 1.0])
    monkeypatch.setattr(
        bench,
        "run_isolated",
        lambda function, **kw: {"solve_seconds_total": next(times), "id": function},
    )
    runs = [bench.run_isolated("time_to_solve", config="default") for _ in range(3)]
    row = bench.median_of(runs)
    assert row["solve_seconds_total"] == 3.0
    assert row["runs_solve_seconds_total"] == [3.0, None, 1.0]
    monkeypatch.setattr(bench, "run_isolated", lambda function, **kw: None)
    runs = [bench.run_isolated("rejax_time_to_solve") for _ in range(2)]
    assert bench.median_of(runs) is None


def test_bench_compare_alternates_ours_and_rejax_and_reports_the_ratio(
    monkeypatch, capsys
):
    """--compare --repeats 3: one round runs each recipe, then rejax, each in a
    fresh process (faked here), three rounds; the JSON holds the ratio of each
    round, rejax's time / ours, and its median and spread."""
    from sacbook import bench

    order, times = (
        [],
        {
            "default": iter([3.0, 6.0, 3.5]),
            "few_envs": iter([20.0, 40.0, None]),
            "rejax_time_to_solve": iter([9.0, 24.0, 14.0]),
        },
    )

    def run_isolated(function, config=None):
        name = config or function
        order.append(name)
        t = next(times[name])
        row = {
            "solve_seconds_total": t,
            "solved": t is not None,
            "compile_seconds": 1.0,
            "solve_env_steps": 1,
            "num_envs": 1024,
            "batch_size": 96,
            "updates_per_iteration": 16,
            "tau": 0.03,
            "solved_policy_return_many": -150.0,
            "final_eval_return_many": -150.0,
            "final_eval_episodes": 1,
        }
        return (
            row
            if config
            else {
                **row,
                "name": "rejax",
                "total_seconds": 20.0,
                "final_eval_return": -150.0,
            }
        )

    monkeypatch.setattr(bench, "installed", lambda module: True)
    monkeypatch.setattr(bench, "run_isolated", run_isolated)
    monkeypatch.setattr(
        bench,
        "training_throughput",
        lambda config: {
            "num_envs": config.num_envs,
            "env_steps_per_second": 1.0,
            "updates_per_second": 1.0,
            "compile_seconds": 1.0,
        },
    )
    ratio = bench.ratio_stats([1.0])
    _fake_ratios(monkeypatch, bench, ratio)
    monkeypatch.setattr(bench, "sacbook_runner", lambda n: None)
    monkeypatch.setattr(bench, "compare_simulation", lambda *a, **kw: None)
    assert cli.main(["bench", "--compare", "--repeats", "3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert order == ["default", "few_envs", "rejax_time_to_solve"] * 3
    rejax = report["compare"]["rejax"]
    assert rejax["solve_seconds_total"] == 14.0  # the median run, as before
    assert (
        rejax["ratio"]["values"] == [3.0, 4.0, 4.0]
        and rejax["ratio"]["recipe"] == "default"
    )
    assert rejax["ratio"]["median"] == 4.0 and rejax["ratio"]["iqr"] == [3.5, 4.0]
    assert (rejax["ratio"]["min"], rejax["ratio"]["max"], rejax["ratio"]["pairs"]) == (
        3.0,
        4.0,
        3,
    )
    assert rejax["ratio_by_recipe"]["few_envs"]["values"] == [
        0.45,
        0.6,
    ]  # the unsolved pair left out
    assert "x rejax, default to -200 (median)" in bench.summarize_report(report)


def _fake_ratios(monkeypatch, bench, ratio) -> None:
    """The bench's simulation (no rows) and its two ratios (seeds in one
    program, devices), faked: each ratio is ``ratio``."""
    monkeypatch.setattr(bench, "simulation_throughput", lambda sizes, min_seconds: [])
    monkeypatch.setattr(
        bench,
        "seeds_throughput",
        lambda **kw: {
            "one_program_env_steps_per_second": 2.0,
            "one_after_another_env_steps_per_second": 1.0,
            "ratio": ratio,
        },
    )
    monkeypatch.setattr(
        bench,
        "sharded_throughput_virtual",
        lambda devices, **kw: {
            "platform": "cpu",
            "virtual_devices": True,
            "device_counts": [1],
            "env_steps_per_second": {"1": 1.0},
            "speedup": {"1": ratio},
        },
    )


def test_bench_roofline_sets_training_against_the_limits(monkeypatch, capsys, tmp_path):
    """--roofline: the limits measured at the default update's shape (tiny
    sizes and windows here), each training row set against them under the
    report's new "roofline" key, printed at most 88 columns wide; with
    --skip-training, the limits alone."""
    from sacbook import bench, cost
    from sacbook.config import TrainConfig

    solve = {
        "solve_seconds_total": 3.0,
        "solved": False,
        "num_envs": 1024,
        "batch_size": 96,
        "updates_per_iteration": 16,
        "tau": 0.03,
        "final_eval_return_many": -150.0,
        "final_eval_episodes": 1,
    }
    ratio = bench.ratio_stats([1.0])
    measure = bench.machine_limits
    monkeypatch.setattr(
        bench,
        "machine_limits",
        lambda b, h, **kw: measure(b, h, large=16, size_bytes=4096, repeats=1, **kw),
    )
    monkeypatch.setattr(bench, "run_isolated", lambda function, **kw: dict(solve))
    monkeypatch.setattr(
        bench,
        "training_throughput",
        lambda config: {
            "num_envs": config.num_envs,
            "env_steps_per_second": 100.0 * config.num_envs,
            "updates_per_second": 1600.0,
            "iterations_per_second": 100.0,
            "compile_seconds": 1.0,
        },
    )
    _fake_ratios(monkeypatch, bench, ratio)
    saved = tmp_path / "report.json"
    common = ["bench", "--roofline", "--min-window", "0", "--solve", "default"]
    args = [*common, "--train-sizes", "1024", "4096", "--save", str(saved)]
    assert cli.main(args) == 0
    text = capsys.readouterr().out
    report = json.loads(saved.read_text())
    limits = report["roofline"]["limits"]
    assert limits["matmul_update_shape"]["m"] == 96
    assert limits["matmul_update_shape"]["n"] == 64
    rows = report["roofline"]["training"]
    assert [r["num_envs"] for r in rows] == [1024, 4096]
    for row in rows:
        c = cost.iteration_cost(bench.with_num_envs(row["num_envs"]))
        assert row["flops_per_second"] == pytest.approx(100.0 * c.flops)
        at_update = limits["matmul_update_shape"]["flops_per_second"]
        assert row["fraction_of_matmul_update_shape"] == pytest.approx(
            100.0 * c.flops / at_update
        )
    assert rows[0]["flops_per_iteration"] == cost.iteration_cost(TrainConfig()).flops
    assert {"simulation", "training", "time_to_solve"} <= set(report)
    assert "roofline: this machine's limits" in text and "of the matmul at" in text
    section = text.split("roofline: ")[1].split("\nwrote")[0]
    assert max(map(len, section.splitlines())) <= 88

    assert cli.main([*common, "--skip-training", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["roofline"]["training"] == []
    assert report["roofline"]["limits"]["balance"] > 0


def test_bench_compare_json_has_the_interleaved_ratios():
    """`sacbook bench --compare` with gymnax and Gymnasium installed, tiny
    windows: each reference holds its absolute figure, the ratio of each
    interleaved pair, and their median and spread."""
    pytest.importorskip("gymnax")
    pytest.importorskip("gymnasium")
    proc = _sacbook(
        "bench",
        "--json",
        "--compare",
        "--skip-training",
        "--sizes",
        "1024",
        "--pairs",
        "3",
        "--min-window",
        "0.05",
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["simulation"][0]["calls"] >= 1
    for name, pairs in (("gymnax", 3), ("gymnasium", 3)):
        row = report["compare"][name]
        assert row["num_envs"] == 1024 and row["env_steps_per_second"] > 0
        stats = row["ratio"]
        assert stats["pairs"] == pairs == len(stats["values"]) == len(row["rounds"])
        assert (
            stats["min"]
            <= stats["iqr"][0]
            <= stats["median"]
            <= stats["iqr"][1]
            <= stats["max"]
        )
        assert all(
            r["sacbook_seconds"] > 0 and r["reference_seconds"] > 0
            for r in row["rounds"]
        )


# ----------------------------------------------------------------------------
# Hardening: run lengths, interruptions, non-finite training, resume mismatches
# ----------------------------------------------------------------------------


def _records(out):
    return [
        json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()
    ]


@pytest.mark.slow
def test_train_run_ending_on_a_checkpoint_step_finishes(tmp_path):
    """A run whose length fills whole checkpoint intervals (2 chunks of 20
    iterations, a checkpoint every 2 chunks) ends with its outputs; the final
    save and the periodic one land on the same step and save once."""
    from sacbook import checkpoint

    out = tmp_path / "run"
    proc = _sacbook(
        "train",
        "--total-env-steps",
        str(64 * 40),
        "--checkpoint-every",
        "2",
        "--out",
        str(out),
        *SMALL,
    )
    assert proc.returncode == 0, proc.stderr
    assert checkpoint.latest_step(out / "checkpoint") == 40
    assert (
        out / "policy.gif"
    ).stat().st_size > 0 and "final evaluation return" in proc.stdout


@pytest.mark.parametrize(
    "steps", ["99999999999999999999", str(64 * (2**31 - 1) + 64 * 20)]
)
def test_train_refuses_run_lengths_past_the_counters(tmp_path, capsys, steps):
    rc = cli.main(
        ["train", "--total-env-steps", steps, "--out", str(tmp_path / "r"), *SMALL]
    )
    err = capsys.readouterr().err
    assert (
        rc == 2
        and "--total-env-steps must be at most" in err
        and len(err.splitlines()) == 1
    )


# a value unlike SMALL's run for every option of the table --resume must match
RESUME_CHANGES = {
    "--preset": "point_mass",
    "--num-envs": "128",
    "--batch-size": "32",
    "--buffer-capacity": "5000",
    "--updates-per-iteration": "2",
    "--seed": "3",
}


def test_train_resume_refuses_options_that_change_the_run(tmp_path, capsys):
    """--resume with any option of the table that must match the checkpoint,
    set to another value, is refused with one line naming it; the same
    values as the checkpoint's pass the check."""
    must_match = [o.flag for o in options.OPTIONS if o.must_match]
    assert sorted(must_match) == sorted(RESUME_CHANGES)
    out = tmp_path / "run"
    assert (
        cli.main(
            ["train", "--total-env-steps", str(64 * 20), "--out", str(out), *SMALL]
        )
        == 0
    )
    capsys.readouterr()
    for option, value in RESUME_CHANGES.items():
        small = [
            value if previous == option else arg
            for previous, arg in zip([None] + SMALL, SMALL)
        ]
        extra = [] if option in SMALL else [option, value]
        assert cli.main(["train", "--resume", "--out", str(out), *small, *extra]) == 2
        err = capsys.readouterr().err
        assert f"so {option} {value} cannot apply" in err, err
        assert "only --total-env-steps may change" in err, err
        assert len(err.strip().splitlines()) == 1
    # the checkpoint's own values (and a longer run) resume
    same = ["--preset", "gymnasium", "--seed", "0", "--buffer-capacity", "1000000"]
    args = ["train", "--resume", "--out", str(out), *SMALL, *same]
    assert cli.main([*args, "--total-env-steps", str(64 * 40)]) == 0
    assert "resuming from" in capsys.readouterr().out


def test_sigint_and_sigterm_both_ask_training_to_stop():
    """Ctrl-C and SIGTERM go to the same handler while training runs: the first
    asks for a stop at the chunk boundary, a second one interrupts at once; the
    previous handlers come back afterwards. (The end-to-end test below sends a
    real SIGINT to a real run.)"""
    import signal

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with cli.interrupts.StopOnSignal() as stop:
        handler = signal.getsignal(signal.SIGTERM)
        assert signal.getsignal(signal.SIGINT) == handler != before[signal.SIGTERM]
        assert not stop()
        handler(signal.SIGTERM, None)
        assert stop() and stop.signum == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            handler(signal.SIGINT, None)
    assert {s: signal.getsignal(s) for s in before} == before


def test_a_ctrl_c_while_held_is_noted_then_raised_where_it_is_safe():
    """interrupts.hold() turns Ctrl-C into a note (a KeyboardInterrupt raised
    in a garbage-collection callback is printed and dropped); release() gives
    the old handler back and raises a noted one there, or leaves it for
    take(), which StopOnSignal does: a noted Ctrl-C is its first request."""
    import signal

    from sacbook.cli import interrupts

    before = signal.getsignal(signal.SIGINT)
    interrupts.hold()
    os.kill(os.getpid(), signal.SIGINT)  # a real signal: noted, nothing raised
    with pytest.raises(KeyboardInterrupt):
        interrupts.release()
    assert signal.getsignal(signal.SIGINT) is before and not interrupts.take()

    interrupts.hold()
    os.kill(os.getpid(), signal.SIGINT)
    interrupts.release(raise_held=False)
    assert signal.getsignal(signal.SIGINT) is before
    with interrupts.StopOnSignal() as stop:
        assert stop() and stop.signum == signal.SIGINT
    assert not interrupts.take()
    interrupts.release()  # nothing held, nothing noted: nothing happens


def test_a_ctrl_c_noted_by_a_command_that_failed_does_not_carry_over(
    monkeypatch, capsys
):
    """A command that fails (a user error) with a Ctrl-C still noted ends with
    its error; the next main() in this process is not interrupted by it. A
    release() from another thread leaves the main thread's hold alone."""
    import signal
    import threading

    from sacbook.cli import interrupts

    def ctrl_c_then_a_user_error(args):
        os.kill(os.getpid(), signal.SIGINT)
        raise cli_args.CliError("--x must be 1")

    monkeypatch.setattr(cli.render, "run", ctrl_c_then_a_user_error)
    assert cli.main(["render"]) == 2
    assert capsys.readouterr().err == "sacbook render: error: --x must be 1\n"
    assert not interrupts.take()

    before = signal.getsignal(signal.SIGINT)
    interrupts.hold()
    held = signal.getsignal(signal.SIGINT)
    elsewhere = threading.Thread(target=interrupts.release, args=(False,))
    elsewhere.start()
    elsewhere.join()
    assert signal.getsignal(signal.SIGINT) is held is not before
    interrupts.release()
    assert signal.getsignal(signal.SIGINT) is before


@pytest.mark.parametrize("argv0, after", [("-m", "noted"), ("-c", "raised")])
def test_a_ctrl_c_while_the_commands_are_imported(argv0, after):
    """A Ctrl-C while ``sacbook.cli`` imports the commands: kept for main()'s
    one line when Python runs the command line (``-m`` is argv[0] while the
    package of ``python -m sacbook.cli`` is imported); raised at the end of
    the import when other code imports it (a notebook's interrupt works)."""
    code = f"""
import os, signal, sys
sys.argv[0] = {argv0!r}
class CtrlCWhileImporting:  # a real SIGINT as the first command is imported
    def find_spec(self, name, path=None, target=None):
        if name == "sacbook.cli.bench":
            os.kill(os.getpid(), signal.SIGINT)
sys.meta_path.insert(0, CtrlCWhileImporting())
try:
    import sacbook.cli
except KeyboardInterrupt:
    print("raised")
else:
    print("noted" if sacbook.cli.interrupts.take() else "lost")
"""
    env = dict(os.environ, PYTHONPATH=str(Path(cli.__file__).parents[2]))
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True
    )
    assert done.stdout.strip() == after, done.stderr


@pytest.mark.parametrize("release", [True, False])
def test_a_ctrl_c_before_a_command_is_ready_ends_it_with_one_line(
    monkeypatch, capsys, release
):
    """A Ctrl-C while a command starts (it imports its libraries) is held, not
    lost: raised when the command releases it, or noticed by main() when the
    command returns without releasing. One line, exit 130, the handler that
    was there before restored."""
    import signal

    from sacbook.cli import interrupts

    def starting(args):
        os.kill(os.getpid(), signal.SIGINT)
        if release:
            interrupts.release()
            raise AssertionError("release() should have raised the held Ctrl-C")
        return 0

    monkeypatch.setattr(cli.render, "run", starting)
    before = signal.getsignal(signal.SIGINT)
    assert cli.main(["render"]) == 130
    assert capsys.readouterr().err == "sacbook render: interrupted\n"
    assert signal.getsignal(signal.SIGINT) is before


@pytest.mark.slow
def test_a_ctrl_c_before_training_takes_it_over_stops_the_run_there(
    tmp_path, monkeypatch, capsys
):
    """A real SIGINT after the imports, while `sacbook train` checks the run
    (before its stop handler is installed: a KeyboardInterrupt there was once
    swallowed by JAX's gc callback and the run trained to the end): the run
    stops before training with the line that says how to resume, and
    --resume trains it all."""
    import signal

    check_run = options.check_run

    def check_then_ctrl_c(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        return check_run(*args, **kwargs)

    monkeypatch.setattr(options, "check_run", check_then_ctrl_c)
    out = tmp_path / "run"
    argv = ["train", "--out", str(out), "--total-env-steps", str(64 * 20), *SMALL]
    assert cli.main(argv) == 128 + signal.SIGINT
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "before training began" in err, err
    assert not (out / "metrics.jsonl").exists() or not _records(out)
    monkeypatch.undo()
    assert cli.main(["train", "--resume", "--out", str(out), *SMALL]) == 0
    assert _records(out)[-1]["env_steps"] == 64 * 20


@pytest.mark.slow
def test_a_signal_after_training_is_not_ignored(tmp_path, monkeypatch, capsys):
    """Ctrl-C while `sacbook train` writes its GIF (training done, checkpoint
    saved): the run ends there with one line saying how to write the rest,
    and that --resume, with nothing left to train, writes it."""
    import signal

    from sacbook import viz

    def gif_then_ctrl_c(*args, **kwargs):
        signal.getsignal(signal.SIGINT)(signal.SIGINT, None)

    monkeypatch.setattr(viz, "save_policy_gif", gif_then_ctrl_c)
    out = tmp_path / "run"
    argv = ["train", "--out", str(out), "--total-env-steps", str(64 * 20), *SMALL]
    assert cli.main(argv) == 128 + signal.SIGINT
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "after training, checkpoint saved" in err
    assert not (out / "policy.json").exists()
    monkeypatch.undo()
    assert cli.main(["train", "--resume", "--out", str(out), *SMALL]) == 0
    assert "nothing to train" in capsys.readouterr().out
    assert (out / "policy.json").exists() and (out / "policy.gif").exists()


@pytest.mark.slow
@pytest.mark.parametrize("signame", ["SIGINT"])
def test_train_signal_saves_a_checkpoint_and_resume_loses_no_line(tmp_path, signame):
    """A real signal during `sacbook train`: the run stops at the next chunk
    boundary with a checkpoint there, exits non-zero with one line that says
    how to resume, and --resume continues with every chunk in metrics.jsonl
    exactly once. (SIGTERM takes the same handler: the test above.)"""
    import signal
    import subprocess
    import time

    from sacbook import checkpoint

    out = tmp_path / "run"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sacbook.cli",
            "train",
            "--total-env-steps",
            str(64 * 20 * 10_000),
            "--checkpoint-every",
            "1000",
            "--out",
            str(out),
            *SMALL,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if (out / "metrics.jsonl").exists() and len(_records(out)) >= 3:
            break
        time.sleep(0.2)
    proc.send_signal(getattr(signal, signame))
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + getattr(signal, signame), err
    assert err.strip().splitlines() == [err.strip()]  # one line
    assert f"resume with: sacbook train --resume --out {out}" in err
    done = _records(out)
    assert checkpoint.latest_step(out / "checkpoint") == 20 * len(done)
    assert [r["chunk"] for r in done] == list(range(1, len(done) + 1))
    # metrics.jsonl may hold a line the checkpoint does not (a crash between the
    # two); --resume rewrites it from the checkpoint, then appends
    with (out / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({**done[-1], "chunk": len(done) + 1}) + "\n")
    total = 64 * 20 * (len(done) + 2)
    resumed = _sacbook(
        "train", "--resume", "--total-env-steps", str(total), "--out", str(out), *SMALL
    )
    assert resumed.returncode == 0, resumed.stderr
    assert [r["chunk"] for r in _records(out)] == list(range(1, len(done) + 3))


def test_train_non_finite_run_exits_with_one_line_and_keeps_the_checkpoint(
    tmp_path, capsys, monkeypatch
):
    """When the losses turn NaN (forced here after iteration 30), `sacbook
    train` stops with one line naming the metric and the chunk, exit status 1,
    and the checkpoint of the last good chunk still loads."""
    import jax
    import jax.numpy as jnp

    from sacbook import checkpoint, loop

    original = loop.update_round

    def poisoned(sac_state, buffer, key, config, **kwargs):
        sac_state, metrics = original(sac_state, buffer, key, config, **kwargs)
        late = buffer.size > 64 * 30
        return sac_state, {
            **metrics,
            "critic_loss": jnp.where(late, jnp.nan, metrics["critic_loss"]),
        }

    monkeypatch.setattr(loop, "update_round", poisoned)
    jax.clear_caches()  # trace the chunk again, with the poisoned update
    out = tmp_path / "run"
    try:
        rc = cli.main(
            [
                "train",
                "--total-env-steps",
                str(64 * 80),
                "--checkpoint-every",
                "1",
                "--out",
                str(out),
                *SMALL,
            ]
        )
    finally:
        monkeypatch.undo()
        jax.clear_caches()
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1, err
    assert "non-finite in chunk 2" in err and "critic_loss = nan" in err
    assert checkpoint.latest_step(out / "checkpoint") == 20
    state, config, seed, history = checkpoint.restore(out / "checkpoint")
    assert [h["chunk"] for h in history] == [1] and int(state.iteration) == 20
    assert [r["chunk"] for r in _records(out)] == [1]


# ----------------------------------------------------------------------------
# sacbook train --seeds / --devices, and the bench's two ratios
# ----------------------------------------------------------------------------


def test_seed_list_parsing():
    assert cli_args.seed_list("0-3") == [0, 1, 2, 3]
    assert cli_args.seed_list("5,1-2,5") == [5, 1, 2]
    assert cli_args.seeds_text([0, 1, 2, 3]) == "0-3"
    assert cli_args.seeds_text([5, 1, 2]) == "5,1,2"


def test_train_seeds_writes_each_seed_and_one_plot(tmp_path, capsys):
    """--seeds 0-1: per-seed metrics and checkpoints that restore as that
    seed's run, one plot, and a summary with the IQM and its interval."""
    from sacbook import checkpoint

    out = tmp_path / "run"
    args = ["train", "--seeds", "0-1", "--total-env-steps", str(64 * 40), *SMALL]
    assert cli.main([*args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "2 seeds (0,1) as one program" in printed and "IQM of 2 runs" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seeds"] == [0, 1] and len(summary["ci95"]) == 2
    assert summary["ci95"][0] <= summary["iqm"] <= summary["ci95"][1]
    assert (out / "learning_curves.png").stat().st_size > 0
    for seed in (0, 1):
        lines = (out / f"seed_{seed}" / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(x)["env_steps"] for x in lines] == [64 * 20, 64 * 40]
        state, config, saved_seed, history = checkpoint.restore(
            out / f"seed_{seed}" / "checkpoint"
        )
        assert saved_seed == seed and int(state.iteration) == 40
        assert history[-1]["eval_return"] == summary["final_eval_return"][str(seed)]


@pytest.mark.slow
def test_bench_seeds_and_sharding_ratios():
    """The bench's two side-by-side ratios, with tiny windows: S seeds in one
    program against S runs in turn, and D virtual devices against one."""
    from sacbook import bench, sac
    from sacbook.config import TrainConfig

    config = TrainConfig(
        num_envs=32, buffer_capacity=1024, sac=sac.SACConfig(batch_size=32)
    )
    seeds = bench.seeds_throughput(config, seeds=2, pairs=2, min_seconds=0.0)
    assert seeds["seeds"] == 2 and seeds["ratio"]["pairs"] == 2
    assert seeds["one_program_env_steps_per_second"] > 0
    assert seeds["ratio"]["min"] > 0
    scaling = bench.sharded_throughput_virtual(
        2, device_counts=[1, 2], pairs=1, min_seconds=0.0
    )
    assert scaling["virtual_devices"] and scaling["device_counts"] == [1, 2]
    assert scaling["speedup"]["1"]["median"] == 1.0
    assert scaling["env_steps_per_second"]["2"] > 0


# ----------------------------------------------------------------------------
# The option table: argparse, the config, errors and the memory check read it
# ----------------------------------------------------------------------------


def test_every_table_option_is_in_train_help(capsys):
    """`sacbook train --help` lists each option of the table with its help."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--help"])
    assert exit_info.value.code == 0
    shown = " ".join(capsys.readouterr().out.split())
    for option in options.OPTIONS:
        assert option.flag in shown and " ".join(option.help.split()) in shown


def _config(*argv):
    return options.train_config(cli.build_parser().parse_args(["train", *argv]))


def test_table_options_set_their_config_fields():
    """Each option sets the field the table names; --num-envs alone grows the
    buffer to two iterations of data, --buffer-capacity sets it outright."""
    from sacbook.config import TrainConfig
    from sacbook.pendulum import PendulumParams

    default = TrainConfig()
    assert _config() == default
    config = _config(
        "--preset",
        "point_mass",
        "--batch-size",
        "32",
        "--updates-per-iteration",
        "3",
        "--total-env-steps",
        "5000",
        "--seed",
        "7",
    )
    assert config == default.replace(
        env=PendulumParams.preset("point_mass"),
        sac=default.sac.replace(batch_size=32),
        updates_per_iteration=3,
        total_env_steps=5000,
    )
    assert _config("--num-envs", "64").buffer_capacity == default.buffer_capacity
    assert _config("--num-envs", "600000").buffer_capacity == 1_200_000
    grown = _config("--num-envs", "600000", "--buffer-capacity", "700000")
    assert grown.buffer_capacity == 700_000


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["--batch-size", "5000", "--buffer-capacity", "4096"],
            "--batch-size (5000) must be <= --buffer-capacity (4096)",
        ),
        (
            ["--num-envs", "64", "--buffer-capacity", "10"],
            "--buffer-capacity (10) must be >= --num-envs (64)",
        ),
    ],
)
def test_config_errors_name_the_options(argv, message, capsys):
    """A config's check speaks of the options, not of the config's fields:
    in-process and through main (one line, status 2)."""
    with pytest.raises(cli_args.CliError) as error:
        _config(*argv)
    assert str(error.value) == message
    assert cli.main(["train", *argv]) == 2
    err = capsys.readouterr().err
    assert err == f"sacbook train: error: {message}\n"


def test_as_options_spells_every_field_of_the_table():
    for field, flag in options.option_names().items():
        name = field.split(".")[-1]
        for spelled in (field, f"TrainConfig.{name}", f"SACConfig.{name}"):
            assert options.as_options(f"{spelled} (1) is bad") == f"{flag} (1) is bad"
    assert options.as_options("env steps") == "env steps"  # --preset: not spelled


def test_too_large_run_names_the_options(tmp_path, capsys, monkeypatch):
    """`--num-envs 1000000000`: one line, status 2, the options to lower
    spelled as options (from the table), nothing written."""
    from sacbook import device

    monkeypatch.setattr(
        device, "host_available_bytes", lambda: (64 * 10**9, "host RAM: test")
    )
    out = tmp_path / "run"
    assert cli.main(["train", "--num-envs", "1000000000", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sacbook train: error: this run needs about")
    assert err.count("\n") == 1
    assert "--num-envs (now 1000000000)" in err
    assert "--buffer-capacity (now 1147483647)" in err
    assert "--num-envs 1000000000" in err and not out.exists()


def test_bench_compile_stages_reports_a_table_in_88_columns(monkeypatch, capsys):
    """--compile-stages: the rows of bench.compile_stages from a fresh process
    (faked here), for the --solve recipes, printed one per program and kept
    under the JSON report's "compile_stages"."""
    from sacbook import bench

    asked = {}
    row = {
        "program": "chunk default",
        "trace_seconds": 0.31,
        "lower_seconds": 0.16,
        "compile_seconds": 1.25,
        "compile_cpu_seconds": 1.94,
        "stablehlo_lines": 2843,
        "fusions": 292,
        "loops": 20,
    }

    trials = [
        {"trial": "sacbook's options", "options": {}, "compile_seconds": 1.26,
         "chunk_seconds": 0.121, "same_numbers": True},
        {"trial": "LLVM -O0", "options": {"xla_backend_optimization_level": 0},
         "compile_seconds": 0.78, "chunk_seconds": 0.347, "same_numbers": False},
        {"trial": "refused", "options": {"x": 1}, "error": "No such compile option"},
    ]  # fmt: skip

    def fresh(function, kwargs=None):
        asked[function] = kwargs
        return ([row] if function == "compile_stages" else trials), 3.0

    monkeypatch.setattr(bench, "call_in_fresh_process", fresh)
    args = ["bench", "--skip-training", "--compile-stages", "--sizes", "8"]
    assert cli.main([*args, "--min-window", "0", "--solve", "N=64"]) == 0
    text = capsys.readouterr().out
    assert asked == {"compile_stages": {"recipes": ["N=64"]}, "option_trials": None}
    line = next(x for x in text.splitlines() if x.strip().startswith("chunk default"))
    assert line.split()[2:] == ["0.31", "0.16", "1.25", "1.94", "2843", "292", "20"]
    lines = {x.strip()[:22].strip(): x for x in text.splitlines()}
    assert lines["LLVM -O0"].split()[-4:] == ["0.78", "0.347", "other", "numbers"]
    assert lines["sacbook's options"].split()[-2:] == ["same", "numbers"]
    assert lines["refused"].strip().endswith("No such compile option")
    assert max(map(len, text.splitlines())) <= 88
    assert cli.main([*args, "--json", "--min-window", "0"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["compile_stages"] == [row]
    assert report["option_trials"] == trials
