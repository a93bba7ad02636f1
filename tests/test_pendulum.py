"""Tests for sacbook.pendulum: physics against Gymnasium and a NumPy reference,
energy behaviour of the integrators, long rollouts staying wrapped, parameter
validation, batched environments with auto-reset, and jit/vmap compatibility."""

from __future__ import annotations

import dataclasses
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from angles import angle_diff, assert_in_wrapped_range, x64

from sacbook import pendulum
from sacbook.pendulum import EnvState, PendulumParams

# Eager env_step dispatches op by op (and compiles its lax.cond each call): jit it.
env_step_jit = jax.jit(pendulum.env_step, static_argnums=3)


# -----------------------------------------------------------------------------
# (a) The gymnasium preset against Gymnasium's Pendulum-v1
# -----------------------------------------------------------------------------

NUM_GYM_EPISODES = 5
GYM_STEPS = 200


@pytest.fixture(scope="module")
def gym_episodes():
    """Five Pendulum-v1 episodes driven by torques ~ U(-3, 3) (so the +-2 clip
    is exercised). Returns a list of dicts with float64 states (T+1, 2),
    observations (T+1, 3), rewards, terminated/truncated flags and torques.

    The torques are float32-representable numbers passed to Gymnasium as a
    float64 action: with a float32 action NumPy 2 evaluates Gymnasium's
    ``3.0 / (m l^2) * u`` in float32, which alone adds ~1e-7 per step."""
    gym = pytest.importorskip("gymnasium")
    rng = np.random.default_rng(1234)
    episodes = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # passive env checker chatter
        env = gym.make("Pendulum-v1")
        assert env.spec.max_episode_steps == GYM_STEPS
        for ep in range(NUM_GYM_EPISODES):
            obs, _ = env.reset(seed=1000 + ep)
            states = [np.array(env.unwrapped.state, np.float64)]
            observations = [obs]
            torques = rng.uniform(-3.0, 3.0, GYM_STEPS).astype(np.float32)
            rewards, terminated, truncated = [], [], []
            for t in range(GYM_STEPS):
                obs, r, term, trunc, _ = env.step(np.array([torques[t]], np.float64))
                states.append(np.array(env.unwrapped.state, np.float64))
                observations.append(obs)
                rewards.append(float(r))
                terminated.append(bool(term))
                truncated.append(bool(trunc))
            episodes.append(
                dict(
                    states=np.array(states),
                    obs=np.array(observations),
                    rewards=np.array(rewards),
                    terminated=np.array(terminated),
                    truncated=np.array(truncated),
                    torques=torques,
                )
            )
        env.close()
    return episodes


