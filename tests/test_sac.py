"""Tests for sacbook.sac: config validation, the soft TD target, the three
losses against a float64 NumPy recomputation (with the networks evaluated in
NumPy from their parameters), truncation vs termination, Polyak averaging,
the temperature's direction, and the jitted update."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sacbook import sac
from sacbook.networks import LOG_STD_MAX, LOG_STD_MIN
from sacbook.replay import Transition
from sacbook.sac import SACConfig

CFG = SACConfig(hidden_sizes=(8, 8), batch_size=5)
B = CFG.batch_size
LOG_ALPHA = math.log(0.3)

init_jit = sac.init  # parameters are drawn on the host: fast, no compile
critic_loss_jit = jax.jit(sac.critic_loss, static_argnums=6)
actor_loss_jit = jax.jit(sac.actor_loss, static_argnums=5)


# ----------------------------------------------------------------------------
# Float64 NumPy reference networks, evaluated from the Flax parameter trees.
# ----------------------------------------------------------------------------


def _np_mlp(mlp_params, x):
    """Dense -> relu -> ... -> Dense in float64, layers in the order Dense_0, Dense_1, ..."""
    names = sorted(mlp_params, key=lambda name: int(name.rsplit("_", 1)[1]))
    for i, name in enumerate(names):
        x = x @ np.asarray(mlp_params[name]["kernel"], np.float64) + np.asarray(
            mlp_params[name]["bias"], np.float64
        )
        if i < len(names) - 1:
            x = np.maximum(x, 0.0)
    return x


def np_actor(actor_params, obs, action_dim=1):
    """(mean, log_std) in float64, log_std squashed into [LOG_STD_MIN, LOG_STD_MAX] by tanh."""
    out = _np_mlp(actor_params["params"]["MLP_0"], np.asarray(obs, np.float64))
    mean, raw = out[..., :action_dim], out[..., action_dim:]
    log_std = LOG_STD_MIN + (LOG_STD_MAX - LOG_STD_MIN) * (np.tanh(raw) + 1.0) / 2.0
    return mean, log_std


def np_critics(critic_params, obs, action):
    """Q values of every critic in the ensemble, float64, shape (num_critics, B)."""
    (ensemble,) = critic_params["params"].values()  # the vmapped Critic
    mlp = ensemble["MLP_0"]
    n = jax.tree.leaves(mlp)[0].shape[0]
    x = np.concatenate(
        [np.asarray(obs, np.float64), np.asarray(action, np.float64)], axis=-1
    )
    return np.stack(
        [_np_mlp(jax.tree.map(lambda p, i=i: p[i], mlp), x)[..., 0] for i in range(n)]
    )


def np_sample(key, mean, log_std):
    """The package's reparameterised sample, redone in float64: the same noise
    (jax.random.normal(key, mean.shape)), action tanh(u), and the log-density of
    tanh(u) by the change-of-variables formula."""
    eps = np.asarray(jax.random.normal(key, mean.shape, jnp.float32), np.float64)
    std = np.exp(log_std)
    u = mean + std * eps
    log_gauss = np.sum(-0.5 * eps**2 - log_std - 0.5 * np.log(2 * np.pi), axis=-1)
    log_prob = log_gauss - np.sum(np.log(1.0 - np.tanh(u) ** 2), axis=-1)
    return np.tanh(u), log_prob


def np_td_target(reward, terminated, next_q, next_log_prob, alpha, gamma):
    reward = np.asarray(reward, np.float64)
    return reward + gamma * (1.0 - np.asarray(terminated, np.float64)) * (
        next_q - alpha * next_log_prob
    )


def np_critic_loss(state, batch, key, log_alpha):
    cfg = state.config
    next_mean, next_log_std = np_actor(
        state.actor_params, batch.next_obs, cfg.action_dim
    )
    next_action, next_log_prob = np_sample(key, next_mean, next_log_std)
    next_q = np_critics(state.target_critic_params, batch.next_obs, next_action).min(
        axis=0
    )
    y = np_td_target(
        batch.reward,
        batch.terminated,
        next_q,
        next_log_prob,
        math.exp(log_alpha),
        cfg.gamma,
    )
    q = np_critics(state.critic_params, batch.obs, batch.action)
    return 0.5 * np.sum(np.mean((q - y) ** 2, axis=-1)), q, y


def np_actor_loss(actor_params, critic_params, obs, key, log_alpha, action_dim=1):
    mean, log_std = np_actor(actor_params, obs, action_dim)
    action, log_prob = np_sample(key, mean, log_std)
    q = np_critics(critic_params, obs, action).min(axis=0)
    return np.mean(math.exp(log_alpha) * log_prob - q), log_prob


# ----------------------------------------------------------------------------
# Fixtures
# ----------------------------------------------------------------------------


def make_batch(seed=0, n=B):
    rng = np.random.default_rng(seed)
    return Transition(
        obs=jnp.asarray(rng.normal(size=(n, 3)), jnp.float32),
        action=jnp.asarray(rng.uniform(-1, 1, size=(n, 1)), jnp.float32),
        reward=jnp.asarray(rng.uniform(-6, 0, size=n), jnp.float32),
        next_obs=jnp.asarray(rng.normal(size=(n, 3)), jnp.float32),
        terminated=jnp.asarray(
            [False, True, False, False, True][:n] + [False] * max(0, n - 5)
        ),
        truncated=jnp.asarray(
            [True, False, False, True, False][:n] + [False] * max(0, n - 5)
        ),
    )


@pytest.fixture(scope="module")
def state():
    """A tiny SAC state whose target critics differ from the online ones and whose alpha is 0.3."""
    s = init_jit(jax.random.key(0), CFG)
    leaves, treedef = jax.tree.flatten(s.target_critic_params)
    keys = jax.random.split(jax.random.key(99), len(leaves))
    noisy = [
        x + 0.1 * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys)
    ]
    return s.replace(
        target_critic_params=jax.tree.unflatten(treedef, noisy),
        log_alpha=jnp.float32(LOG_ALPHA),
    )


@pytest.fixture(scope="module")
def batch():
    return make_batch()


# ----------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------

BAD_CONFIGS = [
    ("gamma", 1.0),
    ("gamma", -0.1),
    ("gamma", float("nan")),
    ("tau", 0.0),
    ("tau", 1.5),
    ("tau", float("nan")),
    ("actor_lr", 0.0),
    ("critic_lr", -1e-3),
    ("alpha_lr", 0.0),
    ("actor_lr", float("nan")),
    ("critic_lr", float("inf")),
    ("batch_size", 0),
    ("batch_size", 2.0),
    ("hidden_sizes", ()),
    ("hidden_sizes", (0,)),
    ("hidden_sizes", (8, -1)),
    ("activation", "nope"),
    ("init_alpha", 0.0),
    ("init_alpha", float("nan")),
    ("target_entropy", float("nan")),
    ("obs_dim", 0),
    ("action_dim", 0),
    ("num_critics", 0),
]


@pytest.mark.parametrize("field, value", BAD_CONFIGS)
def test_config_rejects_bad_values(field, value):
    """SACConfig raises a ValueError naming the field for each out-of-range, NaN or mistyped value."""
    with pytest.raises(ValueError, match=rf"\b{field}\b"):
        SACConfig(**{field: value})


def test_config_defaults_and_entropy_target():
    """entropy_target defaults to -action_dim, follows target_entropy when set, and configs are hashable."""
    assert SACConfig().entropy_target == -1.0
    assert SACConfig(action_dim=3).entropy_target == -3.0
    assert SACConfig(target_entropy=0.5).entropy_target == 0.5
    cfg = SACConfig(hidden_sizes=[8, 8])
    assert cfg.hidden_sizes == (8, 8) and hash(cfg) == hash(
        SACConfig(hidden_sizes=(8, 8))
    )


SWEPT = ("gamma", "tau", "actor_lr", "critic_lr", "alpha_lr")


def test_swept_fields_are_declared_on_the_config_fields():
    """TRACED (gamma, tau, the three learning rates) and SWEEPABLE (those and
    init_alpha) are what SACConfig's fields declare in their metadata, and
    nothing else; the shapes (widths, batch size) are in neither."""
    assert sac.TRACED == SWEPT
    assert sac.SWEEPABLE == (*SWEPT, "init_alpha")
    declared = {f.name: f.metadata.get("sweep") for f in dataclasses.fields(SACConfig)}
    assert [name for name, kind in declared.items() if kind == "traced"] == list(
        sac.TRACED
    )
    assert [name for name, kind in declared.items() if kind] == list(sac.SWEEPABLE)
    assert declared["batch_size"] is None and declared["hidden_sizes"] is None


def test_hyperparams_hold_the_traced_values_as_float32():
    """Hyperparams.of(config): one float32 scalar per TRACED field, read as
    attributes; any other name is an AttributeError (getattr's default works)."""
    cfg = SACConfig(gamma=0.9, tau=0.1, actor_lr=1e-4, critic_lr=2e-4, alpha_lr=3e-4)
    hyper = sac.Hyperparams.of(cfg)
    assert hyper.tau == np.float32(cfg.tau) and hyper.tau.dtype == np.float32
    for name in SWEPT:
        value = getattr(hyper, name)
        assert value == np.float32(getattr(cfg, name)) and value.dtype == np.float32
    assert sorted(hyper.values) == sorted(SWEPT)
    assert len(jax.tree.leaves(hyper)) == len(SWEPT)  # a pytree: traced leaves
    for name in ("init_alpha", "batch_size", "nope"):
        with pytest.raises(AttributeError, match=f"Hyperparams has no field '{name}'"):
            getattr(hyper, name)
    assert getattr(hyper, "init_alpha", None) is None
    # M settings stack into (M,) leaves, as a sweep passes them
    stacked = jax.tree.map(
        lambda *v: np.stack(v), hyper, sac.Hyperparams.of(SACConfig(tau=0.5))
    )
    np.testing.assert_array_equal(stacked.tau, np.float32([0.1, 0.5]))


# ----------------------------------------------------------------------------
# Target and losses
# ----------------------------------------------------------------------------


def test_soft_td_target_matches_formula():
    """soft_td_target equals r + gamma (1 - terminated)(next_q - alpha next_log_prob) in float64, and r where terminated."""
    rng = np.random.default_rng(1)
    r = rng.normal(size=8).astype(np.float32)
    nq = rng.normal(size=8).astype(np.float32) * 10
    nlp = rng.normal(size=8).astype(np.float32)
    term = rng.random(8) < 0.5
    got = np.asarray(
        sac.soft_td_target(
            jnp.asarray(r),
            jnp.asarray(term),
            jnp.asarray(nq),
            jnp.asarray(nlp),
            0.3,
            0.97,
        )
    )
    ref = np_td_target(
        r, term, nq.astype(np.float64), nlp.astype(np.float64), 0.3, 0.97
    )
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)
    all_term = sac.soft_td_target(
        jnp.asarray(r), jnp.ones(8, bool), jnp.asarray(nq), jnp.asarray(nlp), 0.3, 0.97
    )
    np.testing.assert_array_equal(
        np.asarray(all_term), r
    )  # exactly the reward: nothing bootstrapped


