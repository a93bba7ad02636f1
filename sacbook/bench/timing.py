"""Timing on a noisy, shared machine.

A workload is a :class:`Runner`; a timed window runs it for at least
:data:`MIN_WINDOW_SECONDS` (:func:`calibrate`, :func:`timed`). Comparisons
are ratios of windows timed in turn (A B A B ...: :func:`interleave`), so
that both sides of each ratio see the same load, summarized by
:func:`ratio_stats` (median, IQR, range). Repeated cold starts are
summarized by their median run (:func:`median_of`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from functools import partial

import numpy as np

MIN_WINDOW_SECONDS = 0.5  # the shortest timed window, seconds


@dataclasses.dataclass
class Runner:
    """A workload to time: ``run(count)`` runs ``count`` units and blocks
    until they are done; each unit is ``env_steps_per_unit`` env steps (a
    compiled call of many steps, or one step of a Python vector env)."""

    name: str
    run: object  # Callable[[int], object]
    env_steps_per_unit: int
    num_envs: int
    version: str | None = None


def calibrate(
    run,
    *,
    min_seconds: float = MIN_WINDOW_SECONDS,
    count: int = 1,
    margin: float = 1.25,
    max_count: int = 10**7,
    clock=time.perf_counter,
) -> int:
    """The ``count`` for which one ``run(count)`` lasts at least ``min_seconds``.

    Times ``run(count)``, starting at ``count``; while it is shorter than
    ``min_seconds``, scales ``count`` up to aim at ``margin * min_seconds``
    (at most 100x a try) and times again. Once long enough, a window shorter
    than ``margin * min_seconds`` is scaled up once more (untimed), so that a
    machine that gets a little faster still gives windows >= ``min_seconds``.
    """
    target = margin * min_seconds
    while True:
        t0 = clock()
        run(count)
        seconds = clock() - t0
        scale = min(100.0, target / seconds) if seconds > 0 else 100.0
        if seconds >= min_seconds or count >= max_count:
            return min(max_count, math.ceil(count * scale)) if scale > 1 else count
        count = min(max_count, max(count + 1, math.ceil(count * scale)))


def timed(
    run, count: int, clock=time.perf_counter, min_seconds: float = 0.0
) -> tuple[int, float]:
    """One timed window: ``run(count)``, then ``run(1)`` again while the
    window is shorter than ``min_seconds`` (the machine may have got faster
    since :func:`calibrate`). Returns (units run, seconds)."""
    t0 = clock()
    run(count)
    while clock() - t0 < min_seconds:
        run(1)
        count += 1
    return count, clock() - t0


def interleave(calls, rounds: int) -> list[list]:
    """Call ``calls[0](), calls[1](), ..., calls[0](), calls[1](), ...``:
    ``rounds`` rounds of each in turn. Returns each call's results, in order:
    ``[[calls[0] results], [calls[1] results], ...]``."""
    results = [[] for _ in calls]
    for _ in range(rounds):
        for fn, out in zip(calls, results):
            out.append(fn())
    return results


def ratio_stats(values, definition: str = "") -> dict | None:
    """Median, interquartile range, min and max of per-pair ratios (None
    values, from pairs without a ratio, are left out), with the values
    themselves. None if no pair has a ratio."""
    kept = [float(v) for v in values if v is not None]
    if not kept:
        return None
    q1, median, q3 = (float(q) for q in np.percentile(kept, [25, 50, 75]))
    return {
        "definition": definition,
        "median": median,
        "iqr": [q1, q3],
        "min": min(kept),
        "max": max(kept),
        "pairs": len(kept),
        "values": kept,
    }


def format_ratio(stats: dict | None) -> str:
    """``"6.1x (IQR 5.9-6.3x, range 5.2-6.8x, 7 pairs)"``, or ``"-"``."""
    if not stats:
        return "-"
    q1, q3 = stats["iqr"]
    return (
        f"{stats['median']:.3g}x (IQR {q1:.3g}-{q3:.3g}x, "
        f"range {stats['min']:.3g}-{stats['max']:.3g}x, "
        f"{stats['pairs']} pair{'s' if stats['pairs'] != 1 else ''})"
    )


def compare_throughput(
    ours: Runner,
    reference: Runner,
    *,
    pairs: int = 7,
    min_seconds: float = MIN_WINDOW_SECONDS,
    clock=time.perf_counter,
) -> dict:
    """Env-steps/s of ``ours`` and ``reference``, timed interleaved: ``pairs``
    pairs of windows (ours, reference, ours, reference, ...), each window at
    least ``min_seconds`` long (see :func:`calibrate`; both must be compiled
    or warmed up beforehand). The ratio of each pair, ours / reference, is
    summarized by :func:`ratio_stats` under ``"ratio"``; ``env_steps_per_second``
    (the reference's) and ``sacbook_env_steps_per_second`` are each side's
    fastest window, the figures older reports hold."""
    count_a = calibrate(ours.run, min_seconds=min_seconds, clock=clock)
    count_b = calibrate(reference.run, min_seconds=min_seconds, clock=clock)
    win_a, win_b = interleave(
        [
            partial(timed, ours.run, count_a, clock, min_seconds),
            partial(timed, reference.run, count_b, clock, min_seconds),
        ],
        pairs,
    )
    sec_a, sec_b = [s for _, s in win_a], [s for _, s in win_b]
    rate_a = [units * ours.env_steps_per_unit / s for units, s in win_a]
    rate_b = [units * reference.env_steps_per_unit / s for units, s in win_b]
    return {
        "name": reference.name,
        "num_envs": reference.num_envs,
        "version": reference.version,
        "env_steps_per_second": max(rate_b),
        "sacbook_env_steps_per_second": max(rate_a),
        "ratio": ratio_stats(
            [a / b for a, b in zip(rate_a, rate_b)],
            f"sacbook env-steps/s / {reference.name} env-steps/s, "
            "per interleaved pair of windows",
        ),
        "window": {
            "min_seconds": min_seconds,
            "sacbook_env_steps": count_a * ours.env_steps_per_unit,
            "reference_env_steps": count_b * reference.env_steps_per_unit,
        },
        "rounds": [
            {
                "sacbook_seconds": a,
                "reference_seconds": b,
                "sacbook_env_steps_per_second": ra,
                "reference_env_steps_per_second": rb,
            }
            for a, b, ra, rb in zip(sec_a, sec_b, rate_a, rate_b)
        ],
    }


def median_of(runs: list) -> dict | None:
    """The run of ``runs`` (dicts with ``solve_seconds_total``, e.g. from
    :func:`sacbook.bench.run_isolated`) with the median
    ``solve_seconds_total``, unsolved runs (None) counting as slowest, with
    the times of all runs under ``"runs_solve_seconds_total"``. None if the
    first run is None (a reference that is not installed)."""
    if runs[0] is None:
        return None

    def key(r):
        return (r["solve_seconds_total"] is None, r["solve_seconds_total"] or 0.0)

    median = dict(sorted(runs, key=key)[(len(runs) - 1) // 2])
    median["runs_solve_seconds_total"] = [r["solve_seconds_total"] for r in runs]
    return median
