"""Tests for sacbook.replay: the circular buffer against a pure-Python ring
buffer (wrap-around, positions, sizes, contents), input validation, and
uniform sampling from the filled rows under jit and lax.scan."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sacbook import replay
from sacbook.replay import Transition

OBS_DIM, ACTION_DIM = 3, 1


def example_transition():
    return Transition(
        obs=jnp.zeros(OBS_DIM, jnp.float32),
        action=jnp.zeros(ACTION_DIM, jnp.float32),
        reward=jnp.float32(0),
        next_obs=jnp.zeros(OBS_DIM, jnp.float32),
        terminated=jnp.bool_(False),
        truncated=jnp.bool_(False),
    )


def random_batch(rng: np.random.Generator, n: int) -> Transition:
    """A batch of n transitions with random values in every field (numpy)."""
    return Transition(
        obs=rng.normal(size=(n, OBS_DIM)).astype(np.float32),
        action=rng.uniform(-1, 1, size=(n, ACTION_DIM)).astype(np.float32),
        reward=rng.normal(size=n).astype(np.float32),
        next_obs=rng.normal(size=(n, OBS_DIM)).astype(np.float32),
        terminated=rng.random(n) < 0.3,
        truncated=rng.random(n) < 0.3,
    )


def id_batch(start: int, n: int) -> Transition:
    """Transitions numbered start, start + 1, ...: the number is in every field."""
    ids = np.arange(start, start + n, dtype=np.float32)
    return Transition(
        obs=np.repeat(ids[:, None], OBS_DIM, 1),
        action=ids[:, None],
        reward=ids,
        next_obs=np.repeat(ids[:, None] + 0.5, OBS_DIM, 1),
        terminated=(np.arange(start, start + n) % 3) == 0,
        truncated=(np.arange(start, start + n) % 5) == 0,
    )


class ListRingBuffer:
    """The reference: a Python list of rows, written one transition at a time."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.rows = [None] * capacity
        self.position = 0
        self.size = 0

    def add(self, batch: Transition):
        fields = Transition.__dataclass_fields__  # obs, action, ...
        n = len(batch.reward)
        for i in range(n):
            self.rows[self.position] = {
                f: np.asarray(getattr(batch, f))[i] for f in fields
            }
            self.position = (self.position + 1) % self.capacity
            self.size = min(self.size + 1, self.capacity)

    def field(self, name: str, like: np.ndarray) -> np.ndarray:
        """Column ``name`` of all rows, unwritten rows as zeros like the buffer's."""
        out = np.zeros_like(like)
        for i, row in enumerate(self.rows):
            if row is not None:
                out[i] = row[name]
        return out


def assert_matches_reference(buffer: replay.ReplayBuffer, ref: ListRingBuffer):
    assert int(buffer.position) == ref.position
    assert int(buffer.size) == ref.size
    for name in Transition.__dataclass_fields__:
        got = np.asarray(getattr(buffer.data, name))
        np.testing.assert_array_equal(got, ref.field(name, got), err_msg=name)


@pytest.mark.parametrize("on_host", [False, True])
def test_init_shapes_and_dtypes(on_host):
    """init gives zeroed (capacity, ...) arrays with the example's dtypes,
    position 0 and size 0; on_host=True gives the same as NumPy arrays."""
    buffer = replay.init(7, example_transition(), on_host=on_host)
    assert all(
        isinstance(x, np.ndarray if on_host else jax.Array)
        for x in jax.tree.leaves(buffer.data)
    )
    assert buffer.capacity == 7
    d = buffer.data
    assert d.obs.shape == (7, OBS_DIM) and d.obs.dtype == jnp.float32
    assert d.action.shape == (7, ACTION_DIM) and d.action.dtype == jnp.float32
    assert d.reward.shape == (7,) and d.reward.dtype == jnp.float32
    assert d.next_obs.shape == (7, OBS_DIM) and d.next_obs.dtype == jnp.float32
    assert d.terminated.shape == (7,) and d.terminated.dtype == jnp.bool_
    assert d.truncated.shape == (7,) and d.truncated.dtype == jnp.bool_
    assert all(not np.any(np.asarray(x)) for x in jax.tree.leaves(d))
    assert int(buffer.position) == 0 and int(buffer.size) == 0
    assert buffer.position.dtype == jnp.int32 and buffer.size.dtype == jnp.int32


