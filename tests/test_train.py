"""Tests for sacbook.train: config validation, one compiled chunk of the fused
loop (counters, buffer contents, warm-up, learning start, truncation
bookkeeping, no host transfers), evaluation and rollouts, and the promised
result: SAC solves Pendulum-v1 within 20k environment steps for seeds 0, 1, 2."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import EPISODE, MANY, TINY, same_state, without_times

from sacbook import checkpoint, evaluate, loop, pendulum, records, sac, train
from sacbook.config import TrainConfig
from sacbook.pendulum import PendulumParams
from sacbook.sac import SACConfig


def _copy(tree):
    """A fresh copy, for the compiled chunk donates its input."""
    return jax.tree.map(jnp.copy, tree)


def _chunk(state, config):
    """One compiled chunk of a single run on one device: (state, metrics)."""
    return loop.chunk_program()(state, config.loop)


# ----------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------

BAD_TRAIN_CONFIGS = [
    (dict(num_envs=0), "num_envs"),
    (dict(num_envs=2.0), "num_envs"),
    (dict(total_env_steps=0), "total_env_steps"),
    (dict(buffer_capacity=0), "buffer_capacity"),
    (
        dict(buffer_capacity=3, num_envs=4, sac=SACConfig(batch_size=2)),
        "buffer_capacity",
    ),
    (
        dict(buffer_capacity=100, num_envs=4, sac=SACConfig(batch_size=256)),
        "batch_size",
    ),
    (dict(warmup_env_steps=-1), "warmup_env_steps"),
    (dict(learning_starts=-5), "learning_starts"),
    (dict(updates_per_iteration=0), "updates_per_iteration"),
    (dict(update_every=0), "update_every"),
    (dict(chunk_iterations=0), "chunk_iterations"),
    (dict(eval_envs=0), "eval_envs"),
    (dict(env="gymnasium"), "env"),
    (dict(sac={"batch_size": 8}), "sac"),
    (dict(sac=SACConfig(obs_dim=4)), "obs_dim"),
    (dict(sac=SACConfig(action_dim=2)), "action_dim"),
]


@pytest.mark.parametrize("overrides, field", BAD_TRAIN_CONFIGS)
def test_train_config_rejects_bad_values(overrides, field):
    """TrainConfig raises a ValueError naming the offending field."""
    with pytest.raises(ValueError, match=rf"\b{field}\b"):
        TrainConfig(**overrides)


def test_train_config_derived_quantities():
    """few_envs is the documented setting; total_iterations rounds up to whole chunks; configs are hashable."""
    cfg = TrainConfig.few_envs()
    assert (cfg.num_envs, cfg.total_env_steps, cfg.eval_envs) == (4, 20_000, 64)
    assert cfg.total_iterations == 5000
    assert cfg.updates_per_env_step == pytest.approx(0.25)
    assert (
        TINY.total_iterations == 40
    )  # ceil(100 / 3) = 34 iterations -> 4 chunks of 10
    assert TrainConfig.few_envs(num_envs=8).num_envs == 8
    assert hash(TINY) == hash(TINY.replace())


# ----------------------------------------------------------------------------
# One chunk of the fused loop
# ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_chunks():
    """Two chunks (20 iterations, 60 transitions into a buffer of 50) from a fresh state."""
    state0 = loop.init(TINY, jax.random.key(0))
    state1, metrics1 = _chunk(_copy(state0), TINY)
    with jax.transfer_guard("disallow"):  # a chunk runs without any host transfer
        state2, metrics2 = _chunk(_copy(state1), TINY)
    return state0, (state1, metrics1), (state2, metrics2)


def test_run_chunk_counters_and_buffer_size(two_chunks):
    """A chunk advances iteration by chunk_iterations; buffer size is min(iterations * N, capacity), position wraps."""
    state0, (state1, m1), (state2, m2) = two_chunks
    n, cap, k = TINY.num_envs, TINY.buffer_capacity, TINY.chunk_iterations
    assert int(state0.iteration) == 0 and int(state0.buffer.size) == 0
    assert int(state1.iteration) == k and int(state2.iteration) == 2 * k
    assert int(state1.buffer.size) == min(k * n, cap) == 30
    assert int(state2.buffer.size) == min(2 * k * n, cap) == 50
    assert int(state2.buffer.position) == (2 * k * n) % cap == 10
    for metrics in (m1, m2):
        for name in (
            *sac.METRIC_NAMES,
            "updated",
            "episodes_done",
            "episode_return_sum",
            "reward_mean",
        ):
            assert np.shape(metrics[name]) == (k,), name


def test_no_updates_before_learning_starts(two_chunks):
    """Updates start at the first iteration whose buffer holds learning_starts transitions; metrics are zero before."""
    state0, (state1, m1), (state2, m2) = two_chunks
    n = TINY.num_envs
    threshold = max(TINY.learning_starts, TINY.sac.batch_size)
    expected = np.array(
        [(i + 1) * n >= threshold for i in range(2 * TINY.chunk_iterations)]
    )
    updated = np.concatenate([np.asarray(m1["updated"]), np.asarray(m2["updated"])])
    np.testing.assert_array_equal(updated, expected)
    assert int(state1.sac.step) == expected[:10].sum() == 4
    assert int(state2.sac.step) == expected.sum() == 14
    for name in sac.METRIC_NAMES:
        values = np.concatenate([np.asarray(m1[name]), np.asarray(m2[name])])
        assert np.all(values[~expected] == 0), name
        assert np.all(np.isfinite(values[expected])), name
    # The networks did not change before the first update and did after.
    assert not np.array_equal(
        np.asarray(jax.tree.leaves(state0.sac.critic_params)[0]),
        np.asarray(jax.tree.leaves(state1.sac.critic_params)[0]),
    )


def test_env_states_finite_and_in_range(two_chunks):
    """After the chunks every env state, observation and buffer field is finite, and angles/speeds are in range."""
    _, (state1, _), (state2, _) = two_chunks
    for s in (state1, state2):
        for x in jax.tree.leaves((s.env, s.obs, s.buffer.data)):
            assert np.all(np.isfinite(np.asarray(x, np.float64)))
        theta, theta_dot = np.asarray(s.env.theta), np.asarray(s.env.theta_dot)
        assert np.all(np.abs(theta) <= np.pi + 1e-6) and np.all(
            np.abs(theta_dot) <= TINY.env.max_speed
        )
        assert np.all(np.abs(np.asarray(s.buffer.data.action)) <= 1.0)


def test_buffer_rows_follow_the_episodes(two_chunks):
    """Buffer rows of the first chunk chain obs -> next_obs within an episode, truncate every EPISODE steps
    with the true final observation stored, never terminate, and hold the pendulum's reward."""
    _, (state1, m1), _ = two_chunks
    n, k = TINY.num_envs, TINY.chunk_iterations
    d = jax.tree.map(
        lambda x: np.asarray(x)[: n * k].reshape((k, n) + x.shape[1:]),
        state1.buffer.data,
    )
    truncated_at = np.array([(t + 1) % EPISODE == 0 for t in range(k)])
    np.testing.assert_array_equal(d.truncated, np.repeat(truncated_at[:, None], n, 1))
    assert not d.terminated.any()
    for t in range(k - 1):
        if truncated_at[t]:
            # next_obs is the last state of the old episode, the next obs a fresh start
            assert not np.allclose(d.next_obs[t], d.obs[t + 1])
        else:
            np.testing.assert_array_equal(d.next_obs[t], d.obs[t + 1])
    # reward = -(theta^2 + 0.1 theta_dot^2 + 0.001 torque^2) of the state acted in
    theta = np.arctan2(d.obs[..., 1].astype(np.float64), d.obs[..., 0])
    torque = TINY.env.max_torque * d.action[..., 0].astype(np.float64)
    ref = -(theta**2 + 0.1 * d.obs[..., 2].astype(np.float64) ** 2 + 0.001 * torque**2)
    np.testing.assert_allclose(d.reward, ref, rtol=1e-4, atol=1e-4)
    # the episode bookkeeping: at the truncation, all n episodes end with return = sum of their rewards
    t_end = EPISODE - 1
    assert (
        int(m1["episodes_done"][t_end]) == n and int(np.sum(m1["episodes_done"])) == n
    )
    assert float(m1["episode_return_sum"][t_end]) == pytest.approx(
        float(d.reward[:EPISODE].sum()), rel=1e-5
    )
    np.testing.assert_allclose(
        np.asarray(m1["reward_mean"]), d.reward.mean(axis=1), rtol=1e-5
    )


