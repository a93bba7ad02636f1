"""The host runner: drive the compiled training chunk by chunk.

The device runs whole chunks (:mod:`sacbook.loop`); between them the host
keeps the runs honest and visible: a check that every number is still
finite, a record of the chunk per run, a deterministic evaluation
(:mod:`sacbook.evaluate`), a progress bar, callbacks, checkpoints at a fixed
cadence, and a clean stop when asked (Ctrl-C or SIGTERM in ``sacbook
train``).

One driver, :class:`sacbook.driver.Driver`, does all of that for :func:`train` (one run)
and :func:`train_runs` (many runs as one program: :func:`train_seeds` and
:func:`sweep`); they differ only in the state they build and the program
they compile.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import jax
import numpy as np

from sacbook import checks, device, driver, evaluate, host_random, loop, sac, sharding
from sacbook.config import TrainConfig
from sacbook.evaluate import SOLVED_RETURN
from sacbook.loop import TrainState
from sacbook.records import Progress, TrainResult

__all__ = ["sweep", "train", "train_runs", "train_seeds"]


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
      seed: PRNG seed of the run, in [0, 2**32 - 1] (does not trigger
        recompilation).
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
    seed = checks.seed("seed", seed)
    run_key = host_random.seed_key(seed)  # jax.random.key(seed), not compiled
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
    return driver.Driver(
        config,
        [seed],
        [config],
        program=loop.chunk_program(mesh),
        evaluation=evaluate.evaluate_run,
        run_keys=run_key,
        hyper=None,
        histories=[list(history or [])],
        checkpoint_dirs=None if checkpoint_dir is None else [Path(checkpoint_dir)],
        eval_every=eval_every,
        target_return=target_return,
        stop_when_solved=stop_when_solved,
        callbacks=callbacks,
        progress=progress,
        checkpoint_every=checkpoint_every,
        should_stop=should_stop,
    ).run(state)[0]


# ----------------------------------------------------------------------------
# Many runs as one program: seeds, and sweeps of the continuous hyperparameters
# ----------------------------------------------------------------------------


def train_runs(
    configs: Sequence[TrainConfig],
    seeds: Iterable[int],
    *,
    check_memory: bool = True,
    checkpoint_dirs: Sequence[str | Path] | None = None,
    mesh: jax.sharding.Mesh | None = None,
    over: str = "envs",
    **options,
) -> list[TrainResult]:
    """Train R runs, ``configs[r]`` with ``seeds[r]``, as one compiled program.

    The configs may differ only in :data:`sacbook.sac.SWEEPABLE` values;
    where they do, those travel as traced :class:`~sacbook.sac.Hyperparams`
    (a sweep), so every run shares one program. :func:`train_seeds` and
    :func:`sweep` are the usual ways in.

    The training state gets a leading run axis and the chunk is vmapped over
    it (:func:`sacbook.loop.chunk_program` with ``batched``); the evaluation
    of all runs is one vmapped call too. Run ``r`` is ``train(configs[r],
    seeds[r])`` computed side by side with the others, with its own PRNG
    stream. It is not the same bit for bit: batched matrix products round
    differently in the last bit, and a run can amplify that (measured on a
    CPU: 1e-7 relative after a chunk for most seeds, up to 2e-3 for some).

    Everything else is :func:`train`'s, per run, and so are ``options``
    (``eval_every``, ``target_return``, ``stop_when_solved``, ``callbacks``,
    ``progress``, ``checkpoint_every``, ``should_stop``): records,
    evaluation, callbacks (one :class:`~sacbook.records.Progress` with every
    run's record), and checkpoints, in ``checkpoint_dirs`` (one folder per
    run).
    The progress bar shows the median and the worst return and how many
    runs are solved. A run that produces a NaN or an infinity raises
    :class:`~sacbook.records.NonFiniteError` naming its seed; with
    ``raise_on_non_finite=False`` the others go on (runs never mix), and
    that run's result has ``diverged`` set. ``stop_when_solved`` stops once
    every run is solved. ``mesh``: each run is split over the mesh's devices
    as in :func:`train` (``over="envs"``), or the runs are spread over them,
    R/D whole runs per device and no communication (``over="runs"``, for
    many small runs; R must divide by D). Either layout gives each run the
    result it has on one device, up to the rounding of batched products.

    Returns one :class:`TrainResult` per run, in the order given.
    """
    configs = list(configs)
    if not all(isinstance(c, TrainConfig) for c in configs):
        kinds = sorted({type(c).__name__ for c in configs})
        raise ValueError(f"configs must be TrainConfigs, got {', '.join(kinds)}")
    seeds = [checks.seed("seeds", seed) for seed in seeds]
    if not seeds:
        raise ValueError("seeds must name at least one seed")
    if len(configs) != len(seeds):
        raise ValueError(
            f"configs must have one entry per seed ({len(seeds)}), got {len(configs)}"
        )
    config = _shared_program_config(configs)
    if isinstance(checkpoint_dirs, (str, Path)):  # not one folder per character
        raise ValueError("checkpoint_dirs must be a list of folders, one per run")
    if checkpoint_dirs is not None:
        checkpoint_dirs = [Path(d) for d in checkpoint_dirs]
        if len(set(checkpoint_dirs)) != len(seeds) or len(checkpoint_dirs) != len(
            seeds
        ):
            raise ValueError(
                f"checkpoint_dirs must name {len(seeds)} different folders, one per "
                f"run, got {len(checkpoint_dirs)}"
            )
    devices = loop.check_mesh(config, mesh, over=over, runs=len(seeds))
    if check_memory and over == "runs":  # each device holds R/D whole runs
        device.check_fits(config, runs=len(seeds) // devices)
    elif check_memory:
        device.check_fits(config, runs=len(seeds), devices=devices)
    keys = [host_random.seed_key(seed) for seed in seeds]  # jax.random.key(seed)
    run_keys = host_random.stack_keys(keys)  # nothing compiled
    sac_configs = [c.sac for c in configs]
    state = loop.init_runs(config, keys, sac_configs=sac_configs, mesh=mesh, over=over)
    hyper = None
    if any(c != config.sac for c in sac_configs):  # a sweep: the values, traced
        hyper = jax.tree.map(
            lambda *v: np.stack(v), *(sac.Hyperparams.of(c) for c in sac_configs)
        )
    if mesh is not None and over == "runs":  # beside the runs they belong to
        run_keys, hyper = sharding.put_runs((run_keys, hyper), mesh)
    return driver.Driver(
        config,
        seeds,
        configs,
        program=loop.chunk_program(mesh, batched=True, over=over),
        evaluation=(
            evaluate.evaluate_runs_over(mesh)
            if mesh is not None and over == "runs"
            else evaluate.evaluate_runs
        ),
        run_keys=run_keys,
        hyper=hyper,
        histories=[[] for _ in seeds],
        checkpoint_dirs=checkpoint_dirs,
        **options,
    ).run(state)


def _shared_program_config(configs: list[TrainConfig]) -> TrainConfig:
    """The config of the one program R runs share: the first run's, with the
    first run's SAC settings; a clear error if the runs differ in anything a
    program is compiled for (all but the sweepable values)."""
    if not configs:
        raise ValueError("configs must hold at least one TrainConfig")
    first = configs[0]
    for other in configs[1:]:
        fixed = [
            f.name
            for f in dataclasses.fields(first.sac)
            if f.name not in sac.SWEEPABLE
            and getattr(first.sac, f.name) != getattr(other.sac, f.name)
        ]
        if fixed or other.replace(sac=first.sac) != first:
            what = ", ".join(fixed) or "fields outside SACConfig's sweepable ones"
            raise ValueError(
                f"runs trained as one program may differ only in "
                f"{', '.join(sac.SWEEPABLE)}; these differ: {what}"
            )
    return first


def train_seeds(config: TrainConfig, seeds: Iterable[int], **options):
    """Train one run per seed, all together as one compiled program:
    :func:`train_runs` with ``config`` for every seed (``options`` are
    its). Returns one :class:`TrainResult` per seed, in the order given."""
    seeds = list(seeds)
    return train_runs([config] * len(seeds), seeds, **options)


def sweep(
    config: TrainConfig,
    settings: Iterable[dict],
    seeds: Iterable[int],
    **options,
) -> list[list[TrainResult]]:
    """Train every setting with every seed, M x S runs, as one program.

    Each setting is a dict of changes to ``config.sac`` among
    :data:`sacbook.sac.SWEEPABLE` (the learning rates, ``tau``, ``gamma``,
    ``init_alpha``): values that are traced in the compiled program, so the
    whole sweep compiles once. A change of shape (widths, batch size, K, N)
    needs a program of its own: run one sweep per value.

    ``options`` are :func:`train_runs`'s (``raise_on_non_finite`` defaults
    to False here: a sweep expects some settings to diverge;
    ``checkpoint_dirs`` has M x S folders, setting by setting).
    Returns ``results[m][s]``: setting ``m``, ``seeds[s]``, each with its
    own ``config``.
    """
    settings = [] if isinstance(settings, dict) else list(settings)
    if not settings or not all(isinstance(s, dict) for s in settings):
        raise ValueError(
            "settings must be a non-empty list of dicts, one per setting, e.g. "
            "[{'tau': 0.1}]"
        )
    settings, seeds = [dict(s) for s in settings], list(seeds)
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
    options.setdefault("raise_on_non_finite", False)
    flat = train_runs(
        [c for c in configs for _ in seeds],
        [seed for _ in settings for seed in seeds],
        **options,
    )
    return [flat[m * len(seeds) : (m + 1) * len(seeds)] for m in range(len(settings))]
