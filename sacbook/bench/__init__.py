"""Throughput and time-to-solve measurements (``sacbook bench``).

Each measurement is a plain function returning dicts, so the CLI
(:mod:`sacbook.cli.bench`), the notebooks and the tests share them. The
modules, from the bottom up:

* :mod:`~sacbook.bench.timing`: timing on a noisy, shared machine: a
  workload as a :class:`Runner`, windows of at least
  :data:`MIN_WINDOW_SECONDS` (:func:`calibrate`, :func:`timed`), runs in turn
  (:func:`interleave`) and the ratio of each pair (:func:`ratio_stats`,
  :func:`compare_throughput`); the median of repeated runs (:func:`median_of`).
* :mod:`~sacbook.bench.recipes`: the training recipes of the time-to-solve
  runs (:func:`recipe`, :data:`ACCELERATOR_RECIPES`).
* :mod:`~sacbook.bench.measure`: sacbook's own measurements:
  :func:`simulation_throughput`, :func:`training_throughput`,
  :func:`seeds_throughput`, :func:`sharded_throughput`, :func:`time_to_solve`;
  and whether the sizes asked for fit in memory (:func:`check_sizes`).
* :mod:`~sacbook.bench.compile_stages`: where a cold start's compile time
  goes, trace, lower and XLA compile per program (:func:`compile_stages`),
  and what XLA's options do to it (:func:`option_trials`).
* :mod:`~sacbook.bench.roofline`: this machine's limits, matmul FLOP/s and
  memory bandwidth (:func:`machine_limits`), and a training throughput set
  against them with :mod:`sacbook.cost`'s FLOPs and bytes
  (:func:`training_roofline`).
* :mod:`~sacbook.bench.references`: gymnax's and Gymnasium's simulation
  (:func:`compare_simulation`) and rejax's SAC (:func:`rejax_time_to_solve`),
  timed in the same run when installed.
* :mod:`~sacbook.bench.isolated`: ``bench.<function>`` in a fresh process,
  for cold starts (:func:`run_isolated`) and virtual CPU devices
  (:func:`sharded_throughput_virtual`).
* :mod:`~sacbook.bench.processes`: runs spread over devices against one
  device (:func:`runs_over_devices_throughput`), and the cost of one
  gradient mean across ``jax.distributed`` processes
  (:func:`gradient_mean_across_processes`).
* :mod:`~sacbook.bench.report`: :func:`device_info`, and reports side by
  side (:func:`load_references`, :func:`summarize_report`,
  :func:`format_table`).

Timings on a shared CPU spread by tens of percent, so each reference is timed
in turn with sacbook (ours, theirs, ours, theirs, ...; windows of at least
:data:`MIN_WINDOW_SECONDS`) and the ratio of each pair is reported, with the
median and spread over the pairs: compare those, not absolute figures from
different runs.
"""

from sacbook.bench.compile_stages import OPTION_TRIALS, compile_stages, option_trials
from sacbook.bench.isolated import (
    call_in_fresh_process,
    run_isolated,
    sharded_throughput_virtual,
    virtual_cpu_env,
)
from sacbook.bench.measure import (
    SIM_SIZES,
    check_fits,
    check_sizes,
    preset_name,
    sacbook_runner,
    seeds_throughput,
    sharded_throughput,
    simulation_throughput,
    time_to_solve,
    training_throughput,
)
from sacbook.bench.processes import (
    gradient_mean_across_processes,
    gradient_mean_seconds,
    runs_over_devices_throughput,
    runs_over_devices_virtual,
)
from sacbook.bench.recipes import (
    ACCELERATOR_RECIPES,
    NAMED_CONFIGS,
    RECIPE_KEYS,
    recipe,
    with_num_envs,
)
from sacbook.bench.references import (
    REFERENCE_RUNNERS,
    compare_simulation,
    gymnasium_runner,
    gymnax_runner,
    installed,
    rejax_ratios,
    rejax_time_to_solve,
)
from sacbook.bench.report import (
    device_info,
    format_table,
    load_references,
    summarize_report,
)
from sacbook.bench.roofline import (
    LATENCY_FRACTION,
    machine_limits,
    matmul_throughput,
    memory_bandwidth,
    training_roofline,
    update_shape,
)
from sacbook.bench.timing import (
    MIN_WINDOW_SECONDS,
    Runner,
    calibrate,
    compare_throughput,
    format_ratio,
    interleave,
    median_of,
    ratio_stats,
    timed,
)

__all__ = [
    "ACCELERATOR_RECIPES",
    "LATENCY_FRACTION",
    "MIN_WINDOW_SECONDS",
    "NAMED_CONFIGS",
    "OPTION_TRIALS",
    "RECIPE_KEYS",
    "REFERENCE_RUNNERS",
    "SIM_SIZES",
    "Runner",
    "calibrate",
    "call_in_fresh_process",
    "compare_simulation",
    "compile_stages",
    "compare_throughput",
    "device_info",
    "format_ratio",
    "format_table",
    "gradient_mean_across_processes",
    "gradient_mean_seconds",
    "gymnasium_runner",
    "gymnax_runner",
    "installed",
    "interleave",
    "load_references",
    "machine_limits",
    "matmul_throughput",
    "median_of",
    "memory_bandwidth",
    "option_trials",
    "preset_name",
    "ratio_stats",
    "recipe",
    "rejax_ratios",
    "rejax_time_to_solve",
    "run_isolated",
    "runs_over_devices_throughput",
    "runs_over_devices_virtual",
    "sacbook_runner",
    "seeds_throughput",
    "sharded_throughput",
    "sharded_throughput_virtual",
    "simulation_throughput",
    "summarize_report",
    "time_to_solve",
    "timed",
    "training_roofline",
    "training_throughput",
    "update_shape",
    "virtual_cpu_env",
    "with_num_envs",
    "check_fits",
    "check_sizes",
]