def test_warmup_actions_ignore_the_policy():
    """During warm-up the actions are uniform random, whatever the actor; afterwards they come from the actor."""
    cfg = TINY  # warm-up ends after iteration 3, updates start at iteration 6
    state_a = loop.init(cfg, jax.random.key(1))
    other_actor = jax.jit(cfg.sac.actor().init)(jax.random.key(77), jnp.zeros((1, 3)))
    state_b = state_a.replace(sac=state_a.sac.replace(actor_params=other_actor))
    out_a, _ = _chunk(_copy(state_a), cfg)
    out_b, _ = _chunk(_copy(state_b), cfg)
    warm_rows = cfg.warmup_env_steps  # 4 iterations x 3 envs
    act_a, act_b = (
        np.asarray(out_a.buffer.data.action),
        np.asarray(out_b.buffer.data.action),
    )
    np.testing.assert_array_equal(act_a[:warm_rows], act_b[:warm_rows])
    filled = int(out_a.buffer.size)
    assert not np.any(np.isclose(act_a[warm_rows:filled], act_b[warm_rows:filled]))


# ----------------------------------------------------------------------------
# Evaluation and rollouts
# ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def actor_params():
    return jax.jit(TINY.sac.actor().init)(jax.random.key(3), jnp.zeros((1, 3)))


