"""What the host makes of a chunk's metrics: one record per run, the first
value that is not finite, and how progress is shown (callbacks, a bar).

The compiled chunk returns per-iteration metrics (:func:`sacbook.loop.
iteration`); the runner (:mod:`sacbook.train`) turns each run's into one
record of its history with :func:`summarize_chunk`, after
:func:`first_non_finite` has found nothing wrong.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from sacbook import sac
from sacbook.config import LoopConfig, TrainConfig
from sacbook.loop import TrainState


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


@dataclasses.dataclass
class TrainResult:
    """One run's outcome: its final state and its per-chunk history."""

    state: TrainState
    history: list
    config: TrainConfig
    seed: int
    compile_seconds: float  # before training (on a CPU the chunk; see Driver.compile)
    solved_at: dict | None  # the first record with eval_return >= the target return
    interrupted: bool = False  # stopped early by ``should_stop``
    diverged: str | None = None  # where it first became non-finite (many runs)

    @property
    def final_eval_return(self) -> float:
        evals = [h["eval_return"] for h in self.history if "eval_return" in h]
        return evals[-1] if evals else float("nan")


@dataclasses.dataclass
class Progress:
    """What each callback receives after every chunk: ``callback(progress)``.

    Attributes:
      records: the chunk's record of each run (one for :func:`train`).
      histories: each run's records so far.
      seeds: each run's seed.
      state: the training state after the chunk (with a leading run axis
        for :func:`train_seeds` and :func:`sweep`). The next chunk reuses
        its memory: copy what you keep (``jax.tree.map(np.array, ...)``).
    """

    records: list[dict]
    histories: list[list]
    seeds: list[int]
    state: TrainState

    @property
    def record(self) -> dict:
        """The record of a single run (a clear error for many)."""
        if len(self.records) != 1:
            raise ValueError(f"progress.record: {len(self.records)} runs; use records")
        return self.records[0]

    @property
    def history(self) -> list:
        """The history of a single run."""
        self.record  # noqa: B018 (the check)
        return self.histories[0]


def progress_bar(config: LoopConfig, total_iterations: int, runs: int, done: int):
    """A tqdm bar over every run's env steps, starting at ``done`` iterations."""
    from tqdm.auto import tqdm

    return tqdm(
        total=total_iterations * config.num_envs * runs,
        initial=done * config.num_envs * runs,
        unit="step",
        unit_scale=True,
        desc="env steps" + (f" ({runs} runs)" if runs > 1 else ""),
        dynamic_ncols=True,
    )


def show(bar, records: list[dict], solved_at: list) -> None:
    """Advance the bar by one chunk of every run; show the return (one run)
    or the median, the worst and the solved count (many)."""
    bar.update(records[0]["env_steps"] * len(records) - bar.n)
    shown = np.array([r.get("eval_return", r["episode_return"]) for r in records])
    if len(records) == 1:
        rate = records[0]["env_steps_per_second"]
        bar.set_postfix({"return": f"{shown[0]:.0f}", "steps/s": f"{rate:.3g}"})
    else:
        solved = sum(s is not None for s in solved_at)
        bar.set_postfix(
            {
                "median": f"{np.nanmedian(shown):.0f}",
                "worst": f"{np.nanmin(shown):.0f}",
                "solved": f"{solved}/{len(records)}",
            }
        )