def test_gymnasium_preset_matches_pendulum_v1_step_by_step(gym_episodes):
    """Each step of the gymnasium preset, started from Gymnasium's state cast
    to float32, gives Gymnasium's next state (angle mod 2pi), observation and
    reward to float32 precision, clipped torques included."""
    params = PendulumParams.gymnasium()
    step = jax.jit(pendulum.step, static_argnums=3)
    reward = jax.jit(pendulum.reward, static_argnums=3)
    for ep in gym_episodes:
        s = ep["states"].astype(np.float32)
        th, thd = s[:-1, 0], s[:-1, 1]
        u = ep["torques"]
        assert np.any(np.abs(u) > params.max_torque)  # the clip is exercised
        nth, nthd = step(th, thd, u, params)
        np.testing.assert_allclose(angle_diff(nth, ep["states"][1:, 0]), 0.0, atol=1e-5)
        np.testing.assert_allclose(nthd, ep["states"][1:, 1], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(
            pendulum.observe(nth, nthd), ep["obs"][1:], rtol=1e-5, atol=1e-5
        )
        np.testing.assert_allclose(
            reward(th, thd, u, params), ep["rewards"], rtol=1e-5, atol=1e-5
        )
        # the first observation after reset, too
        np.testing.assert_allclose(
            pendulum.observe(s[0, 0], s[0, 1]), ep["obs"][0], atol=1e-6
        )


def test_gymnasium_and_env_step_truncate_at_step_200(gym_episodes):
    """Gymnasium truncates exactly at step 200 and never terminates; env_step
    with the gymnasium preset, run from the same initial state under the same
    torques, does the same, and its rewards, last observation and episode
    return follow Gymnasium's episode."""
    params = PendulumParams.gymnasium()
    assert params.episode_length == GYM_STEPS

    @jax.jit
    def run(state, torques, keys):
        def body(s, xs):
            s, res = pendulum.env_step(s, xs[0], xs[1], params)
            return s, res

        return jax.lax.scan(body, state, (torques, keys))

    for ep in gym_episodes:
        expected_trunc = np.zeros(GYM_STEPS, bool)
        expected_trunc[-1] = True
        np.testing.assert_array_equal(ep["truncated"], expected_trunc)
        assert not ep["terminated"].any()

        s0 = ep["states"][0].astype(np.float32)
        state = EnvState(
            theta=jnp.array([s0[0]]),
            theta_dot=jnp.array([s0[1]]),
            time=jnp.zeros(1, jnp.int32),
            episode_return=jnp.zeros(1, jnp.float32),
        )
        keys = jax.random.split(jax.random.key(0), GYM_STEPS)
        _, res = run(state, jnp.asarray(ep["torques"])[:, None], keys)
        np.testing.assert_array_equal(np.asarray(res.truncated[:, 0]), expected_trunc)
        assert not np.asarray(res.terminated).any()
        # a float32 rollout drifts from Gymnasium's float64 one (the dynamics
        # amplify rounding; measured up to ~4e-3 in the reward here), so loose
        np.testing.assert_allclose(
            res.reward[:, 0], ep["rewards"], rtol=1e-2, atol=1e-2
        )
        np.testing.assert_allclose(res.final_obs[-1, 0], ep["obs"][-1], atol=1e-2)
        np.testing.assert_allclose(
            res.episode_return[-1, 0], ep["rewards"].sum(), rtol=1e-4
        )


def test_gymnasium_preset_float64_rollout_matches_pendulum_v1(gym_episodes):
    """With float64 enabled, 200 steps of pendulum.step reproduce Gymnasium's
    whole free-running trajectory to ~1e-9: the same equations in the same
    order, the only difference being our wrap of theta."""
    params = PendulumParams.gymnasium()
    with x64():

        @jax.jit
        def run(theta0, theta_dot0, torques):
            def body(carry, u):
                nxt = pendulum.step(carry[0], carry[1], u, params)
                return nxt, nxt

            return jax.lax.scan(body, (theta0, theta_dot0), torques)[1]

        for ep in gym_episodes:
            s0 = ep["states"][0]
            th, thd = run(
                jnp.asarray(s0[0], jnp.float64),
                jnp.asarray(s0[1], jnp.float64),
                jnp.asarray(ep["torques"], jnp.float64),
            )
            th, thd = np.asarray(th), np.asarray(thd)
            assert th.dtype == np.float64 and thd.dtype == np.float64
            np.testing.assert_allclose(
                angle_diff(th, ep["states"][1:, 0]), 0.0, atol=1e-9
            )
            np.testing.assert_allclose(thd, ep["states"][1:, 1], rtol=0, atol=1e-9)


# -----------------------------------------------------------------------------
# (b) The point-mass preset against a float64 NumPy implementation of the plan
# -----------------------------------------------------------------------------


def numpy_step(
    theta, theta_dot, torque, g, l, m, dt, max_torque, max_speed, body="point_mass"
):
    """The plan's equations in float64: theta_ddot = g/l sin(theta) + u/(m l^2)
    (a uniform rod: 3g/(2l) sin(theta) + 3u/(m l^2)); clip the torque, update
    the velocity, clip the speed, update the angle with the new velocity, wrap
    the angle to [-pi, pi)."""
    theta, theta_dot, torque = (
        np.asarray(x, np.float64) for x in (theta, theta_dot, torque)
    )
    u = np.clip(torque, -max_torque, max_torque)
    if body == "point_mass":
        acc = g / l * np.sin(theta) + u / (m * l**2)
    else:
        acc = 3.0 * g / (2.0 * l) * np.sin(theta) + 3.0 * u / (m * l**2)
    theta_dot = np.clip(theta_dot + dt * acc, -max_speed, max_speed)
    theta = np.mod(theta + dt * theta_dot + np.pi, 2.0 * np.pi) - np.pi
    return theta, theta_dot


def _numpy_kwargs(p: PendulumParams):
    return dict(
        g=p.g,
        l=p.l,
        m=p.m,
        dt=p.dt,
        max_torque=p.max_torque,
        max_speed=p.max_speed,
        body=p.body,
    )


@pytest.mark.parametrize(
    "params",
    [
        PendulumParams.point_mass(),
        PendulumParams.point_mass(
            g=3.7, l=0.5, m=2.0, dt=0.02, max_torque=5.0, max_speed=6.0
        ),
        PendulumParams.point_mass(
            g=3.7, l=0.5, m=2.0, dt=0.02, max_torque=5.0, max_speed=6.0, body="rod"
        ),
    ],
    ids=["point_mass", "point_mass-other-constants", "rod-other-constants"],
)
def test_step_matches_numpy_reference_one_step(params):
    """One step from 10,000 random states (speeds and torques beyond the clips)
    equals the float64 NumPy implementation of the plan's equations to float32
    precision; other constants check the l and m exponents and the rod model."""
    rng = np.random.default_rng(7)
    n = 10_000
    theta = rng.uniform(-np.pi, np.pi, n).astype(np.float32)
    theta_dot = rng.uniform(-10.0, 10.0, n).astype(np.float32)
    torque = rng.uniform(-2 * params.max_torque, 2 * params.max_torque, n).astype(
        np.float32
    )
    ref_th, ref_thd = numpy_step(theta, theta_dot, torque, **_numpy_kwargs(params))
    th, thd = jax.jit(pendulum.step, static_argnums=3)(theta, theta_dot, torque, params)
    assert th.dtype == jnp.float32 and th.shape == (n,)
    np.testing.assert_allclose(angle_diff(th, ref_th), 0.0, atol=1e-5)
    np.testing.assert_allclose(thd, ref_thd, rtol=1e-5, atol=1e-5)
    assert np.abs(np.asarray(thd)).max() <= params.max_speed


def test_rollout_matches_numpy_reference_20_steps():
    """A 20-step pendulum.rollout of 64 point-mass pendulums under random
    torques follows the float64 NumPy reference (start state included)."""
    params = PendulumParams.point_mass()
    rng = np.random.default_rng(3)
    n, steps = 64, 20
    theta0 = rng.uniform(-np.pi, np.pi, n).astype(np.float32)
    theta_dot0 = rng.uniform(-1, 1, n).astype(np.float32)
    torques = rng.uniform(-3, 3, (steps, n)).astype(np.float32)
    thetas, theta_dots = pendulum.rollout(theta0, theta_dot0, torques, params)
    assert thetas.shape == (steps + 1, n) and theta_dots.shape == (steps + 1, n)
    th, thd = theta0.astype(np.float64), theta_dot0.astype(np.float64)
    ref_th, ref_thd = [th], [thd]
    for t in range(steps):
        th, thd = numpy_step(th, thd, torques[t], **_numpy_kwargs(params))
        ref_th.append(th)
        ref_thd.append(thd)
    np.testing.assert_allclose(angle_diff(thetas, np.array(ref_th)), 0.0, atol=1e-4)
    np.testing.assert_allclose(theta_dots, np.array(ref_thd), atol=1e-4)


# -----------------------------------------------------------------------------
# (c) Energy: semi-implicit Euler stays bounded, explicit Euler blows up
# -----------------------------------------------------------------------------


def test_energy_bounded_semi_implicit_grows_explicit():
    """Free swing from theta0 = 2 (point-mass preset, no speed clip), 10,000 steps:
    pendulum.step keeps the energy within 4% of its range 2a of the initial
    value (measured 2.3%, with no drift), pendulum.explicit_euler_step gains
    more than 400 (measured ~920, i.e. > 40 a: the pendulum ends up spinning)."""
    params = PendulumParams.point_mass(max_speed=math.inf)
    a = params.gravity_coefficient
    steps = 10_000

    def energies(step_fn):
        def body(carry, _):
            nxt = step_fn(carry[0], carry[1], jnp.float32(0.0), params)
            return nxt, pendulum.energy(nxt[0], nxt[1], params)

        run = jax.jit(
            lambda: jax.lax.scan(
                body, (jnp.float32(2.0), jnp.float32(0.0)), None, length=steps
            )[1]
        )
        return np.asarray(run(), np.float64)

    e0 = float(pendulum.energy(2.0, 0.0, params))
    assert e0 == pytest.approx(a * math.cos(2.0), rel=1e-6)

    semi = energies(pendulum.step)
    rel_dev = np.abs(semi - e0).max() / (2 * a)
    assert rel_dev < 0.04, rel_dev
    assert (
        rel_dev > 1e-4
    )  # it is not exactly conserved (sanity check of the measurement)
    # no secular drift: first and last 1,000 steps have the same mean energy
    assert abs(semi[-1000:].mean() - semi[:1000].mean()) < 0.01 * 2 * a

    explicit = energies(pendulum.explicit_euler_step)
    assert explicit[-1] - e0 > 400.0, explicit[-1] - e0
    # and it grows steadily, not by a fluke at the end
    assert e0 < explicit[99] < explicit[999] < explicit[4999] < explicit[-1]


# -----------------------------------------------------------------------------
# (d) Long rollouts stay wrapped (the accuracy of wrap_angle and sin_cos
#     themselves is tested in test_fastmath.py)
# -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        PendulumParams.point_mass(),
        PendulumParams.gymnasium(),
        PendulumParams.point_mass(max_speed=math.inf, max_torque=100.0),
    ],
    ids=["point_mass", "gymnasium", "no-speed-clip-huge-torque"],
)
def test_long_random_rollouts_stay_wrapped(params):
    """64 pendulums x 3,000 steps under random torques (including a case with
    no speed clip where the angle moves many radians per step): every theta
    stays in [-pi, pi)."""
    key_th, key_u = jax.random.split(jax.random.key(11))
    n, steps = 64, 3000
    theta0 = jax.random.uniform(key_th, (n,), jnp.float32, -jnp.pi, jnp.pi)
    torques = (
        jax.random.uniform(key_u, (steps, n), jnp.float32, -1.5, 1.5)
        * params.max_torque
    )
    thetas, theta_dots = jax.jit(pendulum.rollout, static_argnums=3)(
        theta0, jnp.zeros(n), torques, params
    )
    assert np.isfinite(np.asarray(theta_dots)).all()
    assert_in_wrapped_range(thetas)
    if math.isinf(params.max_speed):
        assert (
            np.abs(np.asarray(theta_dots)).max() * params.dt > 2 * np.pi
        )  # really spins fast