def test_evaluate_returns_in_range_and_match_rollout(actor_params):
    """evaluate gives (M,) returns in [-16.3 * 200, 0], deterministic, equal to summed policy_rollout rewards."""
    env = PendulumParams.gymnasium()
    key = jax.random.key(4)
    m = 5
    returns = np.asarray(evaluate.evaluate(actor_params, key, TINY.sac, env, m))
    assert returns.shape == (m,) and returns.dtype == np.float32
    assert np.all(returns <= 0) and np.all(returns >= -16.3 * env.episode_length)
    np.testing.assert_array_equal(
        returns, np.asarray(evaluate.evaluate(actor_params, key, TINY.sac, env, m))
    )
    _, _, rewards = evaluate.policy_rollout(
        actor_params, key, TINY.sac, env, m, env.episode_length
    )
    np.testing.assert_allclose(
        np.asarray(rewards, np.float64).sum(0), returns, rtol=1e-4, atol=1e-3
    )


def test_evaluation_sizes_are_checked_before_compiling(actor_params):
    """Sizes no program can hold are one clear line, not a crash in XLA
    (2**35 episodes aborted the process)."""
    env, key = PendulumParams.gymnasium(), jax.random.key(4)
    for bad in (0, 2**35, 2.5):
        with pytest.raises(ValueError, match=r"^num_envs must be an integer in \[1, "):
            evaluate.evaluate(actor_params, key, TINY.sac, env, bad)
    for bad in (0, -1):
        with pytest.raises(ValueError, match=r"^steps must be an integer in \[1, "):
            evaluate.policy_rollout(actor_params, key, TINY.sac, env, 2, bad)


def test_evaluate_zero_policy_matches_float64_free_pendulum():
    """With an all-zero actor (torque 0), evaluate's returns equal a float64 NumPy simulation of the free pendulum."""
    env = PendulumParams.gymnasium()
    zero = jax.tree.map(
        jnp.zeros_like,
        jax.jit(TINY.sac.actor().init)(jax.random.key(0), jnp.zeros((1, 3))),
    )
    key = jax.random.key(8)
    m = 4
    returns = np.asarray(evaluate.evaluate(zero, key, TINY.sac, env, m))
    start, _ = pendulum.reset(key, m, env)
    theta, theta_dot = (
        np.asarray(start.theta, np.float64),
        np.asarray(start.theta_dot, np.float64),
    )
    total = np.zeros(m)
    a = 3.0 * env.g / (2.0 * env.l)  # uniform rod
    for _ in range(env.episode_length):
        wrapped = (theta + np.pi) % (2 * np.pi) - np.pi
        total += -(wrapped**2 + 0.1 * theta_dot**2)
        theta_dot = np.clip(
            theta_dot + env.dt * a * np.sin(theta), -env.max_speed, env.max_speed
        )
        theta = (theta + env.dt * theta_dot + np.pi) % (2 * np.pi) - np.pi
    np.testing.assert_allclose(returns, total, rtol=2e-3)


