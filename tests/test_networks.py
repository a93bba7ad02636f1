"""Tests for sacbook.networks: the tanh-squashed Gaussian against a numerical
float64 density of tanh(N(mu, sigma)), its stability for saturated actions,
the actor and twin-critic modules, and parameter counts."""

from __future__ import annotations

import decimal
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import erfc

from sacbook import networks
from sacbook.networks import LOG_STD_MAX, LOG_STD_MIN

# (mu, log_std) pairs: std from 0.01 (a near-deterministic policy) to e^2
# (the widest the actor allows, which puts most mass near a = +-1).
DIST_PARAMS = [
    (0.0, 0.0),
    (0.3, math.log(0.05)),
    (2.0, math.log(0.01)),
    (-1.2, math.log(0.4)),
    (-3.0, math.log(2.5)),
    (0.5, LOG_STD_MAX),
]


# ----------------------------------------------------------------------------
# A float64 reference density of a = tanh(u), u ~ N(mu, sigma), obtained by
# numerically differentiating the CDF P(A <= a) = Phi((atanh(a) - mu) / sigma).
#
# A point a is represented by its sign and its distance d = 1 - |a| to the
# nearest boundary, so that actions within 1e-30 of +-1 keep full relative
# precision (a float64 `a` itself would round to 1). The CDF is evaluated as
# whichever tail is smaller, with erfc, to avoid cancellation.
# ----------------------------------------------------------------------------


def _boundary_distance(u):
    """d = 1 - |tanh(u)|, computed without cancellation: 2 e^{-2|u|} / (1 + e^{-2|u|})."""
    e = np.exp(-2.0 * np.abs(u))
    return 2.0 * e / (1.0 + e)


def _atanh_signed(sign, d):
    """atanh(sign * (1 - d)) for d in (0, 2), accurate for tiny d."""
    return sign * 0.5 * (np.log(2.0 - d) - np.log(d))


def _cdf_tail(z, upper):
    """Phi(z) where ``upper`` is False, 1 - Phi(z) where True, both via erfc (no cancellation)."""
    return np.where(
        upper, 0.5 * erfc(z / math.sqrt(2.0)), 0.5 * erfc(-z / math.sqrt(2.0))
    )


def reference_density(u, mu, sigma, rel_step=1e-5):
    """p(a) at a = tanh(u) (float64), by central differences of the CDF in a."""
    u = np.asarray(u, np.float64)
    sign = np.where(u >= 0, 1.0, -1.0)
    d = _boundary_distance(u)
    h = rel_step * np.minimum(d, 1.0)  # step in a, small against the distance to +-1
    # a + h and a - h as distances to the boundary on a's side: for a > 0, a + h
    # is closer to 1 (d - h); for a < 0, a + h is farther from -1 (d + h).
    d_plus, d_minus = d - sign * h, d + sign * h
    # Difference whichever tail of the CDF is smaller at a: P(A <= a) below the
    # median, P(A > a) = 1 - P(A <= a) above it (whose derivative flips sign).
    upper = _atanh_signed(sign, d) > mu
    f_plus = _cdf_tail((_atanh_signed(sign, d_plus) - mu) / sigma, upper)
    f_minus = _cdf_tail((_atanh_signed(sign, d_minus) - mu) / sigma, upper)
    return np.where(upper, -1.0, 1.0) * (f_plus - f_minus) / (2.0 * h)


def _tanh_diff(u1, u2):
    """tanh(u2) - tanh(u1) without cancellation: sinh(u2 - u1) / (cosh(u1) cosh(u2))."""
    return np.sinh(u2 - u1) / (np.cosh(u1) * np.cosh(u2))


def integrate_over_actions(density, u):
    """Trapezoidal integral of ``density`` (sampled at a = tanh(u), u sorted) over a."""
    widths = _tanh_diff(u[:-1], u[1:])
    return float(np.sum(0.5 * (density[:-1] + density[1:]) * widths))


def _node_grid(mu, sigma, n=6001, span=9.0, limit=40.0):
    """Pre-tanh nodes covering mu +- span sigma, within [-limit, limit], as float32 values
    (so that the package and the reference see exactly the same points)."""
    lo, hi = max(mu - span * sigma, -limit), min(mu + span * sigma, limit)
    u32 = np.unique(np.linspace(lo, hi, n).astype(np.float32))
    return u32


