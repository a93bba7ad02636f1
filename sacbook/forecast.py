"""What a GPU should do: training time predicted from the cost model.

A prediction, not a measurement: it sets :mod:`sacbook.cost`'s FLOPs and
bytes of one iteration against a device's published peak figures, and adds
the one cost a roofline leaves out, which dominates small networks on a GPU:
launching kernels. Each update of 64-wide networks is a few dozen small
kernels, each finished in microseconds, so a GPU waits on launches far more
than on arithmetic. Every assumption is an argument with a range, and every
answer is a ``(low, high)`` pair of seconds:

* ``seconds per iteration`` =
  ``kernels x launch + FLOPs / (peak x efficiency) + bytes / bandwidth``,
  with ``kernels = K x kernels_per_update + kernels_per_step``;
* ``seconds to solve`` = iterations to reach -200 (measured on the CPU for
  the same recipe; the iterations a recipe needs do not depend on the
  device) times the seconds per iteration. Compiling is not included.

The device figures are the vendors' datasheet numbers for float32 without
tensor cores (sacbook trains in float32, and XLA uses TF32 tensor cores on
Ampere and later only for matmuls it may run at lower precision; at
B = 96 they would not change the answer). The GPU suite
(``scripts/gpu_suite.py``) measures what a device really does; Chapter 4
shows both, each labelled.
"""

from __future__ import annotations

import dataclasses

from sacbook import cost
from sacbook.config import LoopConfig


@dataclasses.dataclass(frozen=True)
class DeviceFigures:
    """A device's published peak figures.

    Attributes:
      name: e.g. ``"NVIDIA T4"``.
      fp32_flops: peak float32 FLOP/s without tensor cores.
      bandwidth: peak memory bandwidth, bytes/s.
      source: where the figures come from.
    """

    name: str
    fp32_flops: float
    bandwidth: float
    source: str


# Datasheet figures (NVIDIA's product pages and datasheets).
DEVICES = {
    "T4": DeviceFigures("NVIDIA T4", 8.1e12, 320e9, "NVIDIA T4 datasheet (2019)"),
    "L4": DeviceFigures("NVIDIA L4", 30.3e12, 300e9, "NVIDIA L4 datasheet (2023)"),
    "A100": DeviceFigures(
        "NVIDIA A100 80GB SXM", 19.5e12, 2.039e12, "NVIDIA A100 datasheet (2021)"
    ),
    "H100": DeviceFigures(
        "NVIDIA H100 SXM", 67e12, 3.35e12, "NVIDIA H100 datasheet (2023)"
    ),
    "H200": DeviceFigures(
        "NVIDIA H200 SXM", 67e12, 4.8e12, "NVIDIA H200 datasheet (2024)"
    ),
}

# The assumptions, each a (low, high) range.
KERNELS_PER_UPDATE = (40, 120)  # XLA's fusions in one update, forward and back
KERNELS_PER_STEP = (15, 40)  # acting, the env step, the replay write, metrics
LAUNCH_SECONDS = (3e-6, 8e-6)  # one kernel launched and run inside a loop
# Of peak FLOP/s reached by the matrix products: small ones (rows below
# 1024) keep most of a GPU idle, large ones reach a good share of it.
EFFICIENCY = {"small": (0.02, 0.3), "large": (0.2, 0.7)}
# Iterations the default recipe needs to reach -200, measured on the CPU:
# 80-120 over 16 seeds (README, "Measured"), 100-140 in the study.
DEFAULT_ITERATIONS_TO_SOLVE = (80, 140)


def iteration_seconds(
    config: LoopConfig,
    device: str | DeviceFigures,
    *,
    kernels_per_update: tuple[int, int] = KERNELS_PER_UPDATE,
    kernels_per_step: tuple[int, int] = KERNELS_PER_STEP,
    launch_seconds: tuple[float, float] = LAUNCH_SECONDS,
    efficiency: tuple[float, float] | None = None,
) -> dict:
    """Predicted seconds of one training iteration of ``config`` on
    ``device`` (a key of :data:`DEVICES` or a :class:`DeviceFigures`).

    ``efficiency`` (default: :data:`EFFICIENCY` for the batch size): the
    share of peak FLOP/s the products reach. Returns a dict: ``low`` and
    ``high`` seconds, and their parts ``launch``, ``compute`` and
    ``memory``, each a ``(low, high)`` pair.
    """
    figures = _figures(device)
    c = cost.iteration_cost(config)
    if efficiency is None:
        efficiency = EFFICIENCY["large" if c.batch_size >= 1024 else "small"]
    low_k = c.updates * kernels_per_update[0] + kernels_per_step[0]
    high_k = c.updates * kernels_per_update[1] + kernels_per_step[1]
    launch = (low_k * launch_seconds[0], high_k * launch_seconds[1])
    compute = (
        c.flops / (figures.fp32_flops * efficiency[1]),
        c.flops / (figures.fp32_flops * efficiency[0]),
    )
    memory = (c.bytes / figures.bandwidth,) * 2
    return {
        "device": figures.name,
        "low": launch[0] + compute[0] + memory[0],
        "high": launch[1] + compute[1] + memory[1],
        "launch": launch,
        "compute": compute,
        "memory": memory,
    }


def seconds_to_solve(
    config: LoopConfig,
    device: str | DeviceFigures,
    iterations: tuple[int, int] = DEFAULT_ITERATIONS_TO_SOLVE,
    **assumptions,
) -> tuple[float, float]:
    """Predicted training seconds (compiling not included) for ``config`` to
    reach -200 on ``device``, given the ``iterations`` it needs."""
    per = iteration_seconds(config, device, **assumptions)
    return iterations[0] * per["low"], iterations[1] * per["high"]


def _figures(device: str | DeviceFigures) -> DeviceFigures:
    if isinstance(device, DeviceFigures):
        return device
    if device not in DEVICES:
        raise ValueError(f"device must be one of {sorted(DEVICES)}, got {device!r}")
    return DEVICES[device]
