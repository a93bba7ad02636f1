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
import jax.numpy as jnp
import numpy as np

from sacbook import checks, evaluate, loop, sac, sharding
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
    "sweep",
    "train",
    "train_seeds",
]

SOLVED_RETURN = -200.0  # Pendulum-v1 counts as solved at a mean return of -200


@dataclasses.dataclass(frozen=True)
class TrainConfig(LoopConfig):
    """A training run: the compiled program's :class:`~sacbook.loop.LoopConfig`,
    plus how long to run it and how to evaluate it (neither recompiles).

    Attributes (beyond the loop's):
      total_env_steps: training length in environment steps (all envs), >= 1;
        rounded up to whole chunks, at most ``2**31 - 1`` iterations.
      eval_envs: environments in each deterministic evaluation (fixed
        starts per run), >= 1.
    """

    # The default recipe solved the gymnasium preset in 100-140 iterations
    # for seeds 0-9 (Chapter 4): 300 iterations leave room for the slow ones.
    total_env_steps: int = 300 * 1024
    # "Solved" is a mean over 64 fixed starts: 16 gave seeds that looked
    # solved by luck of the starts (see Chapter 3's statistics).
    eval_envs: int = 64

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
    diverged: str | None = None  # where it first became non-finite (train_seeds)

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
    mesh: jax.sharding.Mesh | None = None,
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
      mesh: a one-axis ``jax.sharding.Mesh`` to split the run over (any axis
        name): environments and replay buffer sharded along the env axis,
        networks replicated, gradients averaged (:mod:`sacbook.sharding`).
        A one-device mesh gives the plain run's result bit for bit.
    """
    checks.integer("eval_every", eval_every, 1)
    if checkpoint_dir is not None:
        checks.integer("checkpoint_every", checkpoint_every, 1)
        from sacbook import checkpoint  # (it imports this module)
    history = list(history or [])
    run_key = jax.random.key(seed)
    if state is None:
        state = init(config, run_key, check_memory=check_memory, mesh=mesh)
    else:
        loop.check_state(state, config)
        if mesh is not None:
            loop._check_mesh(config, mesh)
            state = sharding.put(state, mesh)
    program = loop.parallel_chunk_program(mesh)

    # Compile ahead of time so compile time is measured apart from run time.
    # The chunk compiles on a second thread while this one lowers and compiles
    # the evaluation (XLA releases the GIL): a cold start is mostly compiling.
    t0 = time.perf_counter()
    lowered_chunk = program.lower(state, config.loop)
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


# ----------------------------------------------------------------------------
# Many runs as one program: seeds, and sweeps of the continuous hyperparameters
# ----------------------------------------------------------------------------


def train_seeds(
    config: TrainConfig,
    seeds: Iterable[int],
    *,
    eval_every: int = 1,
    target_return: float = SOLVED_RETURN,
    stop_when_solved: bool = False,
    callbacks: Iterable[Callable[[list, TrainState], None]] = (),
    progress: bool = True,
    check_memory: bool = True,
    should_stop: Callable[[], bool] | None = None,
    mesh: jax.sharding.Mesh | None = None,
    raise_on_non_finite: bool = True,
    _sac_configs: list | None = None,
) -> list[TrainResult]:
    """Train one run per seed, all together as one compiled program.

    The training state gets a leading seed axis and the chunk is vmapped over
    it (:func:`sacbook.loop.parallel_chunk_program`); the evaluation of all
    seeds is one vmapped call too. Run ``i`` is ``train(config, seeds[i])``
    computed side by side with the others, with its own PRNG stream. It is
    not the same bit for bit: batched matrix products round differently in
    the last bit, and a run can amplify that (measured on a CPU: 1e-7
    relative after a chunk for most seeds, up to 2e-3 for some).

    Between chunks the host keeps one history per seed, shows the median and
    the worst return on the progress bar and calls each
    ``callback(records, state)`` with the chunk's records, one per seed.
    A run that produces a NaN or an infinity raises :class:`NonFiniteError`
    naming its seed; with ``raise_on_non_finite=False`` the others go on
    (runs never mix), and that run's result has ``diverged`` set.

    ``stop_when_solved`` stops once every run is solved. ``mesh``: each run
    is split over the mesh's devices as in :func:`train`. Checkpoints: save
    a run with ``sacbook.checkpoint.save(result)``.

    Returns one :class:`TrainResult` per seed, in the order given.
    """
    seeds = [checks.integer("seeds", seed, 0) for seed in seeds]
    if not seeds:
        raise ValueError("seeds must name at least one seed")
    checks.integer("eval_every", eval_every, 1)
    sac_configs = _sac_configs or [config.sac] * len(seeds)
    run_keys = jnp.stack([jax.random.key(seed) for seed in seeds])
    state = loop.init_runs(
        config,
        list(run_keys),
        sac_configs=sac_configs,
        check_memory=check_memory,
        mesh=mesh,
    )
    hyper = None
    if _sac_configs is not None:  # a sweep: the swept values, traced
        hyper = jax.tree.map(
            lambda *v: np.stack(v), *(sac.Hyperparams.of(c) for c in sac_configs)
        )

    t0 = time.perf_counter()
    lowered_chunk = loop.parallel_chunk_program(mesh, batched=True).lower(
        state, config.loop, hyper
    )
    with ThreadPoolExecutor(max_workers=1) as pool:
        chunk_future = pool.submit(lowered_chunk.compile)
        eval_fn = evaluate.evaluate_runs.lower(
            state.sac.actor_params, run_keys, config.sac, config.env, config.eval_envs
        ).compile()
        chunk_fn = chunk_future.result()
    compile_seconds = time.perf_counter() - t0

    runs = len(seeds)
    histories: list[list] = [[] for _ in seeds]
    solved_at: list[dict | None] = [None] * runs
    diverged: list[str | None] = [None] * runs
    total = config.total_iterations
    steps_per_chunk = config.chunk_iterations * config.num_envs
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=total * config.num_envs * runs,
            unit="step",
            unit_scale=True,
            desc=f"env steps ({runs} runs)",
            dynamic_ncols=True,
        )
    iterations_done, chunk_index, elapsed = 0, 0, 0.0
    interrupted = False
    try:
        while iterations_done < total:
            t_start = time.perf_counter()
            state, metrics = chunk_fn(state, hyper)
            metrics = jax.device_get(metrics)  # the host sync point
            chunk_index += 1
            iterations_done += config.chunk_iterations
            evaluated = chunk_index % eval_every == 0 or iterations_done >= total
            returns = None
            if evaluated:
                returns = np.asarray(eval_fn(state.sac.actor_params, run_keys))
            sac_host = jax.device_get(state.sac)
            seconds = time.perf_counter() - t_start
            elapsed += seconds
            records = []
            for i in range(runs):
                run_metrics = {name: value[i] for name, value in metrics.items()}
                if diverged[i] is None:
                    run_sac = jax.tree.map(lambda x, i=i: x[i], sac_host)
                    bad = first_non_finite(run_metrics, run_sac)
                    if bad is not None:
                        diverged[i] = f"chunk {chunk_index}: {bad}"
                        if raise_on_non_finite:
                            raise NonFiniteError(
                                f"seed {seeds[i]} became non-finite in chunk "
                                f"{chunk_index}: {bad}"
                            )
                record = summarize_chunk(run_metrics, config)
                if returns is not None:
                    record["eval_return"] = float(np.mean(returns[i]))
                record.update(
                    chunk=chunk_index,
                    iterations=iterations_done,
                    env_steps=iterations_done * config.num_envs,
                    wall_seconds=elapsed,
                    # each run's own rate; all runs together made runs x this
                    env_steps_per_second=steps_per_chunk / seconds,
                )
                histories[i].append(record)
                records.append(record)
                reached = record.get("eval_return", -np.inf) >= target_return
                if solved_at[i] is None and reached:
                    solved_at[i] = dict(record)
            if bar is not None:
                bar.update(steps_per_chunk * runs)
                shown = np.array(
                    [r.get("eval_return", r["episode_return"]) for r in records]
                )
                bar.set_postfix(
                    {
                        "median": f"{np.nanmedian(shown):.0f}",
                        "worst": f"{np.nanmin(shown):.0f}",
                        "solved": f"{sum(s is not None for s in solved_at)}/{runs}",
                    }
                )
            for callback in callbacks:
                callback(records, state)
            if stop_when_solved and all(s is not None for s in solved_at):
                break
            if should_stop is not None and should_stop():
                interrupted = True
                break
    finally:
        if bar is not None:
            bar.close()
    results = []
    for i, seed in enumerate(seeds):
        run_config = config.replace(sac=sac_configs[i])
        run_state = jax.tree.map(lambda x, i=i: x[i], state)
        run_state = run_state.replace(sac=run_state.sac.replace(config=run_config.sac))
        results.append(
            TrainResult(
                state=run_state,
                history=histories[i],
                config=run_config,
                seed=seed,
                compile_seconds=compile_seconds,
                solved_at=solved_at[i],
                interrupted=interrupted,
                diverged=diverged[i],
            )
        )
    return results


def sweep(
    config: TrainConfig,
    settings: Iterable[dict],
    seeds: Iterable[int],
    **kwargs,
) -> list[list[TrainResult]]:
    """Train every setting with every seed, M x S runs, as one program.

    Each setting is a dict of changes to ``config.sac`` among
    :data:`sacbook.sac.SWEEPABLE` (the learning rates, ``tau``, ``gamma``,
    ``init_alpha``): values that are traced in the compiled program, so the
    whole sweep compiles once. A change of shape (widths, batch size, K, N)
    needs a program of its own: run one sweep per value.

    Keyword arguments go to :func:`train_seeds` (``raise_on_non_finite``
    defaults to False here: a sweep expects some settings to diverge).
    Returns ``results[m][s]``: setting ``m``, ``seeds[s]``, each with its
    own ``config``.
    """
    settings, seeds = [dict(s) for s in settings], list(seeds)
    if not settings:
        raise ValueError("settings must hold at least one setting (a dict)")
    sac_configs = []
    for setting in settings:
        fixed = sorted(set(setting) - set(sac.SWEEPABLE))
        if fixed:
            raise ValueError(
                f"settings may change only {', '.join(sac.SWEEPABLE)} (traced "
                f"values); {', '.join(fixed)} change the compiled program: "
                f"run one sweep per value"
            )
        sac_configs.append(dataclasses.replace(config.sac, **setting))
    kwargs.setdefault("raise_on_non_finite", False)
    flat = train_seeds(
        config,
        [seed for _ in settings for seed in seeds],
        _sac_configs=[c for c in sac_configs for _ in seeds],
        **kwargs,
    )
    return [flat[m * len(seeds) : (m + 1) * len(seeds)] for m in range(len(settings))]