@pytest.mark.parametrize("mu, log_std", DIST_PARAMS)
def test_squashed_log_prob_matches_numerical_density(mu, log_std):
    """squashed_log_prob equals the log of a float64 numerical derivative of the CDF of tanh(N(mu, sigma))."""
    mu32, ls32 = np.float32(mu), np.float32(log_std)
    sigma = math.exp(float(ls32))
    u32 = _node_grid(float(mu32), sigma, n=801, span=8.0)
    ref = reference_density(u32.astype(np.float64), float(mu32), sigma)
    got = np.asarray(
        networks.squashed_log_prob(
            jnp.asarray(u32)[:, None],
            jnp.full((u32.size, 1), mu32),
            jnp.full((u32.size, 1), ls32),
        ),
        np.float64,
    )
    assert got.shape == u32.shape
    keep = ref > 1e-250  # the reference underflows far in the tails
    assert keep.sum() > 0.9 * u32.size
    np.testing.assert_allclose(got[keep], np.log(ref[keep]), rtol=1e-5, atol=2e-4)


@pytest.mark.parametrize("mu, log_std", DIST_PARAMS)
def test_squashed_density_integrates_to_one(mu, log_std):
    """The numerical reference density and exp(squashed_log_prob) both integrate to ~1 over a in (-1, 1)."""
    mu32, ls32 = np.float32(mu), np.float32(log_std)
    sigma = math.exp(float(ls32))
    u32 = _node_grid(float(mu32), sigma)
    u64 = u32.astype(np.float64)
    # Mass of u outside the nodes (only non-negligible when the grid is clipped at +-40).
    outside = 0.5 * erfc((u64[-1] - float(mu32)) / sigma / math.sqrt(2)) + 0.5 * erfc(
        (float(mu32) - u64[0]) / sigma / math.sqrt(2)
    )
    assert outside < 1e-6
    ref = reference_density(u64, float(mu32), sigma)
    assert integrate_over_actions(ref, u64) == pytest.approx(1.0, abs=2e-4)
    log_p = networks.squashed_log_prob(
        jnp.asarray(u32)[:, None],
        jnp.full((u32.size, 1), mu32),
        jnp.full((u32.size, 1), ls32),
    )
    pkg = np.exp(np.asarray(log_p, np.float64))
    assert integrate_over_actions(pkg, u64) == pytest.approx(1.0, abs=2e-4)


def _decimal_log_one_minus_tanh_sq(u: float) -> float:
    """log(1 - tanh(u)^2) in 300-digit decimal arithmetic (1 - tanh(100)^2 ~ 1e-86 survives)."""
    with decimal.localcontext() as ctx:
        ctx.prec = 300
        e2u = (decimal.Decimal(2) * decimal.Decimal(float(u))).exp()
        t = (e2u - 1) / (e2u + 1)
        return float((1 - t * t).ln())


@pytest.mark.parametrize("u", [20.0, -20.0, 50.0, -50.0, 100.0, -100.0])
def test_squashed_log_prob_finite_when_saturated(u):
    """For |u| = 20, 50, 100 (tanh(u) rounds to +-1) the log-density is finite and equals a 300-digit reference."""
    assert float(jnp.tanh(jnp.float32(u))) == math.copysign(1.0, u)  # really saturated
    for mean, log_std in ((u, 0.0), (0.0, LOG_STD_MAX), (u - 1.0, -1.0)):
        m32, l32, u32 = np.float32(mean), np.float32(log_std), np.float32(u)
        got = float(
            networks.squashed_log_prob(
                jnp.array([u32]), jnp.array([m32]), jnp.array([l32])
            )
        )
        assert math.isfinite(got)
        sigma = math.exp(float(l32))
        z = (float(u32) - float(m32)) / sigma
        ref = (
            -0.5 * z * z
            - float(l32)
            - 0.5 * math.log(2 * math.pi)
            - _decimal_log_one_minus_tanh_sq(float(u32))
        )
        assert got == pytest.approx(ref, rel=1e-6, abs=1e-4)


