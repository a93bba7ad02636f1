"""Flax networks for SAC: the Gaussian actor, twin critics, and the
tanh-squashed Gaussian policy distribution.

Actions live in ``[-1, 1]``: the actor's Gaussian sample ``u`` is squashed by
``tanh``. The environment's torque is ``max_torque * action``
(:func:`scale_action`). The critics see the unscaled action in ``[-1, 1]``.

Log-densities are those of the *unscaled* action ``a = tanh(u)`` in
``[-1, 1]^d``. They omit the constant ``-d log(max_torque)`` of the final
scaling: it changes no gradient, and the usual target entropy ``-d`` is meant
for actions in ``[-1, 1]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

# The actor's log standard deviation is squashed smoothly into this range:
# log_std = MIN + (MAX - MIN) * (tanh(raw) + 1) / 2. A smooth bound keeps
# gradients alive at the edges (a hard clip would zero them); -5 keeps the
# Gaussian from collapsing to a point, 2 keeps it from being wider than the
# tanh can use (std e^2 ~ 7 already saturates nearly every sample).
LOG_STD_MIN = -5.0
LOG_STD_MAX = 2.0

Activation = Callable[[jax.Array], jax.Array]


class MLP(nn.Module):
    """Dense layers with an activation between them; the last layer is linear.

    ``(..., in) -> (..., out_dim)``.
    """

    hidden_sizes: Sequence[int]
    out_dim: int
    activation: Activation = nn.relu

    @nn.compact
    def __call__(self, x):
        for width in self.hidden_sizes:
            x = self.activation(nn.Dense(width)(x))
        return nn.Dense(self.out_dim)(x)


class Actor(nn.Module):
    """Gaussian policy head: ``obs (..., obs_dim) -> (mean, log_std)``, each
    ``(..., action_dim)``, with ``log_std`` in ``[LOG_STD_MIN, LOG_STD_MAX]``."""

    action_dim: int = 1
    hidden_sizes: Sequence[int] = (64, 64)
    activation: Activation = nn.relu

    @nn.compact
    def __call__(self, obs):
        out = MLP(self.hidden_sizes, 2 * self.action_dim, self.activation)(obs)
        mean, raw_log_std = jnp.split(out, 2, axis=-1)
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (
            jnp.tanh(raw_log_std) + 1.0
        )
        return mean, log_std


class Critic(nn.Module):
    """One soft Q-function:
    ``(obs (..., obs_dim), action (..., action_dim)) -> (...)``."""

    hidden_sizes: Sequence[int] = (64, 64)
    activation: Activation = nn.relu

    @nn.compact
    def __call__(self, obs, action):
        x = jnp.concatenate([obs, action], axis=-1)
        return MLP(self.hidden_sizes, 1, self.activation)(x)[..., 0]


class TwinCritic(nn.Module):
    """``num_critics`` independent critics as one module with a leading
    ensemble axis on every parameter (``nn.vmap``), so the twins are one
    batched matrix multiply rather than two copies of the code.

    ``(obs (..., obs_dim), action (..., action_dim)) -> (num_critics, ...)``.
    """

    hidden_sizes: Sequence[int] = (64, 64)
    num_critics: int = 2
    activation: Activation = nn.relu

    @nn.compact
    def __call__(self, obs, action):
        ensemble = nn.vmap(
            Critic,
            variable_axes={"params": 0},  # each critic has its own parameters
            split_rngs={"params": True},  # ... initialised independently
            in_axes=None,  # all critics see the same inputs
            out_axes=0,
            axis_size=self.num_critics,
        )
        return ensemble(self.hidden_sizes, self.activation)(obs, action)


# ----------------------------------------------------------------------------
# The tanh-squashed Gaussian.
# ----------------------------------------------------------------------------

_LOG_2PI = math.log(2.0 * math.pi)


def gaussian_log_prob(u, mean, log_std):
    """Log-density of a diagonal Gaussian at ``u``, summed over the last axis:
    ``(...)``."""
    z = (u - mean) * jnp.exp(-log_std)
    return jnp.sum(-0.5 * z**2 - log_std - 0.5 * _LOG_2PI, axis=-1)


def tanh_log_det_jacobian(u):
    """``sum log |d tanh(u) / du| = sum log(1 - tanh(u)^2)`` over the last axis.

    Written as ``2 (log 2 - u - softplus(-2u))``, which is exact and stays
    finite for any ``u``: the naive ``log(1 - tanh(u)^2)`` hits ``log(0)``
    as soon as ``tanh(u)`` rounds to +-1 (``|u| > 9`` in float32).
    """
    return jnp.sum(2.0 * (math.log(2.0) - u - jax.nn.softplus(-2.0 * u)), axis=-1)


def squashed_log_prob(u, mean, log_std):
    """Log-density of the squashed action ``tanh(u)``, from the pre-tanh ``u``.

    Change of variables: ``log pi(a) = log N(u; mean, std) - sum log(1 - tanh(u)^2)``.
    Always pass the pre-tanh sample; never recover it with ``atanh(a)``, which
    is infinite for saturated actions. Shapes: ``(..., d) -> (...)``.
    """
    return gaussian_log_prob(u, mean, log_std) - tanh_log_det_jacobian(u)


def sample_action(key, mean, log_std):
    """Reparameterised sample: ``a = tanh(mean + std * eps)``, ``eps ~ N(0, I)``.

    Gradients flow to ``mean`` and ``log_std`` through ``eps``.
    Returns ``(action (..., d) in [-1, 1], log_prob (...))``.
    """
    shape = jnp.broadcast_shapes(jnp.shape(mean), jnp.shape(log_std))
    u = mean + jnp.exp(log_std) * jax.random.normal(key, shape, jnp.result_type(mean))
    return jnp.tanh(u), squashed_log_prob(u, mean, log_std)


def deterministic_action(mean):
    """The policy's deterministic action for evaluation: ``tanh(mean)``."""
    return jnp.tanh(mean)


def scale_action(action, max_torque: float):
    """Map an action in ``[-1, 1]`` to a torque in ``[-max_torque, max_torque]``."""
    return max_torque * action


def param_count(params) -> int:
    """Number of scalars in a parameter pytree."""
    return sum(x.size for x in jax.tree.leaves(params))
