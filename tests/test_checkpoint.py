"""Checkpoints: a resumed run continues bit for bit; interrupted saves are
harmless; a policy loads without reading the replay buffer."""

import errno
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
import tensorstore as ts
from conftest import TINY, same_state, without_times

from sacbook import checkpoint, integrity, loop, sac, train
from sacbook.config import TrainConfig

CONFIG = TrainConfig.few_envs(
    total_env_steps=1600,
    chunk_iterations=100,
    warmup_env_steps=200,
    learning_starts=256,
)


def _save(directory, result):
    """Save a run's result as the runner does at its end."""
    return checkpoint.save(
        directory,
        result.state,
        config=result.config,
        seed=result.seed,
        history=result.history,
    )


@pytest.fixture(scope="module")
def uninterrupted():
    return train.train(CONFIG, 7, progress=False)


@pytest.fixture(scope="module")
def half():
    """The same run stopped halfway (200 iterations): other actor parameters."""
    return train.train(CONFIG.replace(total_env_steps=800), 7, progress=False)


OBS = np.array([[1.0, 0.0, 0.0], [-1.0, 0.0, 1.0], [0.0, 1.0, -3.0]], np.float32)


def _saved_policy_torque(result):
    """The deterministic torque of a run's actor, computed from its state: (3,)."""
    action = np.asarray(sac.policy_action(result.state.sac, OBS))[:, 0]
    return result.config.env.max_torque * action


def _delete_saved_arrays(step_dir, keep_prefix: bytes):
    """Delete, in a saved checkpoint, every array whose name lacks keep_prefix.

    orbax keeps a step's arrays in one OCDBT key-value store (one directory of
    shared data files), so deleting files would not single out the buffer:
    delete its keys (``buffer.data.obs/.zarray``, ``buffer.data.obs/0.0``, ...)."""
    spec = {"driver": "ocdbt", "base": f"file://{step_dir / 'state'}/"}
    store = ts.KvStore.open(spec).result()
    names = store.list().result()
    doomed = [name for name in names if not name.startswith(keep_prefix)]
    assert any(name.startswith(b"buffer.data.obs") for name in doomed)
    for name in doomed:
        store.delete_range(ts.KvStore.KeyRange(name, name + b"\x00")).result()
    assert len(store.list().result()) == len(names) - len(doomed)


def test_resume_is_bit_identical(tmp_path, uninterrupted):
    """Stop halfway, save, restore, continue: metrics and final state equal an uninterrupted run."""
    half = train.train(CONFIG.replace(total_env_steps=800), 7, progress=False)
    _save(tmp_path, half)
    state, config, seed, history = checkpoint.restore(tmp_path)
    assert config == CONFIG.replace(total_env_steps=800) and seed == 7
    assert int(state.iteration) == 200 and len(history) == 2
    resumed = train.train(
        config.replace(total_env_steps=1600),
        seed,
        state=state,
        history=history,
        progress=False,
    )
    np.testing.assert_equal(
        without_times(resumed.history), without_times(uninterrupted.history)
    )
    # params, optimizers, buffer, envs, key, counters
    assert same_state(resumed.state, uninterrupted.state)


def test_interrupted_save_keeps_last_good_checkpoint(tmp_path, uninterrupted):
    """A half-written save (orbax's temporary folder) is ignored; the last complete checkpoint loads."""
    _save(tmp_path, uninterrupted)
    step = checkpoint.latest_step(tmp_path)
    assert step == int(uninterrupted.state.iteration)
    # simulate a crash mid-save of a later step: a partial temporary folder is left behind
    partial = tmp_path / f"{step + 100}.orbax-checkpoint-tmp-123"
    shutil.copytree(tmp_path / str(step), partial)
    for f in list(partial.rglob("*"))[::2]:
        if f.is_file():
            f.write_bytes(b"garbage")
    assert checkpoint.latest_step(tmp_path) == step
    state, _, _, _ = checkpoint.restore(tmp_path)
    assert same_state(state.sac.actor_params, uninterrupted.state.sac.actor_params)


