"""Tests for sacbook.host_random: NumPy streams seeded by JAX keys, and network
parameters drawn on the host only where that reproduces Flax's init."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TINY

from sacbook import evaluate, host_random, loop
from sacbook.sac import SACConfig


def test_generator_is_a_function_of_key_and_label():
    """Same key and label: same numbers. Another key or another label: others."""
    draw = lambda key, label: host_random.generator(key, label).standard_normal(8)  # noqa: E731
    k0, k1 = jax.random.key(0), jax.random.key(1)
    np.testing.assert_array_equal(draw(k0, "sac"), draw(k0, "sac"))
    assert not np.allclose(draw(k0, "sac"), draw(k1, "sac"))
    assert not np.allclose(draw(k0, "sac"), draw(k0, "train"))


def test_generator_refuses_traced_keys_batches_and_bad_labels():
    with pytest.raises(ValueError, match="outside jit"):
        jax.jit(lambda k: host_random.generator(k, "x").standard_normal())(
            jax.random.key(0)
        )
    with pytest.raises(ValueError, match="single PRNG key"):
        host_random.generator(jax.random.split(jax.random.key(0), 2), "x")
    with pytest.raises(ValueError, match="single PRNG key"):
        host_random.new_key(
            np.random.default_rng(0), like=jax.random.split(jax.random.key(0), 2)
        )
    with pytest.raises(ValueError, match="PRNG key"):
        host_random.generator(np.uint32([0, 1]), "x")
    with pytest.raises(ValueError, match="label"):
        host_random.generator(jax.random.key(0), 7)
    legacy = jax.random.PRNGKey(0)  # a raw uint32 key works too
    assert (
        host_random.generator(legacy, "x").standard_normal()
        == host_random.generator(legacy, "x").standard_normal()
    )


@pytest.mark.parametrize("impl", ["threefry2x32", "rbg"])
def test_new_key_keeps_the_prng_implementation(impl):
    """new_key makes a key of the same implementation as `like`, usable by
    jax.random, and different draws give different keys."""
    like = jax.random.key(0, impl=impl)
    rng = np.random.default_rng(0)
    a, b = host_random.new_key(rng, like), host_random.new_key(rng, like)
    assert jax.random.key_impl(a) == jax.random.key_impl(like)
    assert jax.random.key_data(a).shape == jax.random.key_data(like).shape
    assert not np.array_equal(jax.random.key_data(a), jax.random.key_data(b))
    assert jax.random.uniform(a, (3,)).shape == (3,)


SEEDS = [0, 1, 7, 123_456, 2**31 - 1, 2**31, 2**32 + 5, -1]


def _same_key(a, b) -> bool:
    return (
        a.dtype == b.dtype
        and a.shape == b.shape
        and jax.random.key_impl(a) == jax.random.key_impl(b)
        and np.array_equal(jax.random.key_data(a), jax.random.key_data(b))
    )


@pytest.mark.parametrize("x64", [False, True])
def test_seed_keys_are_jax_random_key(x64):
    """seed_key(s) is jax.random.key(s), and stack_keys of them is
    jnp.stack of them, for seeds made on the host and for those JAX makes
    (outside 0 .. 2**31 - 1), with and without 64-bit integers."""
    was = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", x64)
    try:
        seeds = [s for s in SEEDS if x64 or s < 2**32]  # JAX's own int32 range
        for seed in seeds:
            assert _same_key(host_random.seed_key(seed), jax.random.key(seed)), seed
        stacked = jnp.stack([jax.random.key(s) for s in seeds])
        made = [host_random.seed_key(s) for s in seeds]
        assert _same_key(host_random.stack_keys(made), stacked)
    finally:
        jax.config.update("jax_enable_x64", was)


_COMPILES: list | None = None  # a list while a test counts XLA compilations


def _count_compile(event, duration, **kwargs):
    if _COMPILES is not None and event == "/jax/core/compile/backend_compile_duration":
        _COMPILES.append(event)


jax.monitoring.register_event_duration_secs_listener(_count_compile)


def _compiles(make) -> int:
    """How many XLA programs ``make()`` compiles, from empty caches."""
    global _COMPILES
    jax.clear_caches()
    _COMPILES = []
    try:
        make()
        return len(_COMPILES)
    finally:
        _COMPILES = None


def test_seed_keys_compile_nothing():
    """The cold start's keys: made and stacked on the host, no XLA program
    (where jax.random.key compiles some)."""
    assert _compiles(lambda: jax.random.key(3)) > 0  # the test sees compiles
    assert _compiles(lambda: host_random.seed_key(3)) == 0
    keys = [host_random.seed_key(s) for s in (3, 4)]
    assert _compiles(lambda: host_random.stack_keys(keys)) == 0


def test_train_init_streams_are_independent_and_repeatable():
    """loop.init: the same key repeats the whole state; the evaluation key,
    the run key and the networks come from separate streams."""
    cfg = TINY
    a, b = loop.init(cfg, jax.random.key(3)), loop.init(cfg, jax.random.key(3))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(
            jax.random.key_data(x)
            if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)
            else x,
            jax.random.key_data(y)
            if jax.dtypes.issubdtype(y.dtype, jax.dtypes.prng_key)
            else y,
        )
    run_key, eval_key = (
        jax.random.key_data(a.key),
        jax.random.key_data(evaluate.eval_key(jax.random.key(3))),
    )
    assert not np.array_equal(run_key, eval_key)
    assert not np.array_equal(run_key, jax.random.key_data(jax.random.key(3)))
    c = loop.init(cfg, jax.random.key(4))
    assert not np.allclose(a.env.theta, c.env.theta)


# ----------------------------------------------------------------------------
# draw_params: host draws only what NumPy reproduces exactly, Flax the rest
# ----------------------------------------------------------------------------

OBS = np.zeros((1, 3), np.float32)
ACTION = np.zeros((1, 1), np.float32)


class LayerNormMLP(nn.Module):
    """Dense -> LayerNorm -> relu -> Dense, as in LayerNorm SAC recipes."""

    width: int = 32
    out_dim: int = 2

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.LayerNorm()(nn.Dense(self.width)(x)))
        return nn.Dense(self.out_dim)(x)


class LayerNormCritic(nn.Module):
    """Twin critics with LayerNorm, vmapped as networks.TwinCritic is."""

    @nn.compact
    def __call__(self, obs, action):
        ensemble = nn.vmap(
            LayerNormMLP,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=None,
            axis_size=2,
        )
        return ensemble(32, 1)(jnp.concatenate([obs, action], axis=-1))[..., 0]


class DenseWith(nn.Module):
    """One hidden Dense layer with the given initialisers, then a default Dense."""

    kernel_init: object = nn.initializers.lecun_normal()
    bias_init: object = nn.initializers.zeros_init()

    @nn.compact
    def __call__(self, x):
        x = nn.Dense(16, kernel_init=self.kernel_init, bias_init=self.bias_init)(x)
        return nn.Dense(1)(nn.relu(x))


class LearnedLogStd(nn.Module):
    """A Dense mean and a state-independent log std made with self.param."""

    @nn.compact
    def __call__(self, obs):
        log_std = self.param("log_std", nn.initializers.constant(-0.5), (1,))
        return nn.Dense(1)(obs), log_std


def _spec(tree):
    return jax.tree.map(lambda x: (np.shape(x), np.dtype(x.dtype)), tree)


def _assert_matches_flax_layout(ours, module, *inputs):
    """Same tree, shapes and dtypes as module.init, as NumPy arrays."""
    reference = module.init(jax.random.key(0), *inputs)
    assert _spec(ours) == _spec(reference)
    assert all(isinstance(leaf, np.ndarray) for leaf in jax.tree.leaves(ours))


def _lecun_std(kernel, fan_in):
    """The std of a LeCun-normal kernel, relative to 1/sqrt(fan_in): about 1."""
    return np.std(kernel) * np.sqrt(fan_in)


def test_default_networks_are_drawn_on_the_host():
    """SAC's own actor and twin critics take the host path (no compile),
    including explicit lecun_normal()/zeros_init() initialisers, which are
    recognised as the defaults they equal."""
    cfg = SACConfig()
    assert host_random.host_draw_refusal(cfg.actor(), OBS) is None
    assert host_random.host_draw_refusal(cfg.critic(), OBS, ACTION) is None
    assert host_random.host_draw_refusal(DenseWith(), OBS) is None


def test_layernorm_actor_falls_back_to_flax_init():
    """A LayerNorm's scale and bias are not LeCun kernels: the module goes to
    module.init, so the scale is all ones and the bias zeros, and the Dense
    layers keep Flax's LeCun spread. The same rng repeats the draw."""
    module = LayerNormMLP(width=256)
    assert "LayerNorm_0" in host_random.host_draw_refusal(module, OBS)
    params = host_random.draw_params(np.random.default_rng(0), module, OBS)
    _assert_matches_flax_layout(params, module, OBS)
    layer_norm = params["params"]["LayerNorm_0"]
    np.testing.assert_array_equal(layer_norm["scale"], np.ones(256, np.float32))
    np.testing.assert_array_equal(layer_norm["bias"], np.zeros(256, np.float32))
    kernel = params["params"]["Dense_1"]["kernel"]  # (256, 2)
    assert _lecun_std(kernel, 256) == pytest.approx(1.0, abs=0.2)
    again = host_random.draw_params(np.random.default_rng(0), module, OBS)
    other = host_random.draw_params(np.random.default_rng(1), module, OBS)
    np.testing.assert_array_equal(kernel, again["params"]["Dense_1"]["kernel"])
    assert not np.allclose(kernel, other["params"]["Dense_1"]["kernel"])


