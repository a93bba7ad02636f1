"""Save and resume whole training runs with orbax-checkpoint; load a policy.

A checkpoint holds everything a run needs to continue exactly where it
stopped: the :class:`~sacbook.loop.TrainState` (networks, optimizer states,
replay buffer, env states, PRNG key, counters) plus the config, seed and
metrics history as JSON. Resuming continues bit for bit as an uninterrupted
run would (on CPU; GPUs need ``XLA_FLAGS=--xla_gpu_deterministic_ops=true``).

Each save goes to a new step folder written under a temporary name and renamed
only when complete (orbax's atomic commit), and the previous checkpoint is kept
until then: a save that is interrupted never damages the last good one.

:func:`load_policy` reads back only the actor and the config, never the
replay buffer, and returns a jitted ``act(obs) -> torque``.
"""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from sacbook import jit, loop, sac, sharding
from sacbook.config import TrainConfig
from sacbook.loop import TrainState
from sacbook.pendulum import PendulumParams
from sacbook.sac import SACConfig

KEEP = 2  # checkpoints kept: the newest and the one before it


def config_to_dict(config: TrainConfig) -> dict:
    return dataclasses.asdict(config)


def config_from_dict(data: dict) -> TrainConfig:
    data = dict(data)
    env = PendulumParams(**data.pop("env"))
    sac_config = SACConfig(**{**data.pop("sac")})
    return TrainConfig(env=env, sac=sac_config, **data)


def _manager(directory, create: bool = True) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(
        max_to_keep=KEEP, create=create, enable_async_checkpointing=False
    )
    return ocp.CheckpointManager(
        Path(directory).absolute(), options=options, item_names=("state", "meta")
    )


def _to_saveable(state: TrainState) -> TrainState:
    # orbax stores plain arrays: save a typed PRNG key as its raw uint32 data
    return state.replace(key=jax.random.key_data(state.key))


def save(
    directory,
    state: TrainState,
    *,
    config: TrainConfig,
    seed: int = 0,
    history: list | None = None,
) -> Path:
    """Write a checkpoint of a run into ``directory`` (created if missing):
    its ``state``, the ``config`` it runs with, its ``seed`` and its metrics
    ``history``. For a finished run: ``save(dir, result.state,
    config=result.config, seed=result.seed, history=result.history)``.
    Returns the step folder."""
    if not isinstance(config, TrainConfig):
        raise ValueError(
            f"save: config must be a TrainConfig, got {type(config).__name__}"
        )
    step = int(state.iteration)
    meta = {
        "config": config_to_dict(config),
        "seed": seed,
        "history": list(history or []),
        "sacbook_checkpoint": 1,
        # a sharded run's buffer is D shards, each with its own rows: the
        # count must match when it resumes
        "devices": len(state.obs.sharding.device_set),
    }
    with _manager(directory) as manager:
        manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(_to_saveable(state)),
                meta=ocp.args.JsonSave(meta),
            ),
            force=True,
        )
        manager.wait_until_finished()
    return Path(directory) / str(step)


def latest_step(directory) -> int | None:
    """The newest complete checkpoint's step (iterations done), or None."""
    if not Path(directory).is_dir():
        return None
    with _manager(directory, create=False) as manager:
        return manager.latest_step()


def restore(directory, step: int | None = None, *, mesh=None):
    """Load a run: returns ``(state, config, seed, history)``.

    Continue it with ``train.train(config, seed, state=state, history=history)``.
    A run that was sharded over D devices resumes on a mesh of D devices:
    pass it here (the state is read straight into its shards) and to
    :func:`sacbook.train.train`. Its replay buffer is D shards, each filled
    by its own device, so another device count is refused.
    """
    directory = Path(directory)
    step = _existing_step(directory, step)
    with _manager(directory, create=False) as manager:
        meta = _restore_meta(manager, step)
        config = config_from_dict(meta["config"])
        saved_devices = meta.get("devices", 1)
        devices = 1 if mesh is None else sharding.mesh_axis(mesh)[1]
        if devices != saved_devices:
            raise ValueError(
                f"this checkpoint holds a run sharded over {saved_devices} "
                f"device(s); resume it on a mesh of {saved_devices} "
                f"(sacbook train --devices {saved_devices}), not {devices}"
            )
        # the structure, shapes and dtypes to restore into, without computing anything
        template = jax.eval_shape(_to_saveable, loop.abstract_state(config))
        if mesh is not None:  # and where each shard goes
            template = jax.tree.map(
                lambda leaf, where: jax.ShapeDtypeStruct(
                    leaf.shape, leaf.dtype, sharding=where
                ),
                template,
                sharding.state_shardings(template, mesh),
            )
        restore_args = ocp.args.Composite(state=ocp.args.StandardRestore(template))
        restored = manager.restore(step, args=restore_args)
    state = restored["state"]
    state = state.replace(key=jax.random.wrap_key_data(state.key))
    return state, config, meta["seed"], meta["history"]