def test_keeps_previous_checkpoint_and_loads_policy(tmp_path, half, uninterrupted):
    """Two saves keep both steps; load_policy gives a jitted act(obs) equal to
    the saved actor's deterministic torque, of the newest step or of one asked for."""
    _save(tmp_path, half)
    _save(tmp_path, uninterrupted)
    assert sorted(int(p.name) for p in tmp_path.iterdir() if p.name.isdigit()) == [
        200,
        400,
    ]
    act = checkpoint.load_policy(tmp_path)
    expected = _saved_policy_torque(uninterrupted)
    np.testing.assert_allclose(np.asarray(act(OBS)), expected, rtol=1e-6)
    assert act(OBS).shape == (3,)
    act_half = checkpoint.load_policy(tmp_path, step=200)
    expected_half = _saved_policy_torque(half)
    np.testing.assert_allclose(np.asarray(act_half(OBS)), expected_half, rtol=1e-6)
    # a step never saved, an observation of another shape: one clear line
    for step in (12345, -1):
        with pytest.raises(ValueError, match=r"step must be one of the saved steps "):
            checkpoint.load_policy(tmp_path, step=step)
    for obs in (np.zeros(4), np.zeros((3, 1)), np.float32(0)):
        with pytest.raises(ValueError, match=r"obs must have shape \(\.\.\., 3\)"):
            act(obs)


@pytest.mark.parametrize(
    "partial_restore", [True, False], ids=["partial_restore", "transforms"]
)
def test_load_policy_reads_only_the_actor(
    tmp_path, uninterrupted, partial_restore, monkeypatch
):
    """Delete every saved array but the actor's (the replay buffer, critics,
    optimizer states, envs): a full restore now fails, load_policy still
    gives the saved policy's actions. Both of orbax's ways of a partial
    restore are checked: partial_restore=True (orbax >= 0.11.2x) and empty
    transforms (older orbax)."""
    if partial_restore and not checkpoint._HAS_PARTIAL_RESTORE:
        pytest.skip("this orbax-checkpoint has no partial_restore")
    monkeypatch.setattr(checkpoint, "_HAS_PARTIAL_RESTORE", partial_restore)
    step_dir = _save(tmp_path, uninterrupted)
    _delete_saved_arrays(step_dir, keep_prefix=b"sac.actor_params.")
    # the manifest would report the rewritten store as damage before orbax
    # reads it: remove it, so that orbax itself meets the missing arrays
    (step_dir / integrity.MANIFEST).unlink()
    # control: the deletion bites (orbax's reason, in sacbook's one line)
    with pytest.raises(checkpoint.DamagedCheckpointError, match="buffer|NOT_FOUND"):
        checkpoint.restore(tmp_path)
    params, config = checkpoint.restore_actor(tmp_path)
    assert config == uninterrupted.config
    saved = uninterrupted.state.sac.actor_params
    assert jax.tree.structure(params) == jax.tree.structure(saved)
    for ours, reference in zip(jax.tree.leaves(params), jax.tree.leaves(saved)):
        np.testing.assert_array_equal(ours, reference)
    act = checkpoint.load_policy(tmp_path)
    expected = _saved_policy_torque(uninterrupted)
    np.testing.assert_allclose(np.asarray(act(OBS)), expected, rtol=1e-6)


def test_policy_parameters_are_arguments_of_one_compiled_program(
    tmp_path, half, uninterrupted
):
    """Two policies of one architecture share policy_torque's compiled program
    (the parameters are its arguments, not constants baked into it): the
    second compiles nothing, and their actions differ."""
    _save(tmp_path / "half", half)
    _save(tmp_path / "full", uninterrupted)
    act_half = checkpoint.load_policy(tmp_path / "half")
    act_full = checkpoint.load_policy(tmp_path / "full")
    obs = OBS[:2]  # a shape no other test uses, so the first call compiles
    before = checkpoint.policy_torque.cache_size()
    torque_half = np.asarray(act_half(obs))
    assert checkpoint.policy_torque.cache_size() == before + 1
    torque_full = np.asarray(act_full(obs))
    assert checkpoint.policy_torque.cache_size() == before + 1
    assert not np.allclose(torque_half, torque_full)
    expected = _saved_policy_torque(uninterrupted)[:2]
    np.testing.assert_allclose(torque_full, expected, rtol=1e-6)
    # the lowered program takes every actor parameter as an input
    params, config = checkpoint.restore_actor(tmp_path / "full")
    lowered = checkpoint.policy_torque.lower(
        params, obs, sac_config=config.sac, max_torque=config.env.max_torque
    )
    param_inputs = jax.tree.leaves(lowered.args_info[0][0])
    assert len(param_inputs) == len(jax.tree.leaves(params)) > 0


def test_restore_from_empty_directory_raises(tmp_path):
    """No checkpoint: a clear ValueError, not an orbax traceback."""
    with pytest.raises(ValueError, match="no checkpoint"):
        checkpoint.restore(tmp_path / "nothing-here")


