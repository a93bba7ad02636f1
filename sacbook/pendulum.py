"""Pendulum physics: parameters, one integration step, observation, reward, resets.

Conventions
-----------
* ``theta`` is the angle from the upright position: ``theta = 0`` is up (the
  unstable equilibrium), ``theta = +-pi`` hangs down. The task is swing-up.
* Every function is pure and written for arrays of any shape: a scalar for one
  pendulum, ``(N,)`` for N pendulums. Broadcasting and ``jax.vmap`` give the
  same result, so ``jax.vmap(step)`` works as well as a direct call.
* float32 throughout; the tests compare against float64 references.

Integration: the angular acceleration at the current angle
updates the velocity, and the *new* velocity updates the angle. That is the
semi-implicit (symplectic) Euler method. Unlike explicit Euler (which would use
the old velocity) it keeps the energy of a free pendulum bounded forever.

Angles are wrapped and their sines taken by :mod:`sacbook.fastmath`
(``wrap_angle``, ``sin_cos``), which is much faster than XLA's own on a CPU.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

# The CPU-fast trigonometry lives in its own module; the physics only calls it.
# Re-exported, so pendulum.wrap_angle and pendulum.sin_cos keep working.
from sacbook import checks
from sacbook.fastmath import sin_cos, wrap_angle

Body = Literal["point_mass", "rod"]
BODIES = ("point_mass", "rod")
POSITIVE = checks.Range(0.0, low_open=True)


@dataclasses.dataclass(frozen=True)
class PendulumParams:
    """Physical constants and task limits. Frozen and hashable, so it can be a
    static argument of ``jax.jit``: changing it recompiles once, nothing else does.

    Attributes:
      g: gravitational acceleration [m/s^2], > 0.
      l: length [m], > 0.
      m: mass [kg], > 0.
      dt: integration time step [s], > 0.
      max_torque: torques are clipped to ``[-max_torque, max_torque]`` [N m], >= 0.
      max_speed: angular speeds are clipped to ``[-max_speed, max_speed]`` [rad/s],
        > 0; ``math.inf`` switches the clip off.
      episode_length: steps before the time limit truncates an episode, in
        [1, 2**31 - 1].
      body: ``"point_mass"`` (all mass at the tip, moment of inertia m l^2) or
        ``"rod"`` (uniform rod, centre of mass at l/2, inertia m l^2 / 3).
    """

    g: float = checks.real_field(9.81, POSITIVE)
    l: float = checks.real_field(1.0, POSITIVE)
    m: float = checks.real_field(1.0, POSITIVE)
    dt: float = checks.real_field(0.05, POSITIVE)
    max_torque: float = checks.real_field(2.0, checks.Range(low=0.0))
    max_speed: float = checks.real_field(
        8.0, checks.Range(0.0, low_open=True, inf=True)
    )
    episode_length: int = 200
    body: Body = "point_mass"

    def __post_init__(self):
        checks.fields(self)
        length = checks.integer(  # the step counter is int32
            "PendulumParams.episode_length", self.episode_length, 1, checks.INT32_MAX
        )
        object.__setattr__(self, "episode_length", length)
        if self.body not in BODIES:
            raise ValueError(
                f"PendulumParams.body must be one of {BODIES}, got {self.body!r}"
            )

    @classmethod
    def point_mass(cls, **overrides) -> PendulumParams:
        """The point-mass pendulum (g = 9.81, l = m = 1, dt = 0.05): a point
        mass on a massless rod, the simplest model.

        Its torque and speed limits are Gymnasium's values (2 N m, 8 rad/s),
        so the swing-up needs several pumping swings.
        """
        return cls(**overrides)  # the defaults are this preset

    @classmethod
    def gymnasium(cls, **overrides) -> PendulumParams:
        """Gymnasium's ``Pendulum-v1``: a uniform rod and g = 10; the time step,
        the limits and the 200-step episodes are the point-mass preset's."""
        return cls(**{"g": 10.0, "body": "rod", **overrides})

    @classmethod
    def preset(cls, name: str, **overrides) -> PendulumParams:
        """A preset by name: ``"point_mass"`` or ``"gymnasium"``."""
        if name not in PRESETS:
            raise ValueError(
                f"unknown preset {name!r}; choose one of {sorted(PRESETS)}"
            )
        return getattr(cls, name)(**overrides)

    @property
    def gravity_coefficient(self) -> float:
        """``a`` in ``theta_ddot = a sin(theta) + b torque``: g/l, or 3g/(2l) for a
        rod."""
        return (
            self.g / self.l
            if self.body == "point_mass"
            else 3.0 * self.g / (2.0 * self.l)
        )

    @property
    def torque_coefficient(self) -> float:
        """``b`` in ``theta_ddot = a sin(theta) + b torque``: 1/(m l^2), or 3/(m l^2)
        for a rod."""
        inertia = (
            self.m * self.l**2
            if self.body == "point_mass"
            else self.m * self.l**2 / 3.0
        )
        return 1.0 / inertia


