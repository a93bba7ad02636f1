"""Save and resume whole training runs with orbax-checkpoint; load a policy.

A checkpoint holds everything a run needs to continue exactly where it
stopped: the :class:`~sacbook.train.TrainState` (networks, optimizer states,
replay buffer, env states, PRNG key, counters) plus the config, seed and
metrics history as JSON. Resuming continues bit for bit as an uninterrupted
run would (on CPU; GPUs need ``XLA_FLAGS=--xla_gpu_deterministic_ops=true``).

Each save goes to a new step folder written under a temporary name and renamed
only when complete (orbax's atomic commit), and the previous checkpoint is kept
until then: a save that is interrupted never damages the last good one.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from sacbook import sac, train
from sacbook.pendulum import PendulumParams
from sacbook.sac import SACConfig
from sacbook.train import TrainConfig, TrainState

KEEP = 2  # checkpoints kept: the newest and the one before it


def config_to_dict(config: TrainConfig) -> dict:
    return dataclasses.asdict(config)


def config_from_dict(data: dict) -> TrainConfig:
    data = dict(data)
    env = PendulumParams(**data.pop("env"))
    sac_config = SACConfig(**{**data.pop("sac")})
    return TrainConfig(env=env, sac=sac_config, **data)


def _manager(directory, create: bool = True) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=KEEP, create=create, enable_async_checkpointing=False)
    return ocp.CheckpointManager(Path(directory).absolute(), options=options, item_names=("state", "meta"))


def _to_saveable(state: TrainState) -> TrainState:
    # orbax stores plain arrays: save a typed PRNG key as its raw uint32 data
    return state.replace(key=jax.random.key_data(state.key))


def save(directory, result_or_state, *, config: TrainConfig | None = None, seed: int = 0,
         history: list | None = None) -> Path:
    """Write a checkpoint of a run into ``directory`` (created if missing).

    Pass a :class:`~sacbook.train.TrainResult`, or a ``TrainState`` with its
    ``config`` (and optionally ``seed`` and ``history``). Returns the step folder.
    """
    if isinstance(result_or_state, train.TrainResult):
        state, config = result_or_state.state, result_or_state.config
        seed, history = result_or_state.seed, result_or_state.history
    else:
        state = result_or_state
        if config is None:
            raise ValueError("save: pass config together with a bare TrainState")
    step = int(state.iteration)
    meta = {"config": config_to_dict(config), "seed": seed, "history": list(history or []),
            "sacbook_checkpoint": 1}
    with _manager(directory) as manager:
        manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(_to_saveable(state)),
                                                   meta=ocp.args.JsonSave(meta)), force=True)
        manager.wait_until_finished()
    return Path(directory) / str(step)


def latest_step(directory) -> int | None:
    """The newest complete checkpoint's step (iterations done), or None."""
    if not Path(directory).is_dir():
        return None
    with _manager(directory, create=False) as manager:
        return manager.latest_step()


def restore(directory, step: int | None = None):
    """Load a run: returns ``(state, config, seed, history)``.

    Continue it with ``train.train(config, seed, state=state, history=history)``.
    """
    directory = Path(directory)
    step = latest_step(directory) if step is None else step
    if step is None:
        raise ValueError(f"no checkpoint found in {str(directory)!r}")
    with _manager(directory, create=False) as manager:
        meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        config = config_from_dict(meta["config"])
        # the structure, shapes and dtypes to restore into, without computing anything
        template = jax.eval_shape(_to_saveable, train.abstract_state(config))
        restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(template)))
    state = restored["state"]
    state = state.replace(key=jax.random.wrap_key_data(state.key))
    return state, config, meta["seed"], meta["history"]


def load_policy(directory):
    """The trained policy as one jitted call: ``act(obs) -> torque``.

    ``obs`` is ``(..., 3)`` (``pendulum.observe``); the torque is the
    deterministic action ``max_torque * tanh(mean)``, shape ``(...)``.
    """
    state, config, _, _ = restore(directory)
    actor_params = state.sac.actor_params

    @jax.jit
    def act(obs):
        action = sac.policy_action(actor_params, jnp.asarray(obs, jnp.float32), config.sac)
        return config.env.max_torque * action[..., 0]

    return act
