"""Soft Actor-Critic (Haarnoja et al. 2018, with learned temperature).

Pieces, each a pure function:
  * :func:`soft_td_target`:
    ``y = r + gamma (1 - terminated) (min_i Q'_i(s', a') - alpha log pi(a'|s'))``
  * :func:`critic_loss`, :func:`actor_loss`, :func:`temperature_loss`
  * :func:`polyak_update` for the target critics
  * :func:`update`: one gradient step of all three, jit-compiled.
  * :class:`Hyperparams`: the continuous hyperparameters as traced arrays, so
    one compiled program can train many settings at once (a sweep).

Truncation (the time limit) is *not* a terminal state: the target bootstraps
through it and cuts only at ``terminated``. That is correct only because the
replay buffer stores the true final observation as ``next_obs``.
"""

from __future__ import annotations

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from sacbook import checks, host_random, jit, networks, sharding
from sacbook.host_random import draw_params
from sacbook.replay import Transition

ACTIVATIONS = {"relu": nn.relu, "swish": nn.swish, "tanh": nn.tanh, "elu": nn.elu}
POSITIVE = checks.Range(0.0, low_open=True)


@dataclasses.dataclass(frozen=True)
class SACConfig:
    """Every SAC hyperparameter in one place. Frozen and hashable: it rides in
    :class:`SACState` as static data, so ``jit`` recompiles when (and only
    when) it changes.

    Attributes:
      obs_dim, action_dim: sizes of an observation and an action.
      hidden_sizes: widths of the hidden layers of the actor and of each critic.
      activation: name of the hidden activation, one of ``ACTIVATIONS``.
      gamma: discount in [0, 1).
      tau: Polyak rate of the target critics in (0, 1]:
        ``target += tau (online - target)``.
      actor_lr, critic_lr, alpha_lr: Adam learning rates, > 0.
      batch_size: transitions per gradient step, >= 1.
      target_entropy: entropy the temperature steers towards; ``None`` means
        ``-action_dim`` (the paper's heuristic).
      init_alpha: initial temperature, > 0.
      num_critics: critics in the ensemble (2 = twin critics), >= 1.
    """

    obs_dim: int = 3
    action_dim: int = 1
    hidden_sizes: tuple[int, ...] = (64, 64)
    activation: str = "relu"
    # sweep="traced": a traced value in the compiled program (Hyperparams);
    # sweep="initial": only a starting value. Either way a sweep may vary it
    # without compiling again (SWEEPABLE).
    gamma: float = checks.real_field(
        0.99, checks.Range(0, 1, high_open=True), sweep="traced"
    )
    tau: float = checks.real_field(
        0.02, checks.Range(0, 1, low_open=True), sweep="traced"
    )
    actor_lr: float = checks.real_field(3e-3, POSITIVE, sweep="traced")
    critic_lr: float = checks.real_field(3e-3, POSITIVE, sweep="traced")
    alpha_lr: float = checks.real_field(3e-3, POSITIVE, sweep="traced")
    batch_size: int = 256
    target_entropy: float | None = checks.real_field(None, checks.Range(optional=True))
    init_alpha: float = checks.real_field(1.0, POSITIVE, sweep="initial")
    num_critics: int = 2

    def __post_init__(self):
        for name in ("obs_dim", "action_dim", "batch_size", "num_critics"):
            value = checks.integer(f"SACConfig.{name}", getattr(self, name), 1)
            object.__setattr__(self, name, value)
        hidden = tuple(self.hidden_sizes)
        if not hidden or not all(
            isinstance(h, int) and not isinstance(h, bool) and h >= 1 for h in hidden
        ):
            raise ValueError(
                "SACConfig.hidden_sizes must be a non-empty tuple of integers >= 1, "
                f"got {self.hidden_sizes!r}"
            )
        # lists -> tuple, to stay hashable
        object.__setattr__(self, "hidden_sizes", hidden)
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"SACConfig.activation must be one of {sorted(ACTIVATIONS)}, "
                f"got {self.activation!r}"
            )
        checks.fields(self)

    def replace(self, **changes) -> SACConfig:
        """A copy with ``changes``, validated like a new config."""
        return dataclasses.replace(self, **changes)

    @property
    def entropy_target(self) -> float:
        """The target entropy in use: ``target_entropy`` or ``-action_dim``."""
        return float(
            -self.action_dim if self.target_entropy is None else self.target_entropy
        )

    def actor(self) -> networks.Actor:
        return networks.Actor(
            self.action_dim, self.hidden_sizes, ACTIVATIONS[self.activation]
        )

    def critic(self) -> networks.TwinCritic:
        return networks.TwinCritic(
            self.hidden_sizes, self.num_critics, ACTIVATIONS[self.activation]
        )

    def optimizers(self):
        """``(actor, critic, alpha)`` optax optimizers (Adam). :func:`init`
        builds Adam's all-zero states on the host without running optax; for
        other optimizers it falls back to their own ``init``."""
        return optimizers(self)