PRESETS = ("point_mass", "gymnasium")


def angular_acceleration(theta, torque, params: PendulumParams):
    """``theta_ddot = a sin(theta) + b torque`` for the body model in ``params``.

    ``torque`` is used as given (clip it first). Any broadcastable shapes.
    """
    return (
        params.gravity_coefficient * sin_cos(theta)[0]
        + params.torque_coefficient * torque
    )


def step(theta, theta_dot, torque, params: PendulumParams):
    """Advance the pendulum by one time step of length ``params.dt``.

    Semi-implicit Euler: clip the torque, update the velocity with the
    acceleration at the current angle, clip the speed, then update the angle
    with the *new* velocity and wrap it to ``[-pi, pi)``.

    Args:
      theta, theta_dot, torque: arrays of one shape, ``()`` or ``(N,)``.
      params: a :class:`PendulumParams`.
    Returns:
      ``(theta, theta_dot)`` after the step, same shapes.
    """
    _check_shapes(theta, theta_dot, torque)
    torque = jnp.clip(torque, -params.max_torque, params.max_torque)
    theta_dot = theta_dot + params.dt * angular_acceleration(theta, torque, params)
    theta_dot = jnp.clip(theta_dot, -params.max_speed, params.max_speed)
    theta = wrap_angle(theta + params.dt * theta_dot)
    return theta, theta_dot


def _check_shapes(theta, theta_dot, torque) -> None:
    """One line, at trace time, where the state and the torque do not share a
    shape (a scalar broadcasts): an ``(N, 1)`` torque, the actor's output,
    would otherwise broadcast an ``(N,)`` state to ``(N, N)`` without a word."""
    shapes = [jnp.shape(x) for x in (theta, theta_dot, torque)]
    if shapes[0] != shapes[1] or shapes[2] not in ((), shapes[0]):
        raise ValueError(
            "theta, theta_dot and torque must have one shape (torque may be a "
            f"scalar), got {shapes[0]}, {shapes[1]} and {shapes[2]}"
        )


def explicit_euler_step(theta, theta_dot, torque, params: PendulumParams):
    """Explicit (forward) Euler, for comparison only: the angle moves with the
    *old* velocity. Its energy grows every swing; see Chapter 1."""
    _check_shapes(theta, theta_dot, torque)
    torque = jnp.clip(torque, -params.max_torque, params.max_torque)
    new_theta_dot = theta_dot + params.dt * angular_acceleration(theta, torque, params)
    new_theta_dot = jnp.clip(new_theta_dot, -params.max_speed, params.max_speed)
    return wrap_angle(theta + params.dt * theta_dot), new_theta_dot


def energy(theta, theta_dot, params: PendulumParams):
    """Mechanical energy in units where the coefficient of sin(theta) is
    ``a``: ``E = theta_dot^2 / 2 + a cos(theta)``. Conserved by the exact
    free dynamics (``theta_ddot = a sin(theta)``); upright at rest is ``E = a``."""
    return 0.5 * theta_dot**2 + params.gravity_coefficient * jnp.cos(theta)


def observe(theta, theta_dot):
    """Observation ``[cos(theta), sin(theta), theta_dot]``: shape ``(..., 3)``.

    Cosine and sine make the angle continuous (no jump at +-pi)."""
    sin, cos = sin_cos(jnp.asarray(theta, jnp.float32))
    return jnp.stack([cos, sin, jnp.asarray(theta_dot, jnp.float32)], axis=-1)


