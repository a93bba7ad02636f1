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
    """Write :func:`policy_to_dict` to ``path`` as compact JSON; returns it."""
    path = Path(path)
    text = json.dumps(
        policy_to_dict(actor_params, config, env, info), separators=(",", ":")
    )
    path.write_text(text + "\n")
    return path


def read_policy(path_or_dict) -> tuple[dict, SACConfig, PendulumParams, dict]:
    """``(actor_params, sac_config, env_params, info)`` from a
    ``sacbook-policy`` file (or its dict). The parameters are float32 NumPy
    arrays in the actor's tree, ready for ``sac_config.actor().apply``."""
    data = path_or_dict
    if not isinstance(data, dict):
        data = json.loads(Path(path_or_dict).read_text())
    if data.get("format") != FORMAT or data.get("version") != VERSION:
        raise ValueError(
            f"policy: expected format {FORMAT!r} version {VERSION}, got "
            f"{data.get('format')!r} version {data.get('version')!r}"
        )
    if data.get("activation") not in ACTIVATIONS:
        raise ValueError(
            f"policy: activation must be one of {sorted(ACTIVATIONS)}, "
            f"got {data.get('activation')!r}"
        )
    layers = data["layers"]
    kernels = [np.asarray(layer["kernel"], np.float32) for layer in layers]
    action_dim = int(data.get("action_dim", 1))
    if (
        kernels[0].shape[0] != len(OBSERVATION)
        or kernels[-1].shape[1] != 2 * action_dim
    ):
        raise ValueError(
            f"policy: the first layer must take {len(OBSERVATION)} inputs and the "
            f"last give {2 * action_dim} outputs, got {kernels[0].shape[0]} and "
            f"{kernels[-1].shape[1]}"
        )
    dense = {
        f"Dense_{i}": {"kernel": k, "bias": np.asarray(layer["bias"], np.float32)}
        for i, (k, layer) in enumerate(zip(kernels, layers))
    }
    config = SACConfig(
        action_dim=action_dim,
        hidden_sizes=tuple(k.shape[1] for k in kernels[:-1]),
        activation=data["activation"],
    )
    env = PendulumParams(**data["physics"])
    return {"params": {"MLP_0": dense}}, config, env, dict(data.get("info", {}))