# -----------------------------------------------------------------------------
# (e) Parameter validation
# -----------------------------------------------------------------------------

FLOAT_FIELDS = ("g", "l", "m", "dt", "max_torque", "max_speed")


@pytest.mark.parametrize(
    "overrides, name",
    [
        (dict(dt=0.0), "dt"),
        (dict(dt=-0.05), "dt"),
        (dict(l=0.0), "l"),
        (dict(l=-1.0), "l"),
        (dict(m=0.0), "m"),
        (dict(m=-1.0), "m"),
        (dict(g=0.0), "g"),
        (dict(g=-9.81), "g"),
        (dict(max_torque=-0.1), "max_torque"),
        (dict(max_speed=0.0), "max_speed"),
        (dict(max_speed=-1.0), "max_speed"),
        (dict(episode_length=0), "episode_length"),
        (dict(episode_length=-5), "episode_length"),
        (dict(episode_length=200.0), "episode_length"),
        (dict(episode_length=True), "episode_length"),
        (dict(episode_length=2**31), "episode_length"),  # the int32 step counter
        (dict(episode_length="200"), "episode_length"),
        (dict(body="sphere"), "body"),
        (dict(body=None), "body"),
        (dict(g="9.81"), "g"),
        (dict(dt=None), "dt"),
        (dict(m=True), "m"),
    ]
    + [(dict(**{f: math.nan}), f) for f in FLOAT_FIELDS]
    + [(dict(**{f: math.inf}), f) for f in FLOAT_FIELDS if f != "max_speed"]
    + [(dict(**{f: -math.inf}), f) for f in FLOAT_FIELDS],
)
def test_bad_parameters_raise_value_error_naming_the_field(overrides, name):
    """Every invalid constant raises ValueError whose message names the field,
    for the direct constructor and both presets."""
    with pytest.raises(ValueError, match=rf"PendulumParams\.{name}\b"):
        PendulumParams(**overrides)
    for preset in ("point_mass", "gymnasium"):
        with pytest.raises(ValueError, match=rf"PendulumParams\.{name}\b"):
            PendulumParams.preset(preset, **overrides)