def test_policy_rollout_shapes(actor_params):
    """policy_rollout returns thetas (steps + 1, N) starting at the reset angles, torques and rewards (steps, N)."""
    env = PendulumParams.gymnasium()
    key = jax.random.key(5)
    thetas, torques, rewards = evaluate.policy_rollout(
        actor_params, key, TINY.sac, env, 3, 25
    )
    assert (
        thetas.shape == (26, 3)
        and torques.shape == (25, 3)
        and rewards.shape == (25, 3)
    )
    start, _ = pendulum.reset(key, 3, env)
    np.testing.assert_array_equal(np.asarray(thetas[0]), np.asarray(start.theta))
    assert np.all(np.abs(np.asarray(torques)) <= env.max_torque)
    assert np.all(np.asarray(rewards) <= 0) and np.all(np.asarray(rewards) >= -16.3)
    assert np.all(np.abs(np.asarray(thetas)) <= np.pi + 1e-6)


# ----------------------------------------------------------------------------
# The promise: SAC learns the swing-up
# ----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_few_envs_solves_pendulum(seed):
    """TrainConfig.few_envs() reaches a mean deterministic evaluation return >= -200 (64 episodes) within 20k env steps."""
    config = TrainConfig.few_envs()
    assert config.eval_envs == 64 and config.total_env_steps == 20_000
    result = train.train(config, seed, progress=False)
    assert result.solved_at is not None, [h.get("eval_return") for h in result.history]
    assert result.solved_at["env_steps"] <= 20_000
    assert result.solved_at["eval_return"] >= evaluate.SOLVED_RETURN
    assert result.final_eval_return >= -200.0, [
        h.get("eval_return") for h in result.history
    ]
    assert result.history[-1]["env_steps"] == config.total_iterations * config.num_envs
    assert int(result.state.iteration) == config.total_iterations
    assert math.isfinite(result.final_eval_return)


def test_static_update_path_matches_the_conditional_one(monkeypatch):
    """When the config makes every iteration update (update_every 1 and the
    first N transitions already enough to start), the iteration calls the
    update round directly instead of through lax.cond. The conditional program
    really has one more conditional, and both give the same training run (to
    float32 rounding: they compile to different code)."""
    cfg = TINY.replace(
        num_envs=8, learning_starts=8, buffer_capacity=200, warmup_env_steps=8
    )
    assert loop._always_updates(cfg) and not loop._always_updates(TINY)
    state = loop.init(cfg, jax.random.key(5))
    direct_state, direct_metrics = _chunk(state, cfg)
    try:
        monkeypatch.setattr(loop, "_always_updates", lambda config: False)
        jax.clear_caches()  # or jit would reuse the direct trace of run_chunk
        cond_jit = jax.jit(loop.run_chunk, static_argnums=1)
        state = loop.init(cfg, jax.random.key(5))
        cond_state, cond_metrics = cond_jit(state, cfg)
    finally:
        monkeypatch.undo()
        jax.clear_caches()  # leave no conditional trace behind for other tests
    assert np.asarray(direct_metrics["updated"]).all()
    for name in ("critic_loss", "actor_loss", "alpha", "episode_return_sum"):
        np.testing.assert_allclose(
            direct_metrics[name], cond_metrics[name], rtol=1e-4, atol=1e-5, err_msg=name
        )
    for a, b in zip(
        jax.tree.leaves(direct_state.sac.actor_params),
        jax.tree.leaves(cond_state.sac.actor_params),
    ):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------
# The runner: checkpoint cadence, counters, one result per seed, non-finite
# numbers, mismatched states
# ----------------------------------------------------------------------------

# 2 chunks of 5 iterations between checkpoints
CADENCE = TINY.replace(chunk_iterations=5)


@pytest.mark.parametrize("iterations", [15, 20, 25], ids=["below", "at", "above"])
def test_run_lengths_around_the_checkpoint_cadence(tmp_path, iterations):
    """Runs that end just before, exactly on and just after a multiple of the
    checkpoint cadence finish and keep their last step (the periodic and the
    final save once landed on the same step and crashed)."""
    config = CADENCE.replace(total_env_steps=iterations * CADENCE.num_envs)
    result = train.train(
        config, 0, progress=False, checkpoint_dir=tmp_path, checkpoint_every=2
    )
    assert int(result.state.iteration) == iterations
    assert checkpoint.latest_step(tmp_path) == iterations
    state, saved_config, seed, history = checkpoint.restore(tmp_path)
    np.testing.assert_equal(history, result.history)
    assert saved_config == config and seed == 0
    # resuming a finished run saves nothing new and runs nothing
    again = train.train(
        config,
        0,
        state=state,
        history=history,
        progress=False,
        checkpoint_dir=tmp_path,
        checkpoint_every=2,
    )
    np.testing.assert_equal(again.history, history)


