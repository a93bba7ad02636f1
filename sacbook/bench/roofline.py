"""This machine's limits, and how close training comes to them: a roofline.

A program can go no faster than its arithmetic at the machine's FLOP/s, nor
than its memory traffic at the machine's bandwidth. This module measures the
limits with three small programs, each compiled through :mod:`sacbook.jit`
as training is and timed with :mod:`~sacbook.bench.timing`'s windows:

* :func:`matmul_throughput`: FLOP/s of float32 matmuls ``(m, n) @ (n, n)``,
  chained in one ``lax.scan`` (each takes the last one's result, so none can
  be skipped or run ahead), at the update's shape ``(B, h) @ (h, h)`` and at
  a large one (2048^3), where the machine is at its best;
* :func:`memory_bandwidth`: bytes/s of reading a large float32 array (a sum)
  and of scaling it in place (read and write);
* :func:`machine_limits`: the three, and the machine balance, FLOP/s over
  bytes/s: programs with fewer FLOPs a byte are limited by memory.

:func:`training_roofline` then sets a measured training throughput
(iterations/s) against them, with the FLOPs and bytes of an iteration from
:mod:`sacbook.cost`: achieved FLOP/s and bytes/s, their fractions of the
limits, and the arithmetic intensity against the balance.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from sacbook import cost, jit
from sacbook.bench.timing import MIN_WINDOW_SECONDS, calibrate, timed
from sacbook.config import LoopConfig

LARGE_MATMUL = 2048  # the large shape: (2048, 2048) @ (2048, 2048)
BANDWIDTH_BYTES = 2**29  # 512 MiB: beyond the caches of most machines
# Under a tenth of both roofs, a program is held back by neither: by latency.
LATENCY_FRACTION = 0.1
MATMUL_CALL_FLOPS = 5e7  # chain enough matmuls that a call outlasts its dispatch


def _chain(x, w, steps: int):
    """``steps`` matmuls ``x <- x @ w`` in a ``lax.scan``: ``x`` ``(m, n)``,
    ``w`` ``(n, n)``. With ``w = 1/n`` everywhere, ones stay ones."""

    def body(x, _):
        return x @ w, None

    return jax.lax.scan(body, x, None, length=steps)[0]


_CHAIN = jit.Program(_chain, static_argnums=2)
_READ = jit.Program(jnp.sum)
_SCALE = jit.Program(jnp.negative, donate_argnums=0)  # in place: read, write


def _best_rate(run, units: float, *, repeats: int, min_seconds: float):
    """The fastest of ``repeats`` timed windows of ``run`` (compiled and run
    once beforehand), as ``(calls, seconds, units / s)``: ``units`` a call."""
    count = calibrate(run, min_seconds=min_seconds) if min_seconds > 0 else 1
    calls, seconds = max(
        (timed(run, count, min_seconds=min_seconds) for _ in range(repeats)),
        key=lambda w: w[0] / w[1],
    )
    return calls, seconds, units * calls / seconds


def _check_sizes(**sizes) -> None:
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def matmul_throughput(
    m: int,
    n: int,
    *,
    steps: int | None = None,
    repeats: int = 3,
    min_seconds: float = MIN_WINDOW_SECONDS,
) -> dict:
    """FLOP/s of ``(m, n) @ (n, n)`` float32 matmuls, ``2 m n^2`` FLOPs each.

    One compiled call chains ``steps`` of them in a ``lax.scan``, as the
    update runs its matmuls inside the training loop's scans (default:
    enough for about :data:`MATMUL_CALL_FLOPS`, at most 1000); the fastest
    of ``repeats`` windows of at least ``min_seconds`` (0: single calls).
    """
    _check_sizes(m=m, n=n, repeats=repeats)
    flops = 2.0 * m * n * n
    if steps is None:
        steps = int(min(1000, max(1, math.ceil(MATMUL_CALL_FLOPS / flops))))
    _check_sizes(steps=steps)
    x = jnp.ones((m, n), jnp.float32)
    w = jnp.full((n, n), 1.0 / n, jnp.float32)

    def run(count: int):
        for _ in range(count):
            jax.block_until_ready(_CHAIN(x, w, steps))

    run(1)  # compile
    calls, seconds, rate = _best_rate(
        run, flops * steps, repeats=repeats, min_seconds=min_seconds
    )
    return {
        "m": m,
        "n": n,
        "steps": steps,
        "calls": calls,
        "seconds": seconds,
        "flops_per_second": rate,
    }


def memory_bandwidth(
    size_bytes: int = BANDWIDTH_BYTES,
    *,
    repeats: int = 3,
    min_seconds: float = MIN_WINDOW_SECONDS,
) -> dict:
    """Bytes/s of streaming a float32 array of ``size_bytes``: read (a sum,
    ``size_bytes`` a call) and scaled in place (``x <- -x``, the buffer
    donated: ``2 size_bytes`` a call, read and written).

    ``bytes_per_second`` is the faster of the two: the best the memory
    showed. The array must be much larger than the caches for this to be
    the memory's and not a cache's bandwidth (default 512 MiB).
    """
    _check_sizes(size_bytes=size_bytes, repeats=repeats)
    elements = max(1, size_bytes // 4)
    nbytes = 4 * elements
    state = {"x": jnp.ones(elements, jnp.float32)}

    def read(count: int):
        for _ in range(count):
            jax.block_until_ready(_READ(state["x"]))

    def scale(count: int):
        for _ in range(count):
            state["x"] = _SCALE(state["x"])
        jax.block_until_ready(state["x"])

    timing = dict(repeats=repeats, min_seconds=min_seconds)
    read(1)
    scale(1)  # compile both
    read_rate = _best_rate(read, nbytes, **timing)[2]
    scale_rate = _best_rate(scale, 2 * nbytes, **timing)[2]
    return {
        "size_bytes": nbytes,
        "read_bytes_per_second": read_rate,
        "scale_bytes_per_second": scale_rate,
        "bytes_per_second": max(read_rate, scale_rate),
    }


def machine_limits(
    batch_size: int,
    width: int,
    *,
    large: int = LARGE_MATMUL,
    size_bytes: int = BANDWIDTH_BYTES,
    repeats: int = 3,
    min_seconds: float = MIN_WINDOW_SECONDS,
) -> dict:
    """This machine's limits for an update with ``batch_size`` rows and
    hidden layers ``width`` wide:

    * ``matmul_update_shape``: :func:`matmul_throughput` at ``(B, h) @ (h, h)``,
      the shape of the hidden layers, which do most of an update's FLOPs;
    * ``matmul_large``: at ``(large, large) @ (large, large)``, the machine
      at its best;
    * ``bandwidth``: :func:`memory_bandwidth`;
    * ``balance``: the large matmul's FLOP/s over the bandwidth, in FLOPs a
      byte: the arithmetic intensity where memory stops being the limit.
    """
    timing = dict(repeats=repeats, min_seconds=min_seconds)
    at_update = matmul_throughput(batch_size, width, **timing)
    at_large = matmul_throughput(large, large, **timing)
    bandwidth = memory_bandwidth(size_bytes, **timing)
    return {
        "platform": jax.devices()[0].platform,
        "matmul_update_shape": at_update,
        "matmul_large": at_large,
        "bandwidth": bandwidth,
        "balance": at_large["flops_per_second"] / bandwidth["bytes_per_second"],
    }


def update_shape(config: LoopConfig) -> tuple[int, int]:
    """``(B, h)``: the batch size and the widest hidden layer of ``config``."""
    return config.sac.batch_size, max(config.sac.hidden_sizes)


def training_roofline(
    config: LoopConfig, iterations_per_second: float, limits: dict
) -> dict:
    """A training throughput against the machine's ``limits``
    (:func:`machine_limits`), with an iteration's FLOPs and bytes from
    :func:`sacbook.cost.iteration_cost`.

    Returns the achieved ``flops_per_second`` and ``bytes_per_second``; their
    fractions of the matmul FLOP/s at the update's shape and at the large
    shape, and of the bandwidth; the arithmetic ``intensity`` (FLOPs a byte)
    and the machine ``balance``; ``bound``: "compute" where the intensity
    is above the balance, else "memory" (what the roofline says limits it,
    not what does); ``limited_by``: ``bound``, or "latency" where the
    program reaches under :data:`LATENCY_FRACTION` of both roofs (the large
    matmul's FLOP/s and the bandwidth): limited by neither, but by the
    fixed cost of its many small steps (dispatch, synchronisation, kernel
    launches).
    """
    rate = iterations_per_second
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate > 0:
        raise ValueError(f"iterations_per_second must be a number > 0, got {rate!r}")
    at_update = limits["matmul_update_shape"]
    if (at_update["m"], at_update["n"]) != update_shape(config):
        raise ValueError(
            f"the limits were measured at the shape ({at_update['m']}, "
            f"{at_update['n']}), the config's update has {update_shape(config)}: "
            "measure machine_limits(*update_shape(config))"
        )
    c = cost.iteration_cost(config)
    flops = c.flops * rate
    moved = c.bytes * rate
    balance = limits["balance"]
    bound = "compute" if c.intensity > balance else "memory"
    nearest_roof = max(
        flops / limits["matmul_large"]["flops_per_second"],
        moved / limits["bandwidth"]["bytes_per_second"],
    )
    return {
        "num_envs": c.num_envs,
        "batch_size": c.batch_size,
        "width": at_update["n"],
        "updates_per_iteration": c.updates,
        "iterations_per_second": rate,
        "flops_per_iteration": c.flops,
        "bytes_per_iteration": c.bytes,
        "update_flops": c.update_flops,
        "flops_per_second": flops,
        "bytes_per_second": moved,
        "fraction_of_matmul_update_shape": flops / at_update["flops_per_second"],
        "fraction_of_matmul_large": flops / limits["matmul_large"]["flops_per_second"],
        "fraction_of_bandwidth": moved / limits["bandwidth"]["bytes_per_second"],
        "intensity": c.intensity,
        "balance": balance,
        "bound": bound,
        "limited_by": "latency" if nearest_roof < LATENCY_FRACTION else bound,
    }
