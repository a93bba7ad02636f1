"""What the host makes of a chunk's metrics: one record per run, and the
first value that is not finite.

The compiled chunk returns per-iteration metrics (:func:`sacbook.loop.
iteration`); the runner (:mod:`sacbook.train`) turns each run's into one
record of its history with :func:`summarize_chunk`, after
:func:`first_non_finite` has found nothing wrong.
"""

from __future__ import annotations

import jax
import numpy as np

from sacbook import sac
from sacbook.config import LoopConfig


class NonFiniteError(RuntimeError):
    """Training produced a NaN or an infinity; the run stopped at that chunk."""


def summarize_chunk(metrics, config: LoopConfig) -> dict:
    """Reduce a chunk's per-iteration metrics (host numpy) to one record."""
    metrics = jax.device_get(metrics)
    updated = np.asarray(metrics["updated"], bool)
    record = {}
    for name in sac.METRIC_NAMES:
        values = np.asarray(metrics[name])[updated]
        record[name] = float(values.mean()) if values.size else float("nan")
    episodes = float(np.sum(metrics["episodes_done"]))
    record["episodes"] = int(episodes)
    returns = np.sum(metrics["episode_return_sum"])
    record["episode_return"] = float(returns / episodes) if episodes else float("nan")
    record["reward_mean"] = float(np.mean(metrics["reward_mean"]))
    record["updates"] = int(updated.sum()) * config.updates_per_iteration
    return record


def first_non_finite(metrics, sac_state=None) -> str | None:
    """The first value of a chunk that is not finite, or None if all are.

    Checks the chunk's metrics (``"name = value (at iteration i of the
    chunk)"``), then the networks and optimizer states at its end
    (``sac_state``, copied to the host: a few hundred kilobytes; checking
    them on the host keeps the compiled chunk as it is)."""
    updated = np.asarray(metrics["updated"], bool)
    for name in (*sac.METRIC_NAMES, "episode_return_sum", "reward_mean"):
        values = np.asarray(metrics[name], np.float64)
        bad = ~np.isfinite(values) & (updated if name in sac.METRIC_NAMES else True)
        if bad.any():
            i = int(np.argmax(bad))
            return f"{name} = {values[i]} (at iteration {i + 1} of the chunk)"
    leaves = jax.tree_util.tree_flatten_with_path(jax.device_get(sac_state))[0]
    for path, leaf in leaves:
        leaf = np.asarray(leaf)
        if np.issubdtype(leaf.dtype, np.floating) and not np.isfinite(leaf).all():
            return f"sac{jax.tree_util.keystr(path)} (at the end of the chunk)"
    return None