def test_run_length_beyond_the_int32_counter_is_refused():
    limit = (2**31 - 1) // TINY.chunk_iterations * TINY.chunk_iterations * TINY.num_envs
    assert TINY.replace(total_env_steps=limit).total_iterations <= 2**31 - 1
    with pytest.raises(ValueError, match=r"total_env_steps must be at most \d+"):
        TINY.replace(total_env_steps=limit + TINY.num_envs * TINY.chunk_iterations)
    with pytest.raises(ValueError, match="total_env_steps"):
        TINY.replace(total_env_steps=99999999999999999999)


def test_warmup_does_not_come_back_when_the_env_step_count_passes_2_31():
    """Once past warm-up, a state whose iteration counter times N passes 2**31
    acts exactly as at iteration 1: with the same key, the same actions are
    stored. (The warm-up test once computed iteration * N in int32, which
    wrapped and brought random actions back.)"""
    cfg = TINY.replace(
        num_envs=1024,
        buffer_capacity=4096,
        warmup_env_steps=1024,
        learning_starts=4096,
        chunk_iterations=1,
    )
    state = loop.init(cfg, jax.random.key(2))
    late = 2**31 // cfg.num_envs + 5  # iteration * N wraps to a negative int32
    actions = []
    for iteration in (1, late):
        s = _copy(state).replace(iteration=jnp.int32(iteration))
        s, _ = _chunk(s, cfg)
        actions.append(np.asarray(s.buffer.data.action[: cfg.num_envs]))
    np.testing.assert_array_equal(actions[0], actions[1])
    warm = _copy(state)  # control: at iteration 0 the actions are the random ones
    warm, _ = _chunk(warm, cfg)
    assert not np.array_equal(
        np.asarray(warm.buffer.data.action[: cfg.num_envs]), actions[0]
    )


SAME = TINY.replace(chunk_iterations=5, total_env_steps=TINY.num_envs * 15)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_train_is_the_chunk_program_run_by_hand(seed):
    """train.train(config, seed) is loop.chunk_program() run chunk by chunk
    from jax.random.key(seed), each chunk summarized and evaluated with
    evaluate.evaluate_run: the same records, bit for bit, and the same final
    state, every leaf. (train makes its keys on the host and compiles the
    evaluation during the first chunk, to start sooner: neither may change a
    bit.)"""
    reference = train.train(SAME, seed, progress=False)
    expected = without_times(reference.history)
    assert len(expected) == 3

    run_key = jax.random.key(seed)
    state = loop.init(SAME, run_key)
    by_hand = []
    for chunk in range(1, 4):
        state, metrics = _chunk(state, SAME)
        record = records.summarize_chunk(jax.device_get(metrics), SAME)
        returns = evaluate.evaluate_run(
            state.sac.actor_params, run_key, SAME.sac, SAME.env, SAME.eval_envs
        )
        record["eval_return"] = float(np.mean(np.asarray(returns)))
        iterations = chunk * SAME.chunk_iterations
        record.update(
            chunk=chunk, iterations=iterations, env_steps=iterations * SAME.num_envs
        )
        by_hand.append(record)
    np.testing.assert_equal(by_hand, expected)
    assert same_state(state, reference.state)


def test_evaluation_compiled_beside_the_chunk_changes_nothing(monkeypatch):
    """Off a CPU the evaluation compiles on a second thread beside the chunk;
    on a CPU on this thread, once the first chunk runs. Either way it
    compiles once, and the records and the state are the same, bit for bit."""
    import threading

    from sacbook import driver

    threads = []
    compile_evaluation = driver.Driver.compile_evaluation

    def spy(self, params):
        threads.append(threading.current_thread() is threading.main_thread())
        return compile_evaluation(self, params)

    monkeypatch.setattr(driver.Driver, "compile_evaluation", spy)
    on_cpu = train.train(SAME, 1, progress=False)
    monkeypatch.setattr(driver, "_evaluation_beside_chunk", lambda: True)
    beside = train.train(SAME, 1, progress=False)
    assert threads == [True, False]  # this thread, then a second one
    np.testing.assert_equal(
        without_times(beside.history), without_times(on_cpu.history)
    )
    assert same_state(beside.state, on_cpu.state)