def _existing_step(directory: Path, step: int | None) -> int:
    """``step``, or the newest checkpoint's; a clear error when there is none."""
    step = latest_step(directory) if step is None else step
    if step is None:
        raise ValueError(f"no checkpoint found in {str(directory)!r}")
    return step


def _restore_meta(manager: ocp.CheckpointManager, step: int) -> dict:
    args = ocp.args.Composite(meta=ocp.args.JsonRestore())
    return manager.restore(step, args=args)["meta"]


def restore_actor(directory, step: int | None = None):
    """Only what acting needs: ``(actor_params, config)``.

    Reads the actor's parameters (NumPy arrays, a few kilobytes) and the
    config, and nothing else: not the replay buffer (up to a million rows),
    the critics or the optimizer states. orbax restores the subtree
    ``state.sac.actor_params`` alone (a partial restore).
    """
    directory = Path(directory)
    step = _existing_step(directory, step)
    with _manager(directory, create=False) as manager:
        config = config_from_dict(_restore_meta(manager, step)["config"])
        subtree = {"sac": {"actor_params": _abstract_actor_params(config.sac)}}
        as_numpy = jax.tree.map(
            lambda _: ocp.RestoreArgs(restore_type=np.ndarray), subtree
        )
        restored = manager.restore(
            step,
            args=ocp.args.Composite(state=_partial_restore_args(subtree, as_numpy)),
        )
    return restored["state"]["sac"]["actor_params"], config


def _abstract_actor_params(config: SACConfig):
    """The actor's parameter tree as ``jax.ShapeDtypeStruct`` leaves: nothing
    computed, nothing compiled."""
    obs = jax.ShapeDtypeStruct((1, config.obs_dim), jnp.float32)
    return jax.eval_shape(lambda x: config.actor().init(jax.random.key(0), x), obs)


# PyTreeRestore(partial_restore=True) is in orbax-checkpoint 0.11.20, not 0.11.10
_HAS_PARTIAL_RESTORE = (
    "partial_restore" in inspect.signature(ocp.args.PyTreeRestore).parameters
)


def _partial_restore_args(subtree, restore_args) -> ocp.args.PyTreeRestore:
    """orbax arguments that read ``subtree`` of a saved tree and skip the rest."""
    if _HAS_PARTIAL_RESTORE:
        return ocp.args.PyTreeRestore(
            item=subtree, restore_args=restore_args, partial_restore=True
        )
    # older orbax: empty transforms drop every saved key that subtree lacks,
    # and only what is left is read
    return ocp.args.PyTreeRestore(
        item=subtree, restore_args=restore_args, transforms={}
    )


@jit.program(static_argnames=("sac_config", "max_torque"))
def policy_torque(actor_params, obs, sac_config: SACConfig, max_torque: float):
    """The deterministic torque ``max_torque * tanh(mean)`` for ``obs (..., 3)``:
    shape ``(...)``.

    The parameters are an argument, not constants compiled into the program:
    policies of the same architecture share one compiled program.
    """
    action = sac.policy_action(actor_params, jnp.asarray(obs, jnp.float32), sac_config)
    return max_torque * action[..., 0]


def load_policy(directory, step: int | None = None):
    """The trained policy as one jitted call: ``act(obs) -> torque``.

    ``obs`` is ``(..., 3)`` (``pendulum.observe``); the torque is the
    deterministic action ``max_torque * tanh(mean)``, shape ``(...)``. Reads
    only the actor and the config (:func:`restore_actor`), never the replay
    buffer; the parameters go to the device once and are passed to
    :func:`policy_torque` on every call.
    """
    actor_params, config = restore_actor(directory, step)
    actor_params = jax.device_put(actor_params)

    def act(obs):
        return policy_torque(
            actor_params, obs, sac_config=config.sac, max_torque=config.env.max_torque
        )

    return act
