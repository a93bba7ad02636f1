"""A circular replay buffer as a pytree of fixed-capacity ``jnp`` arrays.

Pure and jit-safe: ``add`` and ``sample`` return new values and never touch
the host, so they run inside ``lax.scan`` on any device. The capacity is part
of the arrays' shapes, so it is fixed once the buffer is created.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from sacbook import checks


@struct.dataclass
class Transition:
    """One transition, or a batch of B of them with a leading axis.

    Attributes:
      obs: ``(B, obs_dim)`` observation the action was taken in.
      action: ``(B, action_dim)`` action in ``[-1, 1]`` (unscaled).
      reward: ``(B,)``.
      next_obs: ``(B, obs_dim)`` the true next observation. At a time limit
        this is the final observation of the old episode, not the reset one.
      terminated: ``(B,)`` bool, a true terminal state: do not bootstrap.
      truncated: ``(B,)`` bool, cut by the time limit: bootstrap as usual.
    """

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    next_obs: jax.Array
    terminated: jax.Array
    truncated: jax.Array


@struct.dataclass
class ReplayBuffer:
    """``data`` holds ``capacity`` rows of every field; rows ``[0, size)`` are
    filled. ``position`` is the row the next transition goes to (int32 scalar)."""

    data: Transition
    position: jax.Array
    size: jax.Array

    @property
    def capacity(self) -> int:
        return jax.tree.leaves(self.data)[0].shape[0]


def init(capacity: int, example_transition, *, on_host: bool = False) -> ReplayBuffer:
    """An empty buffer with room for ``capacity`` transitions shaped like
    ``example_transition`` (one transition without a batch axis, e.g. the
    arrays' shapes and dtypes; values are ignored).

    ``on_host=True`` builds it from NumPy arrays (nothing compiled; move it
    with ``jax.device_put``), for starting runs fast outside ``jit``.
    """
    capacity = checks.integer("capacity", capacity, 1)
    if on_host:  # NumPy only: not even the example goes to the device
        data = jax.tree.map(
            lambda x: np.zeros(
                (capacity,) + np.shape(x),
                jax.dtypes.canonicalize_dtype(np.asarray(x).dtype),
            ),
            example_transition,
        )
        return ReplayBuffer(data=data, position=np.int32(0), size=np.int32(0))
    data = jax.tree.map(
        lambda x: jnp.zeros((capacity,) + jnp.shape(x), jnp.asarray(x).dtype),
        example_transition,
    )
    return ReplayBuffer(data=data, position=jnp.int32(0), size=jnp.int32(0))


def add(buffer: ReplayBuffer, transitions) -> ReplayBuffer:
    """Write a batch of N transitions (leading axis N) at once, wrapping around.

    One vectorised scatter per field: rows ``position, position + 1, ...``
    modulo capacity. N may be any size up to the capacity, multiple or not.
    """
    capacity = buffer.capacity
    leaves = jax.tree.leaves(transitions)
    n = leaves[0].shape[0] if leaves and jnp.ndim(leaves[0]) > 0 else None
    if n is None or any(jnp.ndim(x) == 0 or x.shape[0] != n for x in leaves):
        raise ValueError("transitions must share a leading batch axis N on every field")
    if n > capacity:
        raise ValueError(
            f"cannot add {n} transitions at once to a buffer of capacity {capacity}"
        )
    expected = jax.tree.map(lambda d: d.shape[1:], buffer.data)
    got = jax.tree.map(lambda x: x.shape[1:], transitions)
    if expected != got:
        raise ValueError(
            f"transition shapes {got} do not match the buffer's {expected}"
        )
    rows = (buffer.position + jnp.arange(n)) % capacity
    data = jax.tree.map(
        lambda d, x: d.at[rows].set(x.astype(d.dtype)), buffer.data, transitions
    )
    return ReplayBuffer(
        data=data,
        position=(buffer.position + n) % capacity,
        size=jnp.minimum(buffer.size + n, capacity),
    )


def sample(buffer: ReplayBuffer, key: jax.Array, batch_size: int):
    """Draw ``batch_size`` transitions uniformly, with replacement, from the
    filled rows. ``randint`` costs O(batch_size), whatever the capacity
    (``choice`` with probabilities would cost O(capacity)).

    From an empty buffer it returns row 0 (zeros): callers wait until the
    buffer holds at least a batch before sampling.
    """
    batch_size = checks.integer("batch_size", batch_size, 1, checks.INT32_MAX)
    rows = jax.random.randint(key, (batch_size,), 0, jnp.maximum(buffer.size, 1))
    return jax.tree.map(lambda d: d[rows], buffer.data)
