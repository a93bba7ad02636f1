"""Throughput and time-to-solve measurements (``sacbook bench``).

Three measurements, each a plain function returning dicts, so the CLI, the
notebooks and the tests share them:

* :func:`simulation_throughput`: env-steps/s of the full batched env step
  (random actions, auto-reset) for several N, as one jitted ``lax.scan``.
* :func:`training_throughput`: env-steps/s and updates/s of the fused loop.
* :func:`time_to_solve`: wall-clock from a cold start to a mean deterministic
  evaluation return >= -200, with compile time reported separately.

``--compare`` adds the references that are installed, timed in the same run:
gymnax's Pendulum-v1 and Gymnasium's vector env for simulation, rejax's SAC
for time-to-solve. Timings on a shared CPU spread by tens of percent; compare
ratios measured side by side, not absolute figures from different runs.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import math
import os
import platform
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from sacbook import pendulum, train
from sacbook.pendulum import PendulumParams

SIM_SIZES = (1, 16, 256, 1024, 16384, 131072)


def device_info() -> dict:
    """What the figures were measured on: device, versions, date."""
    device = jax.devices()[0]
    versions = {}
    for name in ("jax", "jaxlib", "flax", "optax", "sacbook"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return {
        "date": datetime.date.today().isoformat(),
        "platform": device.platform,
        "device": getattr(device, "device_kind", str(device)),
        "device_count": jax.device_count(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "versions": versions,
    }


def _best_of(fn, repeats: int) -> float:
    """Fastest of ``repeats`` timed calls of ``fn`` (which must block)."""
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


@partial(jax.jit, static_argnums=(2, 3))
def _simulate(state, key, steps: int, params: PendulumParams):
    """``steps`` env steps with uniform random torques, auto-reset included."""

    def body(carry, keys):
        state, total = carry
        torque = jax.random.uniform(keys[0], state.theta.shape, jnp.float32, -params.max_torque, params.max_torque)
        state, result = pendulum.env_step(state, torque, keys[1], params)
        return (state, total + result.reward), None

    # all keys in one call: (steps, 2) = an action key and an env key per step
    keys = jax.random.split(key, (steps, 2))
    (state, total), _ = jax.lax.scan(body, (state, jnp.zeros_like(state.theta)), keys)
    return state, total


def simulation_throughput(sizes=SIM_SIZES, *, params: PendulumParams | None = None,
                          min_env_steps: int = 2_000_000, max_steps: int = 2000, repeats: int = 3) -> list[dict]:
    """Env-steps/s of :func:`pendulum.env_step` with random actions, for each N.

    Runs ``steps`` = clip(min_env_steps / N, 200, max_steps) steps per timed
    call, compiled once per N beforehand; best of ``repeats``.
    """
    params = params or PendulumParams.gymnasium()
    rows = []
    for n in sizes:
        steps = int(min(max_steps, max(200, min_env_steps // n)))
        state = pendulum.reset_state(jax.random.key(0), n, params)
        key = jax.random.key(1)
        jax.block_until_ready(_simulate(state, key, steps, params))  # compile
        seconds = _best_of(lambda: jax.block_until_ready(_simulate(state, key, steps, params)), repeats)
        rows.append({"num_envs": n, "steps": steps, "seconds": seconds, "env_steps_per_second": n * steps / seconds})
    return rows


def training_throughput(config: train.TrainConfig | None = None, *, chunks: int = 3) -> dict:
    """Env-steps/s and updates/s of the fused loop, with updates running
    (warm-up finished), best of ``chunks`` timed chunks after compilation."""
    config = config or train.TrainConfig()
    config = config.replace(warmup_env_steps=0, learning_starts=config.sac.batch_size)
    state = train.init(config, jax.random.key(0))
    t0 = time.perf_counter()
    chunk = train.run_chunk_jit.lower(state, config).compile()
    compile_seconds = time.perf_counter() - t0
    state, _ = chunk(state)  # fills the buffer past learning_starts
    jax.block_until_ready(state)
    best = math.inf
    for _ in range(chunks):
        t0 = time.perf_counter()
        state, metrics = chunk(state)
        jax.block_until_ready(state)
        best = min(best, time.perf_counter() - t0)
    updates = int(np.sum(np.asarray(metrics["updated"]))) * config.updates_per_iteration
    env_steps = config.chunk_iterations * config.num_envs
    return {
        "num_envs": config.num_envs,
        "batch_size": config.sac.batch_size,
        "updates_per_iteration": config.updates_per_iteration,
        "compile_seconds": compile_seconds,
        "env_steps_per_second": env_steps / best,
        "updates_per_second": updates / best,
        "iterations_per_second": config.chunk_iterations / best,
    }


NAMED_CONFIGS = {"default": train.TrainConfig, "few_envs": train.TrainConfig.few_envs}


def run_isolated(function: str, **kwargs) -> dict | None:
    """Run ``bench.<function>(**kwargs)`` in a fresh Python process, so that
    nothing is compiled or cached yet: a true cold start. Adds
    ``process_seconds``, the wall-clock of the whole call including imports.
    Returns None if the function returned None (a reference not installed)."""
    import json
    import subprocess
    import sys

    code = ("import json, sys, time; t0 = time.perf_counter(); from sacbook import bench; "
            f"r = bench.{function}(**json.loads(sys.argv[1])); "
            "r is None or r.update(process_seconds=time.perf_counter() - t0); print('@@' + json.dumps(r))")
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(kwargs)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"bench.{function} failed in a subprocess:\n{proc.stderr[-2000:]}")
    line = next(l for l in proc.stdout.splitlines() if l.startswith("@@"))
    return json.loads(line[2:])


def time_to_solve(config: train.TrainConfig | str | None = None, *, seed: int = 0,
                  target_return: float = train.SOLVED_RETURN, final_eval_envs: int = 1024) -> dict:
    """Wall-clock from a cold start (init + compile + training) to the first
    evaluation (16 episodes) with mean return >= ``target_return``; the run
    then goes on to ``config.total_env_steps``. Both the policy that first
    reached the target (``solved_policy_return_many``) and the final one
    (``final_eval_return_many``) are also scored on ``final_eval_envs`` fresh
    episodes, since 16 episodes give a mean +-20.

    "Cold" means the first call in a process; later calls with the same
    config reuse JAX's in-memory compilation cache.
    """
    if isinstance(config, str):
        if config not in NAMED_CONFIGS:
            raise ValueError(f"unknown config {config!r}; choose one of {sorted(NAMED_CONFIGS)}")
        config = NAMED_CONFIGS[config]()
    config = config or train.TrainConfig()
    solved_policy = []

    def keep_solved_policy(record, state):  # a host copy: the state is donated to the next chunk
        if not solved_policy and record.get("eval_return", -np.inf) >= target_return:
            solved_policy.append(jax.tree.map(np.array, state.sac.actor_params))  # (jnp.copy would compile)

    t0 = time.perf_counter()
    result = train.train(config, seed, progress=False, target_return=target_return, callbacks=[keep_solved_policy])
    total = time.perf_counter() - t0
    solved = result.solved_at
    setup = total - result.history[-1]["wall_seconds"]  # init + compile + first dispatch
    # The 16 evaluation episodes give a mean +-20, so the policies are also
    # scored on many fresh starts: the one that first reached the target, and the final one.
    many_key = jax.random.key(seed + 1_000_003)
    final_returns = train.evaluate(result.state.sac.actor_params, many_key, config.sac, config.env, final_eval_envs)
    solved_returns = (train.evaluate(solved_policy[0], many_key, config.sac, config.env, final_eval_envs)
                      if solved_policy else None)
    return {
        "preset": "gymnasium" if config.env == PendulumParams.gymnasium() else "seed",
        "num_envs": config.num_envs,
        "batch_size": config.sac.batch_size,
        "updates_per_iteration": config.updates_per_iteration,
        "seed": seed,
        "compile_seconds": result.compile_seconds,
        "solved": solved is not None,
        "solve_env_steps": solved["env_steps"] if solved else None,
        "solve_seconds_after_compile": solved["wall_seconds"] if solved else None,
        "solve_seconds_total": (setup + solved["wall_seconds"]) if solved else None,
        "solved_policy_return_many": float(np.mean(np.asarray(solved_returns))) if solved else None,
        "final_eval_return": result.final_eval_return,
        "final_eval_return_many": float(np.mean(np.asarray(final_returns))),
        "final_eval_episodes": final_eval_envs,
        "total_env_steps": result.history[-1]["env_steps"],
        "total_seconds": total,
    }


# ----------------------------------------------------------------------------
# References, timed in the same run when installed.
# ----------------------------------------------------------------------------


def gymnax_simulation(num_envs: int = 1024, steps: int = 500, repeats: int = 3) -> dict | None:
    """gymnax Pendulum-v1: vmap over envs, scan over steps, random actions,
    gymnax's own auto-reset. None if gymnax is not installed."""
    try:
        import gymnax
    except ImportError:
        return None
    env, env_params = gymnax.make("Pendulum-v1")
    keys = jax.random.split(jax.random.key(0), num_envs)
    _, env_state = jax.vmap(env.reset, in_axes=(0, None))(keys, env_params)

    @jax.jit
    def run(env_state, key):
        def body(env_state, k):
            k_act, k_step = jax.random.split(k)
            actions = jax.random.uniform(k_act, (num_envs, 1), minval=-2.0, maxval=2.0)
            _, env_state, reward, _, _ = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
                jax.random.split(k_step, num_envs), env_state, actions, env_params)
            return env_state, reward

        return jax.lax.scan(body, env_state, jax.random.split(key, steps))

    key = jax.random.key(1)
    jax.block_until_ready(run(env_state, key))
    seconds = _best_of(lambda: jax.block_until_ready(run(env_state, key)), repeats)
    return {"name": "gymnax Pendulum-v1", "num_envs": num_envs, "env_steps_per_second": num_envs * steps / seconds,
            "version": importlib.metadata.version("gymnax")}