@pytest.mark.parametrize("mean", [0.0, 3.0, 30.0, -30.0])
def test_sample_log_prob_gradients_finite_for_large_means(mean):
    """Gradients of a reparameterised sample's log-prob w.r.t. mean and log_std are finite, even at mean = +-30."""
    key = jax.random.key(0)
    shape = (64, 2)
    means = jnp.full(shape, mean, jnp.float32)
    log_stds = jnp.full(shape, 0.5, jnp.float32)

    def total_log_prob(m, s):
        return jnp.sum(networks.sample_action(key, m, s)[1])

    g_mean, g_log_std = jax.grad(total_log_prob, argnums=(0, 1))(means, log_stds)
    assert np.all(np.isfinite(g_mean)) and np.all(np.isfinite(g_log_std))
    # d/du [-log(1 - tanh(u)^2)] = 2 tanh(u), and u = mean + std * eps gives du/dmean = 1
    # (the Gaussian term depends on eps only), so the mean-gradient is 2 tanh(u).
    eps = np.asarray(jax.random.normal(key, shape, jnp.float32), np.float64)
    u = mean + math.exp(0.5) * eps
    np.testing.assert_allclose(
        np.asarray(g_mean, np.float64), 2.0 * np.tanh(u), rtol=1e-4, atol=1e-5
    )
    # d/dlog_std = -1 (Gaussian normaliser) + 2 tanh(u) * std * eps.
    np.testing.assert_allclose(
        np.asarray(g_log_std, np.float64),
        -1.0 + 2.0 * np.tanh(u) * math.exp(0.5) * eps,
        rtol=1e-4,
        atol=1e-4,
    )


def test_tanh_log_det_jacobian_matches_float64():
    """tanh_log_det_jacobian equals float64 log(1 - tanh(u)^2), summed over the last axis, for moderate u."""
    u = np.linspace(-8.0, 8.0, 1601, dtype=np.float32)
    got = np.asarray(
        networks.tanh_log_det_jacobian(jnp.asarray(u)[:, None]), np.float64
    )
    u64 = u.astype(np.float64)
    ref = np.log(1.0 - np.tanh(u64) ** 2)
    assert got.shape == u.shape
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    u3 = u.reshape(-1, 1)[:1599].reshape(533, 3)  # sums over the last axis
    got3 = np.asarray(networks.tanh_log_det_jacobian(jnp.asarray(u3)), np.float64)
    np.testing.assert_allclose(
        got3,
        np.log(1.0 - np.tanh(u3.astype(np.float64)) ** 2).sum(-1),
        rtol=1e-5,
        atol=3e-5,
    )


def test_sample_action_shapes_range_and_reparameterisation():
    """sample_action gives actions tanh(mean + std eps) in [-1, 1] of shape (..., d) and log-probs of shape (...)."""
    key = jax.random.key(7)
    shape = (4, 5, 2)
    mean = jax.random.normal(jax.random.key(1), shape) * 10.0
    log_std = jax.random.uniform(
        jax.random.key(2), shape, minval=LOG_STD_MIN, maxval=LOG_STD_MAX
    )
    action, log_prob = networks.sample_action(key, mean, log_std)
    assert action.shape == shape and log_prob.shape == shape[:-1]
    assert action.dtype == jnp.float32 and log_prob.dtype == jnp.float32
    a = np.asarray(action)
    assert np.all(a >= -1.0) and np.all(a <= 1.0)
    assert np.all(np.isfinite(np.asarray(log_prob)))
    eps = np.asarray(jax.random.normal(key, shape), np.float64)
    u = np.asarray(mean, np.float64) + np.exp(np.asarray(log_std, np.float64)) * eps
    np.testing.assert_allclose(a, np.tanh(u), atol=1e-6)
    np.testing.assert_allclose(
        np.asarray(log_prob),
        np.asarray(
            networks.squashed_log_prob(jnp.asarray(u, jnp.float32), mean, log_std)
        ),
        rtol=1e-5,
        atol=1e-4,
    )