def optimizers(hyper: SACConfig | Hyperparams):
    """``(actor, critic, alpha)`` Adam optimizers with the learning rates of
    ``hyper``: Python floats from a :class:`SACConfig`, or traced arrays from
    :class:`Hyperparams` (optax takes either; the optimizer states have the
    same structure both ways, so checkpoints do not care)."""
    return (
        optax.adam(hyper.actor_lr),
        optax.adam(hyper.critic_lr),
        optax.adam(hyper.alpha_lr),
    )


def _sweep_fields(kind: str) -> tuple[str, ...]:
    return tuple(
        f.name for f in dataclasses.fields(SACConfig) if f.metadata.get("sweep") == kind
    )


# The SACConfig fields that are traced values in the compiled program, and all
# that a sweep may vary without compiling again: those, and the initial
# temperature (a starting value, not part of the program at all).
TRACED = _sweep_fields("traced")
SWEEPABLE = TRACED + _sweep_fields("initial")


@struct.dataclass
class Hyperparams:
    """SAC's traced hyperparameters (the :data:`TRACED` fields of
    :class:`SACConfig`) as arrays: float32 scalars, or ``(M,)`` for M
    settings under ``vmap``. ``hyper.gamma`` reads like ``config.gamma``.

    Inside the compiled program they are traced values, not constants: one
    program trains every setting of them, and a sweep of M settings vmaps
    over them instead of compiling M programs. Everything that changes a
    shape (widths, batch size, K) stays in :class:`SACConfig` and the loop's
    config.
    """

    values: dict  # field name -> array

    @classmethod
    def of(cls, config: SACConfig) -> Hyperparams:
        """The values in ``config``, as float32 NumPy scalars."""
        return cls({name: np.float32(getattr(config, name)) for name in TRACED})

    def __getattr__(self, name):
        if name in TRACED:
            return self.values[name]
        raise AttributeError(f"Hyperparams has no field {name!r}")


@struct.dataclass
class SACState:
    """Everything SAC learns, as one pytree. ``config`` is static (not a leaf)."""

    actor_params: dict
    critic_params: dict
    target_critic_params: dict
    actor_opt_state: optax.OptState
    critic_opt_state: optax.OptState
    alpha_opt_state: optax.OptState
    log_alpha: jax.Array
    step: jax.Array
    config: SACConfig = struct.field(pytree_node=False)

    @property
    def alpha(self):
        return jnp.exp(self.log_alpha)


def init(key: jax.Array, config: SACConfig) -> SACState:
    """Fresh networks (target critics = online critics), optimizers and temperature.

    Everything is built on the host with NumPy and moved to the device in one
    transfer: nothing is compiled. ``key`` must be concrete.
    """
    return jax.device_put(init_host(host_random.generator(key, "sac"), config))


def init_host(rng: np.random.Generator, config: SACConfig) -> SACState:
    """:func:`init` as NumPy arrays drawn from ``rng`` (for building bigger
    states on the host, e.g. :func:`sacbook.loop.init`)."""
    obs = np.zeros((1, config.obs_dim), np.float32)
    action = np.zeros((1, config.action_dim), np.float32)
    actor_params = draw_params(rng, config.actor(), obs)
    critic_params = draw_params(rng, config.critic(), obs, action)
    log_alpha = np.float32(math.log(config.init_alpha))
    actor_opt, critic_opt, alpha_opt = config.optimizers()
    return SACState(
        actor_params=actor_params,
        critic_params=critic_params,
        # a copy, not an alias: the training loop donates the state's buffers
        target_critic_params=jax.tree.map(np.copy, critic_params),
        actor_opt_state=host_random.optimizer_state(actor_opt, actor_params),
        critic_opt_state=host_random.optimizer_state(critic_opt, critic_params),
        alpha_opt_state=host_random.optimizer_state(alpha_opt, log_alpha),
        log_alpha=log_alpha,
        step=np.int32(0),
        config=config,
    )