def test_critic_loss_matches_numpy(state, batch):
    """critic_loss equals a float64 NumPy recomputation from the networks' parameters and the same noise."""
    key = jax.random.key(5)
    loss, aux = critic_loss_jit(
        state.critic_params,
        state.target_critic_params,
        state.actor_params,
        state.log_alpha,
        batch,
        key,
        CFG,
    )
    ref, q, _ = np_critic_loss(state, batch, key, LOG_ALPHA)
    assert float(loss) == pytest.approx(ref, rel=2e-5)
    assert list(aux) == ["q_mean"]
    assert float(aux["q_mean"]) == pytest.approx(q.mean(), rel=1e-4, abs=1e-5)
    # The NumPy networks are the Flax networks (guards the reference itself).
    np.testing.assert_allclose(
        np.asarray(CFG.critic().apply(state.critic_params, batch.obs, batch.action)),
        q,
        rtol=1e-5,
        atol=1e-6,
    )


def test_critic_loss_has_no_gradient_through_target(state, batch):
    """critic_loss passes no gradient to the actor or the temperature (the target is stop-gradient'ed)."""
    (g_actor, g_alpha, g_target), _ = jax.jit(
        jax.grad(sac.critic_loss, argnums=(2, 3, 1), has_aux=True), static_argnums=6
    )(
        state.critic_params,
        state.target_critic_params,
        state.actor_params,
        state.log_alpha,
        batch,
        jax.random.key(5),
        CFG,
    )
    for g in (g_actor, g_alpha, g_target):
        assert all(np.all(np.asarray(x) == 0) for x in jax.tree.leaves(g))


