"""Summaries of results across random seeds: interquartile means with intervals.

One training run is one draw from a noisy process, so a claim about SAC needs several
seeds and an honest statement of their spread. Following Agarwal et al. (2021), "Deep
Reinforcement Learning at the Edge of the Statistical Precipice", we report the
interquartile mean (IQM: the mean of the middle 50% of runs, robust to an outlier seed
yet less noisy than the median) with a stratified bootstrap percentile confidence
interval. :func:`interval` summarises final scores, :func:`band` a learning curve at
each checkpoint, :func:`solved_fraction` how many runs reached a target by each step.
All resampling is :func:`scipy.stats.bootstrap`'s; nothing here draws random numbers.
"""

from __future__ import annotations

import dataclasses
import math
import numbers

import numpy as np
import scipy.stats

from sacbook.evaluate import SOLVED_RETURN

__all__ = [
    "Estimate",
    "band",
    "first_reached",
    "from_histories",
    "interval",
    "iqm",
    "solved_fraction",
]

# Resamples per vectorised call. A fixed number bounds memory for long curves and
# makes a seed give the same resamples whatever the shape of the data.
_BATCH = 500


def iqm(scores, axis=0) -> np.ndarray | float:
    """Interquartile mean: the mean of the middle 50% of ``scores`` along ``axis``.

    scores: (runs,) or (runs, ...) with ``axis=0``; ``axis=None`` pools all values.
    Returns the reduced array, or a float when that is a scalar. A quarter is cut
    from each end (``int(n / 4)`` values, as :func:`scipy.stats.trim_mean` and
    rliable do), so one wild seed moves the IQM no more than an ordinary one.
    """
    result = scipy.stats.trim_mean(scores, 0.25, axis=axis)
    return float(result) if np.ndim(result) == 0 else result


@dataclasses.dataclass(frozen=True)
class Estimate:
    """A statistic of some runs with its bootstrap confidence interval.

    Attributes:
      point: the statistic of all the scores.
      low, high: the interval's bounds (both equal to ``point`` for one run).
      n: runs (per task).
      confidence: the interval's nominal coverage, e.g. 0.95.
      statistic: the statistic's name, for printing: ``"IQM"``, ``"mean"``, ...
      tasks: tasks the runs were pooled over (1 for a single task).
    """

    point: float
    low: float
    high: float
    n: int
    confidence: float
    statistic: str = "IQM"
    tasks: int = 1

    def __str__(self):
        """``-146.2 [-150.1, -143.0] (IQM of 16 runs, 95% CI)``."""
        runs = f"{self.n} run{'s' if self.n != 1 else ''}"
        if self.tasks > 1:
            runs += f" x {self.tasks} tasks"
        level = f"{100 * self.confidence:.10g}%"  # 95%, 97.5%: no float noise
        return (
            f"{self.point:.1f} [{self.low:.1f}, {self.high:.1f}] "
            f"({self.statistic} of {runs}, {level} CI)"
        )


def interval(
    scores, statistic=iqm, *, confidence=0.95, n_resamples=2000, seed=0
) -> Estimate:
    """The statistic of ``scores`` and its stratified bootstrap percentile interval.

    scores: (runs,) for one task, or (runs, tasks), e.g. each seed's final return.
    statistic: called as ``statistic(x, axis=-1)`` on arrays, like ``np.mean``.
    Runs are resampled within each task (each task's column is its own sample for
    :func:`scipy.stats.bootstrap`) and the statistic pools the tasks, so every
    resample keeps the tasks' proportions. With one run no spread can be estimated:
    ``low == high == point``. ``seed`` makes the resampling reproducible.
    """
    scores = _checked("scores", scores, (1, 2), confidence, n_resamples)
    runs = len(scores)
    columns = tuple(scores.reshape(runs, -1).T)  # tasks x (runs,)

    def pooled(*tasks, axis=-1):
        return statistic(np.concatenate(tasks, axis=axis), axis=axis)

    point = float(pooled(*columns))
    low = high = point
    if runs > 1:  # scipy needs two observations to resample
        ci = _percentile_ci(columns, pooled, confidence, n_resamples, seed)
        low, high = float(ci.low), float(ci.high)
    name = "IQM" if statistic is iqm else getattr(statistic, "__name__", "statistic")
    return Estimate(point, low, high, runs, confidence, name, len(columns))


