"""The host runner: drive the compiled training chunk by chunk.

The device runs whole chunks (:mod:`sacbook.loop`); between them the host
keeps the runs honest and visible: a check that every number is still
finite, a record of the chunk per run, a deterministic evaluation
(:mod:`sacbook.evaluate`), a progress bar, callbacks, checkpoints at a fixed
cadence, and a clean stop when asked (Ctrl-C or SIGTERM in ``sacbook
train``).

One driver, :class:`_Driver`, does all of that for :func:`train` (one run),
:func:`train_seeds` (many runs as one program) and :func:`sweep` (many
settings and seeds as one program); they differ only in the state they
build and the program they compile.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from sacbook import checkpoint, checks, device, evaluate, loop, sac, sharding
from sacbook.config import TrainConfig
from sacbook.evaluate import SOLVED_RETURN
from sacbook.loop import TrainState
from sacbook.records import NonFiniteError, first_non_finite, summarize_chunk

__all__ = ["Progress", "TrainResult", "sweep", "train", "train_seeds"]


@dataclasses.dataclass
class TrainResult:
    """One run's outcome: its final state and its per-chunk history."""

    state: TrainState
    history: list
    config: TrainConfig
    seed: int
    compile_seconds: float
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


Callback = Callable[[Progress], None]


def train(
    config: TrainConfig,
    seed: int = 0,
    *,
    state: TrainState | None = None,
    history: list | None = None,
    eval_every: int = 1,
    target_return: float = SOLVED_RETURN,
    stop_when_solved: bool = False,
    callbacks: Iterable[Callback] = (),
    progress: bool = True,
    check_memory: bool = True,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int = 10,
    should_stop: Callable[[], bool] | None = None,
    mesh: jax.sharding.Mesh | None = None,
) -> TrainResult:
    """Train SAC for ``config.total_env_steps`` environment steps.

    The device runs whole chunks; after each one the host

    1. stops with :class:`~sacbook.records.NonFiniteError` at the first NaN
       or infinity (naming the metric and the chunk; checkpoints so far stay
       as they were);
    2. summarizes the chunk's metrics into a record;
    3. evaluates the deterministic policy every ``eval_every`` chunks and at
       the end (``config.eval_envs`` fixed starts);
    4. appends the record to the history, updates the tqdm bar and calls each
       ``callback(progress)`` with a :class:`Progress` (live plots, logs);
    5. saves a checkpoint to ``checkpoint_dir`` every ``checkpoint_every``
       chunks, and once at the end (finished, solved or interrupted) unless
       that step is saved already;
    6. stops early if ``stop_when_solved`` and solved, or if
       ``should_stop()`` says so (then ``result.interrupted`` is True).

    Args:
      config: the :class:`~sacbook.config.TrainConfig`.
      seed: PRNG seed of the run (does not trigger recompilation).
      state, history: resume from these (e.g. :func:`sacbook.checkpoint.restore`);
        a state that does not fit ``config`` is refused with a clear error.
      target_return: the mean evaluation return that counts as solved; the
        first record to reach it is returned as ``solved_at``.
      progress: show a tqdm bar.
      check_memory: before building a fresh state, check that the run fits
        in the device's memory (:func:`sacbook.device.check_fits`); ``False``
        skips the check, for those who know better than the estimate.
      mesh: a one-axis ``jax.sharding.Mesh`` to split the run over (any axis
        name): environments and replay buffer sharded along the env axis,
        networks replicated, gradients averaged (:mod:`sacbook.sharding`).
        A one-device mesh gives the plain run's result bit for bit.
    """
    checks.integer("eval_every", eval_every, 1)
    run_key = jax.random.key(seed)
    if state is None:
        devices = loop.check_mesh(config, mesh)
        if check_memory:
            device.check_fits(config, devices=devices)
        state = loop.init(config, run_key, mesh=mesh)
    else:
        loop.check_state(state, config)
        if mesh is not None:
            loop.check_mesh(config, mesh)
            state = sharding.put(state, mesh)
    dirs = None if checkpoint_dir is None else [Path(checkpoint_dir)]
    driver = _Driver(
        config,
        [seed],
        [config],
        program=loop.chunk_program(mesh),
        evaluation=evaluate.evaluate_run,
        run_keys=run_key,
        hyper=None,
        eval_every=eval_every,
        target_return=target_return,
        callbacks=list(callbacks),
        checkpoint_dirs=dirs,
        checkpoint_every=checkpoint_every,
        raise_on_non_finite=True,
        histories=[list(history or [])],
    )
    return driver.run(state, progress, stop_when_solved, should_stop)[0]


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
    callbacks: Iterable[Callback] = (),
    progress: bool = True,
    check_memory: bool = True,
    checkpoint_dirs: Sequence[str | Path] | None = None,
    checkpoint_every: int = 10,
    should_stop: Callable[[], bool] | None = None,
    mesh: jax.sharding.Mesh | None = None,
    raise_on_non_finite: bool = True,
) -> list[TrainResult]:
    """Train one run per seed, all together as one compiled program.

    The training state gets a leading seed axis and the chunk is vmapped over
    it (:func:`sacbook.loop.chunk_program` with ``batched``); the evaluation
    of all seeds is one vmapped call too. Run ``i`` is ``train(config,
    seeds[i])`` computed side by side with the others, with its own PRNG
    stream. It is not the same bit for bit: batched matrix products round
    differently in the last bit, and a run can amplify that (measured on a
    CPU: 1e-7 relative after a chunk for most seeds, up to 2e-3 for some).

    Everything else is :func:`train`'s, per run: records, evaluation,
    callbacks (one :class:`Progress` with every run's record), and
    checkpoints, in ``checkpoint_dirs`` (one folder per seed). The progress
    bar shows the median and the worst return and how many runs are solved.
    A run that produces a NaN or an infinity raises
    :class:`~sacbook.records.NonFiniteError` naming its seed; with
    ``raise_on_non_finite=False`` the others go on (runs never mix), and
    that run's result has ``diverged`` set. ``stop_when_solved`` stops once
    every run is solved. ``mesh``: each run is split over the mesh's devices
    as in :func:`train`.

    Returns one :class:`TrainResult` per seed, in the order given.
    """
    seeds = [checks.integer("seeds", seed, 0) for seed in seeds]
    return _train_runs(
        config,
        seeds,
        [config] * len(seeds),
        eval_every=eval_every,
        target_return=target_return,
        stop_when_solved=stop_when_solved,
        callbacks=callbacks,
        progress=progress,
        check_memory=check_memory,
        checkpoint_dirs=checkpoint_dirs,
        checkpoint_every=checkpoint_every,
        should_stop=should_stop,
        mesh=mesh,
        raise_on_non_finite=raise_on_non_finite,
        swept=False,
    )


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

    Keyword arguments are :func:`train_seeds`'s (``raise_on_non_finite``
    defaults to False here: a sweep expects some settings to diverge;
    ``checkpoint_dirs`` has M x S folders, setting by setting).
    Returns ``results[m][s]``: setting ``m``, ``seeds[s]``, each with its
    own ``config``.
    """
    settings = [dict(s) for s in settings]
    seeds = [checks.integer("seeds", seed, 0) for seed in seeds]
    if not settings:
        raise ValueError("settings must hold at least one setting (a dict)")
    configs = []
    for setting in settings:
        fixed = sorted(set(setting) - set(sac.SWEEPABLE))
        if fixed:
            raise ValueError(
                f"settings may change only {', '.join(sac.SWEEPABLE)} (traced "
                f"values); {', '.join(fixed)} change the compiled program: "
                f"run one sweep per value"
            )
        configs.append(config.replace(sac=config.sac.replace(**setting)))
    kwargs.setdefault("raise_on_non_finite", False)
    flat = _train_runs(
        config,
        [seed for _ in settings for seed in seeds],
        [c for c in configs for _ in seeds],
        swept=True,
        **kwargs,
    )
    return [flat[m * len(seeds) : (m + 1) * len(seeds)] for m in range(len(settings))]


def _train_runs(
    config: TrainConfig,
    seeds: list[int],
    run_configs: list[TrainConfig],
    *,
    swept: bool,
    eval_every: int = 1,
    target_return: float = SOLVED_RETURN,
    stop_when_solved: bool = False,
    callbacks: Iterable[Callback] = (),
    progress: bool = True,
    check_memory: bool = True,
    checkpoint_dirs: Sequence[str | Path] | None = None,
    checkpoint_every: int = 10,
    should_stop: Callable[[], bool] | None = None,
    mesh: jax.sharding.Mesh | None = None,
    raise_on_non_finite: bool = True,
) -> list[TrainResult]:
    """R runs as one program: :func:`train_seeds`, and :func:`sweep` when
    ``swept`` (then each run's SAC settings travel as traced Hyperparams)."""
    if not seeds:
        raise ValueError("seeds must name at least one seed")
    checks.integer("eval_every", eval_every, 1)
    if checkpoint_dirs is not None:
        checkpoint_dirs = [Path(d) for d in checkpoint_dirs]
        if len(checkpoint_dirs) != len(seeds) or len(set(checkpoint_dirs)) != len(
            seeds
        ):
            raise ValueError(
                f"checkpoint_dirs must name {len(seeds)} different folders, one per "
                f"run, got {len(checkpoint_dirs)}"
            )
    devices = loop.check_mesh(config, mesh)
    if check_memory:
        device.check_fits(config, runs=len(seeds), devices=devices)
    run_keys = jnp.stack([jax.random.key(seed) for seed in seeds])
    sac_configs = [c.sac for c in run_configs]
    state = loop.init_runs(config, list(run_keys), sac_configs=sac_configs, mesh=mesh)
    hyper = None
    if swept:  # the swept values, traced
        hyper = jax.tree.map(
            lambda *v: np.stack(v), *(sac.Hyperparams.of(c) for c in sac_configs)
        )
    driver = _Driver(
        config,
        seeds,
        run_configs,
        program=loop.chunk_program(mesh, batched=True),
        evaluation=evaluate.evaluate_runs,
        run_keys=run_keys,
        hyper=hyper,
        eval_every=eval_every,
        target_return=target_return,
        callbacks=list(callbacks),
        checkpoint_dirs=checkpoint_dirs,
        checkpoint_every=checkpoint_every,
        raise_on_non_finite=raise_on_non_finite,
        histories=[[] for _ in seeds],
    )
    return driver.run(state, progress, stop_when_solved, should_stop)


# ----------------------------------------------------------------------------
# The driver: one host loop for one run and for many
# ----------------------------------------------------------------------------


@dataclasses.dataclass
class _Driver:
    """Runs the compiled chunk until the end, a stop or a NaN, for R runs.

    With one run (:func:`train`) the state and the metrics have no run axis;
    with many (``run_keys`` of shape ``(R,)``) every leaf has a leading one.
    """

    config: TrainConfig  # the shared program's config
    seeds: list[int]
    run_configs: list[TrainConfig]  # each run's own (a sweep's settings)
    program: object  # loop.chunk_program(...)
    evaluation: object  # evaluate.evaluate_run, or evaluate_runs for many
    run_keys: jax.Array
    hyper: sac.Hyperparams | None
    eval_every: int
    target_return: float
    callbacks: list
    checkpoint_dirs: list[Path] | None
    checkpoint_every: int
    raise_on_non_finite: bool
    histories: list[list]

    @property
    def batched(self) -> bool:
        return self.run_keys.ndim == 1

    def _run(self, tree, i: int):
        """Run ``i``'s part of a tree with a run axis (all of it for one run)."""
        return jax.tree.map(lambda x: x[i], tree) if self.batched else tree

    def compile(self, state):
        """The chunk and the evaluation, compiled ahead of time, so that
        compile time is measured apart from run time. The chunk compiles on
        a second thread while this one lowers and compiles the evaluation
        (XLA releases the GIL): a cold start is mostly compiling."""
        config = self.config
        lowered = self.program.lower(state, config.loop, self.hyper)
        with ThreadPoolExecutor(max_workers=1) as pool:
            chunk_future = pool.submit(lowered.compile)
            params = state.sac.actor_params
            evaluation = self.evaluation.lower(
                params, self.run_keys, config.sac, config.env, config.eval_envs
            ).compile()
            return chunk_future.result(), evaluation

    def run(self, state, progress: bool, stop_when_solved: bool, should_stop):
        config, runs = self.config, len(self.seeds)
        if self.checkpoint_dirs is not None:
            checks.integer("checkpoint_every", self.checkpoint_every, 1)
        t0 = time.perf_counter()
        chunk_fn, eval_fn = self.compile(state)
        compile_seconds = time.perf_counter() - t0

        total = config.total_iterations
        done = int(np.max(jax.device_get(state.iteration)))
        # a resumed run: saved where it stopped, and maybe solved before
        saved_at = done if self.histories[0] else None
        solved_at = [
            next(
                (dict(h) for h in history if self._solved(h)),
                None,
            )
            for history in self.histories
        ]
        diverged: list[str | None] = [None] * runs
        elapsed = self.histories[0][-1]["wall_seconds"] if self.histories[0] else 0.0
        chunk = len(self.histories[0])
        interrupted = False
        bar = _progress_bar(config, runs, done) if progress else None
        try:
            while done < total:
                t_start = time.perf_counter()
                state, metrics = chunk_fn(state, self.hyper)
                metrics = jax.device_get(metrics)  # the host sync point
                chunk += 1
                first, done = done + 1, done + config.chunk_iterations
                self._check_finite(metrics, state, chunk, first, done, saved_at, diverged)
                returns = None
                if chunk % self.eval_every == 0 or done >= total:
                    params = state.sac.actor_params
                    returns = np.asarray(eval_fn(params, self.run_keys))
                    returns = returns.reshape(runs, -1)
                seconds = time.perf_counter() - t_start
                elapsed += seconds
                records = []
                for i in range(runs):
                    record = summarize_chunk(self._run(metrics, i), config)
                    if returns is not None:
                        record["eval_return"] = float(np.mean(returns[i]))
                    record.update(
                        chunk=chunk,
                        iterations=done,
                        env_steps=done * config.num_envs,
                        wall_seconds=elapsed,
                        # each run's own rate; all runs together made runs x this
                        env_steps_per_second=config.chunk_iterations
                        * config.num_envs
                        / seconds,
                    )
                    self.histories[i].append(record)
                    records.append(record)
                    if solved_at[i] is None and self._solved(record):
                        solved_at[i] = dict(record)
                if bar is not None:
                    _show(bar, records, solved_at)
                progress_now = Progress(records, self.histories, self.seeds, state)
                for callback in self.callbacks:
                    callback(progress_now)
                if self.checkpoint_dirs and chunk % self.checkpoint_every == 0:
                    self._save(state, done)
                    saved_at = done
                if stop_when_solved and all(s is not None for s in solved_at):
                    break
                if should_stop is not None and should_stop():
                    interrupted = True
                    break
            if self.checkpoint_dirs and saved_at != done:
                self._save(state, done)  # the end, unless the cadence just saved it
        finally:
            if bar is not None:
                bar.close()
        return [
            TrainResult(
                state=self._run_state(state, i),
                history=self.histories[i],
                config=self.run_configs[i],
                seed=self.seeds[i],
                compile_seconds=compile_seconds,
                solved_at=solved_at[i],
                interrupted=interrupted,
                diverged=diverged[i],
            )
            for i in range(runs)
        ]

    def _solved(self, record: dict) -> bool:
        return record.get("eval_return", -np.inf) >= self.target_return

    def _check_finite(self, metrics, state, chunk, first, last, saved_at, diverged):
        """Record (or raise, naming the seed) each run's first non-finite
        value: a run that diverged is left to itself; runs never mix."""
        sac_host = jax.device_get(state.sac)
        for i, seed in enumerate(self.seeds):
            if diverged[i] is not None:
                continue
            bad = first_non_finite(self._run(metrics, i), self._run(sac_host, i))
            if bad is None:
                continue
            diverged[i] = f"chunk {chunk}: {bad}"
            if self.raise_on_non_finite:
                where = ""
                if self.checkpoint_dirs:
                    where = "; last good checkpoint: " + (
                        f"step {saved_at}" if saved_at is not None else "none saved"
                    )
                raise NonFiniteError(
                    f"seed {seed} became non-finite in chunk {chunk} "
                    f"(iterations {first}-{last}): {bad}{where}"
                )

    def _run_state(self, state, i: int) -> TrainState:
        """Run ``i``'s state, with its own SAC config (a sweep's setting)."""
        if not self.batched:
            return state
        run = self._run(state, i)
        return run.replace(sac=run.sac.replace(config=self.run_configs[i].sac))

    def _save(self, state, done: int) -> None:
        for i, directory in enumerate(self.checkpoint_dirs):
            if checkpoint.latest_step(directory) == done:
                continue  # saved already (a resumed run that stopped at once)
            checkpoint.save(
                directory,
                self._run_state(state, i),
                config=self.run_configs[i],
                seed=self.seeds[i],
                history=self.histories[i],
            )


def _progress_bar(config: TrainConfig, runs: int, done: int):
    from tqdm.auto import tqdm

    return tqdm(
        total=config.total_iterations * config.num_envs * runs,
        initial=done * config.num_envs * runs,
        unit="step",
        unit_scale=True,
        desc="env steps" + (f" ({runs} runs)" if runs > 1 else ""),
        dynamic_ncols=True,
    )


def _show(bar, records: list[dict], solved_at: list) -> None:
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