def test_save_takes_a_state_and_its_config(tmp_path):
    """checkpoint.save needs no training result: a fresh state and its
    config save and restore (seed 0, empty history by default); anything but
    a TrainConfig is refused before a folder is written."""
    state = loop.init(TINY, jax.random.key(4))
    step_dir = checkpoint.save(tmp_path / "fresh", state, config=TINY)
    assert step_dir == tmp_path / "fresh" / "0"
    restored, config, seed, history = checkpoint.restore(tmp_path / "fresh")
    assert (config, seed, history) == (TINY, 0, [])
    assert same_state(restored, state)
    with pytest.raises(
        ValueError, match="config must be a TrainConfig, got LoopConfig"
    ):
        checkpoint.save(tmp_path / "loop", state, config=TINY.loop)
    assert not (tmp_path / "loop").exists()


# ----------------------------------------------------------------------------
# Damaged checkpoints, old checkpoints, failed saves (issue 18)
# ----------------------------------------------------------------------------


def _data_file(step_dir):
    """The largest of a checkpoint's array data files (OCDBT's ``d/`` files)."""
    return max(step_dir.glob("state/**/d/*"), key=lambda p: p.stat().st_size)


def _truncate(path):
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)


def _flip_bit(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


def _restore_warning(directory, call=checkpoint.restore):
    """``call(directory)`` and the one CheckpointWarning it gave."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = call(directory)
    warned = [w for w in caught if issubclass(w.category, checkpoint.CheckpointWarning)]
    assert len(warned) == 1, [str(w.message) for w in caught]
    message = str(warned[0].message)
    assert "\n" not in message
    return value, message


def test_truncated_newest_checkpoint_falls_back_to_the_previous(
    tmp_path, half, uninterrupted
):
    """A data file of the newest checkpoint cut in half (a failing disk, a
    copy that stopped): restore and load_policy warn once, in one line naming
    the step and the file, and use the previous step, whose state is exactly
    the one saved there; asking for the damaged step raises
    DamagedCheckpointError; with both damaged, the error names both steps."""
    _save(tmp_path, half)
    newest = _save(tmp_path, uninterrupted)
    damaged = _data_file(newest)
    _truncate(damaged)
    (state, config, seed, history), message = _restore_warning(tmp_path)
    assert "step 400" in message and damaged.name in message
    assert "using step 200" in message
    assert int(state.iteration) == 200 and same_state(state, half.state)
    assert (config, seed) == (half.config, half.seed)
    np.testing.assert_equal(history, half.history)  # NaN == NaN
    act, message = _restore_warning(tmp_path, checkpoint.load_policy)
    assert "step 400" in message and "using step 200" in message
    np.testing.assert_allclose(
        np.asarray(act(OBS)), _saved_policy_torque(half), rtol=1e-6
    )
    with pytest.raises(checkpoint.DamagedCheckpointError, match="step 400") as error:
        checkpoint.restore(tmp_path, step=400)
    assert "\n" not in str(error.value)
    _truncate(_data_file(tmp_path / "200"))
    for call in (checkpoint.restore, checkpoint.load_policy):
        with pytest.raises(checkpoint.DamagedCheckpointError) as error:
            call(tmp_path)
        text = str(error.value)
        assert "step 400" in text and "step 200" in text and "\n" not in text
        assert "no intact checkpoint" in text


def test_flipped_bit_is_caught_by_the_manifest(tmp_path, half, uninterrupted):
    """One flipped bit in a data file, the size unchanged: the manifest's
    CRC-32 of the file tells, and the previous step is used."""
    _save(tmp_path, half)
    newest = _save(tmp_path, uninterrupted)
    _flip_bit(_data_file(newest))
    (state, *_), message = _restore_warning(tmp_path)
    assert "step 400" in message and "CRC-32" in message
    assert same_state(state, half.state)


@pytest.mark.parametrize(
    "manifest",
    [
        '{"files": {"a": {"cytes": 1, "crc32": "00000000"}}}',  # a flipped key
        "null",
        '{"files": []}',
        '{"files": {"a": {"bytes": "1", "crc32": "00000000"}}}',
        "[1]",
    ],
)
def test_a_manifest_of_another_form_is_damage_not_a_crash(tmp_path, manifest):
    (tmp_path / "a").write_bytes(b"x")
    (tmp_path / integrity.MANIFEST).write_text(manifest)
    assert integrity.damaged_files(tmp_path) == (
        "its manifest is unreadable (not the form sacbook writes)"
    )


def test_a_flipped_bit_in_the_manifest_falls_back(tmp_path, half, uninterrupted):
    """The newest step's manifest with one key changed by a flipped bit
    ("bytes" -> "cytes"): that step is damaged, the previous one is used."""
    _save(tmp_path, half)
    newest = _save(tmp_path, uninterrupted)
    path = newest / integrity.MANIFEST
    path.write_text(path.read_text().replace('"bytes"', '"cytes"', 1))
    (state, *_), message = _restore_warning(tmp_path)
    assert "step 400" in message and "manifest is unreadable" in message
    assert same_state(state, half.state)


def _flip_array_bit(step_dir, key: str):
    """Flip a bit of the first element of the saved array ``key``, through
    tensorstore: the store stays valid (orbax reads it without complaint),
    only the value differs, as a bit flipped before it was compressed would."""
    spec = {
        "driver": "zarr",
        "kvstore": {
            "driver": "ocdbt",
            "base": f"file://{step_dir / 'state'}/",
            "path": f"{key}/",
        },
    }
    store = ts.open(spec).result()
    values = store.read().result()
    values.reshape(-1).view(np.uint32)[0] ^= 1 << 20
    store.write(values).result()


def test_flipped_bit_in_an_array_is_caught_by_its_checksum(
    tmp_path, half, uninterrupted
):
    """Without the manifest (or with a value changed in a valid store), the
    arrays' checksums tell: the step asked for raises, naming the array; the
    newest intact step is used otherwise, by restore and load_policy alike."""
    _save(tmp_path, half)
    newest = _save(tmp_path, uninterrupted)
    (newest / integrity.MANIFEST).unlink()
    kernel = "sac.actor_params.params.MLP_0.Dense_0.kernel"
    _flip_array_bit(newest, kernel)
    name = kernel.replace(".", "/")
    for call in (checkpoint.restore, checkpoint.restore_actor):
        with pytest.raises(checkpoint.DamagedCheckpointError, match=name):
            call(tmp_path, step=400)
    (state, *_), message = _restore_warning(tmp_path)
    assert "step 400" in message and "checksum" in message and name in message
    assert same_state(state, half.state)
    act, _ = _restore_warning(tmp_path, checkpoint.load_policy)
    np.testing.assert_allclose(
        np.asarray(act(OBS)), _saved_policy_torque(half), rtol=1e-6
    )


def test_a_run_folder_is_read_through_its_checkpoint_folder(tmp_path, uninterrupted):
    """restore, restore_actor and load_policy take the folder `sacbook train
    --out` wrote (metrics.jsonl, checkpoint/) as well as its checkpoint/."""
    run = tmp_path / "run"
    _save(run / "checkpoint", uninterrupted)
    (run / "metrics.jsonl").write_text("")
    assert checkpoint.all_steps(run) == [400] and checkpoint.latest_step(run) == 400
    state, config, seed, _ = checkpoint.restore(run)
    assert same_state(state, uninterrupted.state)
    assert (config, seed) == (uninterrupted.config, uninterrupted.seed)
    np.testing.assert_allclose(
        np.asarray(checkpoint.load_policy(run)(OBS)),
        _saved_policy_torque(uninterrupted),
        rtol=1e-6,
    )


# A checkout of sacbook 0.4 (before checksums), to write a checkpoint with the
# old code itself: SACBOOK_OLD_CHECKOUT=/path/to/checkout (skipped without it).
OLD_CHECKOUT = Path(os.environ.get("SACBOOK_OLD_CHECKOUT", "/nonexistent"))
OLD_SAVE = """
import json, sys, jax
from sacbook import checkpoint, loop
config = checkpoint.config_from_dict(json.loads(sys.argv[2]))
checkpoint.save(sys.argv[1], loop.init(config, jax.random.key(4)), config=config,
                seed=3, history=[{"env_steps": 0}])
"""


def _without_checksums(directory):
    """Save TINY's first state as before checksums and manifests: neither a
    manifest nor "checksums" in its metadata, version 1."""
    step_dir = checkpoint.save(
        directory,
        loop.init(TINY, jax.random.key(4)),
        config=TINY,
        seed=3,
        history=[{"env_steps": 0}],
    )
    (step_dir / integrity.MANIFEST).unlink()
    meta_file = step_dir / "meta" / "metadata"
    meta = json.loads(meta_file.read_text())
    del meta["checksums"]
    meta["sacbook_checkpoint"] = 1
    meta_file.write_text(json.dumps(meta))


def _with_old_code(directory):
    """Save TINY's first state with the package from before checksums."""
    if not (OLD_CHECKOUT / "sacbook").is_dir():
        pytest.skip(f"no checkout of the old package in {OLD_CHECKOUT}")
    setup = json.dumps(checkpoint.config_to_dict(TINY))
    environment = {**os.environ, "PYTHONPATH": str(OLD_CHECKOUT)}
    proc = subprocess.run(
        [sys.executable, "-c", OLD_SAVE, str(directory), setup],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.parametrize("write", [_without_checksums, _with_old_code])
def test_checkpoint_from_before_checksums_still_restores(tmp_path, write):
    """A checkpoint that was good stays loadable: one written before
    checksums and manifests restores, with no warning, to the state saved."""
    import warnings

    write(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", checkpoint.CheckpointWarning)
        state, config, seed, history = checkpoint.restore(tmp_path)
        act = checkpoint.load_policy(tmp_path)
    assert (config, seed, history) == (TINY, 3, [{"env_steps": 0}])
    assert same_state(state, loop.init(TINY, jax.random.key(4)))
    assert np.asarray(act(OBS)).shape == (3,)


def _fill(folder, leave: int = 8192):
    """Take all but ``leave`` bytes of the free space of ``folder``'s disk."""
    free = shutil.disk_usage(folder).free
    (folder / "filler").write_bytes(bytes(max(free - leave, 0)))


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("where", ["tmpfs", "orbax", "manifest"])
def test_save_on_a_full_disk_keeps_the_previous_checkpoint(
    tmp_path, tmpfs, monkeypatch, where
):
    """A save that runs out of space (a real full tmpfs where one can be
    mounted, else ENOSPC injected into orbax's write, or into the manifest's
    after orbax committed the step) raises CheckpointError, an OSError, in
    one line naming the folder, the lack of space and the bytes a checkpoint
    needs; nothing of the failed step is left (no orbax temporary folder, no
    step folder without its manifest), the previous checkpoint restores as
    saved, and once there is room the same step saves."""
    import warnings

    if where == "tmpfs":
        disk = tmpfs("disk", size="4m")
        if disk is None:
            pytest.skip("cannot mount a tmpfs here: the injected errors stand in")
    else:
        disk = tmp_path / "disk"
    directory = disk / "checkpoint"
    state = loop.init(TINY, jax.random.key(4))
    checkpoint.save(directory, state, config=TINY)
    later = state.replace(iteration=state.iteration + 10)
    if where == "tmpfs":
        _fill(disk)
    elif where == "orbax":

        def failing_save(manager, step, *args, **kwargs):
            # what orbax leaves when a write fails half-way: its temporary folder
            partial = directory / f"{step}.orbax-checkpoint-tmp-1234" / "state"
            partial.mkdir(parents=True)
            (partial / "d").write_bytes(b"half")
            _no_space()

        monkeypatch.setattr(checkpoint.ocp.CheckpointManager, "save", failing_save)
    else:
        monkeypatch.setattr(integrity, "write_manifest", _no_space)
    with pytest.raises(checkpoint.CheckpointError) as error:
        checkpoint.save(directory, later, config=TINY)
    message = str(error.value)
    assert isinstance(error.value, OSError) and "\n" not in message
    assert f"step 10 in {directory}" in message
    assert "no space left on the device" in message
    assert re.search(r"a checkpoint needs up to [\d.]+ [kMG]?B", message), message
    assert "step 0 is kept" in message
    assert sorted(p.name for p in directory.iterdir()) == ["0"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", checkpoint.CheckpointWarning)
        restored, *_ = checkpoint.restore(directory)
    assert same_state(restored, state)
    # room again: the step the failed save left nothing of saves
    if where == "tmpfs":
        (disk / "filler").unlink()
    else:
        monkeypatch.undo()
    checkpoint.save(directory, later, config=TINY)
    assert checkpoint.all_steps(directory) == [0, 10]


def test_library_resume_past_a_damaged_checkpoint_saves_that_step_again(
    tmp_path, half, uninterrupted
):
    """train.train resumed from the fallback step reaches the damaged step
    again: the runner saves it anew (the damaged one is set aside as
    ``<step>.damaged``), so the run ends with an intact newest checkpoint
    that loads without a warning and holds the uninterrupted run's state."""
    _save(tmp_path, half)
    newest = _save(tmp_path, uninterrupted)
    _truncate(_data_file(newest))
    (state, config, seed, history), _ = _restore_warning(tmp_path)
    resumed = train.train(
        config.replace(total_env_steps=CONFIG.total_env_steps),
        seed,
        state=state,
        history=history,
        progress=False,
        checkpoint_dir=tmp_path,
    )
    assert same_state(resumed.state, uninterrupted.state)
    assert checkpoint.intact(tmp_path, int(uninterrupted.state.iteration))
    assert (tmp_path / f"{newest.name}.damaged").is_dir()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", checkpoint.CheckpointWarning)
        restored = checkpoint.restore(tmp_path)[0]
    assert same_state(restored, uninterrupted.state)
