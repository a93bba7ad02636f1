"""sacbook.cost: the FLOPs and bytes of an update and of an iteration, by
hand on small layers, and against XLA's own count of the compiled programs.

XLA's ``cost_analysis()`` of a compiled program (a dict in jax 0.10) counts
"flops" with a matmul as 2 m n k, every other elementwise operation as one
(integer ones too: the random numbers' threefry), and "transcendentals"
apart, as the model does. Two differences, both handled below:

* a ``while`` loop (``lax.scan``) is counted once, whatever its trip count;
* a ``cond`` counts its dearest branch every time: the env's reset branch,
  which the model amortises over an episode.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sacbook import cost, loop, networks, replay, sac
from sacbook.config import LoopConfig, TrainConfig
from sacbook.sac import SACConfig


def _by_layer_forward(rows, layers):
    """A forward's FLOPs layer by layer, ReLU between: matmul, bias, max."""
    total = 0
    for i, (n_in, n_out) in enumerate(layers):
        total += rows * (2 * n_in * n_out + n_out)
        if i < len(layers) - 1:
            total += rows * n_out
    return total


def test_dense_layers_by_hand():
    layers = cost.critic_layers(SACConfig(hidden_sizes=(4, 5)))
    assert layers == ((4, 4), (4, 5), (5, 1))
    assert cost.actor_layers(SACConfig(hidden_sizes=(4,))) == ((3, 4), (4, 2))
    # rows 7: matmuls 2 (16 + 20 + 5) = 82, biases 10, ReLUs 9, a row
    assert cost.forward(7, layers) == (7 * (82 + 10 + 9), 0)
    assert cost.forward(7, layers)[0] == _by_layer_forward(7, layers)
    # backward for the weights: matmuls again, bias sums, ReLU 2 an element,
    # and input gradients of all layers but the first
    weights = 7 * (82 + 10 + 2 * 9 + 2 * (20 + 5))
    assert cost.backward(7, layers) == (weights, 0)
    # the actor's loss: the critics by their input only, first layer included
    assert cost.backward(7, layers, weights=False, inputs=True) == (
        7 * (2 * 9 + 82),
        0,
    )
    # tanh: a transcendental an element forward, none backward
    assert cost.forward(7, layers, "tanh") == (7 * (82 + 10), 7 * 9)


def test_parameter_and_row_counts_match_the_package():
    config = SACConfig(hidden_sizes=(32, 16))
    state = sac.init(jax.random.key(0), config)
    assert cost.param_count(cost.actor_layers(config)) == networks.param_count(
        state.actor_params
    )
    critics = config.num_critics * cost.param_count(cost.critic_layers(config))
    assert critics == networks.param_count(state.critic_params)
    # a replay row: what the training state's buffer holds per transition
    abstract = loop.abstract_state(TrainConfig(buffer_capacity=1024))
    row = sum(
        np.dtype(x.dtype).itemsize * int(np.prod(x.shape[1:]))
        for x in jax.tree.leaves(abstract.buffer.data)
    )
    assert cost.transition_bytes(config) == row == 34


def test_every_activation_has_a_cost():
    assert set(cost.ACTIVATION) == set(sac.ACTIVATIONS)


