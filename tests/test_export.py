"""The exported policy: a JSON file that reads back to the same actor, bit
for bit, and acts as the JAX actor does when run without JAX."""

import dataclasses
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
        ({"action_dim": 2}, r"kernel of shape \(\d+, 4\)"),
        ({"version": True}, "version True"),
        ({"version": 1.0}, "version 1.0"),
        ({"action_dim": 1.7}, "action_dim must be an integer"),
        ({"observation": ["theta", "theta_dot"]}, "observation must be"),
        ({"layers": []}, "at least two dense layers"),
        ({"info": [1, 2]}, "policy: "),
        ({"physics": {"g": 9.8, "moon": 1}}, "policy: TypeError"),
    ],
)
def test_other_files_are_refused_with_one_line(actor_params, change, words):
    policy = {**export.policy_to_dict(actor_params, CONFIG, ENV), **change}
    with pytest.raises(ValueError, match=words):
        export.read_policy(policy)


@pytest.mark.parametrize(
    "tamper, words",
    [
        (lambda k, b: (k[:-1], b), r"layer 0 must have a kernel of shape \(3, n\)"),
        (lambda k, b: (k, b[:1]), "layer 0 must have a kernel"),
        (lambda k, b: ([row[:-1] for row in k], b), "layer 0 must have a kernel"),
        (lambda k, b: (k, [None] * len(b)), "not finite"),
        (lambda k, b: ([[1e40] * len(k[0])] + k[1:], b), "not finite"),
        (lambda k, b: ([k[0], k[1][:2], k[2]], b), "layer 0 is not numbers"),
        (lambda k, b: ([1.0] * 3, b), "layer 0 must have a kernel"),
    ],
)
def test_tampered_layers_are_refused_with_one_line(actor_params, tamper, words):
    """A kernel of the wrong shape, a bias of another length, null, an
    overflowing or ragged kernel: each one line before the actor runs."""
    policy = export.policy_to_dict(actor_params, CONFIG, ENV)
    layer = policy["layers"][0]
    layer["kernel"], layer["bias"] = tamper(layer["kernel"], layer["bias"])
    with pytest.raises(ValueError, match=words):
        export.read_policy(policy)


def test_files_that_are_not_policies_are_refused_with_one_line(tmp_path, actor_params):
    path = export.write_policy(tmp_path / "p.json", actor_params, CONFIG, ENV)
    path.write_text(path.read_text()[:100])  # truncated
    with pytest.raises(ValueError, match=r"^policy: cannot read .*p\.json"):
        export.read_policy(path)
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="expected a JSON object, got list"):
        export.read_policy(path)
    from sacbook import live  # what the live views embed is checked as much

    bad = {**export.policy_to_dict(actor_params, CONFIG, ENV), "version": 99}
    with pytest.raises(ValueError, match="version 99"):
        live.load_policy(bad)
    endless = dataclasses.replace(ENV, max_speed=float("inf"))
    with pytest.raises(ValueError, match="physics max_speed must be finite"):
        export.write_policy(tmp_path / "q.json", actor_params, CONFIG, endless)