def test_a_resumed_run_and_the_benchmark_record_what_train_records(tmp_path):
    """A run stopped, saved and resumed, and the benchmark's compiled chunk,
    give bit-identical metrics to train.train for the same config and seed:
    every entry point compiles with the same XLA options."""
    from sacbook import bench

    expected = without_times(train.train(SAME, 7, progress=False).history)
    first = train.train(
        SAME.replace(total_env_steps=SAME.num_envs * 5),
        7,
        progress=False,
        checkpoint_dir=tmp_path,
    )
    state, config, seed, history = checkpoint.restore(tmp_path)
    resumed = train.train(SAME, seed, state=state, history=history, progress=False)
    np.testing.assert_equal(without_times(first.history), expected[:1])
    np.testing.assert_equal(without_times(resumed.history), expected)

    # the benchmark times the same compiled chunk (warm-up off, updates from the start)
    bench_config = SAME.replace(warmup_env_steps=0, learning_starts=SAME.sac.batch_size)
    row = bench.training_throughput(bench_config, chunks=2, seed=7)
    direct = train.train(
        bench_config.replace(total_env_steps=SAME.num_envs * 15), 7, progress=False
    )
    expected_last = without_times(direct.history)[-1]
    for name in sac.METRIC_NAMES:
        np.testing.assert_equal(
            row["last_chunk"][name], expected_last[name], err_msg=name
        )


def test_non_finite_training_stops_at_the_chunk_and_names_the_metric(tmp_path):
    """A NaN in the networks stops the run after that chunk, with an error
    that names the first non-finite metric and the chunk; the checkpoints
    saved before it are untouched."""
    config = TINY.replace(total_env_steps=TINY.num_envs * 40)
    first = train.train(
        config.replace(total_env_steps=TINY.num_envs * 10),
        0,
        progress=False,
        checkpoint_dir=tmp_path,
    )
    state, _, _, history = checkpoint.restore(tmp_path)
    poisoned = state.replace(
        sac=state.sac.replace(
            critic_params=jax.tree.map(lambda x: x * jnp.nan, state.sac.critic_params)
        )
    )
    with pytest.raises(
        records.NonFiniteError,
        match=r"non-finite in chunk 2 \(iterations 11-20\): \w+ = nan",
    ) as info:
        train.train(
            config,
            0,
            state=poisoned,
            history=history,
            progress=False,
            checkpoint_dir=tmp_path,
        )
    assert "last good checkpoint: step 10" in str(info.value) and "\n" not in str(
        info.value
    )
    assert checkpoint.latest_step(tmp_path) == 10
    np.testing.assert_equal(checkpoint.restore(tmp_path)[3], first.history)


@pytest.mark.parametrize(
    "change, field",
    [
        (dict(num_envs=4), "num_envs"),
        (dict(buffer_capacity=60), "buffer_capacity"),
        (dict(sac=SACConfig(hidden_sizes=(8, 16), batch_size=8)), "hidden_sizes"),
    ],
)
def test_a_state_that_does_not_fit_the_config_is_refused(change, field):
    """Resuming with another N, buffer capacity or network size: a clear error
    naming the mismatch, never an XLA shape error."""
    state = loop.init(TINY, jax.random.key(0))
    with pytest.raises(ValueError, match=rf"does not fit.*{field}") as info:
        train.train(TINY.replace(**change), 0, state=state, progress=False)
    assert "\n" not in str(info.value)


def test_non_finite_parameters_are_found_even_when_the_metrics_are_finite():
    """A NaN that has not reached the losses yet (here in the target critics,
    as after the last update of a chunk) is still caught, by its path."""
    state = loop.init(TINY, jax.random.key(0))
    state, metrics = _chunk(state, TINY)
    metrics = jax.device_get(metrics)
    assert records.first_non_finite(metrics, state.sac) is None
    target = state.sac.target_critic_params
    poisoned = state.sac.replace(
        target_critic_params=jax.tree.map(lambda x: x.at[0].set(jnp.inf), target)
    )
    found = records.first_non_finite(metrics, poisoned)
    assert found.startswith("sac.target_critic_params") and "end of the chunk" in found


# ----------------------------------------------------------------------------
# train_seeds and sweep: many runs as one program
# ----------------------------------------------------------------------------

COMPARED = ("critic_loss", "actor_loss", "alpha_loss", "q_mean", "entropy", "alpha")


