"""The exported policy: a JSON file that reads back to the same actor, bit
for bit, and acts as the JAX actor does when run without JAX."""

import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sacbook import export, networks, pendulum
from sacbook.pendulum import PendulumParams
from sacbook.sac import SACConfig

CONFIG = SACConfig(hidden_sizes=(16, 8))
ENV = PendulumParams.gymnasium(max_torque=1.5)


@pytest.fixture(scope="module")
def actor_params():
    return CONFIG.actor().init(jax.random.key(0), jnp.zeros((1, 3)))


def numpy_torque(policy: dict, theta, theta_dot):
    """The format's own recipe, in NumPy float64: what a page in a browser runs."""
    x = np.stack([np.cos(theta), np.sin(theta), theta_dot], axis=-1)
    layers = policy["layers"]
    for layer in layers[:-1]:
        x = np.maximum(x @ np.array(layer["kernel"]) + np.array(layer["bias"]), 0.0)
    out = x @ np.array(layers[-1]["kernel"]) + np.array(layers[-1]["bias"])
    mean = out[..., : policy["action_dim"]]
    return policy["physics"]["max_torque"] * np.tanh(mean[..., 0])


def test_a_policy_reads_back_bit_for_bit(actor_params, tmp_path):
    path = export.write_policy(
        tmp_path / "policy.json", actor_params, CONFIG, ENV, {"seed": 3}
    )
    params, config, env, info = export.read_policy(path)
    assert (config.hidden_sizes, config.activation) == ((16, 8), "relu")
    assert env == ENV and info == {"seed": 3}
    for want, got in zip(jax.tree.leaves(actor_params), jax.tree.leaves(params)):
        assert np.array_equal(np.asarray(want), got)
    assert path.stat().st_size < 100_000


def test_numbers_are_written_as_the_shortest_float32_text(actor_params, tmp_path):
    path = export.write_policy(tmp_path / "policy.json", actor_params, CONFIG, ENV)
    layers = path.read_text().split('"layers":', 1)[1].split('"info":', 1)[0]
    mantissas = re.findall(r"(\d+(?:\.\d+)?)(?:e[-+]?\d+)?", layers)
    digits = [len(m.replace(".", "").lstrip("0")) for m in mantissas]
    # a float32 needs at most 9 significant digits; a float64's text has 17
    assert len(digits) > 100 and max(digits) <= 9, max(digits)


def test_the_format_acts_as_the_jax_actor(actor_params):
    policy = json.loads(json.dumps(export.policy_to_dict(actor_params, CONFIG, ENV)))
    rng = np.random.default_rng(1)
    theta, theta_dot = rng.uniform(-np.pi, np.pi, 1000), rng.uniform(-8, 8, 1000)
    mean, _ = CONFIG.actor().apply(actor_params, pendulum.observe(theta, theta_dot))
    torque = networks.scale_action(networks.deterministic_action(mean)[:, 0], 1.5)
    np.testing.assert_allclose(
        numpy_torque(policy, theta, theta_dot), np.asarray(torque), atol=1e-5
    )


@pytest.mark.parametrize(
    "change, words",
    [
        ({"format": "onnx"}, "expected format 'sacbook-policy' version 1"),
        ({"version": 2}, "expected format 'sacbook-policy' version 1"),
        ({"activation": "gelu"}, "activation must be one of"),
        ({"action_dim": 2}, "the last give 4 outputs"),
    ],
)
def test_other_files_are_refused_with_one_line(actor_params, change, words):
    policy = {**export.policy_to_dict(actor_params, CONFIG, ENV), **change}
    with pytest.raises(ValueError, match=words):
        export.read_policy(policy)