def test_truncation_does_not_change_critic_loss_but_termination_does(state, batch):
    """Flipping truncated leaves critic_loss bit-identical; flipping terminated changes it exactly as the formula says."""
    key = jax.random.key(6)
    args = (
        state.critic_params,
        state.target_critic_params,
        state.actor_params,
        state.log_alpha,
    )
    base = float(critic_loss_jit(*args, batch, key, CFG)[0])
    flipped_trunc = batch.replace(truncated=~batch.truncated)
    assert float(critic_loss_jit(*args, flipped_trunc, key, CFG)[0]) == base
    all_trunc = batch.replace(truncated=jnp.ones(B, bool))
    assert float(critic_loss_jit(*args, all_trunc, key, CFG)[0]) == base
    flipped_term = batch.replace(terminated=~batch.terminated)
    got = float(critic_loss_jit(*args, flipped_term, key, CFG)[0])
    ref, _, y = np_critic_loss(state, flipped_term, key, LOG_ALPHA)
    assert got != base
    assert got == pytest.approx(ref, rel=2e-5)
    # Where now terminated, the target is the bare reward.
    term = np.asarray(flipped_term.terminated)
    np.testing.assert_allclose(y[term], np.asarray(batch.reward, np.float64)[term])
    # All terminated: the target is the bare reward, whatever the next state.
    all_term = batch.replace(terminated=jnp.ones(B, bool))
    loss = float(critic_loss_jit(*args, all_term, key, CFG)[0])
    q = np_critics(state.critic_params, batch.obs, batch.action)
    reward = np.asarray(batch.reward, np.float64)
    assert loss == pytest.approx(0.5 * np.sum(np.mean((q - reward) ** 2, -1)), rel=2e-5)


