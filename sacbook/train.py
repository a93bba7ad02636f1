"""The fused training loop: act, step, store, update, all inside one jit.

One *iteration* does, for all N environments at once:

1. the shared policy acts (random actions during warm-up);
2. the batched environment steps, auto-resetting at the time limit;
3. the replay buffer takes the N transitions;
4. K gradient updates run in an inner ``lax.scan`` (every ``update_every``
   iterations, once the buffer holds ``learning_starts`` transitions).

:func:`run_chunk` runs ``chunk_iterations`` iterations in a ``lax.scan``, as one
compiled call with the training state donated. The host only sees the device
between chunks (:func:`train`): progress bar, metrics history, evaluation,
callbacks.
"""

from __future__ import annotations

import dataclasses
import math
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from sacbook import host_random, networks, pendulum, replay, sac
from sacbook.pendulum import PendulumParams
from sacbook.sac import SACConfig

SOLVED_RETURN = -200.0  # Pendulum-v1 counts as solved at a mean return of -200


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that shapes the compiled training program. Frozen, hashable,
    validated here; a static argument of ``jit``. (The seed is not in it, so a
    new seed does not recompile.)

    Attributes:
      env: pendulum parameters (a preset).
      sac: SAC hyperparameters.
      num_envs: N environments stepped in parallel, >= 1.
      total_env_steps: training length in environment steps (all envs), >= 1.
      buffer_capacity: replay capacity in transitions, >= max(num_envs, batch size).
      warmup_env_steps: uniform random actions until this many env steps, >= 0.
      learning_starts: no updates until the buffer holds this many transitions;
        at least the batch size.
      updates_per_iteration: K gradient updates per update round, >= 1.
      update_every: iterations between update rounds, >= 1. ``K / update_every``
        is the number of updates per iteration, so ratios below one are
        ``updates_per_iteration=1, update_every=4`` and the like.
      chunk_iterations: iterations per compiled chunk, >= 1.
      eval_envs: environments in each deterministic evaluation, >= 1.
    """

    # Defaults: the massively parallel recipe, chosen by the study in Chapter 4
    # (time-to-solve on a 2-core CPU): 1024 envs, 16 updates of 96 per iteration,
    # tau 0.03 (K * tau <= 0.5 kept every seed stable). Seeds 0-9 solved the
    # gymnasium preset in 100-140 iterations.
    env: PendulumParams = PendulumParams.gymnasium()
    sac: SACConfig = SACConfig(batch_size=96, tau=0.03)
    num_envs: int = 1024
    total_env_steps: int = 300 * 1024
    buffer_capacity: int = 1_000_000
    warmup_env_steps: int = 1024
    learning_starts: int = 1024
    updates_per_iteration: int = 16
    update_every: int = 1
    chunk_iterations: int = 20
    eval_envs: int = 16

    def __post_init__(self):
        if not isinstance(self.env, PendulumParams):
            raise ValueError(f"TrainConfig.env must be a PendulumParams, got {type(self.env).__name__}")
        if not isinstance(self.sac, SACConfig):
            raise ValueError(f"TrainConfig.sac must be a SACConfig, got {type(self.sac).__name__}")
        for name, low in (("num_envs", 1), ("total_env_steps", 1), ("buffer_capacity", 1),
                          ("warmup_env_steps", 0), ("learning_starts", 0), ("updates_per_iteration", 1),
                          ("update_every", 1), ("chunk_iterations", 1), ("eval_envs", 1)):
            v = getattr(self, name)
            if not _is_int(v) or v < low:
                raise ValueError(f"TrainConfig.{name} must be an integer >= {low}, got {v!r}")
        if self.buffer_capacity < self.num_envs:
            raise ValueError(f"TrainConfig.buffer_capacity ({self.buffer_capacity}) must be >= num_envs ({self.num_envs})")
        if self.sac.batch_size > self.buffer_capacity:
            raise ValueError(f"SACConfig.batch_size ({self.sac.batch_size}) must be <= buffer_capacity ({self.buffer_capacity})")
        if self.sac.obs_dim != 3 or self.sac.action_dim != 1:
            raise ValueError("SACConfig.obs_dim and action_dim must be 3 and 1 for the pendulum")

    @classmethod
    def few_envs(cls, **overrides) -> "TrainConfig":
        """Chapter 3's setting: 4 envs, one update per iteration (one update
        per 4 env steps), 20k env steps. Reaches -200 in 6k-13k env steps (seeds 0-2)."""
        return cls(**{**dict(sac=SACConfig(), num_envs=4, total_env_steps=20_000, buffer_capacity=100_000,
                             warmup_env_steps=1_000, learning_starts=1_000, updates_per_iteration=1,
                             update_every=1, chunk_iterations=250), **overrides})

    @property
    def total_iterations(self) -> int:
        """Iterations needed for ``total_env_steps``, rounded up to whole chunks."""
        iterations = math.ceil(self.total_env_steps / self.num_envs)
        return math.ceil(iterations / self.chunk_iterations) * self.chunk_iterations

    @property
    def updates_per_env_step(self) -> float:
        return self.updates_per_iteration / (self.update_every * self.num_envs)

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)


@struct.dataclass
class TrainState:
    """The whole state of a training run, one pytree (checkpoint this).

    Attributes:
      sac: networks, optimizers, temperature.
      buffer: the replay buffer.
      env: the N environments; ``obs`` ``(N, 3)`` their current observations.
      key: the PRNG key for everything that follows.
      iteration: iterations done so far (int32 scalar).
    """

    sac: sac.SACState
    buffer: replay.ReplayBuffer
    env: pendulum.EnvState
    obs: jax.Array
    key: jax.Array
    iteration: jax.Array


def program_config(config: TrainConfig) -> TrainConfig:
    """``config`` without what only the host loop reads (the run's length).

    Compiled programs take this as their static argument, so a longer run or
    a resumed one reuses them instead of compiling again.
    """
    return config.replace(total_env_steps=1)


def init(config: TrainConfig, key: jax.Array) -> TrainState:
    """A fresh run: new networks, an empty buffer, N freshly reset envs.

    Built on the host with NumPy and moved to the device in one transfer:
    nothing is compiled, so a cold start pays only for the training program
    (see :mod:`sacbook.host_random`). ``key`` must be concrete.
    """
    return jax.device_put(_init_host(config, key))


def abstract_state(config: TrainConfig) -> TrainState:
    """The shapes and dtypes of a :class:`TrainState` for ``config``
    (``jax.ShapeDtypeStruct`` leaves), built on the host without allocating
    the state on the device. For restoring checkpoints and compiling ahead of time."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype), _init_host(config, jax.random.key(0)))


def _init_host(config: TrainConfig, key: jax.Array) -> TrainState:
    """:func:`init` as NumPy arrays (the run key is already a JAX key)."""
    rng = host_random.generator(key, "train")
    sac_state = sac.init_host(host_random.generator(key, "sac"), config.sac)
    env_state, obs = pendulum.reset_host(rng, config.num_envs, config.env)
    example = replay.Transition(
        obs=np.zeros(3, np.float32),
        action=np.zeros(1, np.float32),
        reward=np.float32(0),
        next_obs=np.zeros(3, np.float32),
        terminated=np.bool_(False),
        truncated=np.bool_(False),
    )
    return TrainState(
        sac=sac_state,
        buffer=replay.init(config.buffer_capacity, example, on_host=True),
        env=env_state,
        obs=obs,
        key=host_random.new_key(rng, like=key),
        iteration=np.int32(0),
    )


def _update_round(sac_state, buffer, key, config: TrainConfig):
    """K gradient updates on fresh batches, in a ``lax.scan``. Returns the
    new SAC state and the metrics averaged over the K updates."""

    def one_update(state, k):
        k_batch, k_update = jax.random.split(k)
        batch = replay.sample(buffer, k_batch, config.sac.batch_size)
        return sac.update(state, batch, k_update)

    keys = jax.random.split(key, config.updates_per_iteration)
    sac_state, metrics = jax.lax.scan(one_update, sac_state, keys)
    return sac_state, jax.tree.map(jnp.mean, metrics)


def _always_updates(config: TrainConfig) -> bool:
    """True when every iteration updates: one round per iteration, and the
    first iteration's N transitions already start learning. The iteration then
    calls the update round directly; a ``lax.cond`` whose predicate is always
    true would only cost copies of the SAC state (about 5% of a chunk on CPU)."""
    return config.update_every == 1 and max(config.learning_starts, config.sac.batch_size) <= config.num_envs


def _iteration(state: TrainState, _, config: TrainConfig):
    """One iteration for all N envs; returns the new state and its metrics."""
    n = config.num_envs
    key, k_act, k_env, k_update = jax.random.split(state.key, 4)
    warming_up = state.iteration * n < config.warmup_env_steps

    def random_action(k):
        return jax.random.uniform(k, (n, 1), jnp.float32, -1.0, 1.0)

    def policy_action(k):
        mean, log_std = config.sac.actor().apply(state.sac.actor_params, state.obs)
        return networks.sample_action(k, mean, log_std)[0]

    action = jax.lax.cond(warming_up, random_action, policy_action, k_act)
    torque = networks.scale_action(action[:, 0], config.env.max_torque)
    env_state, result = pendulum.env_step(state.env, torque, k_env, config.env)
    buffer = replay.add(
        state.buffer,
        replay.Transition(
            obs=state.obs,
            action=action,
            reward=result.reward,
            next_obs=result.final_obs,  # the true next observation, even at a time limit
            terminated=result.terminated,
            truncated=result.truncated,
        ),
    )

    should_update = (buffer.size >= max(config.learning_starts, config.sac.batch_size)) & (
        state.iteration % config.update_every == 0
    )

    def skip(sac_state, buffer, key):
        return sac_state, {name: jnp.float32(0) for name in sac.METRIC_NAMES}

    if _always_updates(config):
        sac_state, metrics = _update_round(state.sac, buffer, k_update, config)
    else:
        sac_state, metrics = jax.lax.cond(
            should_update, partial(_update_round, config=config), skip, state.sac, buffer, k_update
        )
    done = result.terminated | result.truncated
    metrics = {
        **metrics,
        "updated": should_update,
        "episodes_done": jnp.sum(done),
        "episode_return_sum": jnp.sum(jnp.where(done, result.episode_return, 0.0)),
        "reward_mean": jnp.mean(result.reward),
    }
    new_state = TrainState(sac=sac_state, buffer=buffer, env=env_state, obs=result.obs, key=key,
                           iteration=state.iteration + 1)
    return new_state, metrics


def run_chunk(state: TrainState, config: TrainConfig):
    """``config.chunk_iterations`` iterations in one ``lax.scan``.

    Returns ``(state, metrics)``, each metric of shape ``(chunk_iterations,)``.
    Use :data:`run_chunk_jit`, which is compiled once per config and donates
    ``state`` (the old one must not be used again).
    """
    return jax.lax.scan(partial(_iteration, config=config), state, None, length=config.chunk_iterations)


run_chunk_jit = jax.jit(run_chunk, static_argnums=1, donate_argnums=0)


def _policy_step(actor_params, theta, theta_dot, sac_config: SACConfig, env_params: PendulumParams):
    """One step of the deterministic policy on the bare pendulum (no auto-reset).
    Returns ``(theta, theta_dot)`` after the step, and the ``torque`` and
    ``reward`` of the step, each ``(N,)``."""
    action = sac.policy_action(actor_params, pendulum.observe(theta, theta_dot), sac_config)
    torque = networks.scale_action(action[:, 0], env_params.max_torque)
    reward = pendulum.reward(theta, theta_dot, torque, env_params)
    theta, theta_dot = pendulum.step(theta, theta_dot, torque, env_params)
    return theta, theta_dot, torque, reward


@partial(jax.jit, static_argnums=(2, 3, 4))
def evaluate(actor_params, key, sac_config: SACConfig, env_params: PendulumParams, num_envs: int):
    """Deterministic evaluation: ``num_envs`` episodes from fresh starts with
    the action ``tanh(mean)``. Returns the episode returns, ``(num_envs,)``."""
    env_state = pendulum.reset_state(key, num_envs, env_params)

    # One episode exactly, so no auto-reset: the bare physics and reward (the
    # same functions env_step uses) make a smaller program to compile.
    def body(carry, _):
        theta, theta_dot, total = carry
        theta, theta_dot, _, reward = _policy_step(actor_params, theta, theta_dot, sac_config, env_params)
        return (theta, theta_dot, total + reward), None

    init_carry = (env_state.theta, env_state.theta_dot, jnp.zeros(num_envs, jnp.float32))
    (_, _, returns), _ = jax.lax.scan(body, init_carry, None, length=env_params.episode_length)
    return returns


@partial(jax.jit, static_argnums=(2, 3, 4, 5))
def policy_rollout(actor_params, key, sac_config: SACConfig, env_params: PendulumParams, num_envs: int, steps: int):
    """Run the deterministic policy from fresh starts without resets, for
    pictures. Returns ``(thetas (steps + 1, N), torques (steps, N), rewards (steps, N))``."""
    env_state, obs = pendulum.reset(key, num_envs, env_params)

    def body(carry, _):
        theta, theta_dot, torque, reward = _policy_step(actor_params, *carry, sac_config, env_params)
        return (theta, theta_dot), (theta, torque, reward)

    _, (thetas, torques, rewards) = jax.lax.scan(body, (env_state.theta, env_state.theta_dot), None, length=steps)
    return jnp.concatenate([env_state.theta[None], thetas]), torques, rewards


# Two XLA options for CPU that make a cold start faster. Measured on a 2-core
# CPU compiling the default chunk: the fusion emitters generate code that runs
# about 10% faster but compile about 30% slower (2.7 s -> 2.1 s without them);
# LLVM's -O1 instead of -O2 then saves another 0.4 s (2.1 s -> 1.7 s) with no
# measurable loss of speed. A run of a few hundred thousand env steps is
# dominated by compilation, so train() uses both on CPU unless asked not to.
CPU_FAST_COMPILE_OPTIONS = {"xla_cpu_use_fusion_emitters": False, "xla_backend_optimization_level": 1}


def compiler_options(fast_compile: bool = True) -> dict:
    """XLA options for compiling the training programs on the current backend."""
    return dict(CPU_FAST_COMPILE_OPTIONS) if fast_compile and jax.default_backend() == "cpu" else {}


def eval_key(seed: int) -> jax.Array:
    """The fixed key of a run's evaluations: the same starts every time, so the
    evaluation curve measures the policy, not the luck of the draw."""
    return _eval_key_of(jax.random.key(seed))


def _eval_key_of(run_key: jax.Array) -> jax.Array:
    return jax.random.fold_in(run_key, 0xE7A1)


@partial(jax.jit, static_argnums=(2, 3, 4))
def _evaluate_fixed_starts(actor_params, run_key, sac_config: SACConfig, env_params: PendulumParams, num_envs: int):
    """:func:`evaluate` from the run's fixed starts (:func:`eval_key`), with the
    key derived inside the program: a cold start then has no separate little
    program to compile for it (about 0.1 s on a 2-core CPU)."""
    return evaluate(actor_params, _eval_key_of(run_key), sac_config, env_params, num_envs)


def summarize_chunk(metrics, config: TrainConfig) -> dict:
    """Reduce a chunk's per-iteration metrics (host numpy) to one record."""
    metrics = jax.device_get(metrics)
    updated = np.asarray(metrics["updated"], bool)
    record = {}
    for name in sac.METRIC_NAMES:
        values = np.asarray(metrics[name])[updated]
        record[name] = float(values.mean()) if values.size else float("nan")
    episodes = float(np.sum(metrics["episodes_done"]))
    record["episodes"] = int(episodes)
    record["episode_return"] = float(np.sum(metrics["episode_return_sum"]) / episodes) if episodes else float("nan")
    record["reward_mean"] = float(np.mean(metrics["reward_mean"]))
    record["updates"] = int(updated.sum()) * config.updates_per_iteration
    return record


@dataclasses.dataclass
class TrainResult:
    """What :func:`train` returns: the final state and the per-chunk history."""

    state: TrainState
    history: list
    config: TrainConfig
    seed: int
    compile_seconds: float
    solved_at: dict | None  # the first record with eval_return >= the target return, if any

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
    fast_compile: bool = True,
) -> TrainResult:
    """Train SAC for ``config.total_env_steps`` environment steps.

    The device runs whole chunks; between them the host updates a tqdm bar
    (env-steps/s, latest return), appends a record to ``history``, evaluates
    the deterministic policy every ``eval_every`` chunks, and calls each
    ``callback(record, state)`` (live plots, checkpoints).

    Args:
      config: the :class:`TrainConfig`.
      seed: PRNG seed of the run (does not trigger recompilation).
      state, history: resume from these (e.g. a loaded checkpoint).
      target_return: the mean evaluation return that counts as solved; the
        first record to reach it is returned as ``solved_at``.
      stop_when_solved: stop training at that record.
      progress: show a tqdm bar.
      fast_compile: on CPU, trade ~10% run time for ~40% less compile time
        (see ``CPU_FAST_COMPILE_OPTIONS``); turn off for long runs.
    """
    if not _is_int(eval_every) or eval_every < 1:
        raise ValueError(f"eval_every must be an integer >= 1, got {eval_every!r}")
    history = list(history or [])
    run_key = jax.random.key(seed)
    if state is None:
        state = init(config, run_key)

    # Compile ahead of time so compile time is measured apart from run time.
    # The chunk compiles on a second thread while this one lowers and compiles
    # the evaluation (XLA releases the GIL): a cold start is mostly compiling.
    t0 = time.perf_counter()
    options = compiler_options(fast_compile)
    lowered_chunk = run_chunk_jit.lower(state, program_config(config))
    with ThreadPoolExecutor(max_workers=1) as pool:
        chunk_future = pool.submit(lowered_chunk.compile, compiler_options=options)
        eval_fn = _evaluate_fixed_starts.lower(state.sac.actor_params, run_key, config.sac, config.env,
                                               config.eval_envs).compile(compiler_options=options)
        chunk_fn = chunk_future.result()
    compile_seconds = time.perf_counter() - t0

    iterations_done = int(state.iteration)
    total = config.total_iterations
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total * config.num_envs, initial=iterations_done * config.num_envs,
                   unit="step", unit_scale=True, desc="env steps", dynamic_ncols=True)
    # a resumed run may have been solved before it stopped
    solved_at = next((dict(h) for h in history if h.get("eval_return", -np.inf) >= target_return), None)
    elapsed = history[-1]["wall_seconds"] if history else 0.0
    chunk_index = len(history)
    try:
        while iterations_done < total:
            t_start = time.perf_counter()
            state, metrics = chunk_fn(state)
            record = summarize_chunk(metrics, config)  # the host sync point
            iterations_done += config.chunk_iterations
            chunk_index += 1
            if chunk_index % eval_every == 0 or iterations_done >= total:
                record["eval_return"] = float(jnp.mean(eval_fn(state.sac.actor_params, run_key)))
            seconds = time.perf_counter() - t_start
            elapsed += seconds
            record.update(
                chunk=chunk_index,
                iterations=iterations_done,
                env_steps=iterations_done * config.num_envs,
                wall_seconds=elapsed,
                env_steps_per_second=config.chunk_iterations * config.num_envs / seconds,
            )
            history.append(record)
            if bar is not None:
                bar.update(config.chunk_iterations * config.num_envs)
                shown = record.get("eval_return", record["episode_return"])
                bar.set_postfix({"return": f"{shown:.0f}", "steps/s": f"{record['env_steps_per_second']:.3g}"})
            for callback in callbacks:
                callback(record, state)
            if solved_at is None and record.get("eval_return", -np.inf) >= target_return:
                solved_at = dict(record)
            if stop_when_solved and solved_at is not None:
                break
    finally:
        if bar is not None:
            bar.close()
    return TrainResult(state=state, history=history, config=config, seed=seed,
                       compile_seconds=compile_seconds, solved_at=solved_at)
