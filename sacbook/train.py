"""The host runner: drive the compiled training chunk by chunk.

The device runs whole chunks (:mod:`sacbook.loop`); between them the host
keeps the run honest and visible: a progress bar, a metrics history, a
deterministic evaluation (:mod:`sacbook.evaluate`), callbacks, a check that
every number is still finite, checkpoints at a fixed cadence, and a clean
stop when asked (Ctrl-C or SIGTERM in ``sacbook train``).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jax
import numpy as np

from sacbook import checks, evaluate, loop, sac
from sacbook.loop import LoopConfig, TrainState, abstract_state, init, run_chunk_jit
from sacbook.sac import SACConfig

__all__ = [
    "SOLVED_RETURN",
    "TrainConfig",
    "TrainResult",
    "TrainState",
    "NonFiniteError",
    "abstract_state",
    "init",
    "run_chunk_jit",
    "summarize_chunk",
    "train",
]

SOLVED_RETURN = -200.0  # Pendulum-v1 counts as solved at a mean return of -200


@dataclasses.dataclass(frozen=True)
class TrainConfig(LoopConfig):
    """A training run: the compiled program's :class:`~sacbook.loop.LoopConfig`,
    plus how long to run it and how to evaluate it (neither recompiles).

    Attributes (beyond the loop's):
      total_env_steps: training length in environment steps (all envs), >= 1;
        rounded up to whole chunks, at most ``2**31 - 1`` iterations.
      eval_envs: environments in each deterministic evaluation, >= 1.
    """

    # The default recipe solved the gymnasium preset in 100-140 iterations
    # for seeds 0-9 (Chapter 4): 300 iterations leave room for the slow ones.
    total_env_steps: int = 300 * 1024
    eval_envs: int = 16

    def __post_init__(self):
        super().__post_init__()
        self._set_int("total_env_steps", 1)
        self._set_int("eval_envs", 1, checks.INT32_MAX)
        if self.total_iterations > checks.INT32_MAX:  # the iteration counter is int32
            limit = checks.INT32_MAX // self.chunk_iterations * self.chunk_iterations
            raise ValueError(
                f"TrainConfig.total_env_steps must be at most "
                f"{limit * self.num_envs} with num_envs={self.num_envs} "
                f"(2**31 - 1 iterations), got {self.total_env_steps}"
            )

    @classmethod
    def few_envs(cls, **overrides) -> TrainConfig:
        """Chapter 3's setting: 4 envs, one update per iteration (one update
        per 4 env steps), 20k env steps. Reaches -200 in 6k-13k env steps
        (seeds 0-2)."""
        setting = dict(
            sac=SACConfig(),
            num_envs=4,
            total_env_steps=20_000,
            buffer_capacity=100_000,
            warmup_env_steps=1_000,
            learning_starts=1_000,
            updates_per_iteration=1,
            update_every=1,
            chunk_iterations=250,
        )
        return cls(**{**setting, **overrides})

    @property
    def total_iterations(self) -> int:
        """Iterations needed for ``total_env_steps``, rounded up to whole chunks."""
        iterations = math.ceil(self.total_env_steps / self.num_envs)
        return math.ceil(iterations / self.chunk_iterations) * self.chunk_iterations


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
    """What :func:`train` returns: the final state and the per-chunk history."""

    state: TrainState
    history: list
    config: TrainConfig
    seed: int
    compile_seconds: float
    solved_at: dict | None  # the first record with eval_return >= the target return
    interrupted: bool = False  # stopped early by ``should_stop``

    @property
    def final_eval_return(self) -> float:
        evals = [h["eval_return"] for h in self.history if "eval_return" in h]
        return evals[-1] if evals else float("nan")


def train(
    config: TrainConfig,
    seed: int = 0,
    *,
    state: TrainState | None = None,
    history: list | None = None,
    eval_every: int = 1,
    target_return: float = SOLVED_RETURN,
    stop_when_solved: bool = False,
    callbacks: Iterable[Callable[[dict, TrainState], None]] = (),
    progress: bool = True,
    check_memory: bool = True,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int = 10,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train SAC for ``config.total_env_steps`` environment steps.

    The device runs whole chunks; after each one the host

    1. summarizes its metrics into a record and stops with
       :class:`NonFiniteError` at the first NaN or infinity (naming the metric
       and the chunk; checkpoints so far stay as they were);
    2. evaluates the deterministic policy every ``eval_every`` chunks and at
       the end (16 fixed starts by default, ``config.eval_envs``);
    3. appends the record to the history, updates the tqdm bar and calls each
       ``callback(record, state)`` (live plots, logs);
    4. saves a checkpoint to ``checkpoint_dir`` every ``checkpoint_every``
       chunks, and once at the end (finished, solved or interrupted) unless
       that step is saved already;
    5. stops early if ``stop_when_solved`` and solved, or if
       ``should_stop()`` says so (then ``result.interrupted`` is True).

    Args:
      config: the :class:`TrainConfig`.
      seed: PRNG seed of the run (does not trigger recompilation).
      state, history: resume from these (e.g. :func:`sacbook.checkpoint.restore`);
        a state that does not fit ``config`` is refused with a clear error.
      target_return: the mean evaluation return that counts as solved; the
        first record to reach it is returned as ``solved_at``.
      progress: show a tqdm bar.
      check_memory: when building a fresh state, first check that the run
        fits in the device's memory (:func:`sacbook.loop.init`); ``False``
        skips the check, for those who know better than the estimate.
    """
    checks.integer("eval_every", eval_every, 1)
    if checkpoint_dir is not None:
        checks.integer("checkpoint_every", checkpoint_every, 1)
        from sacbook import checkpoint  # (it imports this module)
    history = list(history or [])
    run_key = jax.random.key(seed)
    if state is None:
        state = init(config, run_key, check_memory=check_memory)
    else:
        loop.check_state(state, config)

    # Compile ahead of time so compile time is measured apart from run time.
    # The chunk compiles on a second thread while this one lowers and compiles
    # the evaluation (XLA releases the GIL): a cold start is mostly compiling.
    t0 = time.perf_counter()
    lowered_chunk = loop.chunk_program.lower(state, config.loop)
    with ThreadPoolExecutor(max_workers=1) as pool:
        chunk_future = pool.submit(lowered_chunk.compile)
        eval_fn = evaluate.evaluate_run.lower(
            state.sac.actor_params, run_key, config.sac, config.env, config.eval_envs
        ).compile()
        chunk_fn = chunk_future.result()
    compile_seconds = time.perf_counter() - t0

    iterations_done = int(state.iteration)
    saved_at = iterations_done if history else None  # a resumed run: saved there
    total = config.total_iterations
    steps_per_chunk = config.chunk_iterations * config.num_envs
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=total * config.num_envs,
            initial=iterations_done * config.num_envs,
            unit="step",
            unit_scale=True,
            desc="env steps",
            dynamic_ncols=True,
        )
    # a resumed run may have been solved before it stopped
    solved_at = next(
        (dict(h) for h in history if h.get("eval_return", -np.inf) >= target_return),
        None,
    )
    elapsed = history[-1]["wall_seconds"] if history else 0.0
    chunk_index = len(history)
    interrupted = False

    def save():
        if checkpoint.latest_step(checkpoint_dir) != iterations_done:  # not saved yet
            checkpoint.save(
                checkpoint_dir, state, config=config, seed=seed, history=history
            )

    try:
        while iterations_done < total:
            t_start = time.perf_counter()
            state, metrics = chunk_fn(state)
            metrics = jax.device_get(metrics)  # the host sync point
            chunk_index += 1
            bad = first_non_finite(metrics, state.sac)
            if bad is not None:
                last = f"step {saved_at}" if saved_at is not None else "none saved"
                raise NonFiniteError(
                    f"training became non-finite in chunk {chunk_index} "
                    f"(iterations {iterations_done + 1}-"
                    f"{iterations_done + config.chunk_iterations}): {bad}; "
                    f"last good checkpoint: {last}"
                )
            record = summarize_chunk(metrics, config)
            iterations_done += config.chunk_iterations
            if chunk_index % eval_every == 0 or iterations_done >= total:
                returns = eval_fn(state.sac.actor_params, run_key)
                record["eval_return"] = float(np.mean(np.asarray(returns)))
            seconds = time.perf_counter() - t_start
            elapsed += seconds
            record.update(
                chunk=chunk_index,
                iterations=iterations_done,
                env_steps=iterations_done * config.num_envs,
                wall_seconds=elapsed,
                env_steps_per_second=steps_per_chunk / seconds,
            )
            history.append(record)
            if bar is not None:
                bar.update(steps_per_chunk)
                shown = record.get("eval_return", record["episode_return"])
                bar.set_postfix(
                    {
                        "return": f"{shown:.0f}",
                        "steps/s": f"{record['env_steps_per_second']:.3g}",
                    }
                )
            for callback in callbacks:
                callback(record, state)
            if (
                solved_at is None
                and record.get("eval_return", -np.inf) >= target_return
            ):
                solved_at = dict(record)
            if checkpoint_dir is not None and chunk_index % checkpoint_every == 0:
                save()
                saved_at = iterations_done
            if stop_when_solved and solved_at is not None:
                break
            if should_stop is not None and should_stop():
                interrupted = True
                break
        if checkpoint_dir is not None and saved_at != iterations_done:
            save()  # the end of the run, unless the cadence just saved it
    finally:
        if bar is not None:
            bar.close()
    return TrainResult(
        state=state,
        history=history,
        config=config,
        seed=seed,
        compile_seconds=compile_seconds,
        solved_at=solved_at,
        interrupted=interrupted,
    )
