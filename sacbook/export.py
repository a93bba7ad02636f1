"""A trained policy as one small JSON file that any language can run.

The format, ``sacbook-policy`` version 1, holds everything needed to act:
the physics the policy was trained on, the observation's layout, and the
actor's layers, so that a page in a browser (or any program without JAX)
can run the same pendulum under the same policy. Every number is a float32
written in the shortest text that reads back to the same float32, so the
actor read back is bit for bit the one written.

Its fields::

    format        "sacbook-policy"
    version       1
    physics       the PendulumParams fields: g, l, m, dt, max_torque,
                  max_speed, episode_length, body ("rod" or "point_mass")
    observation   ["cos(theta)", "sin(theta)", "theta_dot"]
    activation    the hidden layers' activation ("relu", ...)
    action_dim    d, the action's size (1 for the pendulum)
    layers        one {"kernel": ..., "bias": ...} per dense layer, in order:
                  the kernel (n_in, n_out) as n_in lists of n_out numbers,
                  the bias as n_out numbers; the hidden layers are followed
                  by the activation, the last is linear
    action        how the last layer's 2 d outputs become a torque: the first
                  d are the mean, torque = max_torque * tanh(mean) (the rest
                  are the log-std, unused when acting deterministically)
    info          free-form facts about the run (seed, env steps, returns)

:func:`policy_to_dict` and :func:`write_policy` write it (``sacbook train``
writes ``policy.json`` next to its checkpoint); :func:`read_policy` reads it
back into actor parameters, a :class:`~sacbook.sac.SACConfig` and the
:class:`~sacbook.pendulum.PendulumParams`, refusing anything else with one
line.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from sacbook.pendulum import PendulumParams
from sacbook.sac import ACTIVATIONS, SACConfig

FORMAT = "sacbook-policy"
VERSION = 1
OBSERVATION = ["cos(theta)", "sin(theta)", "theta_dot"]
ACTION = "torque = max_torque * tanh(mean), mean = the first action_dim outputs"


def _numbers(array) -> list:
    """A float32 array as nested lists of the shortest round-trip floats."""
    array = np.asarray(array, np.float32)
    if array.ndim == 0:
        # the float32 scalar: a 0-d array would be formatted as a float64
        text = np.format_float_positional(array[()], unique=True, trim="-")
        return float(text)
    return [_numbers(row) for row in array]


def policy_to_dict(
    actor_params, config: SACConfig, env: PendulumParams, info: dict | None = None
) -> dict:
    """The ``sacbook-policy`` dict of an actor (``config.actor()``'s
    parameters) trained on ``env``."""
    dense = actor_params["params"]["MLP_0"]
    names = sorted(dense, key=lambda name: int(name.rsplit("_", 1)[1]))
    layers = [
        {"kernel": _numbers(dense[n]["kernel"]), "bias": _numbers(dense[n]["bias"])}
        for n in names
    ]
    return {
        "format": FORMAT,
        "version": VERSION,
        "physics": dataclasses.asdict(env),
        "observation": OBSERVATION,
        "activation": config.activation,
        "action_dim": config.action_dim,
        "action": ACTION,
        "layers": layers,
        "info": dict(info or {}),
    }


def write_policy(path, actor_params, config, env, info=None) -> Path:
    """Write :func:`policy_to_dict` to ``path`` as compact, strict JSON;
    returns it. Physics that JSON cannot hold (an infinite ``max_speed``)
    is refused in one line."""
    path = Path(path)
    data = policy_to_dict(actor_params, config, env, info)
    for name, value in data["physics"].items():
        if isinstance(value, float) and not np.isfinite(value):
            raise ValueError(f"policy: physics {name} must be finite, got {value}")
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    path.write_text(text + "\n")
    return path


def read_policy(path_or_dict) -> tuple[dict, SACConfig, PendulumParams, dict]:
    """``(actor_params, sac_config, env_params, info)`` from a
    ``sacbook-policy`` file (or its dict). The parameters are float32 NumPy
    arrays in the actor's tree, ready for ``sac_config.actor().apply``.
    Anything else (a truncated file, a layer of the wrong shape, a weight
    that is not a finite number) is refused with one line."""
    data = path_or_dict
    if not isinstance(data, dict):
        try:
            data = json.loads(Path(path_or_dict).read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"policy: cannot read {path_or_dict}: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"policy: expected a JSON object, got {type(data).__name__}")
    version = data.get("version")
    if data.get("format") != FORMAT or type(version) is not int or version != VERSION:
        raise ValueError(
            f"policy: expected format {FORMAT!r} version {VERSION}, got "
            f"{data.get('format')!r} version {version!r}"
        )
    if data.get("activation") not in ACTIVATIONS:
        raise ValueError(
            f"policy: activation must be one of {sorted(ACTIVATIONS)}, "
            f"got {data.get('activation')!r}"
        )
    if data.get("observation", OBSERVATION) != OBSERVATION:
        raise ValueError(f"policy: observation must be {OBSERVATION}")
    action_dim = data.get("action_dim", 1)
    if type(action_dim) is not int or action_dim < 1:
        raise ValueError(f"policy: action_dim must be an integer >= 1: {action_dim!r}")
    dense = _layers(data.get("layers"), len(OBSERVATION), 2 * action_dim)
    try:
        config = SACConfig(
            action_dim=action_dim,
            hidden_sizes=tuple(d["bias"].shape[0] for d in dense.values())[:-1],
            activation=data["activation"],
        )
        env = PendulumParams(**data["physics"])
        info = dict(data.get("info", {}))
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"policy: {type(e).__name__}: {e}") from None
    return {"params": {"MLP_0": dense}}, config, env, info


def _layers(layers, inputs: int, outputs: int) -> dict:
    """The actor's ``Dense_i`` parameters from the file's ``layers``: each a
    finite ``(n_in, n_out)`` kernel and ``(n_out,)`` bias, chained from
    ``inputs`` to ``outputs``."""
    if not isinstance(layers, list) or len(layers) < 2:
        raise ValueError("policy: layers must list at least two dense layers")
    dense, width = {}, inputs
    for i, layer in enumerate(layers):
        try:  # a number too large for a float32 becomes inf: refused below
            with np.errstate(over="ignore"):
                kernel = np.asarray(layer["kernel"], np.float32)
                bias = np.asarray(layer["bias"], np.float32)
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"policy: layer {i} is not numbers ({e})") from None
        last = i == len(layers) - 1
        n_out = outputs if last else kernel.shape[1] if kernel.ndim == 2 else 0
        if kernel.shape != (width, n_out) or bias.shape != (n_out,) or n_out < 1:
            raise ValueError(
                f"policy: layer {i} must have a kernel of shape ({width}, "
                f"{n_out if last else 'n'}) and a bias of its n_out, got "
                f"{kernel.shape} and {bias.shape}"
            )
        if not (np.all(np.isfinite(kernel)) and np.all(np.isfinite(bias))):
            raise ValueError(f"policy: layer {i} holds a number that is not finite")
        dense[f"Dense_{i}"] = {"kernel": kernel, "bias": bias}
        width = n_out
    return dense