# ----------------------------------------------------------------------------
# Losses. Each is a pure function of parameters and a batch.
# ----------------------------------------------------------------------------


def soft_td_target(reward, terminated, next_q, next_log_prob, alpha, gamma):
    """Soft Bellman target
    ``r + gamma (1 - terminated) (next_q - alpha next_log_prob)``.

    ``next_q`` is the minimum over the target critics at ``(s', a' ~ pi(s'))``.
    ``truncated`` does not appear: the time limit is not a terminal state.
    All arrays ``(B,)``; returns ``(B,)``.
    """
    not_done = 1.0 - terminated.astype(reward.dtype)
    return reward + gamma * not_done * (next_q - alpha * next_log_prob)


def critic_loss(
    critic_params,
    target_critic_params,
    actor_params,
    log_alpha,
    batch: Transition,
    key,
    config: SACConfig,
    gamma=None,
):
    """``0.5 * sum_i mean_B (Q_i(s, a) - y)^2`` with ``y`` from :func:`soft_td_target`.

    The target (next action, target critics, alpha) carries no gradient.
    ``gamma`` (a traced value in a sweep) defaults to ``config.gamma``.
    Returns ``(loss, {"q_mean": ...})``.
    """
    next_mean, next_log_std = config.actor().apply(actor_params, batch.next_obs)
    next_action, next_log_prob = networks.sample_action(key, next_mean, next_log_std)
    next_q = jnp.min(
        config.critic().apply(target_critic_params, batch.next_obs, next_action), axis=0
    )
    target = soft_td_target(
        batch.reward,
        batch.terminated,
        next_q,
        next_log_prob,
        jnp.exp(log_alpha),
        config.gamma if gamma is None else gamma,
    )
    target = jax.lax.stop_gradient(target)
    q = config.critic().apply(
        critic_params, batch.obs, batch.action
    )  # (num_critics, B)
    loss = 0.5 * jnp.sum(jnp.mean((q - target) ** 2, axis=-1))
    return loss, {"q_mean": jnp.mean(q)}


def actor_loss(actor_params, critic_params, log_alpha, obs, key, config: SACConfig):
    """``mean_B [alpha log pi(a|s) - min_i Q_i(s, a)]``, ``a ~ pi(s)`` reparameterised.

    Minimising it maximises the soft value. Only the actor gets a gradient.
    Returns ``(loss, log_prob (B,))``.
    """
    mean, log_std = config.actor().apply(actor_params, obs)
    action, log_prob = networks.sample_action(key, mean, log_std)
    q = jnp.min(config.critic().apply(critic_params, obs, action), axis=0)
    alpha = jax.lax.stop_gradient(jnp.exp(log_alpha))
    return jnp.mean(alpha * log_prob - q), log_prob


def temperature_loss(log_alpha, log_prob, target_entropy):
    """``-log_alpha * mean(log_prob + target_entropy)``.

    Its gradient ``-(mean log_prob + target) = entropy - target`` makes alpha
    grow when the policy's entropy is below the target and shrink above it.
    """
    return -log_alpha * jnp.mean(jax.lax.stop_gradient(log_prob) + target_entropy)


def polyak_update(target, online, tau):
    """``target + tau (online - target)`` leaf by leaf."""
    return jax.tree.map(lambda t, o: t + tau * (o - t), target, online)


def optimizer_step(optimizer, grads, opt_state, params):
    """One optax step: returns ``(new_params, new_opt_state)``."""
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


def global_norm(tree):
    """Euclidean norm of all leaves of a pytree together."""
    return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree)))