def test_iteration_and_chunk_totals():
    config = TrainConfig()
    c = cost.iteration_cost(config)
    u = c.update
    assert (c.num_envs, c.batch_size, c.updates) == (1024, 96, 16.0)
    assert u.flops == sum(
        getattr(u, f)
        for f in (
            "critic_target",
            "critic_loss",
            "actor",
            "temperature",
            "adam",
            "polyak",
            "random",
        )
    )
    assert c.flops == c.env_step + c.act + 16 * (u.flops + c.sample)
    assert c.bytes == c.env_bytes + c.replay_write_bytes + 16 * (
        u.state_bytes + 96 * 34
    )
    assert c.chunk_flops == 20 * c.flops and c.chunk_bytes == 20 * c.bytes
    assert c.intensity == c.flops / c.bytes
    assert c.replay_write_bytes == 1024 * 34
    # K updates every U iterations: K / U an iteration
    half = cost.iteration_cost(config.replace(update_every=2))
    assert half.updates == 8.0 and half.flops < c.flops
    # The update is mostly matmuls. Multiply-adds a row: the actor's M_a =
    # 3 64 + 64 64 + 64 2, a critic's M_q = 4 64 + 64 64 + 64 (both 4416).
    # Forwards: the actor twice, the critics 3 times x 2; backwards: weights
    # of the actor and of 2 critics, inputs of 2 critics (all layers) and,
    # but for the first layer, of the actor and 2 critics.
    m_a = m_q = 4416
    forwards = 2 * m_a + 6 * m_q
    backwards = m_a + 2 * m_q + 2 * m_q + (m_a - 3 * 64) + 2 * (m_q - 4 * 64)
    matmuls = 2 * 96 * (forwards + backwards)
    assert matmuls == 13_430_784
    assert matmuls < u.flops < 1.06 * matmuls


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="LoopConfig or TrainConfig"):
        cost.iteration_cost(SACConfig())
    with pytest.raises(KeyError):
        cost.forward(1, ((3, 4), (4, 1)), "gelu")


def _batch(b):
    zeros = jnp.zeros
    return replay.Transition(
        obs=zeros((b, 3)),
        action=zeros((b, 1)),
        reward=zeros(b),
        next_obs=zeros((b, 3)),
        terminated=zeros(b, bool),
        truncated=zeros(b, bool),
    )


@pytest.mark.parametrize("hidden, batch", [((64, 64), 96), ((256, 256), 256)])
def test_one_update_against_xla(hidden, batch):
    """The model's FLOPs and transcendentals of one :func:`sac.update` within
    10% of XLA's count of the compiled update (no loops: counted once), and
    its bytes a lower bound of XLA's "bytes accessed" (which counts every
    operation's operands and results, cache or not)."""
    config = SACConfig(hidden_sizes=hidden, batch_size=batch)
    state = sac.init(jax.random.key(0), config)
    compiled = sac.update.lower(state, _batch(batch), jax.random.key(1)).compile()
    xla = compiled.cost_analysis()
    xla = xla[0] if isinstance(xla, list) else xla  # older jax: one per device
    model = cost.update_cost(config)
    assert model.flops == pytest.approx(xla["flops"], rel=0.1)
    assert model.transcendentals == pytest.approx(xla["transcendentals"], rel=0.1)
    assert model.state_bytes + batch * 34 < xla["bytes accessed"]


def test_a_chunk_against_xla():
    """A chunk of T iterations with K updates each, against XLA's count of
    the compiled chunk. XLA counts each loop's body once, so its total is
    ``T (chunk + (K - 1) inner)``: the chunk's count (one iteration with one
    update) plus K - 1 more passes of the update loop's body, counted by
    compiling that loop with K = 1 (a loop of one pass, counted once). XLA
    counts the env's reset branch every step, the model once an episode:
    add the difference to compare like with like."""
    config = TrainConfig(
        sac=SACConfig(batch_size=32),
        num_envs=64,
        buffer_capacity=1024,
        warmup_env_steps=0,
        learning_starts=32,
        updates_per_iteration=4,
        chunk_iterations=3,
    )
    state = loop.abstract_state(config)  # shapes only: nothing allocated
    chunk = loop.chunk_program().lower(state, config.loop).compile()
    one = config.replace(updates_per_iteration=1).loop
    inner = (
        jax.jit(lambda s, b, k: loop.update_round(s, b, k, one))
        .lower(state.sac, state.buffer, state.key)
        .compile()
    )
    t, k = config.chunk_iterations, config.updates_per_iteration
    xla = t * (
        chunk.cost_analysis()["flops"] + (k - 1) * inner.cost_analysis()["flops"]
    )
    model = cost.iteration_cost(config)
    resets = t * config.num_envs * cost.ENV_RESET * (1 - 1 / config.env.episode_length)
    assert model.chunk_flops + resets == pytest.approx(xla, rel=0.1)
    assert isinstance(config.loop, LoopConfig)