def test_valid_edge_parameters_are_accepted():
    """max_speed = inf (no clip), max_torque = 0 and episode_length = 1 are
    valid; with max_speed = inf a speed beyond 8 is not clipped."""
    p = PendulumParams.point_mass(max_speed=math.inf)
    _, thd = pendulum.step(jnp.float32(0.0), jnp.float32(50.0), jnp.float32(0.0), p)
    assert float(thd) == pytest.approx(50.0)
    _, thd = pendulum.step(
        jnp.float32(0.0),
        jnp.float32(50.0),
        jnp.float32(0.0),
        PendulumParams.point_mass(),
    )
    assert float(thd) == 8.0
    assert (
        PendulumParams.point_mass(max_torque=0.0, episode_length=1).episode_length == 1
    )
    assert PendulumParams(g=1, l=2, m=3).g == 1  # ints are real numbers


def test_unknown_preset_and_bad_num_envs_raise():
    """PendulumParams.preset with an unknown name, and reset/reset_state with
    num_envs < 1 or not an int, raise ValueError naming what is wrong."""
    with pytest.raises(ValueError, match="preset"):
        PendulumParams.preset("x")
    assert PendulumParams.preset("point_mass") == PendulumParams.point_mass()
    # the old name "seed" (now "point_mass") is an unknown preset like any other
    error = r"^unknown preset 'seed'; choose one of \['gymnasium', 'point_mass'\]$"
    with pytest.raises(ValueError, match=error):
        PendulumParams.preset("seed")
    assert not hasattr(PendulumParams, "seed")
    assert PendulumParams.preset("gymnasium", dt=0.01) == PendulumParams.gymnasium(
        dt=0.01
    )
    key = jax.random.key(0)
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="num_envs"):
            pendulum.reset(key, bad, PendulumParams.point_mass())
        with pytest.raises(ValueError, match="num_envs"):
            pendulum.reset_state(key, bad, PendulumParams.point_mass())


def test_reset_distribution():
    """reset draws theta ~ U(-pi, pi) and theta_dot ~ U(-1, 1) (as Gymnasium),
    float32, time 0 and return 0; the same key gives the same state and
    different keys different ones."""
    params = PendulumParams.point_mass()
    state, obs = pendulum.reset(jax.random.key(5), 20_000, params)
    th, thd = np.asarray(state.theta), np.asarray(state.theta_dot)
    assert (
        th.dtype == np.float32
        and thd.dtype == np.float32
        and np.asarray(state.time).dtype == np.int32
    )
    assert_in_wrapped_range(th)
    assert np.abs(thd).max() <= 1.0
    assert th.min() < -3.1 and th.max() > 3.1 and thd.min() < -0.99 and thd.max() > 0.99
    assert abs(th.mean()) < 0.1 and abs(thd.mean()) < 0.05
    assert abs(th.std() - np.pi / np.sqrt(3)) < 0.05  # std of U(-pi, pi)
    np.testing.assert_allclose(obs[:, 2], thd)
    again = pendulum.reset_state(jax.random.key(5), 20_000, params)
    np.testing.assert_array_equal(again.theta, th)
    other = pendulum.reset_state(jax.random.key(6), 20_000, params)
    assert not np.allclose(other.theta, th)