@pytest.mark.parametrize("capacity", [0, -3, 2.5, "10", True, None])
def test_init_rejects_bad_capacity(capacity):
    """init raises a ValueError naming the capacity for non-positive or non-integer capacities."""
    with pytest.raises(ValueError, match="capacity"):
        replay.init(capacity, example_transition())


@pytest.mark.parametrize(
    "capacity, n, adds",
    [
        (10, 4, 12),  # capacity not a multiple of N, several wraps
        (12, 4, 10),  # a multiple
        (10, 10, 5),  # N == capacity
        (7, 3, 15),  # more than 3 wraps
        (5, 1, 13),
        (9, 8, 6),  # N just under capacity
    ],
)
def test_wraparound_matches_list_reference(capacity, n, adds):
    """After every add, position, size and the transition in every row equal a list-based ring buffer's."""
    buffer = replay.init(capacity, example_transition())
    ref = ListRingBuffer(capacity)
    add = jax.jit(replay.add)
    for k in range(adds):
        batch = id_batch(k * n, n)
        buffer = add(buffer, batch)
        ref.add(batch)
        assert int(buffer.position) == (k + 1) * n % capacity
        assert int(buffer.size) == min((k + 1) * n, capacity)
        assert_matches_reference(buffer, ref)


def test_wraparound_row_contents_by_hand():
    """Capacity 10, batches of 4: the third add writes ids 8, 9 into rows 8, 9 and ids 10, 11 into rows 0, 1."""
    buffer = replay.init(10, example_transition())
    for k in range(3):
        buffer = replay.add(buffer, id_batch(4 * k, 4))
    np.testing.assert_array_equal(
        np.asarray(buffer.data.reward), [10, 11, 2, 3, 4, 5, 6, 7, 8, 9]
    )
    assert int(buffer.position) == 2 and int(buffer.size) == 10


def test_vectorised_add_equals_loop_on_random_data():
    """Random batches of varying sizes added at once equal the same transitions added one by one, in every field."""
    rng = np.random.default_rng(0)
    capacity = 23
    buffer = replay.init(capacity, example_transition())
    ref = ListRingBuffer(capacity)
    add = jax.jit(replay.add)
    for n in [5, 9, 1, 23, 17, 5, 9, 17, 1, 23, 5]:
        batch = random_batch(rng, n)
        buffer = add(buffer, batch)
        ref.add(batch)
        assert_matches_reference(buffer, ref)


def test_add_casts_to_buffer_dtype():
    """Values of another dtype (float64, int) are stored in the buffer's dtypes."""
    buffer = replay.init(4, example_transition())
    batch = Transition(
        obs=np.ones((2, OBS_DIM), np.float64),
        action=np.ones((2, ACTION_DIM), np.float64),
        reward=np.array([1, 2]),
        next_obs=np.ones((2, OBS_DIM), np.float64),
        terminated=np.array([1, 0]),
        truncated=np.array([0, 1]),
    )
    buffer = replay.add(buffer, batch)
    assert (
        buffer.data.reward.dtype == jnp.float32
        and buffer.data.terminated.dtype == jnp.bool_
    )
    np.testing.assert_array_equal(
        np.asarray(buffer.data.terminated), [True, False, False, False]
    )


def test_add_more_than_capacity_raises():
    """Adding more transitions at once than the capacity raises a ValueError."""
    buffer = replay.init(5, example_transition())
    with pytest.raises(ValueError, match="capacity"):
        replay.add(buffer, id_batch(0, 6))


def test_add_mismatched_shapes_raise():
    """Fields with different batch sizes, missing batch axes or wrong trailing shapes raise ValueError."""
    buffer = replay.init(8, example_transition())
    good = id_batch(0, 3)
    with pytest.raises(ValueError):
        replay.add(buffer, good.replace(reward=np.zeros(2, np.float32)))  # N differs
    with pytest.raises(ValueError):
        replay.add(
            buffer, good.replace(obs=np.zeros((3, 4), np.float32))
        )  # obs_dim differs
    with pytest.raises(ValueError):
        replay.add(
            buffer, good.replace(action=np.zeros(3, np.float32))
        )  # trailing axis missing
    with pytest.raises(ValueError):
        single = jax.tree.map(
            lambda x: x[0], good
        )  # one transition without a batch axis
        replay.add(buffer, single)