def test_actor_loss_matches_numpy(state, batch):
    """actor_loss and its log-probs equal a float64 NumPy recomputation, and it passes no gradient to alpha."""
    key = jax.random.key(7)
    loss, log_prob = actor_loss_jit(
        state.actor_params, state.critic_params, state.log_alpha, batch.obs, key, CFG
    )
    ref, ref_log_prob = np_actor_loss(
        state.actor_params, state.critic_params, batch.obs, key, LOG_ALPHA
    )
    assert log_prob.shape == (B,)
    np.testing.assert_allclose(np.asarray(log_prob), ref_log_prob, rtol=1e-5, atol=1e-5)
    assert float(loss) == pytest.approx(ref, rel=1e-5, abs=1e-6)
    g_alpha, _ = jax.jit(
        jax.grad(sac.actor_loss, argnums=2, has_aux=True), static_argnums=5
    )(state.actor_params, state.critic_params, state.log_alpha, batch.obs, key, CFG)
    assert float(g_alpha) == 0.0


def test_temperature_loss_matches_numpy():
    """temperature_loss is -log_alpha mean(log_prob + target) and its gradient is entropy - target, in float64."""
    rng = np.random.default_rng(2)
    log_prob = rng.normal(size=16).astype(np.float32)
    for log_alpha, target in ((0.4, -1.0), (-2.0, 3.0), (0.0, -1.0)):
        got = float(
            sac.temperature_loss(jnp.float32(log_alpha), jnp.asarray(log_prob), target)
        )
        ref = -np.float64(np.float32(log_alpha)) * np.mean(
            log_prob.astype(np.float64) + target
        )
        assert got == pytest.approx(ref, rel=1e-6, abs=1e-7)
        grad = float(
            jax.grad(sac.temperature_loss)(
                jnp.float32(log_alpha), jnp.asarray(log_prob), target
            )
        )
        entropy = -np.mean(log_prob.astype(np.float64))
        assert grad == pytest.approx(entropy - target, rel=1e-6, abs=1e-6)
        # No gradient reaches the policy through the temperature loss.
        g_lp = jax.grad(sac.temperature_loss, argnums=1)(
            jnp.float32(log_alpha), jnp.asarray(log_prob), target
        )
        assert np.all(np.asarray(g_lp) == 0)


# ----------------------------------------------------------------------------
# Polyak averaging and the update
# ----------------------------------------------------------------------------