# -----------------------------------------------------------------------------
# (f) env_step with auto-reset
# -----------------------------------------------------------------------------


def test_env_step_auto_reset_over_one_episode():
    """8 envs, 200 jitted env_steps under random torques: rewards are
    pendulum.reward of the pre-step state, the physics is pendulum.step; no
    env is done at steps 1..199; at step 200 all are truncated (none
    terminated), final_obs is the true last observation, the new state is a
    fresh one (time 0, return 0, obs its observation), the reported return is
    the sum of the episode's rewards, and step 201 starts a new clock."""
    params = PendulumParams.point_mass()
    n, T = 8, params.episode_length
    state0, obs0 = pendulum.reset(jax.random.key(0), n, params)
    assert state0.theta.shape == (n,) and obs0.shape == (n, 3)
    np.testing.assert_array_equal(state0.time, 0)
    np.testing.assert_array_equal(state0.episode_return, 0.0)
    np.testing.assert_allclose(obs0, pendulum.observe(state0.theta, state0.theta_dot))
    u_all = np.random.default_rng(1).uniform(-3.0, 3.0, (T + 1, n)).astype(np.float32)

    @jax.jit
    def run(state, torques, key):
        def body(s, xs):
            ns, res = pendulum.env_step(s, xs[0], xs[1], params)
            return ns, (s, ns, res)

        return jax.lax.scan(body, state, (torques, jax.random.split(key, T + 1)))

    @jax.jit
    def reference(theta, theta_dot, torque):
        """Independent one-step physics and reward, and a free rollout."""
        th1, thd1 = pendulum.step(theta, theta_dot, torque, params)
        return (
            pendulum.reward(theta, theta_dot, torque, params),
            th1,
            thd1,
            pendulum.observe(th1, thd1),
        )

    _, (pre_all, post_all, res_all) = jax.tree.map(
        np.asarray, run(state0, u_all, jax.random.key(2))
    )
    # records 0..T-1 are the first episode, record T the first step of the next
    pre, post, res = jax.tree.map(lambda x: x[:T], (pre_all, post_all, res_all))
    new = jax.tree.map(lambda x: x[T - 1], post_all)
    u = u_all[:T]

    # rewards and physics, step by step from the env's own pre-step states
    r_ref, th1, thd1, obs1 = map(np.asarray, reference(pre.theta, pre.theta_dot, u))
    np.testing.assert_allclose(res.reward, r_ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(res.final_obs, obs1, atol=1e-6)
    np.testing.assert_allclose(post.theta[:-1], th1[:-1], atol=1e-6)
    np.testing.assert_allclose(post.theta_dot[:-1], thd1[:-1], atol=1e-6)
    np.testing.assert_array_equal(
        post.time[:-1], np.arange(1, T)[:, None] * np.ones(n, int)
    )

    # steps 1..199: nothing done, obs is the true next observation
    assert not res.truncated[:-1].any() and not res.terminated.any()
    np.testing.assert_array_equal(res.obs[:-1], res.final_obs[:-1])
    np.testing.assert_array_equal(res.episode_return[:-1], 0.0)
    np.testing.assert_allclose(
        post.episode_return[:-1],
        np.cumsum(res.reward, axis=0)[:-1],
        rtol=1e-5,
        atol=1e-4,
    )

    # step 200: all truncated, none terminated
    assert res.truncated[-1].all() and res.truncated.dtype == bool
    assert not res.terminated[-1].any()

    # an independent free rollout of the whole episode with pendulum.step
    ref_th, ref_thd = map(
        np.asarray,
        jax.jit(pendulum.rollout, static_argnums=3)(
            state0.theta, state0.theta_dot, u, params
        ),
    )
    np.testing.assert_allclose(angle_diff(pre.theta, ref_th[:-1]), 0.0, atol=1e-4)
    obs_last = np.stack([np.cos(ref_th[-1]), np.sin(ref_th[-1]), ref_thd[-1]], -1)
    np.testing.assert_allclose(res.final_obs[-1], obs_last, atol=1e-4)

    # the new episode
    np.testing.assert_array_equal(new.time, 0)
    np.testing.assert_array_equal(new.episode_return, 0.0)
    obs_new = np.stack([np.cos(new.theta), np.sin(new.theta), new.theta_dot], -1)
    np.testing.assert_allclose(res.obs[-1], obs_new, atol=1e-6)
    assert not np.allclose(res.obs[-1], res.final_obs[-1])  # it really reset
    assert np.all(np.abs(new.theta) <= np.pi) and np.all(
        np.abs(new.theta_dot) <= pendulum.RESET_MAX_SPEED
    )
    np.testing.assert_allclose(
        res.episode_return[-1], res.reward.astype(np.float64).sum(axis=0), rtol=1e-5
    )

    # and the next episode goes on from the reset state with a fresh clock
    np.testing.assert_array_equal(pre_all.theta[T], new.theta)
    np.testing.assert_array_equal(post_all.time[T], 1)
    assert not res_all.truncated[T].any()
    np.testing.assert_allclose(post_all.episode_return[T], res_all.reward[T], atol=1e-6)


def test_env_step_episode_length_one_and_mixed_times():
    """Envs at different times in their episodes reset independently; with
    episode_length = 1 every step is truncated."""
    params = PendulumParams.point_mass(episode_length=5)
    state = EnvState(
        theta=jnp.zeros(4),
        theta_dot=jnp.zeros(4),
        time=jnp.array([0, 3, 4, 4], jnp.int32),
        episode_return=jnp.array([0.0, -1.0, -2.0, -3.0]),
    )
    new, res = env_step_jit(state, jnp.zeros(4), jax.random.key(3), params)
    np.testing.assert_array_equal(res.truncated, [False, False, True, True])
    np.testing.assert_array_equal(new.time, [1, 4, 0, 0])
    np.testing.assert_allclose(
        res.episode_return, [0.0, 0.0, -2.0, -3.0]
    )  # reward at upright rest is 0
    np.testing.assert_allclose(new.episode_return, [0.0, -1.0, 0.0, 0.0])
    np.testing.assert_array_equal(
        new.theta[:2], 0.0
    )  # not reset: still upright at rest
    np.testing.assert_array_equal(res.obs[:2], res.final_obs[:2])

    p1 = PendulumParams.point_mass(episode_length=1)
    s, _ = pendulum.reset(jax.random.key(4), 3, p1)
    for i in range(3):
        s, res = env_step_jit(s, jnp.ones(3), jax.random.key(10 + i), p1)
        assert np.asarray(res.truncated).all()
        np.testing.assert_array_equal(s.time, 0)
        np.testing.assert_allclose(res.episode_return, res.reward)


# -----------------------------------------------------------------------------
# (g) jit / vmap
# -----------------------------------------------------------------------------


def test_step_vmap_broadcast_scalar_and_jit_agree():
    """jax.vmap(step) over (N,) arrays equals the direct broadcasting call,
    step works on scalars (equal to the batched entries), and jit with params
    static works and recompiles for different params."""
    params = PendulumParams.point_mass()
    rng = np.random.default_rng(5)
    n = 32
    th = jnp.asarray(rng.uniform(-np.pi, np.pi, n), jnp.float32)
    thd = jnp.asarray(rng.uniform(-8, 8, n), jnp.float32)
    u = jnp.asarray(rng.uniform(-3, 3, n), jnp.float32)

    direct = pendulum.step(th, thd, u, params)
    vmapped = jax.vmap(pendulum.step, in_axes=(0, 0, 0, None))(th, thd, u, params)
    jitted = jax.jit(pendulum.step, static_argnums=3)(th, thd, u, params)
    for a, b in zip(direct, vmapped):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    for a, b in zip(direct, jitted):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    s_th, s_thd = pendulum.step(th[3], thd[3], u[3], params)
    assert s_th.shape == () and s_thd.shape == ()
    np.testing.assert_allclose(
        [s_th, s_thd], [direct[0][3], direct[1][3]], rtol=1e-6, atol=1e-6
    )
    s_th, _ = pendulum.step(0.5, 0.0, 0.0, params)  # plain Python scalars
    assert s_th.shape == () and s_th.dtype == jnp.float32

    other = PendulumParams.point_mass(g=1.0)
    step_jit = jax.jit(pendulum.step, static_argnums=3)
    a = step_jit(th, thd, u, params)[1]
    b = step_jit(th, thd, u, other)[1]
    np.testing.assert_allclose(
        b, pendulum.step(th, thd, u, other)[1], rtol=1e-6, atol=1e-6
    )
    assert not np.allclose(a, b)

    np.testing.assert_allclose(
        jax.vmap(pendulum.observe)(th, thd), pendulum.observe(th, thd), atol=1e-7
    )
    np.testing.assert_allclose(
        jax.vmap(pendulum.reward, in_axes=(0, 0, 0, None))(th, thd, u, params),
        pendulum.reward(th, thd, u, params),
        rtol=1e-6,
    )


def test_params_are_hashable_and_frozen():
    """PendulumParams are hashable with value semantics (equal params hash
    equal, usable as dict keys / static jit args) and immutable."""
    a, b = PendulumParams.point_mass(), PendulumParams.point_mass()
    assert a == b and hash(a) == hash(b)
    assert a != PendulumParams.gymnasium()
    assert len({a, b, PendulumParams.gymnasium()}) == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.g = 1.0  # frozen


def test_env_step_under_vmap_with_per_env_keys():
    """jax.vmap(env_step) over (N,) states with one key per env equals calling
    env_step on each env alone (scalar fields); envs not at the time limit
    agree with the batched env_step, and envs at the limit reset."""
    params = PendulumParams.point_mass()
    n = 6
    state, _ = pendulum.reset(jax.random.key(0), n, params)
    state = state.replace(
        time=jnp.array([0, 199, 10, 199, 198, 5], jnp.int32),
        episode_return=jnp.arange(n, dtype=jnp.float32) * -1.0,
    )
    torque = jnp.linspace(-3, 3, n, dtype=jnp.float32)
    keys = jax.random.split(jax.random.key(9), n)

    v_state, v_res = jax.jit(
        jax.vmap(pendulum.env_step, in_axes=(0, 0, 0, None)), static_argnums=3
    )(state, torque, keys, params)
    assert (
        v_res.obs.shape == (n, 3)
        and v_res.final_obs.shape == (n, 3)
        and v_state.theta.shape == (n,)
    )
    v_leaves = [np.asarray(x) for x in jax.tree.leaves((v_state, v_res))]
    np_state = jax.tree.map(np.asarray, state)
    for i in range(n):
        s_i = jax.tree.map(lambda x, i=i: x[i], np_state)
        one_state, one_res = env_step_jit(s_i, torque[i], keys[i], params)
        assert one_res.obs.shape == (3,) and one_state.theta.shape == ()
        for x, y in zip(jax.tree.leaves((one_state, one_res)), v_leaves):
            np.testing.assert_allclose(x, y[i], rtol=1e-6, atol=1e-6)

    done = np.array([False, True, False, True, False, False])
    np.testing.assert_array_equal(v_res.truncated, done)
    np.testing.assert_array_equal(v_state.time, np.where(done, 0, np_state.time + 1))
    ref_th, ref_thd = numpy_step(
        np_state.theta, np_state.theta_dot, np.asarray(torque), **_numpy_kwargs(params)
    )
    np.testing.assert_allclose(
        angle_diff(np.asarray(v_state.theta)[~done], ref_th[~done]), 0.0, atol=1e-5
    )
    np.testing.assert_allclose(
        np.asarray(v_state.theta_dot)[~done], ref_thd[~done], atol=1e-5
    )
    np.testing.assert_allclose(np.asarray(v_res.final_obs)[:, 2], ref_thd, atol=1e-5)
    assert not np.allclose(
        np.asarray(v_res.obs)[done], np.asarray(v_res.final_obs)[done]
    )


# -----------------------------------------------------------------------------
# (h) observation and reward
# -----------------------------------------------------------------------------


def test_observe_shapes_and_values():
    """observe returns (..., 3) float32 [cos, sin, theta_dot] for scalars,
    (N,) and (N, M) inputs."""
    o = pendulum.observe(0.0, 1.5)
    assert o.shape == (3,) and o.dtype == jnp.float32
    np.testing.assert_allclose(o, [1.0, 0.0, 1.5], atol=1e-7)
    np.testing.assert_allclose(
        pendulum.observe(np.pi / 2, -2.0), [0.0, 1.0, -2.0], atol=1e-6
    )
    np.testing.assert_allclose(
        pendulum.observe(np.pi, 0.0), [-1.0, 0.0, 0.0], atol=1e-6
    )
    th = jnp.linspace(-3, 3, 5)
    o = pendulum.observe(th, 2 * th)
    assert o.shape == (5, 3)
    np.testing.assert_allclose(
        o, np.stack([np.cos(th), np.sin(th), 2 * th], -1), atol=1e-6
    )
    assert pendulum.observe(jnp.zeros((2, 4)), jnp.zeros((2, 4))).shape == (2, 4, 3)


def test_reward_range():
    """The reward is 0 upright at rest with no torque, reaches
    -(pi^2 + 0.1 * 8^2 + 0.001 * 2^2) hanging at full speed and torque
    (torque clipped, angle wrapped), and stays in between for every state
    within the limits."""
    params = PendulumParams.point_mass()
    assert float(pendulum.reward(0.0, 0.0, 0.0, params)) == 0.0
    assert float(pendulum.reward(2 * np.pi, 0.0, 0.0, params)) == pytest.approx(
        0.0, abs=1e-10
    )
    worst = -(np.pi**2 + 0.1 * 64 + 0.001 * 4)
    assert float(pendulum.reward(np.pi, 8.0, 2.0, params)) == pytest.approx(
        worst, rel=1e-6
    )
    assert float(pendulum.reward(-np.pi, -8.0, -100.0, params)) == pytest.approx(
        worst, rel=1e-6
    )
    assert float(pendulum.reward(3 * np.pi, 8.0, 5.0, params)) == pytest.approx(
        worst, rel=1e-6
    )
    assert float(pendulum.reward(0.0, 0.0, 1.0, params)) == pytest.approx(-0.001)
    assert float(pendulum.reward(0.0, 1.0, 0.0, params)) == pytest.approx(-0.1)
    assert float(pendulum.reward(1.0, 0.0, 0.0, params)) == pytest.approx(-1.0)

    rng = np.random.default_rng(2)
    th = rng.uniform(-np.pi, np.pi, 10_000).astype(np.float32)
    thd = rng.uniform(-8, 8, 10_000).astype(np.float32)
    u = rng.uniform(-5, 5, 10_000).astype(np.float32)
    r = np.asarray(pendulum.reward(th, thd, u, params))
    assert r.max() <= 0.0 and r.min() >= worst * (1 + 1e-6)


def test_reset_host_distribution_and_observation():
    """reset_host (NumPy, used to start training runs without compiling) draws
    the same distribution as reset, float32, time 0 and return 0; its
    observation agrees with pendulum.observe of its state to float32 precision;
    the same generator seed repeats, another seed differs; bad N is rejected."""
    params = PendulumParams.gymnasium()
    state, obs = pendulum.reset_host(np.random.default_rng(3), 20_000, params)
    th, thd = state.theta, state.theta_dot
    assert (
        th.dtype == np.float32 and thd.dtype == np.float32 and obs.dtype == np.float32
    )
    assert (
        state.time.dtype == np.int32
        and not state.time.any()
        and not state.episode_return.any()
    )
    assert_in_wrapped_range(th)
    assert np.abs(thd).max() <= 1.0 and th.min() < -3.1 and th.max() > 3.1
    assert abs(th.mean()) < 0.1 and abs(thd.mean()) < 0.05
    assert abs(th.std() - np.pi / np.sqrt(3)) < 0.05
    np.testing.assert_allclose(obs, np.asarray(pendulum.observe(th, thd)), atol=1e-6)
    again, _ = pendulum.reset_host(np.random.default_rng(3), 20_000, params)
    np.testing.assert_array_equal(again.theta, th)
    other, _ = pendulum.reset_host(np.random.default_rng(4), 20_000, params)
    assert not np.allclose(other.theta, th)
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="num_envs"):
            pendulum.reset_host(np.random.default_rng(0), bad, params)


