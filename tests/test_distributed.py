"""Many processes, one run or one sweep (jax.distributed), on this machine:
processes with 2 virtual CPU devices each join through
``jax.distributed.initialize("127.0.0.1:PORT", ...)`` with Gloo collectives.

Every job runs in subprocesses (JAX fixes its devices when it starts), in a
session of its own, under a hard time limit that kills the whole group: no
test can hang. The jobs share compiled programs through JAX's persistent
compilation cache.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from sacbook import distributed

HERE = Path(__file__).parent
ROOT = HERE.parent
# 2 processes x 2 devices against 1 x 4: Gloo sums the gradients of the 4
# devices in another order than one process does, so a data-parallel run
# differs in the last bits, and training amplifies them (measured: 1.5e-4
# relative at most after 40 iterations, 8 seeds; over a whole default run the
# curves drift apart and only the outcome agrees: 8/8 solved in both, final
# returns within 2%). A sweep spread over the devices communicates nothing and
# matches bit for bit.
TOLERANCE = 1e-3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def environment(tmp: Path, devices: int) -> dict:
    cache = Path(os.environ.get("SACBOOK_TEST_CACHE_DIR", tmp.parent / "xla-cache"))
    pythonpath = os.pathsep.join(
        filter(None, [str(ROOT), str(HERE), os.environ.get("PYTHONPATH")])
    )
    return dict(
        os.environ,
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
        PYTHONPATH=pythonpath,
        MPLBACKEND="Agg",
        SACBOOK_TEST_CACHE=str(cache),
        XDG_CACHE_HOME=str(cache),  # sacbook train's compilation cache
        PYTHONUNBUFFERED="1",
    )


class Job:
    """Processes started together, each in a session of its own, with their
    output in files; :meth:`wait` kills every one still running at the
    deadline."""

    def __init__(self, commands, tmp: Path, devices: int = 2, cwd=None):
        self.env = environment(tmp, devices)
        self.logs = [(tmp / f"p{i}.out", tmp / f"p{i}.err") for i in range(99)]
        self.procs = []
        for command, (out, err) in zip(commands, self.logs):
            with out.open("w") as o, err.open("w") as e:
                self.procs.append(
                    subprocess.Popen(
                        command,
                        stdout=o,
                        stderr=e,
                        env=self.env,
                        cwd=cwd or tmp,
                        start_new_session=True,
                    )
                )
        self.start = time.monotonic()

    def wait(self, timeout: float, only=None) -> list:
        """``[(exit status or None if killed, stdout, stderr, seconds)]``."""
        results = []
        for i, proc in enumerate(self.procs):
            if only is not None and i not in only:
                continue
            left = self.start + timeout - time.monotonic()
            try:
                proc.wait(max(left, 0.1))
                code = proc.returncode
            except subprocess.TimeoutExpired:
                code = None
            results.append((code, time.monotonic() - self.start))
        self.kill()
        return [
            (code, self.logs[i][0].read_text(), self.logs[i][1].read_text(), s)
            for i, (code, s) in zip(only or range(len(self.procs)), results)
        ]

    def kill(self, i=None):
        for j, proc in enumerate(self.procs):
            if (i is None or i == j) and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


def last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def worker(tmp: Path, processes: int, devices: int) -> list[dict]:
    """Run tests/multiprocess.py as a job; each process's report."""
    tmp.mkdir()
    port = free_port()
    script = str(HERE / "multiprocess.py")
    job = Job(
        [
            [sys.executable, script, str(i), str(processes), str(devices)]
            + [str(port), str(tmp)]
            for i in range(processes)
        ],
        tmp,
        devices,
    )
    for code, _, err, _ in job.wait(240):
        assert code == 0, err[-3000:]
    return [
        json.loads((tmp / f"report_{i}.json").read_text()) for i in range(processes)
    ]


@pytest.fixture(scope="module")
def jobs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("jobs")
    return {
        "two": worker(tmp / "two", 2, 2),
        "one": worker(tmp / "one", 1, 4),
        "folder": tmp,
    }


def relative_difference(a: list[dict], b: list[dict]) -> float:
    worst = 0.0
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            if isinstance(x[k], float):
                worst = max(worst, abs(x[k] - y[k]) / max(abs(x[k]), 1e-12))
            else:
                assert x[k] == y[k], k
    return worst


