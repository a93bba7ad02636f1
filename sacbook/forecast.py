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

The device figures are the vendors' datasheet numbers. sacbook trains in
float32, but JAX's default precision lets a GPU compute a float32 matrix
product on TF32 tensor cores (Ampere and later: the L4, A100, H100 and
H200; the T4 has none), several times faster than its plain FP32 peak; the
rest of the arithmetic runs at the FP32 peak. So the arithmetic is given a
range between the two: all of it at the tensor cores' peak (the low end),
all of it at the FP32 peak (the high end). At B = 96 the launches dominate
either way. The GPU suite
(``scripts/gpu_suite.py``) measures what a device really does; Chapter 4
shows both, each labelled.
"""

from __future__ import annotations

import dataclasses
import re

from sacbook import cost
from sacbook.config import LoopConfig, TrainConfig
from sacbook.sac import SACConfig


@dataclasses.dataclass(frozen=True)
class DeviceFigures:
    """A device's published peak figures.

    Attributes:
      name: e.g. ``"NVIDIA T4"``.
      fp32_flops: peak float32 FLOP/s without tensor cores.
      bandwidth: peak memory bandwidth, bytes/s.
      tf32_flops: peak FLOP/s of TF32 tensor cores, dense (the datasheets'
        figure "with sparsity" halved); None where there are none.
      source: where the figures come from.
    """

    name: str
    fp32_flops: float
    bandwidth: float
    source: str
    tf32_flops: float | None = None

    @property
    def matmul_flops(self) -> float:
        """Peak FLOP/s of a float32 matrix product at JAX's default
        precision: TF32 tensor cores where there are some, else FP32."""
        return self.tf32_flops or self.fp32_flops


# Datasheet figures (NVIDIA's product pages and datasheets): FP32, memory
# bandwidth, and TF32 tensor cores without sparsity.
DEVICES = {
    "T4": DeviceFigures("NVIDIA T4", 8.1e12, 320e9, "NVIDIA T4 datasheet (2019)"),
    "L4": DeviceFigures(
        "NVIDIA L4", 30.3e12, 300e9, "NVIDIA L4 datasheet (2023)", tf32_flops=60e12
    ),
    "A100": DeviceFigures(
        "NVIDIA A100 80GB SXM",
        19.5e12,
        2.039e12,
        "NVIDIA A100 datasheet (2021)",
        tf32_flops=156e12,
    ),
    "H100": DeviceFigures(
        "NVIDIA H100 SXM",
        67e12,
        3.35e12,
        "NVIDIA H100 datasheet (2023)",
        tf32_flops=494.5e12,
    ),
    "H200": DeviceFigures(
        "NVIDIA H200 SXM",
        67e12,
        4.8e12,
        "NVIDIA H200 datasheet (2024)",
        tf32_flops=494.5e12,
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
# The large-batch recipe of the comparison (the GPU suite's
# "N=8192,B=4096,K=4,tau=0.1,it=600"), and the iterations it needs: 220 in the
# appendix's CPU study (one run at N = 1024), 140 to 220 for 8 seeds of it on a
# CPU (Chapter 4).
LARGE_BATCH = TrainConfig(
    num_envs=8192, sac=SACConfig(batch_size=4096, tau=0.1), updates_per_iteration=4
)
LARGE_BATCH_ITERATIONS_TO_SOLVE = (140, 300)


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
    compute = (  # every FLOP at the tensor cores' peak .. at the FP32 peak
        c.flops / (figures.matmul_flops * efficiency[1]),
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


def device_key(device_name: str) -> str | None:
    """The :data:`DEVICES` key that a device's name (JAX's ``device_kind``,
    e.g. ``"NVIDIA H200"`` or ``"Tesla T4"``) names, or None."""
    for key in DEVICES:
        if re.search(rf"(?<![A-Za-z0-9]){key}(?![0-9])", device_name):
            return key
    return None


def _recipe_row(rows: list[dict], config: LoopConfig) -> dict | None:
    """The row of a bench report's list measured at ``config``'s N, B and K."""
    shape = (config.num_envs, config.sac.batch_size, config.updates_per_iteration)
    for row in rows:
        measured_at = (
            row.get("num_envs"),
            row.get("batch_size"),
            row.get("updates_per_iteration"),
        )
        if measured_at == shape:
            return row
    return None


def measured(report: dict) -> dict | None:
    """What a bench report (the GPU suite's) measured on one of
    :data:`DEVICES`, in the prediction's terms; None for any other device.

    Returns a dict: ``device`` (the :data:`DEVICES` key), ``iteration_seconds``
    of the default recipe (from its training throughput), and the seconds to
    -200 after compiling of the default recipe (``default_solve_seconds``)
    and of :data:`LARGE_BATCH` (``large_solve_seconds``); a figure
    the report lacks, or a run that did not solve, is None.
    """
    info = report.get("device", {})
    key = device_key(str(info.get("device", "")))
    if info.get("platform") != "gpu" or key is None:
        return None

    def rows(name):
        value = report.get(name)
        return value if isinstance(value, list) else [value] if value else []

    default, large = TrainConfig(), LARGE_BATCH
    training = _recipe_row(rows("training"), default)
    solves = [r for r in rows("time_to_solve") if r.get("preset") != "point_mass"]

    def solve_seconds(config):
        row = _recipe_row(solves, config)
        return row["solve_seconds_after_compile"] if row and row["solved"] else None

    return {
        "device": key,
        "iteration_seconds": (
            1.0 / training["iterations_per_second"] if training else None
        ),
        "default_solve_seconds": solve_seconds(default),
        "large_solve_seconds": solve_seconds(large),
    }


def comparison(references: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
    """The prediction for every device of :data:`DEVICES`, and beside it what
    the bench reports ``references`` (``(name, report)`` pairs, as
    :func:`sacbook.bench.load_references` gives) measured on any of them.

    Returns ``(label, {device name: text})`` columns for
    :func:`sacbook.bench.report.format_html`: milliseconds per iteration of
    the default recipe, and seconds to -200 after compiling for the default
    and the large-batch recipes. Each cell is the predicted range, followed
    by the measurement where a reference has one (``"2.0\u201316;
    measured 4.1"``), so that the two stand side by side in three columns
    narrow enough for a phone. The newest reference of a device counts.
    """
    default, large = TrainConfig(), LARGE_BATCH
    found = {}
    for _, report in sorted(references, key=lambda r: r[0]):
        figures = measured(report)
        if figures is not None:
            found[figures["device"]] = figures
    columns = {
        "default: ms per iteration": ("iteration_seconds", 1e3, {}),
        "default: s to \u2212200": ("default_solve_seconds", 1.0, {}),
        "N=8192, B=4096, K=4: s to \u2212200": ("large_solve_seconds", 1.0, {}),
    }
    for key, figures in DEVICES.items():
        per = iteration_seconds(default, key)
        ranges = (
            f"{per['low'] * 1e3:.1f}\u2013{per['high'] * 1e3:.0f}",
            "\u2013".join(f"{s:.1f}" for s in seconds_to_solve(default, key)),
            "\u2013".join(
                f"{s:.1f}"
                for s in seconds_to_solve(
                    large, key, iterations=LARGE_BATCH_ITERATIONS_TO_SOLVE
                )
            ),
        )
        for (field, scale, cells), text in zip(columns.values(), ranges):
            value = found.get(key, {}).get(field)
            if value is not None:
                text += f"; measured {value * scale:.2g}"
            cells[figures.name] = text
    return [(label, cells) for label, (_, _, cells) in columns.items()]
