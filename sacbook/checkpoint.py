"""Save and resume whole training runs with orbax-checkpoint; load a policy.

A checkpoint holds everything a run needs to continue exactly where it
stopped: the :class:`~sacbook.loop.TrainState` (networks, optimizer states,
replay buffer, env states, PRNG key, counters) plus the config, seed and
metrics history as JSON. Resuming continues bit for bit as an uninterrupted
run would (on CPU; GPUs need ``XLA_FLAGS=--xla_gpu_deterministic_ops=true``).

Each save goes to a new step folder written under a temporary name and renamed
only when complete (orbax's atomic commit), and the previous checkpoint is kept
until then: a save that is interrupted never damages the last good one. A save
that fails (a full disk, any I/O error) leaves nothing half-written and raises
:class:`CheckpointError` in one line.

Every checkpoint carries checksums of its arrays and of its files
(:mod:`sacbook.integrity`), checked before it is used. When the newest one is
damaged, :func:`restore` and :func:`load_policy` use the newest intact one
and say so (a :class:`CheckpointWarning`); when none is intact they raise
:class:`DamagedCheckpointError`, one line naming each step and its damage.

:func:`load_policy` reads back only the actor and the config, never the
replay buffer, and returns a jitted ``act(obs) -> torque``.
"""

from __future__ import annotations

import errno
import inspect
import os
import shutil
import time
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from sacbook import device, distributed, integrity, jit, loop, sac, sharding
from sacbook.config import TrainConfig, config_from_dict, config_to_dict
from sacbook.loop import TrainState
from sacbook.sac import SACConfig

KEEP = 2  # checkpoints kept: the newest and the one before it


class CheckpointError(OSError):
    """A checkpoint could not be written; the previous one is kept."""


class DamagedCheckpointError(ValueError):
    """No intact checkpoint to read: the message names each step's damage."""


class CheckpointWarning(UserWarning):
    """The newest checkpoint is damaged; an older intact one was read."""


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
    step: int | None = None,
) -> Path:
    """Write a checkpoint of a run into ``directory`` (created if missing):
    its ``state``, the ``config`` it runs with, its ``seed`` and its metrics
    ``history``. For a finished run: ``save(dir, result.state,
    config=result.config, seed=result.seed, history=result.history)``.
    Returns the step folder (``step``: the state's iteration count, which
    a caller may pass when it knows it).

    Under ``jax.distributed`` every process calls it with the same global
    state: each writes its own shards into the one shared ``directory``
    (orbax's multi-process save) and process 0 writes the metadata, the
    manifest and any renames."""
    if not isinstance(config, TrainConfig):
        raise ValueError(
            f"save: config must be a TrainConfig, got {type(config).__name__}"
        )
    if step is None:  # iterations done; given where another process holds them
        step = int(distributed.fetch(state.iteration))
    saveable = _to_saveable(state)
    where = state.obs.sharding.device_set
    if state.obs.sharding.is_fully_replicated:  # a whole run, on any devices
        where = {min(where, key=lambda d: d.id)}
    meta = {
        "config": config_to_dict(config),
        "seed": seed,
        "history": list(history or []),
        "sacbook_checkpoint": 2,
        # a sharded run's buffer is D shards, each with its own rows: the
        # count must match when it resumes
        "devices": len(where),
        # and so is the number of processes that hold it
        "processes": len({d.process_index for d in where}),
        "checksums": integrity.array_checksums(saveable),
    }
    directory, size = Path(directory), device.tree_bytes(saveable)
    primary = distributed.is_primary()
    if primary and (directory / str(step)).is_dir() and not intact(directory, step):
        set_aside(directory, step)  # a damaged one in the way: orbax keeps steps
    distributed.barrier("checkpoint-start")
    try:
        with _manager(directory) as manager:
            manager.save(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(saveable),
                    meta=ocp.args.JsonSave(meta),
                ),
                force=True,
            )
            manager.wait_until_finished()
        if primary:
            integrity.write_manifest(directory / str(step))
    except Exception as e:  # orbax wraps I/O errors in its own
        if primary:
            _discard(directory, step)
        raise CheckpointError(_save_failed(directory, step, size, e)) from e
    distributed.barrier("checkpoint-end")  # the manifest is there for all
    return directory / str(step)


def intact(directory, step: int) -> bool:
    """Whether the files of checkpoint ``step`` are as they were written
    (their manifest's sizes and CRC-32s; the arrays' own checksums are
    checked when they are read)."""
    folder = checkpoint_folder(directory) / str(step)
    return folder.is_dir() and integrity.damaged_files(folder) is None


