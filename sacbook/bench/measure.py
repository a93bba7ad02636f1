"""sacbook's own measurements: simulation, training, seeds, devices, solving.

* :func:`simulation_throughput`: env-steps/s of the full batched env step
  (random actions, auto-reset) for several N, one compiled ``lax.scan``
  (:func:`sacbook_runner` is one N of it as a :class:`~.timing.Runner`).
* :func:`training_throughput`: env-steps/s and updates/s of the fused loop.
* :func:`seeds_throughput`: S seeds in one program against S runs in turn.
* :func:`sharded_throughput`: one run split over D devices, for several D.
* :func:`time_to_solve`: wall-clock from a cold start to a mean deterministic
  evaluation return >= -200, with compile time reported separately.
* :func:`check_sizes`: each N asked for fits in memory, checked before
  anything is measured (:func:`check_fits`).

Every program here compiles through :mod:`sacbook.jit`, as training does:
the training measurements time :func:`sacbook.loop.chunk_program` itself.
"""

from __future__ import annotations

import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from sacbook import checks, device, evaluate, jit, loop, pendulum, sharding, train
from sacbook.bench.recipes import recipe, with_num_envs
from sacbook.bench.timing import (
    MIN_WINDOW_SECONDS,
    Runner,
    calibrate,
    interleave,
    ratio_stats,
    timed,
)
from sacbook.config import TrainConfig
from sacbook.pendulum import PRESETS, PendulumParams
from sacbook.records import summarize_chunk

SIM_SIZES = (1, 16, 256, 1024, 16384, 131072)


# ----------------------------------------------------------------------------
# Simulation
# ----------------------------------------------------------------------------


@jit.program(static_argnums=(2, 3), fast_compile=False)  # runs long: see jit
def _simulate(state, key, steps: int, params: PendulumParams):
    """``steps`` env steps of N envs (``state``: N pendulums) with uniform
    random torques, auto-reset included. Returns the final state and each
    env's summed reward, shape ``(N,)``."""

    def body(carry, keys):
        state, total = carry
        torque = jax.random.uniform(
            keys[0],
            state.theta.shape,
            jnp.float32,
            -params.max_torque,
            params.max_torque,
        )
        state, result = pendulum.env_step(state, torque, keys[1], params)
        return (state, total + result.reward), None

    # all keys in one call: (steps, 2) = an action key and an env key per step
    keys = jax.random.split(key, (steps, 2))
    (state, total), _ = jax.lax.scan(body, (state, jnp.zeros_like(state.theta)), keys)
    return state, total