def _relative_gap(a: dict, b: dict, names=COMPARED) -> float:
    return max(abs(a[k] - b[k]) / max(abs(b[k]), 1e-12) for k in names)


def test_train_seeds_matches_train_per_seed():
    """Seed i of one batched program is train(config, seed i): the first chunk's
    metrics agree to 1e-5 relative, the evaluation starts are the same."""
    seeds = [7, 3, 11]
    together = train.train_seeds(MANY, seeds, progress=False)
    assert [r.seed for r in together] == seeds
    for result in together:
        alone = train.train(MANY, result.seed, progress=False)
        assert result.config == MANY
        assert len(result.history) == len(alone.history) == 2
        first, ref = result.history[0], alone.history[0]
        assert _relative_gap(first, ref, COMPARED + ("reward_mean",)) < 1e-5
        assert first["episodes"] == ref["episodes"]
        assert first["eval_return"] == pytest.approx(ref["eval_return"], rel=1e-5)
        # the state is one run's (no seed axis) and can continue alone
        loop.check_state(result.state, MANY)
    # different seeds learn differently
    assert (
        together[0].history[-1]["critic_loss"] != together[1].history[-1]["critic_loss"]
    )


def test_one_run_progress_is_its_record_and_history():
    """train.train's callbacks get one Progress per chunk, with the run's one
    record (the very record its history keeps) and its history so far."""
    seen = []

    def callback(progress):
        seen.append(
            (
                len(progress.records),
                progress.record,
                progress.history,
                len(progress.history),
                list(progress.seeds),
                int(progress.state.iteration),
            )
        )

    result = train.train(MANY, 3, progress=False, callbacks=[callback])
    assert len(seen) == len(result.history) == 2
    for chunk, (runs, record, history, length, seeds, done) in enumerate(seen):
        assert runs == 1 and seeds == [3]
        assert record is result.history[chunk]
        assert history is result.history and length == chunk + 1
        assert done == (chunk + 1) * MANY.chunk_iterations


def test_many_runs_progress_has_one_record_per_run():
    """train_seeds' callbacks get every run's record of the chunk (those its
    history keeps) and the state with a run axis; progress.record and
    progress.history refuse to pick one of several runs."""
    seen, refusals = [], []

    def callback(progress):
        seen.append((list(progress.records), progress.histories, progress.seeds))
        assert progress.state.iteration.shape == (2,)
        for attribute in ("record", "history"):
            with pytest.raises(ValueError, match="2 runs; use records") as info:
                getattr(progress, attribute)
            refusals.append(str(info.value))

    results = train.train_seeds(MANY, [0, 1], progress=False, callbacks=[callback])
    assert len(seen) == 2 and len(refusals) == 4
    for chunk, (chunk_records, histories, seeds) in enumerate(seen):
        assert seeds == [0, 1] and len(chunk_records) == 2
        for run, result in enumerate(results):
            assert chunk_records[run] is result.history[chunk]
            assert histories[run] is result.history
    assert seen[0][0][0] is not seen[0][0][1]


def test_train_seeds_refuses_bad_input():
    with pytest.raises(ValueError, match="seeds must name at least one seed"):
        train.train_seeds(MANY, [], progress=False)
    for bad in (-1, 2**32, 2**63, 1.5, True):
        with pytest.raises(ValueError, match=r"seeds must be an integer in \[0, "):
            train.train_seeds(MANY, [0, bad], progress=False)


@pytest.mark.parametrize("bad", [-1, 2**32, 2**64, 1.5, True, "0"])
def test_train_refuses_a_seed_outside_32_bits(bad):
    """JAX without 64-bit integers keeps a seed's low 32 bits: seed 2**32
    would repeat seed 0's run, so train refuses it, as the CLI does."""
    with pytest.raises(
        ValueError, match=r"^seed must be an integer in \[0, 4294967295\]"
    ):
        train.train(MANY, bad, progress=False)


def test_sweep_and_train_runs_refuse_what_they_cannot_read():
    with pytest.raises(ValueError, match="settings must be a non-empty list of dicts"):
        train.sweep(MANY, {"tau": 0.1}, [0], progress=False)
    with pytest.raises(
        ValueError, match="configs must be TrainConfigs, got LoopConfig"
    ):
        train.train_runs([MANY.loop], [0], progress=False)


