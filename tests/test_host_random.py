"""Tests for sacbook.host_random: NumPy streams seeded by JAX keys."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from sacbook import host_random, train


def test_generator_is_a_function_of_key_and_label():
    """Same key and label: same numbers. Another key or another label: others."""
    draw = lambda key, label: host_random.generator(key, label).standard_normal(8)  # noqa: E731
    k0, k1 = jax.random.key(0), jax.random.key(1)
    np.testing.assert_array_equal(draw(k0, "sac"), draw(k0, "sac"))
    assert not np.allclose(draw(k0, "sac"), draw(k1, "sac"))
    assert not np.allclose(draw(k0, "sac"), draw(k0, "train"))


def test_generator_refuses_traced_keys_batches_and_bad_labels():
    with pytest.raises(ValueError, match="outside jit"):
        jax.jit(lambda k: host_random.generator(k, "x").standard_normal())(jax.random.key(0))
    with pytest.raises(ValueError, match="single PRNG key"):
        host_random.generator(jax.random.split(jax.random.key(0), 2), "x")
    with pytest.raises(ValueError, match="single PRNG key"):
        host_random.new_key(np.random.default_rng(0), like=jax.random.split(jax.random.key(0), 2))
    with pytest.raises(ValueError, match="PRNG key"):
        host_random.generator(np.uint32([0, 1]), "x")
    with pytest.raises(ValueError, match="label"):
        host_random.generator(jax.random.key(0), 7)
    legacy = jax.random.PRNGKey(0)  # a raw uint32 key works too
    assert host_random.generator(legacy, "x").standard_normal() == host_random.generator(legacy, "x").standard_normal()


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


def test_train_init_streams_are_independent_and_repeatable():
    """train.init: the same key repeats the whole state; the evaluation key,
    the run key and the networks come from separate streams."""
    cfg = train.TrainConfig(num_envs=8, buffer_capacity=64, sac=train.SACConfig(batch_size=8))
    a, b = train.init(cfg, jax.random.key(3)), train.init(cfg, jax.random.key(3))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x,
                                      jax.random.key_data(y) if jax.dtypes.issubdtype(y.dtype, jax.dtypes.prng_key) else y)
    run_key, eval_key = jax.random.key_data(a.key), jax.random.key_data(train.eval_key(3))
    assert not np.array_equal(run_key, eval_key)
    assert not np.array_equal(run_key, jax.random.key_data(jax.random.key(3)))
    c = train.init(cfg, jax.random.key(4))
    assert not np.allclose(a.env.theta, c.env.theta)