def band(curves, statistic=iqm, *, confidence=0.95, n_resamples=2000, seed=0):
    """The statistic over runs at each time point, with its bootstrap interval.

    curves: (runs, T), e.g. the evaluation return of each seed at T checkpoints.
    Returns ``(point, low, high)``, each (T,). One vectorised
    :func:`scipy.stats.bootstrap` call: a resample is a set of whole runs, the same
    at every time point, so column ``t`` is ``interval(curves[:, t])`` with the same
    seed (to rounding). With one run ``low`` and ``high`` equal ``point``.
    """
    curves = _checked("curves", curves, (2,), confidence, n_resamples)
    # (T, runs) with contiguous rows: each point computed exactly as by interval()
    by_time = np.ascontiguousarray(curves.T)
    point = np.asarray(statistic(by_time, axis=-1), dtype=float)
    if len(curves) < 2:
        return point, point.copy(), point.copy()
    ci = _percentile_ci((by_time,), statistic, confidence, n_resamples, seed)
    return point, np.asarray(ci.low, dtype=float), np.asarray(ci.high, dtype=float)


def first_reached(steps, values, target=SOLVED_RETURN) -> float:
    """The first of ``steps`` (T,) at which ``values`` (T,) >= ``target``.

    Returns that step as a float, or ``inf`` if the target is never reached.
    NaN values (no evaluation there) never count as reached.
    """
    steps = np.asarray(steps)
    values = np.asarray(values, dtype=float)
    if steps.ndim != 1 or values.shape != steps.shape:
        raise ValueError(
            f"steps and values must both have shape (T,), got {steps.shape} "
            f"and {values.shape}"
        )
    reached = np.flatnonzero(values >= target)  # NaN >= target is False
    return float(steps[reached[0]]) if reached.size else math.inf


def solved_fraction(steps, values, target=SOLVED_RETURN, at=None) -> np.ndarray:
    """The fraction of runs that have reached ``target`` by each step of ``at``.

    steps: (T,), increasing; values: (runs, T) at those steps. ``at`` defaults to
    ``steps``. Returns (len(at),): for each step, the fraction of runs whose
    :func:`first_reached` is at or before it. Reaching once counts, as "solved".
    """
    steps = np.asarray(steps)
    values = np.asarray(values, dtype=float)
    if values.ndim != 2 or values.shape[1:] != steps.shape:
        raise ValueError(
            f"values must have shape (runs, {len(steps)}) to match steps, "
            f"got {values.shape}"
        )
    first = np.array([first_reached(steps, run, target) for run in values])
    at = steps if at is None else np.atleast_1d(at)
    return (first[None, :] <= at[:, None]).mean(axis=1)


def from_histories(histories, key="eval_return", step_key="env_steps"):
    """Align the runs' histories on the steps that all of them evaluated.

    histories: one list of dict records per run (e.g. ``TrainResult.history``);
    records without ``key`` (or with ``None`` there) are skipped, and a step
    recorded twice keeps its last value. Returns ``(steps, values)``: the steps
    (T,) at which every run has ``key``, increasing, and values (runs, T).
    """
    if not histories:
        raise ValueError("histories is empty: pass one list of records per run")
    runs = [
        {
            record[step_key]: record[key]
            for record in history
            if record.get(key) is not None
        }
        for history in histories
    ]
    common = sorted(set.intersection(*(set(run) for run in runs)))
    if not common:
        raise ValueError(
            f"no {step_key} value has {key!r} in all {len(runs)} runs "
            f"(they have it at {[len(run) for run in runs]} steps)"
        )
    values = np.array([[run[step] for step in common] for run in runs], dtype=float)
    return np.array(common), values


_SHAPES = {(1, 2): "(runs,) or (runs, tasks)", (2,): "(runs, T)"}


def _checked(name, array, ndims, confidence, n_resamples) -> np.ndarray:
    """``array`` as floats, after the checks shared by interval() and band()."""
    array = np.asarray(array, dtype=float)
    if array.ndim not in ndims:
        raise ValueError(
            f"{name} must have shape {_SHAPES[ndims]}, got shape {array.shape}"
        )
    if array.size == 0:
        raise ValueError(f"{name} is empty (shape {array.shape}): need >= 1 run")
    if np.isnan(array).any():
        raise ValueError(
            f"{name} contains NaN ({np.isnan(array).sum()} of {array.size} values): "
            "every run needs a value everywhere; a run that diverged has NaN "
            "returns (TrainResult.diverged): leave it out, or give it a score"
        )
    if not 0 < confidence < 1:  # also rejects NaN
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    # one resample is no distribution (and scipy warns on its standard error)
    if not isinstance(n_resamples, numbers.Integral) or n_resamples < 2:
        raise ValueError(f"n_resamples must be an integer >= 2, got {n_resamples!r}")
    return array


def _percentile_ci(samples, statistic, confidence, n_resamples, seed):
    """scipy's percentile bootstrap interval of ``statistic``: each sample in
    ``samples`` is resampled on its own along its last axis (runs)."""
    return scipy.stats.bootstrap(
        samples,
        statistic,
        n_resamples=n_resamples,
        batch=_BATCH,
        vectorized=True,
        axis=-1,
        confidence_level=confidence,
        method="percentile",  # as in Agarwal et al.; BCa warns on identical scores
        rng=np.random.default_rng(seed),
    ).confidence_interval