def test_env_step_with_non_finite_torques_and_states():
    """As env_step documents: an infinite torque is clipped like any other; a
    NaN torque or state poisons only its own environment, until the episode
    ends and the auto-reset brings it back to finite values."""
    params = PendulumParams.gymnasium(episode_length=3)
    state, _ = pendulum.reset(jax.random.key(0), 4, params)
    torque = jnp.array([jnp.inf, -jnp.inf, jnp.nan, 0.0], jnp.float32)
    clipped = jnp.array([params.max_torque, -params.max_torque, 0.0, 0.0], jnp.float32)
    new, result = pendulum.env_step(state, torque, jax.random.key(1), params)
    ref, ref_result = pendulum.env_step(state, clipped, jax.random.key(1), params)
    for i in (0, 1, 3):  # infinite torques act as the limit; the others are untouched
        assert float(new.theta[i]) == float(ref.theta[i])
        assert float(result.reward[i]) == float(ref_result.reward[i])
    assert np.isnan(float(new.theta_dot[2])) and np.isnan(float(result.reward[2]))
    assert np.isnan(np.asarray(result.obs[2])).any()
    state = new.replace(theta=new.theta.at[3].set(jnp.nan))  # a NaN state
    for t in range(2):  # the episode ends at its third step
        state, result = pendulum.env_step(
            state, jnp.zeros(4), jax.random.key(2 + t), params
        )
        if t == 0:
            assert np.isnan(float(result.reward[3])) and np.isnan(
                float(state.episode_return[2])
            )
    assert bool(result.truncated.all())
    assert (
        np.isfinite(np.asarray(state.theta)).all()
        and np.isfinite(np.asarray(result.obs)).all()
    )
    assert (
        np.isnan(np.asarray(result.final_obs[2:])).any(axis=-1).all()
    )  # the true last obs