def test_checkpoint_dirs_as_one_string_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # "ab" must not become the folders a/ and b/
    with pytest.raises(ValueError, match="checkpoint_dirs must be a list"):
        train.train_seeds(MANY, [0, 1], checkpoint_dirs="ab", progress=False)
    assert not any(tmp_path.iterdir())


def test_train_seeds_saves_one_restorable_checkpoint_per_seed(tmp_path):
    """checkpoint_dirs: each seed's folder restores that run, its state equal
    to the result's, leaf for leaf, with its config, seed and history."""
    seeds, folders = [5, 2], [tmp_path / "five", tmp_path / "two"]
    results = train.train_seeds(
        MANY, seeds, progress=False, checkpoint_dirs=folders, checkpoint_every=1
    )
    for seed, folder, result in zip(seeds, folders, results, strict=True):
        assert checkpoint.latest_step(folder) == MANY.total_iterations
        state, config, saved_seed, history = checkpoint.restore(folder)
        assert config == MANY and saved_seed == seed
        np.testing.assert_equal(history, result.history)
        loop.check_state(state, MANY)
        assert same_state(state, result.state)
    # the runs differ, so each folder holds its own run
    a, b = (checkpoint.restore(f)[0].sac.actor_params for f in folders)
    assert not np.array_equal(jax.tree.leaves(a)[0], jax.tree.leaves(b)[0])


@pytest.mark.parametrize(
    "names", [["a"], ["a", "b", "c"], ["a", "a"]], ids=["short", "long", "same"]
)
def test_train_seeds_refuses_checkpoint_dirs_that_are_not_one_per_seed(tmp_path, names):
    with pytest.raises(
        ValueError,
        match=rf"checkpoint_dirs must name 2 different folders.*got {len(names)}",
    ):
        train.train_seeds(
            MANY,
            [0, 1],
            progress=False,
            checkpoint_dirs=[tmp_path / name for name in names],
        )
    assert not any(tmp_path.iterdir())


def test_sweep_runs_each_setting_as_its_own_config():
    """A sweep's runs equal runs of the swept configs (traced values against
    constants: 1e-5 relative), and every setting compiles into one program."""
    settings = [dict(tau=0.05), dict(tau=0.2, critic_lr=1e-3, init_alpha=0.5)]
    results = train.sweep(MANY, settings, [4], progress=False)
    assert [len(row) for row in results] == [1, 1]
    for setting, (result,) in zip(settings, results, strict=True):
        config = MANY.replace(sac=dataclasses.replace(MANY.sac, **setting))
        assert result.config == config
        assert result.state.sac.config == config.sac
        alone = train.train(config, 4, progress=False)
        assert _relative_gap(result.history[0], alone.history[0]) < 1e-5
        assert result.history[-1]["alpha"] == pytest.approx(
            alone.history[-1]["alpha"], rel=1e-4
        )
    # the settings really differ
    assert results[0][0].history[0]["alpha"] != results[1][0].history[0]["alpha"]


def test_sweep_keeps_going_past_a_diverging_setting():
    """Runs never mix: a setting that blows up is marked, the others are untouched."""
    results = train.sweep(
        MANY, [dict(critic_lr=1e30, actor_lr=1e30), dict()], [0], progress=False
    )
    (bad,), (good,) = results
    assert bad.diverged is not None and "chunk" in bad.diverged
    assert good.diverged is None
    alone = train.train(MANY, 0, progress=False)
    assert _relative_gap(good.history[-1], alone.history[-1]) < 1e-4
    # raise_on_non_finite: the error names the seed, the chunk and the value
    error = r"^seed 0 became non-finite in chunk \d+ \(iterations \d+-\d+\): \S+ = "
    with pytest.raises(records.NonFiniteError, match=error) as info:
        train.sweep(
            MANY,
            [dict(critic_lr=1e30, actor_lr=1e30)],
            [0],
            progress=False,
            raise_on_non_finite=True,
        )
    assert "\n" not in str(info.value)


def test_sweep_refuses_what_would_recompile():
    with pytest.raises(ValueError, match="batch_size change the compiled program"):
        train.sweep(MANY, [dict(batch_size=64)], [0], progress=False)
    with pytest.raises(ValueError, match="SACConfig.tau must be in"):
        train.sweep(MANY, [dict(tau=2.0)], [0], progress=False)
    with pytest.raises(ValueError, match="a non-empty list of dicts"):
        train.sweep(MANY, [], [0], progress=False)