def test_polyak_update_leaf_by_leaf():
    """polyak_update gives tau online + (1 - tau) target on every leaf, in float64."""
    rng = np.random.default_rng(3)
    target = {
        "a": rng.normal(size=(3, 4)).astype(np.float32),
        "b": [rng.normal(size=5).astype(np.float32)],
    }
    online = jax.tree.map(
        lambda x: (x + rng.normal(size=x.shape)).astype(np.float32), target
    )
    for tau in (0.005, 0.3, 1.0):
        got = sac.polyak_update(
            jax.tree.map(jnp.asarray, target), jax.tree.map(jnp.asarray, online), tau
        )

        def mix(t, o, tau=tau):
            return tau * o.astype(np.float64) + (1 - tau) * t.astype(np.float64)

        ref = jax.tree.map(mix, target, online)
        assert jax.tree.structure(got) == jax.tree.structure(ref)
        for g, r in zip(jax.tree.leaves(got), jax.tree.leaves(ref)):
            np.testing.assert_allclose(np.asarray(g), r, rtol=1e-6, atol=1e-6)
    same = sac.polyak_update(
        jax.tree.map(jnp.asarray, target), jax.tree.map(jnp.asarray, online), 1.0
    )
    for g, o in zip(jax.tree.leaves(same), jax.tree.leaves(online)):
        np.testing.assert_allclose(np.asarray(g), o, rtol=1e-6, atol=1e-6)


@pytest.fixture(scope="module")
def updated(state, batch):
    key = jax.random.key(11)
    new_state, metrics = sac.update(state, batch, key)
    return key, new_state, metrics


def test_update_moves_targets_by_polyak(state, updated):
    """After update, target params = tau * new online + (1 - tau) * old target, leaf by leaf."""
    _, new_state, _ = updated
    tau = CFG.tau
    for old_t, new_o, new_t in zip(
        jax.tree.leaves(state.target_critic_params),
        jax.tree.leaves(new_state.critic_params),
        jax.tree.leaves(new_state.target_critic_params),
    ):
        ref = tau * np.asarray(new_o, np.float64) + (1 - tau) * np.asarray(
            old_t, np.float64
        )
        np.testing.assert_allclose(np.asarray(new_t), ref, rtol=1e-6, atol=1e-7)
    # the online critics did move, so this is not trivially the old target
    assert any(
        not np.array_equal(np.asarray(a), np.asarray(b))
        for a, b in zip(
            jax.tree.leaves(state.critic_params),
            jax.tree.leaves(new_state.critic_params),
        )
    )


def test_traced_hyperparameters_replace_the_config_in_update(state, batch):
    """update with Hyperparams takes gamma, tau and the learning rates from
    them, not from state.config: here the targets move by the traced tau, and
    the critics by the traced critic_lr (Adam's first step has size lr)."""
    hyper = sac.Hyperparams.of(CFG.replace(tau=0.5, critic_lr=1e-5))
    new_state, _ = sac.update(state, batch, jax.random.key(11), hyper)
    for old_t, new_o, new_t in zip(
        jax.tree.leaves(state.target_critic_params),
        jax.tree.leaves(new_state.critic_params),
        jax.tree.leaves(new_state.target_critic_params),
    ):
        ref = 0.5 * np.asarray(new_o, np.float64) + 0.5 * np.asarray(old_t, np.float64)
        np.testing.assert_allclose(np.asarray(new_t), ref, rtol=1e-6, atol=1e-7)
    steps = [
        np.abs(np.asarray(new, np.float64) - np.asarray(old, np.float64)).max()
        for old, new in zip(
            jax.tree.leaves(state.critic_params),
            jax.tree.leaves(new_state.critic_params),
        )
    ]
    assert max(steps) == pytest.approx(1e-5, rel=1e-2)