def test_a_torque_of_another_shape_is_refused():
    """An (N, 1) torque (the actor's output) against an (N,) state would
    broadcast the state to (N, N) without a word: refused in one line; a
    scalar torque still broadcasts."""
    params = PendulumParams.gymnasium()
    state, _ = pendulum.reset(jax.random.key(0), 4, params)
    with pytest.raises(ValueError, match=r"must have one shape .* \(4, 1\)"):
        pendulum.env_step(state, jnp.zeros((4, 1)), jax.random.key(1), params)
    with pytest.raises(ValueError, match="must have one shape"):
        pendulum.step(jnp.zeros(4), jnp.zeros(3), jnp.zeros(4), params)
    theta, _ = pendulum.step(state.theta, state.theta_dot, 0.5, params)
    assert theta.shape == (4,)
    # the reward and Chapter 1's explicit Euler step refuse it alike
    for fn in (pendulum.reward, pendulum.explicit_euler_step):
        with pytest.raises(ValueError, match=r"must have one shape .* \(4, 1\)"):
            fn(state.theta, state.theta_dot, jnp.zeros((4, 1)), params)
    assert pendulum.reward(state.theta, state.theta_dot, 0.5, params).shape == (4,)
    euler = pendulum.explicit_euler_step(state.theta, state.theta_dot, 0.5, params)
    assert euler[0].shape == (4,)
    # a grid of states in one call (Chapter 1's reward map) still broadcasts
    grid = np.meshgrid(np.linspace(-3, 3, 5), np.linspace(-8, 8, 3))
    assert pendulum.reward(*grid, 0.0, params).shape == (3, 5)