def test_two_processes_share_one_mesh(jobs):
    for report in jobs["two"]:
        assert report["processes"] == 2 and report["devices"] == 4
        assert report["local_devices"] == 2
        # each process holds the buffer rows of its own 2 devices, not all 4096
        assert report["buffer_rows_here"] == 4096 // 2
    assert jobs["one"][0]["buffer_rows_here"] == 4096


def test_every_process_sees_the_same_metrics(jobs):
    first, second = jobs["two"]
    for name in ("data_parallel", "sweep", "resumed"):
        assert json.dumps(first[name]) == json.dumps(second[name]), name


def test_data_parallel_run_matches_one_process(jobs):
    two, one = jobs["two"][0]["data_parallel"], jobs["one"][0]["data_parallel"]
    assert len(two) == 4 and all("eval_return" in r for r in two)
    assert relative_difference(one, two) < TOLERANCE


def test_sweep_spread_over_devices_matches_one_process_bit_for_bit(jobs):
    two, one = jobs["two"][0]["sweep"], jobs["one"][0]["sweep"]
    assert len(two) == 4
    assert json.dumps(two) == json.dumps(one)


def test_runs_spread_over_processes_are_saved_whole(jobs):
    """Each run of the sweep lives on one process's device; its checkpoint
    holds the whole run (every array checksummed, the buffer too), marked as
    one device of one process, and holds the same bits as the run saved by
    one process with four devices."""
    two, one = jobs["two"][0]["sweep_checkpoints"], jobs["one"][0]["sweep_checkpoints"]
    assert len(two) == 4
    for saved, alone in zip(two, one, strict=True):
        assert (saved["devices"], saved["processes"]) == (1, 1)
        assert "buffer/data/obs" in saved["checksums"]
        assert saved["checksums"] == alone["checksums"]
        assert len(saved["history"]) == len(alone["history"]) > 0

    from sacbook import checkpoint

    # one process with one device reads it back whole, every checksum checked
    state, config, seed, history = checkpoint.restore(jobs["folder"] / "two/sweep_3")
    assert (seed, len(history)) == (1, len(two[3]["history"]))
    assert config.sac.tau == 0.05  # the sweep's second setting
    assert state.buffer.data.obs.shape == (config.buffer_capacity, 3)


def test_checkpoint_resumes_to_the_uninterrupted_result(jobs):
    report = jobs["two"][0]
    assert report["checkpoint_processes"] == 2
    assert json.dumps(report["resumed"]) == json.dumps(report["data_parallel"])


# --------------------------------------------------------------------------
# sacbook train --distributed
# --------------------------------------------------------------------------

RUN = ["--num-envs", "64", "--batch-size", "64", "--updates-per-iteration", "1"]


def test_a_nan_on_one_process_stops_every_process_at_the_same_chunk(jobs):
    """NaN angles in the second process's environments only: both processes
    see the same non-finite metrics (shared host copies), stop at the first
    chunk after the checkpoint with the same line, and finish the job."""
    stops = [report["nan_stop"] for report in jobs["two"]]
    assert stops[0] is not None and stops[0] == stops[1]
    assert "non-finite in chunk 3 (iterations 21-30)" in stops[0]


def train_job(tmp: Path, out: str, extra=(), processes=2, per_process=None):
    port = free_port()
    commands = []
    for i in range(processes):
        launch = ["--distributed", "--coordinator", f"127.0.0.1:{port}"]
        launch += ["--num-processes", str(processes), "--process-id", str(i)]
        more = list(per_process[i]) if per_process else []
        commands.append(
            [sys.executable, "-m", "sacbook.cli", "train", *RUN, "--quiet"]
            + ["--out", out, *launch, "--peer-timeout", "8", *extra, *more]
        )
    return Job(commands, tmp)


def kill_after_a_checkpoint(tmp_path, victim: int, survivor: int):
    """A long 2-process run that checkpoints every chunk; once a checkpoint is
    complete, kill -9 ``victim`` and wait (at most 30 s) for ``survivor``.
    Returns ``(exit status or None, stderr, seconds after the kill)``."""
    long = ["--total-env-steps", str(64 * 4000), "--checkpoint-every", "1"]
    job = train_job(tmp_path, "run", long)
    folder = tmp_path / "run" / "checkpoint"
    deadline = time.monotonic() + 150
    while not any(folder.glob("*/sacbook_manifest.json")):
        assert time.monotonic() < deadline, "no checkpoint written"
        running = all(p.poll() is None for p in job.procs)
        assert running, job.logs[survivor][1].read_text()
        time.sleep(0.2)
    killed = time.monotonic()
    job.kill(victim)
    (code, _, err, _) = job.wait(killed - job.start + 30, only=[survivor])[0]
    return code, err, time.monotonic() - killed