def test_layernorm_ensemble_critic_falls_back_to_flax_init():
    """Inside an nn.vmap ensemble the LayerNorm scale is (2, 32): before the
    check it was silently drawn as a LeCun kernel with fan-in 2. Now it is
    all ones, as module.init makes it, and the two members' kernels differ."""
    module = LayerNormCritic()
    assert host_random.host_draw_refusal(module, OBS, ACTION) is not None
    params = host_random.draw_params(np.random.default_rng(0), module, OBS, ACTION)
    _assert_matches_flax_layout(params, module, OBS, ACTION)
    members = params["params"]["VmapLayerNormMLP_0"]
    np.testing.assert_array_equal(members["LayerNorm_0"]["scale"], np.ones((2, 32)))
    kernels = members["Dense_0"]["kernel"]  # (2, 4, 32)
    assert not np.allclose(kernels[0], kernels[1])


def test_orthogonal_kernel_falls_back_to_flax_init():
    """An orthogonal kernel_init is not drawn as LeCun normal: the kernel
    comes from module.init and has orthonormal columns."""
    module = DenseWith(kernel_init=nn.initializers.orthogonal())
    wide_obs = np.zeros((1, 40), np.float32)  # kernel (40, 16): 16 columns
    assert "kernel_init" in host_random.host_draw_refusal(module, wide_obs)
    params = host_random.draw_params(np.random.default_rng(0), module, wide_obs)
    _assert_matches_flax_layout(params, module, wide_obs)
    kernel = np.asarray(params["params"]["Dense_0"]["kernel"], np.float64)
    np.testing.assert_allclose(kernel.T @ kernel, np.eye(16), atol=1e-5)


