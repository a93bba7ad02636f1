"""Checkpoints: a resumed run continues bit for bit; interrupted saves are
harmless; a policy loads without reading the replay buffer."""

import shutil

import jax
import numpy as np
import pytest
import tensorstore as ts
from conftest import TINY, same_state, without_times

from sacbook import checkpoint, loop, sac, train
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
    # control: the deletion bites
    with pytest.raises(Exception, match="buffer|NOT_FOUND"):
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