def gymnasium_simulation(num_envs: int = 1024, steps: int = 20, repeats: int = 2) -> dict | None:
    """Gymnasium's ``SyncVectorEnv`` of Pendulum-v1 with random actions
    (auto-reset included). None if gymnasium is not installed."""
    try:
        import gymnasium as gym
    except ImportError:
        return None
    envs = gym.make_vec("Pendulum-v1", num_envs=num_envs, vectorization_mode="sync")
    envs.reset(seed=0)
    rng = np.random.default_rng(0)
    actions = rng.uniform(-2, 2, (steps, num_envs, 1)).astype(np.float32)

    def run():
        for t in range(steps):
            envs.step(actions[t])

    run()
    seconds = _best_of(run, repeats)
    envs.close()
    return {"name": "Gymnasium SyncVectorEnv Pendulum-v1", "num_envs": num_envs,
            "env_steps_per_second": num_envs * steps / seconds, "version": importlib.metadata.version("gymnasium")}


def rejax_time_to_solve(seed: int = 0, target_return: float = train.SOLVED_RETURN) -> dict | None:
    """rejax's SAC with the Pendulum configuration from rejax's repository,
    timed from a cold start (compile included) for its whole 10k-step run,
    with the env step at which its evaluation first reached ``target_return``.
    None if rejax is not installed."""
    try:
        import rejax
    except ImportError:
        return None
    algo = rejax.SAC.create(
        env="Pendulum-v1", num_envs=1, buffer_size=10_000, fill_buffer=256, batch_size=256,
        learning_rate=0.01, num_epochs=1, total_timesteps=10_000, eval_freq=500, gamma=0.99, polyak=0.98,
        target_entropy_ratio=None, normalize_observations=True, agent_kwargs={"activation": "swish"},
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
    return {"name": "rejax SAC (repository Pendulum config)", "compile_seconds": compile_seconds,
            "total_seconds": total, "solve_env_steps": solve_steps,
            "solve_seconds_total": (compile_seconds + run_seconds * solve_steps / 10_000) if hit.size else None,
            "final_eval_return": float(mean_returns[-1]), "version": importlib.metadata.version("rejax")}