def set_aside(directory: Path, step: int) -> Path:
    """Rename the damaged checkpoint ``step`` to ``<step>.damaged`` (``-2``,
    ... if taken): kept for a look, out of orbax's way."""
    target, n = directory / f"{step}.damaged", 1
    while target.exists():
        n += 1
        target = directory / f"{step}.damaged-{n}"
    (directory / str(step)).rename(target)
    return target


def _discard(directory: Path, step: int, quiet: float = 0.3) -> None:
    """Remove what a failed save of ``step`` left: orbax's temporary folder,
    and the step's folder if it has no manifest (it never finished).

    When one of orbax's writers fails, the others (tensorstore's threads) go
    on writing for a moment and recreate the folders they write into: remove
    again until nothing has reappeared for ``quiet`` seconds (5 s at most)."""
    folder = directory / str(step)
    start = last_seen = time.monotonic()
    while time.monotonic() - last_seen < quiet and time.monotonic() - start < 5:
        leftovers = list(directory.glob(f"{step}.orbax-checkpoint-tmp*"))
        if folder.is_dir() and not (folder / integrity.MANIFEST).exists():
            leftovers.append(folder)
        for leftover in leftovers:
            shutil.rmtree(leftover, ignore_errors=True)
            last_seen = time.monotonic()
        time.sleep(0.02)


def _save_failed(directory: Path, step: int, size: int, error: Exception) -> str:
    """One line: what failed, the space a checkpoint needs, what is kept."""
    cause = error
    while cause is not None and not isinstance(cause, OSError):
        cause = cause.__cause__ or cause.__context__
    # tensorstore's errors are ValueErrors that quote the OS's message
    if (cause is not None and cause.errno == errno.ENOSPC) or (
        os.strerror(errno.ENOSPC) in str(error)
    ):
        reason = "no space left on the device"
    else:
        reason = str(cause or error).splitlines()[0][:200]
    try:
        free = device.format_bytes(shutil.disk_usage(directory).free) + " free"
    except OSError:
        free = "free space unknown"
    kept = [s for s in all_steps(directory) if s != step]
    kept_text = f"step {max(kept)} is kept" if kept else "no earlier checkpoint"
    if kept:  # what the last one took on disk, orbax's metadata included
        files = (directory / str(max(kept))).rglob("*")
        size = max(size, sum(f.stat().st_size for f in files if f.is_file()))
    return (
        f"could not save the checkpoint of step {step} in {directory}: {reason} "
        f"(a checkpoint needs up to {device.format_bytes(size)}, {free}); "
        f"{kept_text}"
    )


def checkpoint_folder(directory) -> Path:
    """``directory``, or its ``checkpoint/`` when ``directory`` is a run's
    folder (``sacbook train --out``) and holds no checkpoint itself."""
    directory = Path(directory)
    inner = directory / "checkpoint"
    if inner.is_dir() and not _steps(directory):
        return inner
    return directory


def _steps(directory: Path) -> list[int]:
    if not directory.is_dir():
        return []
    with _manager(directory, create=False) as manager:
        return sorted(manager.all_steps())


def all_steps(directory) -> list[int]:
    """The steps of the complete checkpoints in ``directory`` (or in a run
    folder's ``checkpoint/``), oldest first; intact or not."""
    return _steps(checkpoint_folder(directory))


def latest_step(directory) -> int | None:
    """The newest complete checkpoint's step (iterations done), or None."""
    steps = all_steps(directory)
    return steps[-1] if steps else None


def _read_intact(directory, step: int | None, restore_args):
    """``(state item, meta, step)`` of ``step``, or of the newest intact
    checkpoint. ``restore_args(meta)`` gives orbax's arguments for the
    state (and may refuse the checkpoint: its errors pass through). A
    damaged checkpoint is never used; skipping one warns."""
    directory = checkpoint_folder(directory)
    saved = all_steps(directory)
    if not saved:
        raise ValueError(f"no checkpoint found in {str(directory)!r}")
    if step is not None and step not in saved:
        raise ValueError(
            f"step must be one of the saved steps {saved} of {str(directory)!r}, "
            f"got {step!r}"
        )
    steps = [step] if step is not None else saved[::-1]
    damaged = []
    with _manager(directory, create=False) as manager:
        for candidate in steps:
            reason = integrity.damaged_files(directory / str(candidate))
            if reason is None:
                try:
                    meta = _restore_meta(manager, candidate)
                except Exception as e:  # orbax's errors: a damaged checkpoint
                    reason = f"its metadata is unreadable ({_first_line(e)})"
            if reason is None:
                args = ocp.args.Composite(state=restore_args(meta))
                try:
                    item = manager.restore(candidate, args=args)["state"]
                except Exception as e:
                    reason = f"orbax cannot read it ({_first_line(e)})"
                else:
                    bad = integrity.mismatched_arrays(item, meta.get("checksums", {}))
                    if bad:
                        reason = f"{len(bad)} array(s) fail their checksum ({bad[0]})"
            if reason is None:
                if damaged:
                    warnings.warn(
                        f"{_describe(directory, damaged)}; using step {candidate}, "
                        "the newest intact checkpoint",
                        CheckpointWarning,
                        stacklevel=_outside_this_module(),
                    )
                return item, meta, candidate
            damaged.append((candidate, reason))
    raise DamagedCheckpointError(
        f"{_describe(directory, damaged)}; no intact checkpoint is left"
    )