def test_killed_process_ends_the_job_and_the_checkpoint_resumes(tmp_path):
    """kill -9 of process 1 mid-run: process 0 exits non-zero within the peer
    timeout with one line naming process 1; the checkpoint before the kill
    loads, and resumes in a new 2-process job (and only there)."""
    code, err, detected = kill_after_a_checkpoint(tmp_path, victim=1, survivor=0)
    folder = tmp_path / "run" / "checkpoint"
    assert code not in (0, None), err[-2000:]
    assert detected < 8 + 10
    assert "lost process 1 of 2" in last_line(err), err[-2000:]
    steps = [int(p.name) for p in folder.iterdir() if p.name.isdigit()]
    assert steps

    from sacbook import checkpoint

    act = checkpoint.load_policy(folder)
    assert np.isfinite(np.asarray(act(np.zeros((5, 3), np.float32)))).all()

    # a 1-process resume is refused in one line; a 2-process one finishes
    refused = subprocess.run(
        [sys.executable, "-m", "sacbook.cli", "train", "--resume", "--out", "run"]
        + ["--devices", "4", "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=environment(tmp_path, 4),
    )
    assert refused.returncode == 2
    assert "resume it with 2 process(es)" in last_line(refused.stderr)
    done = max(steps) + 20  # one more chunk
    resumed = train_job(
        tmp_path, "run", ["--resume", "--total-env-steps", str(64 * done)]
    )
    for code, _, err, _ in resumed.wait(150):
        assert code == 0, err[-2000:]
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["iterations"] == done
    assert (tmp_path / "run" / "policy.json").exists()


def test_killed_coordinator_ends_the_others_in_bounded_time(tmp_path):
    """kill -9 of process 0, which holds the job's coordination service: the
    other process ends within the peer timeout with one line naming process
    0, never hangs, and the last checkpoint loads. (Between chunks its
    watchdog reports the loss; inside a chunk JAX's own error poller aborts
    the training child first, and the parent that watches it reports it,
    JAX's fatal log held back: sacbook.cli.supervise.)"""
    code, err, detected = kill_after_a_checkpoint(tmp_path, victim=0, survivor=1)
    folder = tmp_path / "run" / "checkpoint"
    assert code == 3, err[-2000:]  # distributed.LOST_EXIT; None: running at 30 s
    assert detected < 8 + 10
    assert "sacbook: process 1 stops: lost process 0 of 2" in last_line(err), err
    assert "Check failure" not in err and "Terminating process" not in err, err

    from sacbook import checkpoint

    act = checkpoint.load_policy(folder)
    assert np.isfinite(np.asarray(act(np.zeros((5, 3), np.float32)))).all()


def test_bad_launches_end_in_one_line(tmp_path):
    """A coordinator that never answers: a time-out, not a hang; a process id
    out of range; processes given different options; launch options without
    --distributed; no --out."""
    cli = [sys.executable, "-m", "sacbook.cli", "train", *RUN, "--quiet"]
    port = free_port()
    alone = Job(
        [
            cli
            + ["--out", "x", "--distributed", "--coordinator", f"127.0.0.1:{port}"]
            + ["--num-processes", "2", "--process-id", "1", "--peer-timeout", "3"],
            cli + ["--distributed", "--num-processes", "2", "--process-id", "2"],
            cli + ["--process-id", "0"],
            cli + ["--distributed", "--coordinator", "localhost"],
        ],
        tmp_path,
    )
    (unreachable, out_of_range, no_flag, bad_address) = alone.wait(60)
    assert unreachable[0] == 2 and unreachable[3] < 30
    assert "could not join the job at 127.0.0.1" in last_line(unreachable[2])
    assert "--peer-timeout 3 s" in last_line(unreachable[2])
    assert out_of_range[0] == 2
    assert "--process-id must be in [0, 1], got 2" in last_line(out_of_range[2])
    assert no_flag[0] == 2 and "add --distributed" in last_line(no_flag[2])
    assert bad_address[0] == 2
    assert "--coordinator must be HOST:PORT" in last_line(bad_address[2])

    mismatched = train_job(
        tmp_path, "y", per_process=[["--seeds", "0-3"], ["--seeds", "0-7"]]
    )
    # each process finds the difference itself (exit 2), or, when its peer
    # found it first, its watchdog ends it with the peer's line (exit 3)
    codes = []
    for code, _, err, _ in mismatched.wait(90):
        codes.append(code)
        assert code in (2, distributed.LOST_EXIT)
        assert "option --seeds differs" in last_line(err), err[-2000:]
    assert 2 in codes
    assert not (tmp_path / "y" / "seed_0").exists()


def test_launch_checks_in_this_process():
    """The launch settings are checked before JAX is touched, one line each."""
    with pytest.raises(distributed.LaunchError, match=r"\[0, 3\], got 4"):
        distributed.check_launch("h:1", 4, 4)
    with pytest.raises(distributed.LaunchError, match="HOST:PORT"):
        distributed.check_launch("h:99999", 2, 0)
    with pytest.raises(distributed.LaunchError, match="--num-processes must be"):
        distributed.check_launch(None, 0, None)
    with pytest.raises(distributed.LaunchError, match="--peer-timeout"):
        distributed.check_launch(None, None, None, timeout=0)
    distributed.check_launch("127.0.0.1:1234", 2, 1, timeout=5)
    distributed.check_launch(None, None, None)  # cluster detection decides
    # one process: the host decisions are the single-process ones
    assert not distributed.is_distributed() and distributed.is_primary()
    assert distributed.any_process(True) and not distributed.any_process(False)
    assert distributed.on_primary(lambda: 7, "x") == 7
    tree = {"a": np.arange(3.0)}
    np.testing.assert_equal(distributed.fetch(tree), tree)


@pytest.mark.slow
def test_bench_spreads_runs_and_times_a_gradient_mean_across_processes():
    """sacbook bench --processes, tiny: runs spread over 2 virtual devices
    against one, and one gradient mean in 2 joined processes of 1 device
    against one process of 2 devices."""
    from sacbook import bench

    spread = bench.runs_over_devices_virtual(
        2, runs=2, num_envs=16, pairs=1, min_seconds=0.0
    )
    assert spread["virtual_devices"] and spread["devices"] == 2
    assert spread["runs"] == 2 and spread["ratio"]["pairs"] == 1
    assert spread["spread_env_steps_per_second"] > 0
    mean = bench.gradient_mean_across_processes(2, 1, repeats=3, timeout=120)
    across, alone = mean["across_processes"], mean["one_process"]
    assert (across["processes"], across["devices"]) == (2, 2)
    assert (alone["processes"], alone["devices"]) == (1, 2)
    assert across["bytes"] == alone["bytes"] > 10_000
    assert mean["ratio"] == across["seconds"] / alone["seconds"] > 0


def test_bench_processes_report_says_virtual_devices_are_no_speed_up(monkeypatch):
    from sacbook import bench
    from sacbook.cli import bench as bench_cli

    spread = {
        "runs": 8,
        "devices": 4,
        "num_envs": 256,
        "platform": "cpu",
        "virtual_devices": True,
        "one_device_env_steps_per_second": 2.0,
        "spread_env_steps_per_second": 1.0,
        "ratio": {"median": 0.5, "iqr": [0.5, 0.5], "min": 0.5, "max": 0.5, "pairs": 1},
    }
    once = {"processes": 2, "devices": 4, "bytes": 54544, "seconds": 0.014}
    mean = {"across_processes": once, "one_process": dict(once, seconds=0.0004)}
    monkeypatch.setattr(bench, "runs_over_devices_virtual", lambda d: spread)
    monkeypatch.setattr(
        bench, "gradient_mean_across_processes", lambda p, d: dict(mean, ratio=35.0)
    )
    lines, report = [], {}
    bench_cli._processes(report, lines.append)
    text = "\n".join(lines)
    assert report["processes"]["runs_over_devices"] is spread
    assert "14 ms across 2 processes" in text and "0.4 ms in one process" in text
    assert "not a speed-up" in text