@jit.program(static_argnames="axis")  # [devices]
def update(
    state: SACState,
    batch: Transition,
    key: jax.Array,
    hyper: Hyperparams | None = None,  # [sweep]
    axis: sharding.Axis = sharding.LOCAL,  # [devices]
):
    """One SAC gradient step: critics, then the actor (against the updated
    critics), then the temperature, then the target critics.

    Args:
      state, batch, key: the SAC state, a batch of B transitions, a PRNG key.
      hyper: traced hyperparameters (a sweep); ``None`` takes them from
        ``state.config`` as constants.
      axis: the devices the batch is split over (:mod:`sacbook.sharding`):
        every gradient is averaged across them before the update, so every
        device applies the same update to the same parameters.

    Returns ``(new_state, metrics)``; metrics is a dict of scalars.
    """
    config = hp = state.config  # hp: gamma, tau and the learning rates
    if hyper is not None:  # [sweep]
        hp = hyper  # [sweep]: traced values, one program for every setting
    actor_opt, critic_opt, alpha_opt = optimizers(hp)
    k_critic, k_actor = jax.random.split(key)

    # 1. The critics step towards the target of the current networks.
    (c_loss, c_aux), c_grads = jax.value_and_grad(critic_loss, has_aux=True)(
        state.critic_params,
        state.target_critic_params,
        state.actor_params,
        state.log_alpha,
        batch,
        k_critic,
        config,
        hp.gamma,
    )
    c_grads = axis.mean(c_grads)  # [devices]
    critic_params, critic_opt_state = optimizer_step(
        critic_opt, c_grads, state.critic_opt_state, state.critic_params
    )

    # 2. The actor steps against the updated critics.
    (a_loss, log_prob), a_grads = jax.value_and_grad(actor_loss, has_aux=True)(
        state.actor_params,
        critic_params,
        state.log_alpha,
        batch.obs,
        k_actor,
        config,
    )
    a_grads = axis.mean(a_grads)  # [devices]
    actor_params, actor_opt_state = optimizer_step(
        actor_opt, a_grads, state.actor_opt_state, state.actor_params
    )

    # 3. The temperature steps towards the target entropy.
    t_loss, t_grad = jax.value_and_grad(temperature_loss)(
        state.log_alpha, log_prob, config.entropy_target
    )
    t_grad = axis.mean(t_grad)  # [devices]
    log_alpha, alpha_opt_state = optimizer_step(
        alpha_opt, t_grad, state.alpha_opt_state, state.log_alpha
    )

    # 4. The target critics follow the online ones.
    target = polyak_update(state.target_critic_params, critic_params, hp.tau)
    new = state.replace(critic_params=critic_params, critic_opt_state=critic_opt_state)
    new = new.replace(actor_params=actor_params, actor_opt_state=actor_opt_state)
    new = new.replace(log_alpha=log_alpha, alpha_opt_state=alpha_opt_state)
    new = new.replace(target_critic_params=target, step=state.step + 1)

    losses = {
        "critic_loss": c_loss,
        "actor_loss": a_loss,
        "alpha_loss": t_loss,
        "q_mean": c_aux["q_mean"],
        "entropy": -jnp.mean(log_prob),
    }
    losses = axis.mean(losses)  # [devices]: this device's batch, then all
    metrics = {
        **losses,
        "alpha": new.alpha,
        "actor_grad_norm": global_norm(a_grads),
        "critic_grad_norm": global_norm(c_grads),
    }
    return new, {name: metrics[name] for name in METRIC_NAMES}


METRIC_NAMES = (
    "critic_loss",
    "actor_loss",
    "alpha_loss",
    "alpha",
    "q_mean",
    "entropy",
    "actor_grad_norm",
    "critic_grad_norm",
)


def policy_action(state_or_params, obs, config: SACConfig | None = None):
    """Deterministic action ``tanh(mean)`` in ``[-1, 1]`` for ``obs (..., obs_dim)``.

    Accepts a :class:`SACState`, or actor parameters together with ``config``.
    """
    if isinstance(state_or_params, SACState):
        config, params = state_or_params.config, state_or_params.actor_params
    else:
        params = state_or_params
        if config is None:
            raise ValueError("policy_action: pass config with bare actor parameters")
    mean, _ = config.actor().apply(params, obs)
    return networks.deterministic_action(mean)
