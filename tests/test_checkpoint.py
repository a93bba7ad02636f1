"""Checkpoints: a resumed run continues bit for bit; interrupted saves are harmless."""

import math
import shutil

import jax
import numpy as np
import pytest

from sacbook import checkpoint, train

CONFIG = train.TrainConfig.few_envs(total_env_steps=1600, chunk_iterations=100, warmup_env_steps=200,
                                    learning_starts=256)


def _comparable(history):
    """Records without wall-clock fields, NaN made comparable."""
    out = []
    for record in history:
        out.append({k: ("nan" if isinstance(v, float) and math.isnan(v) else v)
                    for k, v in record.items() if "second" not in k})
    return out


def _leaves_equal(a, b):
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in
               zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


@pytest.fixture(scope="module")
def uninterrupted():
    return train.train(CONFIG, 7, progress=False)


def test_resume_is_bit_identical(tmp_path, uninterrupted):
    """Stop halfway, save, restore, continue: metrics and final state equal an uninterrupted run."""
    half = train.train(CONFIG.replace(total_env_steps=800), 7, progress=False)
    checkpoint.save(tmp_path, half)
    state, config, seed, history = checkpoint.restore(tmp_path)
    assert config == CONFIG.replace(total_env_steps=800) and seed == 7
    assert int(state.iteration) == 200 and len(history) == 2
    resumed = train.train(config.replace(total_env_steps=1600), seed, state=state, history=history, progress=False)
    assert _comparable(resumed.history) == _comparable(uninterrupted.history)
    assert _leaves_equal(jax.random.key_data(resumed.state.key), jax.random.key_data(uninterrupted.state.key))
    resumed_state = resumed.state.replace(key=jax.random.key_data(resumed.state.key))
    full_state = uninterrupted.state.replace(key=jax.random.key_data(uninterrupted.state.key))
    assert _leaves_equal(resumed_state, full_state)  # params, optimizers, buffer, envs, counters


def test_interrupted_save_keeps_last_good_checkpoint(tmp_path, uninterrupted):
    """A half-written save (orbax's temporary folder) is ignored; the last complete checkpoint loads."""
    checkpoint.save(tmp_path, uninterrupted)
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
    assert _leaves_equal(state.sac.actor_params, uninterrupted.state.sac.actor_params)


def test_keeps_previous_checkpoint_and_loads_policy(tmp_path, uninterrupted):
    """Two saves keep both steps; load_policy gives a jitted act(obs) equal to the actor's deterministic torque."""
    half = train.train(CONFIG.replace(total_env_steps=800), 7, progress=False)
    checkpoint.save(tmp_path, half)
    checkpoint.save(tmp_path, uninterrupted)
    assert sorted(int(p.name) for p in tmp_path.iterdir() if p.name.isdigit()) == [200, 400]
    act = checkpoint.load_policy(tmp_path)
    obs = np.array([[1.0, 0.0, 0.0], [-1.0, 0.0, 1.0], [0.0, 1.0, -3.0]], np.float32)
    from sacbook import sac
    expected = CONFIG.env.max_torque * np.asarray(sac.policy_action(uninterrupted.state.sac, obs))[:, 0]
    np.testing.assert_allclose(np.asarray(act(obs)), expected, rtol=1e-6)
    assert act(obs).shape == (3,)


def test_restore_from_empty_directory_raises(tmp_path):
    """No checkpoint: a clear ValueError, not an orbax traceback."""
    with pytest.raises(ValueError, match="no checkpoint"):
        checkpoint.restore(tmp_path / "nothing-here")
