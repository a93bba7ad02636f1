"""Deterministic evaluation of a policy, when a run counts as solved, and
rollouts for pictures.

The policy acts with ``tanh(mean)``, no sampling. Every function runs one
compiled ``lax.scan`` of the bare pendulum (the same ``pendulum.step`` and
``pendulum.reward`` the training environments use), without auto-reset.

Two evaluations, for two questions. During training, a run is evaluated on
the same ``eval_envs`` starts every time (:func:`evaluate_run`), so its curve
measures the policy and not the luck of the draw; it counts as solved once
that mean reaches :data:`SOLVED_RETURN`. A final policy is scored on
:data:`FRESH_EPISODES` fresh starts (:func:`fresh_start_return`), a far
tighter estimate of what it does from anywhere.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from sacbook import checks, jit, networks, pendulum, sac, sharding
from sacbook.pendulum import PendulumParams
from sacbook.sac import SACConfig

# Pendulum-v1 counts as solved at a mean evaluation return of -200.
SOLVED_RETURN = -200.0
# Episodes of the fresh-start score of a final policy: 16 times the training
# evaluation's 64 starts, so its standard error is 4 times smaller.
FRESH_EPISODES = 1024

# A run evaluates from the same starts every time (see eval_key), so its
# evaluation curve measures the policy, not the luck of the draw.
_EVAL_STREAM = 0xE7A1
# The fresh starts of seed s are drawn with jax.random.key(s + _FRESH_OFFSET).
_FRESH_OFFSET = 1_000_003


def eval_key(run_key: jax.Array) -> jax.Array:
    """The fixed key of a run's evaluations, derived from the run's key
    ``jax.random.key(seed)``. Traceable: the training runner derives it
    inside the compiled evaluation."""
    return jax.random.fold_in(run_key, _EVAL_STREAM)


def policy_step(
    actor_params, theta, theta_dot, sac_config: SACConfig, env_params: PendulumParams
):
    """One step of the deterministic policy on the bare pendulum.

    Args: ``theta``, ``theta_dot`` of shape ``(N,)``. Returns ``(theta,
    theta_dot)`` after the step and the step's ``torque`` and ``reward``,
    each ``(N,)``.
    """
    action = sac.policy_action(
        actor_params, pendulum.observe(theta, theta_dot), sac_config
    )
    torque = networks.scale_action(action[:, 0], env_params.max_torque)
    reward = pendulum.reward(theta, theta_dot, torque, env_params)
    theta, theta_dot = pendulum.step(theta, theta_dot, torque, env_params)
    return theta, theta_dot, torque, reward


@jit.program(static_argnums=(2, 3, 4))
def evaluate(
    actor_params, key, sac_config: SACConfig, env_params: PendulumParams, num_envs: int
):
    """``num_envs`` episodes from fresh starts drawn with ``key``. Returns the
    episode returns, ``(num_envs,)``."""
    _check_episodes(num_envs)
    env_state = pendulum.reset_state(key, num_envs, env_params)

    # One episode exactly, so no auto-reset: the bare physics and reward (the
    # same functions env_step uses) make a smaller program to compile.
    def body(carry, _):
        theta, theta_dot, total = carry
        theta, theta_dot, _, reward = policy_step(
            actor_params, theta, theta_dot, sac_config, env_params
        )
        return (theta, theta_dot, total + reward), None

    init = (env_state.theta, env_state.theta_dot, jnp.zeros(num_envs, jnp.float32))
    (_, _, returns), _ = jax.lax.scan(
        body, init, None, length=env_params.episode_length
    )
    return returns


@jit.program(static_argnums=(2, 3, 4))
def evaluate_run(
    actor_params,
    run_key,
    sac_config: SACConfig,
    env_params: PendulumParams,
    num_envs: int,
):
    """:func:`evaluate` from a run's fixed starts, ``eval_key(run_key)``; the
    key is derived inside the compiled program, so a cold start has no
    separate little program to compile for it."""
    return evaluate(actor_params, eval_key(run_key), sac_config, env_params, num_envs)


@jit.program(static_argnums=(2, 3, 4))
def evaluate_runs(
    actor_params,
    run_keys,
    sac_config: SACConfig,
    env_params: PendulumParams,
    num_envs: int,
):
    """:func:`evaluate_run` for R runs at once (seeds or a sweep), one
    vmapped call: ``actor_params`` and ``run_keys`` have a leading ``(R,)``
    axis. Returns the returns, ``(R, num_envs)``."""

    def one(params, run_key):
        return evaluate_run(params, run_key, sac_config, env_params, num_envs)

    return jax.vmap(one)(actor_params, run_keys)


@functools.cache
def evaluate_runs_over(mesh: jax.sharding.Mesh) -> jit.Program:
    """:func:`evaluate_runs` for runs spread over ``mesh``'s devices
    (``over="runs"``): each device evaluates its own runs, and the returns
    keep the run axis split the same way."""
    name, _ = sharding.mesh_axis(mesh)
    split = jax.sharding.PartitionSpec(name)

    def spread(actor_params, run_keys, sac_config, env_params, num_envs):
        def local(params, keys):
            return evaluate_runs(params, keys, sac_config, env_params, num_envs)

        return jax.shard_map(
            local, mesh=mesh, in_specs=(split, split), out_specs=split, check_vma=False
        )(actor_params, run_keys)

    return jit.Program(spread, static_argnums=(2, 3, 4))


@jit.program(static_argnums=(2, 3, 4, 5))
def policy_rollout(
    actor_params,
    key,
    sac_config: SACConfig,
    env_params: PendulumParams,
    num_envs: int,
    steps: int,
):
    """The deterministic policy from fresh starts, without resets, for
    pictures. Returns ``(thetas (steps + 1, N), torques (steps, N),
    rewards (steps, N))``."""
    steps = checks.integer("steps", steps, 1, checks.INT32_MAX)
    _check_episodes(num_envs)
    env_state, _ = pendulum.reset(key, num_envs, env_params)

    def body(carry, _):
        theta, theta_dot, torque, reward = policy_step(
            actor_params, *carry, sac_config, env_params
        )
        return (theta, theta_dot), (theta, torque, reward)

    start = (env_state.theta, env_state.theta_dot)
    _, (thetas, torques, rewards) = jax.lax.scan(body, start, None, length=steps)
    return jnp.concatenate([env_state.theta[None], thetas]), torques, rewards


def _check_episodes(num_envs: int) -> int:
    """A one-line ValueError, before anything is compiled, for a number of
    episodes that is no integer in [1, 2**31 - 1] (a training run's
    evaluation is also in its memory estimate, :mod:`sacbook.device`)."""
    return checks.integer("num_envs", num_envs, 1, checks.INT32_MAX)


def fresh_start_return(
    actor_params, config, seed: int, episodes: int = FRESH_EPISODES
) -> float:
    """The mean return of the deterministic policy over ``episodes`` fresh
    starts, drawn from the run's ``seed`` apart from its fixed evaluation
    starts. ``config``: the run's :class:`~sacbook.config.TrainConfig`
    (its ``sac`` and ``env``)."""
    key = jax.random.key((seed + _FRESH_OFFSET) % 2**32)
    returns = evaluate(actor_params, key, config.sac, config.env, episodes)
    return float(np.mean(np.asarray(returns)))