def _outside_this_module() -> int:
    """The ``stacklevel`` of the first caller outside this module, so that a
    warning names the user's line, whichever function of ours they called."""
    level, frame = 1, inspect.currentframe().f_back
    while frame is not None and frame.f_code.co_filename == __file__:
        level, frame = level + 1, frame.f_back
    return level


def _describe(directory: Path, damaged: list) -> str:
    return "; ".join(
        f"checkpoint step {s} in {directory} is damaged: {why}" for s, why in damaged
    )


def _first_line(error: Exception) -> str:
    return f"{type(error).__name__}: {str(error).splitlines()[0][:120]}"


def restore(directory, step: int | None = None, *, mesh=None):
    """Load a run: returns ``(state, config, seed, history)``.

    Continue it with ``train.train(config, seed, state=state, history=history)``.
    ``directory`` is a checkpoint folder or a run's folder. Without ``step``,
    the newest intact checkpoint (see the module docstring). A run that was
    sharded over D devices resumes on a mesh of D devices: pass it here (the
    state is read straight into its shards) and to
    :func:`sacbook.train.train`. Its replay buffer is D shards, each filled
    by its own device, so another device count is refused.
    """
    devices = 1 if mesh is None else sharding.mesh_axis(mesh)[1]

    def state_args(meta):
        saved_devices = meta.get("devices", 1)
        saved, processes = meta.get("processes", 1), jax.process_count()
        if processes != saved:
            raise ValueError(
                f"this checkpoint holds a run split over {saved} process(es) and "
                f"{saved_devices} device(s); resume it with {saved} process(es) "
                f"(sacbook train --distributed), not {processes}"
            )
        if devices != saved_devices:
            raise ValueError(
                f"this checkpoint holds a run sharded over {saved_devices} "
                f"device(s); resume it on a mesh of {saved_devices} "
                f"(sacbook train --devices {saved_devices}), not {devices}"
            )
        config = config_from_dict(meta["config"])
        # the structure, shapes and dtypes to restore into, computing nothing
        template = jax.eval_shape(_to_saveable, loop.abstract_state(config))
        if mesh is not None:  # and where each shard goes
            places = sharding.state_shardings(template, mesh)
        else:  # this process's first device, whichever devices saved it
            one = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
            places = jax.tree.map(lambda _: one, template)
        template = jax.tree.map(
            lambda leaf, where: jax.ShapeDtypeStruct(
                leaf.shape, leaf.dtype, sharding=where
            ),
            template,
            places,
        )
        return ocp.args.StandardRestore(template)

    state, meta, _ = _read_intact(directory, step, state_args)
    state = state.replace(key=jax.random.wrap_key_data(state.key))
    return state, config_from_dict(meta["config"]), meta["seed"], meta["history"]


def _restore_meta(manager: ocp.CheckpointManager, step: int) -> dict:
    args = ocp.args.Composite(meta=ocp.args.JsonRestore())
    return manager.restore(step, args=args)["meta"]


def restore_actor(directory, step: int | None = None):
    """Only what acting needs: ``(actor_params, config)``.

    Reads the actor's parameters (NumPy arrays, a few kilobytes) and the
    config, and nothing else: not the replay buffer (up to a million rows),
    the critics or the optimizer states. orbax restores the subtree
    ``state.sac.actor_params`` alone (a partial restore), checked against
    its checksums; a damaged newest checkpoint falls back as :func:`restore`
    does.
    """

    def actor_args(meta):
        config = config_from_dict(meta["config"])
        subtree = {"sac": {"actor_params": _abstract_actor_params(config.sac)}}
        as_numpy = jax.tree.map(
            lambda _: ocp.RestoreArgs(restore_type=np.ndarray), subtree
        )
        return _partial_restore_args(subtree, as_numpy)

    item, meta, _ = _read_intact(directory, step, actor_args)
    return item["sac"]["actor_params"], config_from_dict(meta["config"])


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

    obs_dim = config.sac.obs_dim

    def act(obs):
        shape = jnp.shape(obs)
        if not shape or shape[-1] != obs_dim:
            raise ValueError(f"obs must have shape (..., {obs_dim}), got {shape}")
        return policy_torque(
            actor_params, obs, sac_config=config.sac, max_torque=config.env.max_torque
        )

    return act