def test_update_metrics_are_the_losses(state, batch, updated):
    """update reports every METRIC_NAMES entry, finite; the losses equal the NumPy losses at the keys it splits off."""
    key, new_state, metrics = updated
    assert set(sac.METRIC_NAMES) <= set(metrics)
    for name in sac.METRIC_NAMES:
        assert np.shape(metrics[name]) == () and math.isfinite(float(metrics[name])), (
            name
        )
    assert int(new_state.step) == int(state.step) + 1
    k_critic, k_actor = jax.random.split(key)
    c_ref, q, _ = np_critic_loss(state, batch, k_critic, LOG_ALPHA)
    assert float(metrics["critic_loss"]) == pytest.approx(c_ref, rel=2e-5)
    assert float(metrics["q_mean"]) == pytest.approx(q.mean(), rel=1e-4, abs=1e-5)
    # The actor is trained against the *updated* critics, with the old temperature.
    a_ref, log_prob = np_actor_loss(
        state.actor_params, new_state.critic_params, batch.obs, k_actor, LOG_ALPHA
    )
    assert float(metrics["actor_loss"]) == pytest.approx(a_ref, rel=1e-4, abs=1e-5)
    assert float(metrics["entropy"]) == pytest.approx(
        -log_prob.mean(), rel=1e-4, abs=1e-5
    )
    t_ref = -LOG_ALPHA * np.mean(log_prob + CFG.entropy_target)
    assert float(metrics["alpha_loss"]) == pytest.approx(t_ref, rel=1e-4, abs=1e-5)
    assert float(metrics["alpha"]) == pytest.approx(
        math.exp(float(new_state.log_alpha)), rel=1e-6
    )
    assert (
        float(metrics["critic_grad_norm"]) > 0 and float(metrics["actor_grad_norm"]) > 0
    )


@pytest.mark.parametrize("target_entropy, direction", [(5.0, +1), (-20.0, -1)])
def test_temperature_moves_toward_target_entropy(
    state, batch, target_entropy, direction
):
    """log_alpha rises by alpha_lr when the policy's entropy is below the target (5 > log 2, the
    most a 1-D squashed policy can have) and falls by alpha_lr when above it (-20)."""
    s = state.replace(config=dataclasses.replace(CFG, target_entropy=target_entropy))
    new_state, metrics = sac.update(s, batch, jax.random.key(12))
    entropy = float(metrics["entropy"])
    assert np.sign(target_entropy - entropy) == direction
    change = float(new_state.log_alpha) - LOG_ALPHA
    assert np.sign(change) == direction
    # Adam's first step has size lr in the direction of the gradient's sign.
    assert abs(change) == pytest.approx(CFG.alpha_lr, rel=1e-3)
    assert (float(metrics["alpha"]) > math.exp(LOG_ALPHA)) == (direction > 0)


def test_update_is_jit_stable(state, batch):
    """Repeated updates with the same config (new values, same shapes) do not recompile."""
    s, _ = sac.update(state, batch, jax.random.key(0))  # compiled here at the latest
    size = sac.update.cache_size()
    for i in range(3):
        s, metrics = sac.update(s, make_batch(seed=i + 1), jax.random.key(i + 1))
    assert sac.update.cache_size() == size
    assert int(s.step) == int(state.step) + 4
    assert all(math.isfinite(float(metrics[name])) for name in sac.METRIC_NAMES)


def test_policy_action_is_tanh_of_mean(state, batch):
    """policy_action gives tanh(actor mean) in [-1, 1] from a state or from bare params plus config."""
    from_state = np.asarray(sac.policy_action(state, batch.obs))
    from_params = np.asarray(sac.policy_action(state.actor_params, batch.obs, CFG))
    mean, _ = np_actor(state.actor_params, batch.obs)
    np.testing.assert_allclose(from_state, np.tanh(mean), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(from_state, from_params)
    with pytest.raises(ValueError, match="config"):
        sac.policy_action(state.actor_params, batch.obs)


def test_init_matches_flax_and_optax_init():
    """sac.init builds everything on the host. Its trees have exactly the
    structure, shapes and dtypes of Flax's module.init and optax's init; the
    optimizer states equal optimizer.init (zeros); the target critics equal the
    critics but are separate arrays; biases are zero and kernels have the
    LeCun-normal spread (std 1/sqrt(fan_in), truncated at 2 std)."""
    cfg = SACConfig(hidden_sizes=(256, 256))
    state = sac.init(jax.random.key(0), cfg)
    obs, action = jnp.zeros((1, cfg.obs_dim)), jnp.zeros((1, cfg.action_dim))
    flax_actor = cfg.actor().init(jax.random.key(1), obs)
    flax_critic = cfg.critic().init(jax.random.key(2), obs, action)

    def spec(tree):
        return jax.tree.map(lambda x: (jnp.shape(x), jnp.result_type(x)), tree)

    assert spec(state.actor_params) == spec(flax_actor)
    assert spec(state.critic_params) == spec(flax_critic)
    actor_opt, critic_opt, alpha_opt = cfg.optimizers()
    for ours, reference in (
        (state.actor_opt_state, actor_opt.init(state.actor_params)),
        (state.critic_opt_state, critic_opt.init(state.critic_params)),
        (state.alpha_opt_state, alpha_opt.init(state.log_alpha)),
    ):
        assert jax.tree.structure(ours) == jax.tree.structure(reference)
        for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(reference)):
            assert a.shape == b.shape and a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)
    for a, b in zip(
        jax.tree.leaves(state.critic_params),
        jax.tree.leaves(state.target_critic_params),
    ):
        np.testing.assert_array_equal(a, b)
        assert a.unsafe_buffer_pointer() != b.unsafe_buffer_pointer()
    assert (
        float(state.log_alpha) == pytest.approx(math.log(cfg.init_alpha))
        and int(state.step) == 0
    )
    kernel = np.asarray(
        state.actor_params["params"]["MLP_0"]["Dense_1"]["kernel"]
    )  # (256, 256)
    # N(0, 1) truncated to [-2, 2] has std 0.8796; Flax rescales it to std 1/sqrt(fan_in)
    assert np.abs(kernel).max() <= 2.0 / 0.87962566 / math.sqrt(256) + 1e-6
    assert kernel.std() == pytest.approx(1.0 / math.sqrt(256), rel=0.02)
    assert not np.asarray(
        state.actor_params["params"]["MLP_0"]["Dense_1"]["bias"]
    ).any()


