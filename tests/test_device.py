"""Tests for sacbook.device: accelerator detection, available memory, the
memory estimate of a training run (exact for the state, an upper bound for
XLA's working memory, allocation-free for any size) and the fail-fast check
in train.train and `sacbook train`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tracemalloc
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import TINY

from sacbook import cli, device, loop, train
from sacbook.config import TrainConfig
from sacbook.pendulum import PendulumParams
from sacbook.sac import SACConfig

CONFIGS = [
    TrainConfig(),
    TrainConfig.few_envs(),
    TrainConfig(
        env=PendulumParams.gymnasium(episode_length=7),
        sac=SACConfig(hidden_sizes=(8, 16, 4), batch_size=8, num_critics=3),
        num_envs=37,
        buffer_capacity=500,
        chunk_iterations=3,
    ),
    TrainConfig(
        sac=SACConfig(hidden_sizes=(32,), batch_size=64),
        num_envs=5000,
        buffer_capacity=5000,
        updates_per_iteration=3,
    ),
]


class FakeDevice:
    """A stand-in for a jax.Device: a platform and, optionally, memory_stats."""

    def __init__(self, platform="gpu", stats=None, kind="Fake H200"):
        self.platform, self.device_kind, self._stats = platform, kind, stats

    def memory_stats(self):
        if isinstance(self._stats, Exception):
            raise self._stats
        return self._stats


def _leaf_bytes(tree) -> int:
    return sum(x.nbytes for x in jax.tree.leaves(tree))


# The largest run a config accepts (int32 counters): far too large for any device
HUGE_N = 2**30 - 1
HUGE_CAPACITY = 2**31 - 1 - HUGE_N

# ----------------------------------------------------------------------------
# Which device, how much memory
# ----------------------------------------------------------------------------


def test_is_accelerator():
    """The CPU is not an accelerator; any other backend (GPU, TPU) is."""
    assert device.is_accelerator() is False
    assert device.is_accelerator(jax.devices("cpu")[0]) is False
    assert device.is_accelerator(FakeDevice("gpu")) is True
    assert device.is_accelerator(FakeDevice("tpu")) is True
    assert device.is_accelerator(FakeDevice("cpu")) is False


def test_available_bytes_uses_memory_stats():
    """A device with memory_stats gives bytes_limit - bytes_in_use."""
    fake = FakeDevice(stats={"bytes_limit": 80 * 10**9, "bytes_in_use": 5 * 10**9})
    available, source = device.available_bytes(fake)
    assert available == 75 * 10**9 and "memory_stats" in source


@pytest.mark.parametrize("stats", [None, {}, NotImplementedError("no stats")])
def test_available_bytes_falls_back_to_host_ram(stats, monkeypatch):
    """No usable memory_stats (the CPU backend: None): host RAM instead (a
    fixed figure here: the machine's own changes between two reads)."""
    host = device.host_available_bytes()
    assert host[1].startswith("host RAM") and host[0] > 0
    monkeypatch.setattr(device, "host_available_bytes", lambda: (123_456, host[1]))
    available, source = device.available_bytes(FakeDevice("cpu", stats=stats))
    assert (available, source) == (123_456, host[1])


def test_host_ram_on_the_real_device_and_without_meminfo(monkeypatch):
    """On this CPU the figure is host RAM; without /proc/meminfo, os.sysconf."""
    available, source = device.available_bytes()
    assert source.startswith("host RAM") and 0 < available < 1 << 60
    monkeypatch.setattr(device, "_meminfo_available", lambda: None)
    monkeypatch.setattr(device, "_cgroup_limit", lambda: None)
    available, source = device.host_available_bytes()
    assert "sysconf" in source and available > 0


def test_format_bytes():
    assert device.format_bytes(2.1e12) == "2.1 TB"
    assert device.format_bytes(34e9) == "34 GB"
    assert device.format_bytes(999) == "999 B"
    assert device.format_bytes(1500) == "1.5 kB"


# ----------------------------------------------------------------------------
# The estimate
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("config", CONFIGS, ids=["default", "few_envs", "tiny", "wide"])
def test_abstract_state_matches_the_real_state(config):
    """abstract_state, built from a one-env, one-row state, has exactly the
    structure, shapes and dtypes of the full state; the estimate's state part
    is its bytes, which are the real state's bytes."""
    full = loop._init_host(config, jax.random.key(0))
    abstract = loop.abstract_state(config)
    assert jax.tree.structure(abstract) == jax.tree.structure(full)
    assert jax.tree.leaves(abstract) == [
        jax.ShapeDtypeStruct(np.shape(x), x.dtype) for x in jax.tree.leaves(full)
    ]
    estimate = device.estimate_train_bytes(config)
    real = loop.init(config, jax.random.key(0))
    assert estimate["state"] == device.tree_bytes(abstract) == _leaf_bytes(real)
    assert estimate["replay_buffer"] == _leaf_bytes(real.buffer)
    assert estimate["environments"] == _leaf_bytes((real.env, real.obs))
    parts = ("replay_buffer", "environments", "networks")
    assert sum(estimate[p] for p in parts) == estimate["state"]
    # on the CPU the host copy made while starting is in the same memory
    host = estimate["host_copy"]
    assert estimate["total"] == estimate["state"] + estimate["working"] + host


def test_estimate_allocates_nothing_for_any_size():
    """2**30 - 1 envs could never be allocated here: the estimate still answers,
    with Python and NumPy allocating under 50 MB on the way (tracemalloc
    sees NumPy's arrays), and scales exactly with N and the capacity."""
    config = TrainConfig(num_envs=HUGE_N, buffer_capacity=HUGE_CAPACITY)
    tracemalloc.start()
    try:
        estimate = device.estimate_train_bytes(config)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50e6
    small = device.estimate_train_bytes(TrainConfig(num_envs=1, buffer_capacity=96))
    assert estimate["environments"] == HUGE_N * small["environments"]
    rows = 8  # the buffer's position and size
    per_row = (small["replay_buffer"] - rows) // 96
    assert estimate["replay_buffer"] - rows == HUGE_CAPACITY * per_row
    assert estimate["total"] > 10**11


@pytest.mark.parametrize(
    "config",
    [
        TrainConfig(num_envs=4096, buffer_capacity=8192, chunk_iterations=2).replace(
            sac=SACConfig(hidden_sizes=(128, 128), batch_size=256),
            updates_per_iteration=2,
        ),
        TrainConfig(num_envs=64, buffer_capacity=4096, chunk_iterations=2).replace(
            sac=SACConfig(hidden_sizes=(512, 512), batch_size=1024),
            learning_starts=2048,
        ),
    ],
    ids=["many-envs", "wide-nets"],
)
def test_working_memory_bounds_xla_figures(config):
    """The compiled chunk's own memory figures: its arguments are the state
    (exactly the estimate's), and its temporaries fit in the estimate's
    working memory."""
    state = loop.abstract_state(config)
    compiled = loop.chunk_program().lower(state, config.loop).compile()
    stats = compiled.memory_analysis()
    if stats is None:
        pytest.skip("this backend reports no memory analysis")
    estimate = device.estimate_train_bytes(config)
    assert stats.argument_size_in_bytes == estimate["state"]
    assert stats.temp_size_in_bytes <= estimate["working"]


# ----------------------------------------------------------------------------
# The check
# ----------------------------------------------------------------------------


def test_check_fits_passes_the_default():
    estimate = device.check_fits(TrainConfig())
    assert estimate["total"] == device.estimate_train_bytes(TrainConfig())["total"]


def test_check_fits_rejects_a_huge_run_in_one_line():
    """The error is a ValueError whose one line gives the estimate, the
    memory available and the options to lower with their values."""
    with pytest.raises(device.RunTooLargeError) as info:
        device.check_fits(TrainConfig(num_envs=HUGE_N, buffer_capacity=HUGE_CAPACITY))
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert "\n" not in message
    assert re.match(r"TrainConfig needs about \d+ [GT]B \(", message), message
    assert "available (host RAM" in message
    assert f"num_envs (now {HUGE_N})" in message
    assert f"buffer_capacity (now {HUGE_CAPACITY})" in message
    # another interface spells the fields its own way (the CLI: its options)
    names = {"num_envs": "--num-envs", "buffer_capacity": "--buffer-capacity"}
    cli_line = info.value.describe(names, subject="this run")
    assert "\n" not in cli_line and cli_line.startswith("this run needs about")
    assert f"--num-envs (now {HUGE_N})" in cli_line
    assert f"--buffer-capacity {HUGE_CAPACITY}" in cli_line


def test_check_fits_on_an_accelerator_with_a_safety_fraction():
    """On an accelerator the state and working memory must fit in 90% of
    bytes_limit - bytes_in_use (the host copy is then in host RAM)."""
    config = TrainConfig(buffer_capacity=10**7)
    estimate = device.estimate_train_bytes(config, FakeDevice("gpu"))
    assert estimate["total"] == estimate["state"] + estimate["working"]

    def gpu_with(available):
        in_use = 10**6
        return FakeDevice(
            "gpu",
            stats={"bytes_limit": int(available) + in_use, "bytes_in_use": in_use},
        )

    device.check_fits(config, gpu_with(estimate["total"] / 0.85))
    where = r"the gpu \(Fake H200\) has .*\(memory_stats"
    with pytest.raises(device.RunTooLargeError, match=where):
        device.check_fits(config, gpu_with(estimate["total"] / 0.95))


def test_check_fits_names_the_batch_size_when_it_dominates():
    config = TrainConfig(sac=SACConfig(batch_size=10**9), buffer_capacity=10**9)
    with pytest.raises(device.RunTooLargeError) as info:
        device.check_fits(config, FakeDevice("gpu", stats={"bytes_limit": 10**9}))
    assert info.value.options[0] == "sac.batch_size"
    assert "lower sac.batch_size (now 1000000000)" in str(info.value)


def test_check_fits_counts_the_evaluation():
    """The evaluation after each chunk (eval_envs episodes through the
    actor) is in the estimate: where it outgrows the chunk, it sets the
    working memory and eval_envs is named first; where it does not, it
    changes nothing."""
    plain = device.estimate_train_bytes(TrainConfig())
    assert plain["evaluation"] < plain["chunk_envs"]  # 64 episodes: nothing
    wide = TrainConfig(eval_envs=2**31 - 1)
    estimate = device.estimate_train_bytes(wide)
    assert estimate["working"] > estimate["evaluation"] > 10**12
    with pytest.raises(device.RunTooLargeError) as info:
        device.check_fits(wide, FakeDevice("gpu", stats={"bytes_limit": 10**11}))
    assert info.value.options[0] == "eval_envs"
    assert "the evaluation's working memory" in str(info.value)


@pytest.mark.parametrize(
    "sac_config", [SACConfig(hidden_sizes=(2**40,)), SACConfig(num_critics=10**9)]
)
def test_networks_too_large_to_draw_are_one_line(sac_config):
    """The estimate draws the networks on the host: networks that could
    never fit there are refused first, not a NumPy MemoryError deep inside."""
    with pytest.raises(ValueError, match=r"^SACConfig.hidden_sizes .* networks alone"):
        device.check_fits(TrainConfig(sac=sac_config))


def test_train_checks_memory_before_allocating(monkeypatch):
    """train.train and train.train_seeds raise before building anything (for
    all their runs); the escape hatch check_memory=False skips the check, and
    loop.init itself never asks."""

    def no_allocation(*args, **kwargs):
        raise AssertionError("the state was built")

    never = TrainConfig(num_envs=HUGE_N, buffer_capacity=HUGE_CAPACITY)
    monkeypatch.setattr(loop, "_init_host", no_allocation)
    with pytest.raises(device.RunTooLargeError):
        train.train(never, progress=False)
    with pytest.raises(device.RunTooLargeError):
        train.train_seeds(never, [0, 1], progress=False)
    monkeypatch.undo()

    estimate = device.estimate_train_bytes(TrainConfig())
    refusal = device.RunTooLargeError(TrainConfig(), estimate, 1, "test", "a device")
    asked = []

    def refuse(config, *args, runs=1, devices=1, **kwargs):
        asked.append((config, runs, devices))
        raise refusal

    monkeypatch.setattr(device, "check_fits", refuse)
    with pytest.raises(device.RunTooLargeError):
        train.train(TINY, 0, progress=False)
    with pytest.raises(device.RunTooLargeError):
        train.train_seeds(TINY, [0, 1, 2], progress=False)
    assert asked == [(TINY, 1, 1), (TINY, 3, 1)]
    result = train.train(TINY, 0, progress=False, check_memory=False)
    assert int(result.state.iteration) == TINY.total_iterations
    results = train.train_seeds(TINY, [0, 1], progress=False, check_memory=False)
    assert [r.seed for r in results] == [0, 1]
    assert loop.init(CONFIGS[2], jax.random.key(0)).obs.shape == (37, 3)
    assert len(asked) == 2


# ----------------------------------------------------------------------------
# sacbook train
# ----------------------------------------------------------------------------


def test_cli_train_too_large_is_one_line_and_writes_nothing(
    tmp_path, capsys, monkeypatch
):
    """`sacbook train --num-envs 1000000000` (on a host with 64 GB free):
    status 2, one stderr line naming --num-envs, and the previous run's
    checkpoint in --out left alone."""
    monkeypatch.setattr(
        device, "host_available_bytes", lambda: (64 * 10**9, "host RAM: test")
    )
    out = tmp_path / "run"
    (out / "checkpoint").mkdir(parents=True)
    (out / "checkpoint" / "previous").write_text("kept")
    rc = cli.main(["train", "--num-envs", "1000000000", "--out", str(out), "--quiet"])
    assert rc == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("sacbook train: error: this run needs about")
    assert "--num-envs (now 1000000000)" in captured.err
    assert "64 GB available" in captured.err
    assert sorted(p.name for p in out.rglob("*")) == ["checkpoint", "previous"]


def test_cli_train_too_large_subprocess(tmp_path):
    """The real command, in a fresh process: status 2, one line, no --out."""
    root = Path(__file__).resolve().parents[1]
    paths = filter(None, [str(root), os.environ.get("PYTHONPATH")])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
    out = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "sacbook.cli",
        "train",
        "--num-envs",
        str(10**9),
        "--out",
        str(out),
    ]
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "--num-envs" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()


def test_device_info_reports_memory():
    from sacbook import bench

    info = bench.device_info()
    assert info["accelerator"] is False
    assert info["available_bytes"] > 0
    assert info["available_bytes_source"].startswith("host RAM")