def reward(theta, theta_dot, torque, params: PendulumParams):
    """The quadratic cost ``-(theta^2 + 0.1 theta_dot^2 + 0.001 torque^2)``,
    on the wrapped angle and the clipped torque. Ranges from 0 (upright, at
    rest, no effort) to about -16.3 (hanging, at full speed and torque)."""
    _check_shapes(theta, theta_dot, torque)
    theta = wrap_angle(theta)
    torque = jnp.clip(torque, -params.max_torque, params.max_torque)
    return -(theta**2 + 0.1 * theta_dot**2 + 0.001 * torque**2)


# ----------------------------------------------------------------------------
# Environments: a batch of N pendulums with episode bookkeeping and auto-reset.
# ----------------------------------------------------------------------------

RESET_MAX_SPEED = 1.0  # reset theta_dot ~ U(-1, 1), as Gymnasium


@struct.dataclass
class EnvState:
    """State of N environments. All fields have shape ``(N,)``.

    Attributes:
      theta, theta_dot: the pendulums (float32).
      time: steps taken in the current episode (int32).
      episode_return: reward summed over the current episode so far (float32).
    """

    theta: jax.Array
    theta_dot: jax.Array
    time: jax.Array
    episode_return: jax.Array


@struct.dataclass
class StepResult:
    """What :func:`env_step` returns besides the new state. Shapes ``(N,)``
    unless noted.

    Attributes:
      obs: ``(N, 3)`` observation to act on next: after an auto-reset it is the
        first observation of the new episode.
      reward: reward for the step just taken.
      terminated: the episode reached a terminal state (never, for the pendulum:
        it has no terminal states). The SAC target cuts bootstrapping only here.
      truncated: the episode hit the time limit. Not terminal: bootstrap.
      final_obs: ``(N, 3)`` the true observation after the step, before any
        reset. Store this as ``next_obs`` in the replay buffer.
      episode_return: return of the episode that ended at this step; only
        meaningful where ``terminated | truncated``, else 0.
    """

    obs: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    final_obs: jax.Array
    episode_return: jax.Array


def reset_state(key: jax.Array, num_envs: int, params: PendulumParams) -> EnvState:
    """Fresh state of ``num_envs`` pendulums: ``theta ~ U(-pi, pi)``,
    ``theta_dot ~ U(-1, 1)`` (both presets, as Gymnasium)."""
    num_envs = checks.integer("num_envs", num_envs, 1)
    del params  # same distribution for every preset; kept for a uniform signature
    u = jax.random.uniform(key, (2, num_envs), jnp.float32, -1.0, 1.0)  # one RNG call
    return EnvState(
        theta=u[0] * jnp.pi,
        theta_dot=u[1] * RESET_MAX_SPEED,
        time=jnp.zeros(num_envs, jnp.int32),
        episode_return=jnp.zeros(num_envs, jnp.float32),
    )


def reset(key: jax.Array, num_envs: int, params: PendulumParams):
    """Start ``num_envs`` episodes. Returns ``(state, obs)``, obs ``(N, 3)``."""
    state = reset_state(key, num_envs, params)
    return state, observe(state.theta, state.theta_dot)


def reset_host(rng: np.random.Generator, num_envs: int, params: PendulumParams):
    """:func:`reset` drawn on the host with NumPy, from ``rng``: the same
    distribution, NumPy arrays, nothing compiled. Used to start training runs
    fast. Returns ``(state, obs)``; ``obs`` ``(N, 3)`` is computed in float64
    and rounded, so it agrees with :func:`observe` to float32 precision."""
    num_envs = checks.integer("num_envs", num_envs, 1)
    del params  # same distribution for every preset, as in reset_state
    u = rng.uniform(-1.0, 1.0, (2, num_envs)).astype(np.float32)
    theta, theta_dot = u[0] * np.float32(np.pi), u[1] * np.float32(RESET_MAX_SPEED)
    state = EnvState(
        theta=theta,
        theta_dot=theta_dot,
        time=np.zeros(num_envs, np.int32),
        episode_return=np.zeros(num_envs, np.float32),
    )
    obs = np.stack(
        [np.cos(theta.astype(np.float64)), np.sin(theta.astype(np.float64)), theta_dot],
        axis=-1,
    )
    return state, obs.astype(np.float32)


