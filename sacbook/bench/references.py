"""The references, timed in the same run when they are installed.

gymnax's Pendulum-v1 and Gymnasium's vector env for simulation
(:data:`REFERENCE_RUNNERS`, each a :class:`~.timing.Runner` timed in turn
with sacbook's by :func:`compare_simulation`), and rejax's SAC for
time-to-solve (:func:`rejax_time_to_solve`). They are other projects'
programs: they compile with their own ``jax.jit``, not :mod:`sacbook.jit`.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import time

import jax
import numpy as np

from sacbook.bench.measure import sacbook_runner
from sacbook.bench.timing import (
    MIN_WINDOW_SECONDS,
    Runner,
    compare_throughput,
    ratio_stats,
)
from sacbook.evaluate import SOLVED_RETURN


def installed(module: str) -> bool:
    """Whether ``module`` (a reference such as ``"rejax"``) can be imported."""
    return importlib.util.find_spec(module) is not None


def gymnax_runner(num_envs: int = 1024, steps: int = 500) -> Runner | None:
    """gymnax Pendulum-v1 as a :class:`Runner` (compiled here): vmap over
    envs, scan over ``steps`` steps a call, random actions, gymnax's own
    auto-reset. None if gymnax is not installed."""
    try:
        import gymnax
    except ImportError:
        return None
    env, env_params = gymnax.make("Pendulum-v1")
    keys = jax.random.split(jax.random.key(0), num_envs)
    _, env_state = jax.vmap(env.reset, in_axes=(0, None))(keys, env_params)

    @jax.jit
    def scan(env_state, key):
        def body(env_state, k):
            k_act, k_step = jax.random.split(k)
            actions = jax.random.uniform(k_act, (num_envs, 1), minval=-2.0, maxval=2.0)
            _, env_state, reward, _, _ = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
                jax.random.split(k_step, num_envs), env_state, actions, env_params
            )
            return env_state, reward

        return jax.lax.scan(body, env_state, jax.random.split(key, steps))

    key = jax.random.key(1)

    def run(count: int):
        for _ in range(count):
            jax.block_until_ready(scan(env_state, key))

    run(1)  # compile
    return Runner(
        "gymnax Pendulum-v1",
        run,
        num_envs * steps,
        num_envs,
        importlib.metadata.version("gymnax"),
    )


def gymnasium_runner(num_envs: int = 1024) -> Runner | None:
    """Gymnasium's ``SyncVectorEnv`` of Pendulum-v1 as a :class:`Runner`: a
    unit is one step of all envs, random actions, auto-reset included. None
    if gymnasium is not installed."""
    try:
        import gymnasium as gym
    except ImportError:
        return None
    envs = gym.make_vec("Pendulum-v1", num_envs=num_envs, vectorization_mode="sync")
    envs.reset(seed=0)
    actions = (
        np.random.default_rng(0).uniform(-2, 2, (64, num_envs, 1)).astype(np.float32)
    )
    step = [0]

    def run(count: int):
        for _ in range(count):
            envs.step(actions[step[0] % len(actions)])
            step[0] += 1

    run(1)
    return Runner(
        "Gymnasium SyncVectorEnv Pendulum-v1",
        run,
        num_envs,
        num_envs,
        importlib.metadata.version("gymnasium"),
    )


REFERENCE_RUNNERS = {"gymnax": gymnax_runner, "gymnasium": gymnasium_runner}


def compare_simulation(
    reference: str,
    num_envs: int = 1024,
    *,
    pairs: int = 7,
    min_seconds: float = MIN_WINDOW_SECONDS,
    ours: Runner | None = None,
) -> dict | None:
    """sacbook's simulation against ``reference`` (a key of
    :data:`REFERENCE_RUNNERS`) at ``num_envs``, timed interleaved by
    :func:`compare_throughput`. ``ours`` reuses a :func:`sacbook_runner`.
    None if the reference is not installed."""
    runner = REFERENCE_RUNNERS[reference](num_envs)
    if runner is None:
        return None
    return compare_throughput(
        ours or sacbook_runner(num_envs), runner, pairs=pairs, min_seconds=min_seconds
    )


def rejax_time_to_solve(
    seed: int = 0, target_return: float = SOLVED_RETURN
) -> dict | None:
    """rejax's SAC with the Pendulum configuration from rejax's repository,
    timed from a cold start (compile included) for its whole 10k-step run,
    with the env step at which its evaluation first reached ``target_return``.
    None if rejax is not installed."""
    try:
        import rejax
    except ImportError:
        return None
    algo = rejax.SAC.create(
        env="Pendulum-v1",
        num_envs=1,
        buffer_size=10_000,
        fill_buffer=256,
        batch_size=256,
        learning_rate=0.01,
        num_epochs=1,
        total_timesteps=10_000,
        eval_freq=500,
        gamma=0.99,
        polyak=0.98,
        target_entropy_ratio=None,
        normalize_observations=True,
        agent_kwargs={"activation": "swish"},
    )
    t0 = time.perf_counter()
    train_fn = jax.jit(algo.train).lower(jax.random.key(seed)).compile()
    compile_seconds = time.perf_counter() - t0
    _, (lengths, returns) = jax.block_until_ready(train_fn(jax.random.key(seed)))
    total = time.perf_counter() - t0
    mean_returns = np.asarray(returns).mean(axis=-1)
    steps = np.arange(len(mean_returns)) * 500
    hit = np.nonzero(mean_returns >= target_return)[0]
    solve_steps = int(steps[hit[0]]) if hit.size else None
    # rejax runs its 10k steps as one call, so the time to reach the return is
    # estimated as compile + the same fraction of the run time
    run_seconds = total - compile_seconds
    return {
        "name": "rejax SAC (repository Pendulum config)",
        "compile_seconds": compile_seconds,
        "total_seconds": total,
        "solve_env_steps": solve_steps,
        "solve_seconds_total": (compile_seconds + run_seconds * solve_steps / 10_000)
        if hit.size
        else None,
        "final_eval_return": float(mean_returns[-1]),
        "version": importlib.metadata.version("rejax"),
    }


def rejax_ratios(ours: dict[str, list], rejax: list) -> dict[str, dict | None]:
    """For each recipe, ``ours[recipe]`` (its :func:`~.measure.time_to_solve`
    runs) against ``rejax`` (:func:`rejax_time_to_solve` runs), run in turn:
    :func:`~.timing.ratio_stats` of rejax's ``solve_seconds_total`` / ours,
    per pair (> 1: sacbook is faster), with the recipe under ``"recipe"``;
    pairs where either did not solve are left out (None if none is left)."""
    out = {}
    for name, runs in ours.items():
        stats = ratio_stats(
            [
                r["solve_seconds_total"] / o["solve_seconds_total"]
                if r["solve_seconds_total"] and o["solve_seconds_total"]
                else None
                for o, r in zip(runs, rejax)
            ],
            "rejax solve_seconds_total / sacbook solve_seconds_total, "
            "per interleaved pair of runs",
        )
        if stats:
            stats["recipe"] = name
        out[name] = stats
    return out