def test_deterministic_and_scaled_actions():
    """deterministic_action is tanh(mean) and scale_action maps [-1, 1] onto [-max_torque, max_torque]."""
    mean = jnp.asarray(np.linspace(-30, 30, 101, dtype=np.float32))
    det = np.asarray(networks.deterministic_action(mean), np.float64)
    np.testing.assert_allclose(det, np.tanh(np.asarray(mean, np.float64)), atol=1e-6)
    assert np.all(np.abs(det) <= 1.0)
    torque = np.asarray(networks.scale_action(jnp.asarray(det, jnp.float32), 2.0))
    assert np.all(np.abs(torque) <= 2.0)
    np.testing.assert_allclose(torque, 2.0 * det, rtol=1e-6, atol=1e-6)
    ends = np.asarray(networks.scale_action(jnp.array([-1.0, 0.0, 1.0]), 2.5))
    np.testing.assert_array_equal(ends, [-2.5, 0.0, 2.5])


def test_actor_shapes_and_log_std_bounds():
    """Actor maps (..., obs_dim) to mean and log_std of shape (..., action_dim), log_std in its bounds even for huge inputs."""
    actor = networks.Actor(action_dim=2, hidden_sizes=(16, 16))
    obs = jax.random.normal(jax.random.key(0), (7, 3))
    params = jax.jit(actor.init)(
        jax.random.key(1), obs
    )  # jit: eager flax init is slow on CPU
    apply = jax.jit(actor.apply)
    mean, log_std = apply(params, obs)
    assert mean.shape == (7, 2) and log_std.shape == (7, 2)
    mean3, log_std3 = apply(params, jnp.zeros((2, 5, 3)))
    assert mean3.shape == (2, 5, 2) and log_std3.shape == (2, 5, 2)
    for scale in (1.0, 1e3, -1e3):
        _, ls = apply(params, obs * scale)
        ls = np.asarray(ls)
        assert np.all(np.isfinite(ls))
        assert np.all(ls >= LOG_STD_MIN) and np.all(ls <= LOG_STD_MAX)
    # With huge inputs the raw head saturates: log_std reaches the bounds themselves.
    _, ls_big = apply(params, obs * 1e3)
    assert np.any(
        np.isclose(np.asarray(ls_big), LOG_STD_MIN, atol=1e-3)
        | np.isclose(np.asarray(ls_big), LOG_STD_MAX, atol=1e-3)
    )


def test_twin_critic_independent_critics():
    """TwinCritic returns (2, B); every parameter leaf has a leading axis 2 and the two critics differ in params and outputs."""
    critic = networks.TwinCritic(hidden_sizes=(16, 16))
    obs = jax.random.normal(jax.random.key(0), (9, 3))
    act = jax.random.uniform(jax.random.key(1), (9, 1), minval=-1, maxval=1)
    params = jax.jit(critic.init)(jax.random.key(2), obs, act)
    q = jax.jit(critic.apply)(params, obs, act)
    assert q.shape == (2, 9)
    leaves = jax.tree.leaves(params)
    assert leaves and all(x.shape[0] == 2 for x in leaves)
    kernels = [x for x in leaves if x.ndim == 3]
    assert kernels and all(not np.allclose(x[0], x[1]) for x in kernels)
    assert not np.allclose(q[0], q[1])
    # Each slice of the ensemble is an ordinary Critic.
    single_apply = jax.jit(networks.Critic(hidden_sizes=(16, 16)).apply)
    (inner,) = params["params"].values()  # the vmapped Critic's parameters
    for i in range(2):
        params_i = {"params": jax.tree.map(lambda x, i=i: x[i], inner)}
        np.testing.assert_allclose(
            single_apply(params_i, obs, act), q[i], rtol=1e-5, atol=1e-5
        )


def test_param_count_matches_hand_count():
    """param_count gives the hand-counted sizes of the (64, 64) actor and twin critic for the pendulum."""
    obs, act = jnp.zeros((1, 3)), jnp.zeros((1, 1))
    # Shapes suffice to count parameters: eval_shape runs no computation.
    actor_params = jax.eval_shape(
        networks.Actor(1, (64, 64)).init, jax.random.key(0), obs
    )
    critic_params = jax.eval_shape(
        networks.TwinCritic((64, 64)).init, jax.random.key(0), obs, act
    )
    actor_hand = (3 * 64 + 64) + (64 * 64 + 64) + (64 * 2 + 2)  # = 4546
    critic_hand = 2 * ((4 * 64 + 64) + (64 * 64 + 64) + (64 * 1 + 1))  # = 9090
    assert networks.param_count(actor_params) == actor_hand == 4546
    assert networks.param_count(critic_params) == critic_hand == 9090