def env_step(
    state: EnvState, torque: jax.Array, key: jax.Array, params: PendulumParams
):
    """Step N environments with auto-reset at the time limit.

    Args:
      state: :class:`EnvState` with ``(N,)`` fields (or ``()`` under ``vmap``).
      torque: ``(N,)`` torques (clipped to ``params.max_torque`` here).
      key: PRNG key, used only to draw the states of episodes that restart.
    Returns:
      ``(new_state, StepResult)``. Where an episode ended, ``new_state`` is
      already the first state of the next one, ``result.obs`` its observation,
      and ``result.final_obs`` the true last observation of the old one.

    Non-finite input is not cleaned up here, it shows: an infinite torque is
    clipped to the limit like any other, but a NaN torque (or a NaN state)
    makes that environment's state, observation, reward and episode return NaN
    until its episode ends; the auto-reset then starts it again from finite
    values. The other environments are unaffected. The training runner stops
    at the first non-finite metric (:mod:`sacbook.train`).
    """
    torque = jnp.asarray(torque, jnp.float32)
    r = reward(state.theta, state.theta_dot, torque, params)
    theta, theta_dot = step(state.theta, state.theta_dot, torque, params)
    time = state.time + 1
    episode_return = state.episode_return + r
    truncated = time >= params.episode_length
    terminated = jnp.zeros_like(truncated)  # the pendulum has no terminal states
    done = terminated | truncated
    final_obs = observe(theta, theta_dot)

    def restart(_):
        u = jax.random.uniform(
            key, (2,) + theta.shape, jnp.float32, -1.0, 1.0
        )  # one RNG call
        new_theta = jnp.where(done, u[0] * jnp.pi, theta)
        new_theta_dot = jnp.where(done, u[1] * RESET_MAX_SPEED, theta_dot)
        return new_theta, new_theta_dot, observe(new_theta, new_theta_dot)

    # Random numbers dominate the cost of a step, and episodes end rarely
    # (1 step in 200), so draw reset states (and observe them) only when some
    # episode ends. (Under vmap, cond becomes a select and both branches run:
    # still correct.)
    theta, theta_dot, obs = jax.lax.cond(
        jnp.any(done), restart, lambda _: (theta, theta_dot, final_obs), None
    )
    new_state = EnvState(
        theta=theta,
        theta_dot=theta_dot,
        time=jnp.where(done, 0, time),
        episode_return=jnp.where(done, 0.0, episode_return),
    )
    result = StepResult(
        obs=obs,
        reward=r,
        terminated=terminated,
        truncated=truncated,
        final_obs=final_obs,
        episode_return=jnp.where(done, episode_return, 0.0),
    )
    return new_state, result


def rollout(theta0, theta_dot0, torques, params: PendulumParams, step_fn=None):
    """Simulate without resets under a given torque sequence.

    Args:
      theta0, theta_dot0: initial state, shape ``()`` or ``(N,)``.
      torques: ``(T,)`` or ``(T, N)`` torques, one row per step.
      step_fn: the integrator, :func:`step` (the default) or, for comparison,
        :func:`explicit_euler_step`.
    Returns:
      ``(thetas, theta_dots)``, each ``(T + 1, ...)`` including the start.
    """
    step_fn = step if step_fn is None else step_fn

    def body(carry, torque):
        nxt = step_fn(*carry, torque, params)
        return nxt, nxt

    theta0 = jnp.asarray(theta0, jnp.float32)
    theta_dot0 = jnp.asarray(theta_dot0, jnp.float32)
    _, (thetas, theta_dots) = jax.lax.scan(
        body, (theta0, theta_dot0), jnp.asarray(torques, jnp.float32)
    )
    return (
        jnp.concatenate([theta0[None], thetas]),
        jnp.concatenate([theta_dot0[None], theta_dots]),
    )