def _sim_steps(
    num_envs: int, min_env_steps: int = 2_000_000, max_steps: int = 2000
) -> int:
    """Steps per compiled call: clip(min_env_steps / N, 200, max_steps)."""
    return int(min(max_steps, max(200, min_env_steps // num_envs)))


def sacbook_runner(
    num_envs: int, *, params: PendulumParams | None = None, steps: int | None = None
) -> Runner:
    """:func:`_simulate` of ``num_envs`` pendulums as a :class:`Runner`: a
    unit is one compiled call of ``steps`` steps (compiled here; default
    :func:`_sim_steps`, as :func:`simulation_throughput` runs)."""
    params = params or PendulumParams.gymnasium()
    steps = steps or _sim_steps(num_envs)
    state = pendulum.reset_state(jax.random.key(0), num_envs, params)
    key = jax.random.key(1)

    def run(count: int):
        for _ in range(count):
            jax.block_until_ready(_simulate(state, key, steps, params))

    run(1)  # compile
    return Runner("sacbook", run, num_envs * steps, num_envs)


# A simulation holds about this many copies of its environments at once: the
# state into and out of a step, the observations, the random draws.
SIMULATION_COPIES = 4


def check_fits(num_envs: int, *, training: bool, name: str) -> None:
    """Raise ValueError, one line starting with ``name`` (e.g. the option
    that asked), unless ``num_envs`` environments fit this device's memory:
    trained with the default recipe (:func:`sacbook.device.check_fits`), or
    simulated (:data:`SIMULATION_COPIES` of the environments' share of that
    estimate)."""
    # int32 indices: training keeps a buffer of 2N rows, and room for N more
    limit = checks.INT32_MAX // (3 if training else 1)
    if num_envs > limit:
        raise ValueError(f"{name}: at most {limit} environments")
    if training:
        try:
            device.check_fits(with_num_envs(num_envs))
        except device.RunTooLargeError as e:
            names = {"num_envs": name.split()[0]}
            raise ValueError(f"{name}: {e.describe(names, 'the run')}") from None
        return
    per_env = device.estimate_train_bytes(with_num_envs(1024))["environments"] / 1024
    need = SIMULATION_COPIES * per_env * num_envs
    available, source = device.available_bytes()
    if available is not None and need > device.SAFETY_FRACTION * available:
        raise ValueError(
            f"{name}: simulating them needs about {device.format_bytes(need)} but "
            f"the device has {device.format_bytes(available)} available ({source}) "
            f"and may use {device.SAFETY_FRACTION:.0%} of it"
        )


def check_sizes(simulation=None, training=None) -> None:
    """:func:`check_fits` for ``sacbook bench``'s ``--sizes`` (simulation)
    and ``--train-sizes`` (training): one line naming the option and size."""
    for option, sizes, trains in (
        ("--sizes", simulation, False),
        ("--train-sizes", training, True),
    ):
        for n in sizes or ():
            check_fits(n, training=trains, name=f"{option} {n}")


def simulation_throughput(
    sizes=SIM_SIZES,
    *,
    params: PendulumParams | None = None,
    min_env_steps: int = 2_000_000,
    max_steps: int = 2000,
    repeats: int = 3,
    min_seconds: float = MIN_WINDOW_SECONDS,
) -> list[dict]:
    """Env-steps/s of :func:`pendulum.env_step` with random actions, for each N.

    A compiled call runs ``steps`` = clip(min_env_steps / N, 200, max_steps)
    steps, compiled once per N beforehand; a timed window repeats it
    ``calls`` times, enough for the window to last ``min_seconds`` (see
    :func:`calibrate` and :func:`timed`; 0 times single calls). The fastest
    of ``repeats`` windows.
    """
    rows = []
    for n in sizes:
        steps = _sim_steps(n, min_env_steps, max_steps)
        runner = sacbook_runner(n, params=params, steps=steps)
        count = calibrate(runner.run, min_seconds=min_seconds) if min_seconds > 0 else 1
        calls, seconds = max(
            (timed(runner.run, count, min_seconds=min_seconds) for _ in range(repeats)),
            key=lambda w: w[0] / w[1],
        )
        rows.append(
            {
                "num_envs": n,
                "steps": steps,
                "calls": calls,
                "seconds": seconds,
                "env_steps_per_second": n * steps * calls / seconds,
            }
        )
    return rows


# ----------------------------------------------------------------------------
# Training: the compiled chunk of sacbook.loop, with updates running
# ----------------------------------------------------------------------------


def _updating(config: TrainConfig | None) -> TrainConfig:
    """``config`` (default: the default recipe) with warm-up off and
    updates from the first batch, so that every timed chunk updates."""
    config = config or TrainConfig()
    return config.replace(warmup_env_steps=0, learning_starts=config.sac.batch_size)


class _Chunks:
    """``program`` compiled for ``state`` and ``config`` (timed:
    ``compile_seconds``), then ``run(count)``: ``count`` chunks one after
    another, blocking at the end; ``metrics`` holds the last chunk's."""

    def __init__(self, program: jit.Program, state, config: TrainConfig):
        t0 = time.perf_counter()
        self.chunk = program.lower(state, config.loop).compile()
        self.compile_seconds = time.perf_counter() - t0
        self.state, self.metrics = state, None

    def run(self, count: int) -> None:
        for _ in range(count):
            self.state, self.metrics = self.chunk(self.state)  # state donated
        jax.block_until_ready(self.state)


def _interleaved_rates(runs, env_steps: list[int], pairs: int, min_seconds: float):
    """Windows of each ``runs[i]`` (each called once already, so that its
    buffer holds ``learning_starts``) timed in turn, ``pairs`` rounds.
    Returns each run's env-steps/s per round, ``env_steps[i]`` a unit."""
    counts = [calibrate(run, min_seconds=min_seconds) for run in runs]
    windows = interleave(
        [
            lambda run=run, count=count: timed(run, count, min_seconds=min_seconds)
            for run, count in zip(runs, counts)
        ],
        pairs,
    )
    return [[steps * c / t for c, t in w] for steps, w in zip(env_steps, windows)]


def training_throughput(
    config: TrainConfig | None = None, *, chunks: int = 3, seed: int = 0
) -> dict:
    """Env-steps/s and updates/s of the fused loop, with updates running
    (warm-up off, learning from the first batch), best of ``chunks`` timed
    chunks after compilation and one untimed chunk. The chunk is the same
    compiled program :func:`sacbook.train.train` runs, so ``last_chunk``
    (the last chunk's summary) is what training with this config and seed
    records."""
    config = _updating(config)
    state = loop.init(config, jax.random.key(seed))
    chunks_run = _Chunks(loop.chunk_program(), state, config)
    chunks_run.run(1)  # fills the buffer past learning_starts
    best = math.inf
    for _ in range(chunks):
        t0 = time.perf_counter()
        chunks_run.run(1)
        best = min(best, time.perf_counter() - t0)
    metrics = chunks_run.metrics
    updates = int(np.sum(np.asarray(metrics["updated"]))) * config.updates_per_iteration
    env_steps = config.chunk_iterations * config.num_envs
    return {
        "num_envs": config.num_envs,
        "batch_size": config.sac.batch_size,
        "updates_per_iteration": config.updates_per_iteration,
        "compile_seconds": chunks_run.compile_seconds,
        "env_steps_per_second": env_steps / best,
        "updates_per_second": updates / best,
        "iterations_per_second": config.chunk_iterations / best,
        "last_chunk": summarize_chunk(metrics, config),
    }


def seeds_throughput(
    config: TrainConfig | None = None,
    *,
    seeds: int = 8,
    pairs: int = 3,
    min_seconds: float = MIN_WINDOW_SECONDS,
) -> dict:
    """S seeds in one program against S runs one after another, side by side.

    Times, in turn, windows of chunks of the batched program (S seeds,
    vmapped) and windows of chunks of the single-run program, with updates
    running. The single run's time is multiplied by S (S runs one after
    another each run the same chunks). Returns both rates in env-steps/s of
    all seeds together and the ratio per pair (> 1: one program is faster).
    """
    config = _updating(config)
    keys = [jax.random.key(seed) for seed in range(seeds)]
    batched = _Chunks(
        loop.chunk_program(batched=True), loop.init_runs(config, keys), config
    )
    single = _Chunks(loop.chunk_program(), loop.init(config, keys[0]), config)
    batched.run(1)  # fills the buffers past learning_starts
    single.run(1)
    steps = config.chunk_iterations * config.num_envs
    # S runs in turn run S times the single run's steps in S times its time
    batched_rates, single_rates = _interleaved_rates(
        [batched.run, single.run], [seeds * steps, steps], pairs, min_seconds
    )
    return {
        "seeds": seeds,
        "num_envs": config.num_envs,
        "compile_seconds": {
            "one_program": batched.compile_seconds,
            "one_run": single.compile_seconds,
        },
        "one_program_env_steps_per_second": max(batched_rates),
        "one_after_another_env_steps_per_second": max(single_rates),
        "ratio": ratio_stats(
            [b / s for b, s in zip(batched_rates, single_rates)],
            "env-steps/s of S seeds in one program / of S runs one after "
            "another, per interleaved pair of windows",
        ),
    }


def sharded_throughput(
    config: TrainConfig | None = None,
    *,
    device_counts=(1, 2, 4),
    pairs: int = 3,
    min_seconds: float = MIN_WINDOW_SECONDS,
) -> dict:
    """Training throughput of one run split over D devices, for each D in
    ``device_counts`` (those this machine has), timed in turn.

    Returns env-steps/s per D and, per round, each D's rate over D = 1's.
    On virtual CPU devices (``--xla_force_host_platform_device_count``; see
    :func:`sacbook.bench.sharded_throughput_virtual`) the devices share the
    same cores, so this measures the cost of the communication, not a
    speed-up.
    """
    config = _updating(config)
    counts = [d for d in device_counts if d <= jax.device_count()]
    runs = []
    for d in counts:
        mesh = sharding.make_mesh(d)
        state = loop.init(config, jax.random.key(0), mesh=mesh)
        runs.append(_Chunks(loop.chunk_program(mesh), state, config))
        runs[-1].run(1)
    steps = config.chunk_iterations * config.num_envs
    rates = _interleaved_rates(
        [r.run for r in runs], [steps] * len(runs), pairs, min_seconds
    )
    return {
        "platform": jax.devices()[0].platform,
        "virtual_devices": "xla_force_host_platform_device_count"
        in os.environ.get("XLA_FLAGS", ""),
        "num_envs": config.num_envs,
        "device_counts": counts,
        # str(d): JSON keys
        "compile_seconds": {str(d): r.compile_seconds for d, r in zip(counts, runs)},
        "env_steps_per_second": {str(d): max(r) for d, r in zip(counts, rates)},
        "speedup": {
            str(d): ratio_stats(
                [x / one for x, one in zip(r, rates[0])],
                f"env-steps/s on {d} devices / on 1, per round",
            )
            for d, r in zip(counts, rates)
        },
    }


# ----------------------------------------------------------------------------
# Time to solve, from a cold start
# ----------------------------------------------------------------------------


def preset_name(env: PendulumParams) -> str:
    """The name of the preset ``env`` is (:data:`sacbook.pendulum.PRESETS`),
    or ``"custom"``."""
    return next((p for p in PRESETS if env == PendulumParams.preset(p)), "custom")


def time_to_solve(
    config: TrainConfig | str | None = None,
    *,
    seed: int = 0,
    target_return: float = evaluate.SOLVED_RETURN,
    final_eval_envs: int = evaluate.FRESH_EPISODES,
    cache_dir: str | None = None,
) -> dict:
    """Wall-clock from a cold start (init + compile + training) to the first
    evaluation (``config.eval_envs`` episodes) with mean return >=
    ``target_return``; the run then goes on to ``config.total_env_steps``.
    ``config``: a :class:`~sacbook.config.TrainConfig` or a recipe spec
    (:func:`sacbook.bench.recipe`). Both the policy that first reached the
    target (``solved_policy_return_many``) and the final one
    (``final_eval_return_many``) are also scored on ``final_eval_envs``
    fresh episodes (:func:`sacbook.evaluate.fresh_start_return`), a closer
    estimate than the evaluation's.

    "Cold" means the first call in a process; later calls with the same
    config reuse JAX's in-memory compilation cache. ``cache_dir``: keep the
    compiled programs there and look for them there first
    (:func:`sacbook.jit.keep_compiled_programs`, as ``sacbook train`` does):
    the second call in a fresh process with the same folder is a warm start.
    """
    if cache_dir is not None:
        jit.keep_compiled_programs(cache_dir)
    name = config if isinstance(config, str) else None
    if isinstance(config, str):
        config = recipe(config)
    config = config or TrainConfig()
    solved_policy = []

    def keep_solved_policy(progress: train.Progress) -> None:
        # a host copy (jnp.copy would compile): the state is donated to the
        # next chunk
        reached = progress.record.get("eval_return", -np.inf) >= target_return
        if not solved_policy and reached:
            solved_policy.append(
                jax.tree.map(np.array, progress.state.sac.actor_params)
            )

    t0 = time.perf_counter()
    result = train.train(
        config,
        seed,
        progress=False,
        target_return=target_return,
        callbacks=[keep_solved_policy],
    )
    total = time.perf_counter() - t0
    solved = result.solved_at
    setup = total - result.history[-1]["wall_seconds"]  # init + compile + dispatch
    final_return = evaluate.fresh_start_return(
        result.state.sac.actor_params, config, seed, final_eval_envs
    )
    solved_return = (
        evaluate.fresh_start_return(solved_policy[0], config, seed, final_eval_envs)
        if solved_policy
        else None
    )
    return {
        "recipe": name,
        "preset": preset_name(config.env),
        "num_envs": config.num_envs,
        "batch_size": config.sac.batch_size,
        "updates_per_iteration": config.updates_per_iteration,
        "tau": config.sac.tau,
        "seed": seed,
        "compile_seconds": result.compile_seconds,
        "solved": solved is not None,
        "solve_env_steps": solved["env_steps"] if solved else None,
        "solve_seconds_after_compile": solved["wall_seconds"] if solved else None,
        "solve_seconds_total": (setup + solved["wall_seconds"]) if solved else None,
        "solved_policy_return_many": solved_return if solved else None,
        "final_eval_return": result.final_eval_return,
        "final_eval_return_many": final_return,
        "final_eval_episodes": final_eval_envs,
        "total_env_steps": result.history[-1]["env_steps"],
        "total_seconds": total,
    }