@pytest.mark.parametrize(
    "kernel_init, bias_init, reason",
    [
        (
            nn.initializers.variance_scaling(2.0, "fan_in", "truncated_normal"),
            nn.initializers.zeros_init(),
            "kernel_init",
        ),  # He normal: a scale of 2
        (nn.initializers.lecun_normal(), nn.initializers.constant(0.1), "bias_init"),
    ],
    ids=["he-normal-kernel", "constant-bias"],
)
def test_other_initialisers_fall_back_to_flax_init(kernel_init, bias_init, reason):
    """Another scale or a nonzero bias: module.init draws them (a bias of 0.1
    stays 0.1, He normal has std sqrt(2/fan_in))."""
    module = DenseWith(kernel_init=kernel_init, bias_init=bias_init)
    wide_obs = np.zeros((1, 512), np.float32)
    assert reason in host_random.host_draw_refusal(module, wide_obs)
    params = host_random.draw_params(np.random.default_rng(0), module, wide_obs)
    _assert_matches_flax_layout(params, module, wide_obs)
    dense = params["params"]["Dense_0"]
    if reason == "bias_init":
        np.testing.assert_allclose(dense["bias"], 0.1)
    else:
        assert _lecun_std(dense["kernel"], 512) == pytest.approx(np.sqrt(2.0), rel=0.05)


def test_parameters_made_with_self_param_fall_back_to_flax_init():
    """A parameter the module creates itself (a learned log std) is Flax's."""
    module = LearnedLogStd()
    assert "log_std" in host_random.host_draw_refusal(module, OBS)
    params = host_random.draw_params(np.random.default_rng(0), module, OBS)
    np.testing.assert_array_equal(params["params"]["log_std"], [-0.5])


def test_ensemble_sharing_its_initial_parameters_falls_back_to_flax_init():
    """An nn.vmap ensemble whose members start equal (split_rngs False) is not
    TwinCritic's independent layout: Flax draws it, and the members are equal."""

    class SharedStart(nn.Module):
        @nn.compact
        def __call__(self, obs):
            ensemble = nn.vmap(
                nn.Dense,
                variable_axes={"params": 0},
                split_rngs={"params": False},
                in_axes=None,
                axis_size=2,
            )
            return ensemble(8)(obs)

    module = SharedStart()
    assert host_random.host_draw_refusal(module, OBS) is not None
    params = host_random.draw_params(np.random.default_rng(0), module, OBS)
    kernels = params["params"]["VmapDense_0"]["kernel"]  # (2, 3, 8)
    np.testing.assert_array_equal(kernels[0], kernels[1])


def test_optimizer_state_falls_back_to_optax_init_when_not_zero():
    """Adam's state is built as zeros without optax; a state that does not start
    at zero (here inject_hyperparams, which stores the learning rate) comes from
    optimizer.init itself."""
    import optax

    params = {"w": np.ones((3, 2), np.float32), "b": np.zeros(2, np.float32)}
    assert host_random.zero_initialised(jax.eval_shape(optax.adam(1e-3).init, params))
    injected = optax.inject_hyperparams(optax.adam)(learning_rate=0.1)
    assert not host_random.zero_initialised(jax.eval_shape(injected.init, params))
    ours, reference = (
        host_random.optimizer_state(injected, params),
        injected.init(params),
    )
    assert jax.tree.structure(ours) == jax.tree.structure(reference)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(reference)):
        np.testing.assert_array_equal(a, b)
    assert float(ours.hyperparams["learning_rate"]) == pytest.approx(0.1)