def test_init_critic_ensemble_matches_flax_init():
    """The twin critics (nn.vmap, ensemble axis first) drawn on the host have
    Flax's layout and spread: the same shapes as critic.init, two members
    that differ and are uncorrelated, zero biases, and in every layer and
    member a std within sampling error of LeCun normal's 1/sqrt(fan_in)
    (Flax's variance_scaling(1, "fan_in", "truncated_normal")), never beyond
    its 2-std truncation. Flax's own init passes the same checks."""
    cfg = SACConfig(hidden_sizes=(256, 256), num_critics=2)
    obs, action = jnp.zeros((1, cfg.obs_dim)), jnp.zeros((1, cfg.action_dim))
    ours = sac.init(jax.random.key(0), cfg).critic_params
    flax_critic = cfg.critic().init(jax.random.key(1), obs, action)
    assert jax.tree.map(jnp.shape, ours) == jax.tree.map(jnp.shape, flax_critic)
    fan_ins = {"Dense_0": cfg.obs_dim + cfg.action_dim, "Dense_1": 256, "Dense_2": 256}
    for params in (ours, flax_critic):
        layers = params["params"]["VmapCritic_0"]["MLP_0"]
        assert sorted(layers) == sorted(fan_ins)
        for name, fan_in in fan_ins.items():
            kernel = np.asarray(layers[name]["kernel"], np.float64)  # (2, in, out)
            assert kernel.shape[:2] == (2, fan_in)
            assert not np.asarray(layers[name]["bias"]).any()
            # the members are independent draws, not copies or near-copies
            first, second = kernel[0].ravel(), kernel[1].ravel()
            assert abs(np.corrcoef(first, second)[0, 1]) < 5 / np.sqrt(first.size)
            for member in kernel:
                # std of a sample std: about 0.6 / sqrt(n) relative for this law
                tolerance = 4 * 0.6 / np.sqrt(member.size)
                relative_std = member.std() * np.sqrt(fan_in)
                assert relative_std == pytest.approx(1.0, rel=tolerance)
                assert np.abs(member).max() <= 2.0 / 0.87962566 / np.sqrt(fan_in) + 1e-6


def test_init_is_deterministic_per_key():
    """The same key gives the same networks; another key gives others; a traced key is refused."""
    a, b = sac.init(jax.random.key(4), CFG), sac.init(jax.random.key(4), CFG)
    c = sac.init(jax.random.key(5), CFG)
    for x, y, z in zip(
        jax.tree.leaves(a.actor_params),
        jax.tree.leaves(b.actor_params),
        jax.tree.leaves(c.actor_params),
    ):
        np.testing.assert_array_equal(x, y)
        if x.ndim == 2:
            assert not np.allclose(x, z)
    with pytest.raises(ValueError, match="outside jit"):
        jax.jit(lambda k: sac.init(k, CFG).log_alpha)(jax.random.key(0))
