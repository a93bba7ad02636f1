"""Cost as the work grows: seconds per iteration against N, B and seeds.

Each point is the default recipe with one quantity changed: the number of
environments N, the batch size B, or the number of runs S trained as one
program (:func:`sacbook.train.train_seeds`'s layout: a leading run axis,
vmapped). Each is timed as :func:`~sacbook.bench.training_throughput` times
a chunk (compiled first, one chunk untimed, the best of ``chunks``), with
updates running.

:func:`fit_line` then fits the simplest model that explains the points,
``seconds = overhead + FLOPs / rate``, with the FLOPs of
:func:`sacbook.cost.iteration_cost`: a fixed cost per iteration (launching
and sequencing the operations) and a rate at which the arithmetic runs.
Where the measured points leave that line, something else (memory, caches)
has become the limit.
"""

from __future__ import annotations

import time

import jax
import numpy as np

from sacbook import cost, loop
from sacbook.bench.measure import training_throughput
from sacbook.config import TrainConfig

AXES = {
    "num_envs": (64, 256, 1024, 4096, 16384, 65536, 131072),
    "batch_size": (32, 96, 256, 1024, 4096, 8192),
    "runs": (1, 2, 4, 8, 16, 32, 64),
}
# Many runs each keep a buffer: a smaller one, so that 64 fit in memory.
RUNS_BUFFER = 65536


def point(axis: str, value: int, *, chunks: int = 2, chunk_iterations: int = 20):
    """Seconds per iteration of the default recipe with ``axis`` set to
    ``value`` (an axis of :data:`AXES`), and the model's FLOPs and bytes of
    that iteration (all runs together, for ``"runs"``)."""
    if axis not in AXES:
        raise ValueError(f"axis must be one of {sorted(AXES)}, got {axis!r}")
    config = TrainConfig(chunk_iterations=chunk_iterations)
    runs = 1
    if axis == "num_envs":
        config = config.replace(num_envs=value)
    elif axis == "batch_size":
        config = config.replace(sac=config.sac.replace(batch_size=value))
    else:
        runs = value
        config = config.replace(buffer_capacity=RUNS_BUFFER)
    model = cost.iteration_cost(config)
    if runs == 1:
        seconds = (
            1 / training_throughput(config, chunks=chunks)["iterations_per_second"]
        )
    else:
        seconds = _runs_seconds(config, runs, chunks)
    return {
        "axis": axis,
        "value": value,
        "seconds_per_iteration": seconds,
        "flops": runs * model.flops,
        "bytes": runs * model.bytes,
    }


def _runs_seconds(config: TrainConfig, runs: int, chunks: int) -> float:
    """Seconds per iteration of ``runs`` runs in one vmapped program."""
    config = config.replace(warmup_env_steps=0, learning_starts=config.sac.batch_size)
    keys = [jax.random.key(seed) for seed in range(runs)]
    state = loop.init_runs(config, keys)
    chunk = loop.chunk_program(batched=True).lower(state, config.loop).compile()
    state, _ = chunk(state)  # fills the buffers past learning_starts
    jax.block_until_ready(state)
    best = np.inf
    for _ in range(chunks):
        t0 = time.perf_counter()
        state, _ = chunk(state)
        jax.block_until_ready(state)
        best = min(best, time.perf_counter() - t0)
    return best / config.chunk_iterations


def growth(axes=AXES, **kwargs) -> list[dict]:
    """:func:`point` for every value of every axis in ``axes``
    (``{axis: values}``)."""
    return [point(axis, v, **kwargs) for axis, values in axes.items() for v in values]


def fit_line(rows: list[dict]) -> dict:
    """Least squares ``seconds = overhead + flops / rate`` over ``rows``
    (:func:`point`'s dicts), in relative error (each point weighted by
    ``1 / seconds``), so that the fast points count as much as the slow.
    Returns ``overhead`` (s) and ``rate`` (FLOP/s); two points at least,
    with different FLOPs."""
    flops = np.array([r["flops"] for r in rows], dtype=float)
    seconds = np.array([r["seconds_per_iteration"] for r in rows], dtype=float)
    if len(rows) < 2 or np.ptp(flops) == 0:
        raise ValueError("rows must hold at least two points with different FLOPs")
    slope, overhead = np.polyfit(flops, seconds, 1, w=1 / seconds)
    return {"overhead": float(overhead), "rate": float(1 / slope)}