def test_sample_draws_only_filled_rows_roughly_uniformly():
    """sample returns only transitions from the filled rows, every filled row appears, and counts pass a loose chi-square test."""
    capacity, filled = 50, 13
    buffer = replay.init(capacity, example_transition())
    buffer = replay.add(
        buffer, id_batch(100, filled)
    )  # rewards 100 .. 112, rows 13.. are zeros
    batch_size, draws = 512, 40
    sample = jax.jit(replay.sample, static_argnums=2)
    rewards = np.concatenate(
        [
            np.asarray(sample(buffer, k, batch_size).reward)
            for k in jax.random.split(jax.random.key(0), draws)
        ]
    )
    assert set(np.unique(rewards)) <= set(range(100, 100 + filled))
    counts = np.bincount(rewards.astype(int) - 100, minlength=filled)
    assert np.all(counts > 0)
    expected = rewards.size / filled
    chi2 = float(np.sum((counts - expected) ** 2 / expected))
    # 12 degrees of freedom: mean 12, sd ~5; 60 is a p-value far below 1e-6.
    assert chi2 < 60.0, (chi2, counts)
    # A sampled transition is a whole row: every field comes from the same transition.
    one = sample(buffer, jax.random.key(1), 64)
    ids = np.asarray(one.reward)
    np.testing.assert_array_equal(
        np.asarray(one.obs), np.repeat(ids[:, None], OBS_DIM, 1)
    )
    np.testing.assert_array_equal(
        np.asarray(one.next_obs), np.repeat(ids[:, None] + 0.5, OBS_DIM, 1)
    )
    np.testing.assert_array_equal(
        np.asarray(one.terminated), (ids.astype(int) % 3) == 0
    )
    np.testing.assert_array_equal(np.asarray(one.truncated), (ids.astype(int) % 5) == 0)


def test_sample_after_wrap_uses_whole_buffer():
    """Once the buffer has wrapped, samples come from all capacity rows (the latest transitions), none older."""
    capacity = 10
    buffer = replay.init(capacity, example_transition())
    for k in range(4):
        buffer = replay.add(buffer, id_batch(4 * k, 4))  # ids 0..15, rows hold 6..15
    rewards = np.asarray(replay.sample(buffer, jax.random.key(3), 4000).reward)
    assert set(np.unique(rewards).astype(int)) == set(range(6, 16))


def test_sample_shapes_and_bad_batch_size():
    """sample returns a batch of batch_size rows per field and rejects batch_size < 1."""
    buffer = replay.add(replay.init(6, example_transition()), id_batch(0, 4))
    batch = replay.sample(buffer, jax.random.key(0), 5)
    assert batch.obs.shape == (5, OBS_DIM) and batch.action.shape == (5, ACTION_DIM)
    assert batch.reward.shape == (5,) and batch.terminated.shape == (5,)
    for bad in (0, -1, 2.0, 2**40):  # 2**40 rows aborted the process in XLA
        with pytest.raises(ValueError, match="batch_size"):
            replay.sample(buffer, jax.random.key(0), bad)


def test_add_and_sample_inside_scan():
    """A jitted lax.scan that adds a batch and samples every step equals the reference buffer and samples filled rows only."""
    capacity, n, steps, batch_size = 11, 3, 9, 6
    all_batches = [id_batch(n * t, n) for t in range(steps)]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *all_batches)

    @jax.jit
    def run(buffer, batches, key):
        def body(carry, batch):
            buffer, key = carry
            key, k = jax.random.split(key)
            buffer = replay.add(buffer, batch)
            sampled = replay.sample(buffer, k, batch_size)
            return (buffer, key), (sampled.reward, buffer.size)

        (buffer, _), (rewards, sizes) = jax.lax.scan(body, (buffer, key), batches)
        return buffer, rewards, sizes

    buffer, rewards, sizes = run(
        replay.init(capacity, example_transition()), stacked, jax.random.key(0)
    )
    ref = ListRingBuffer(capacity)
    rewards = np.asarray(rewards)
    for t, batch in enumerate(all_batches):
        ref.add(batch)
        assert int(sizes[t]) == ref.size
        in_buffer = {row["reward"] for row in ref.rows if row is not None}
        assert set(rewards[t].tolist()) <= in_buffer
    assert_matches_reference(buffer, ref)
