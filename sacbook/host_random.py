"""Random numbers drawn on the host (NumPy), seeded by JAX keys.

A fresh training run needs a few thousand random numbers: network weights,
the pendulums' first states, the run's PRNG key. Drawing them with
``jax.random`` outside ``jit`` compiles a small XLA program for every
distinct operation and shape, about 0.1 s each on a 2-core CPU, and a cold
start paid about 1 s for them, a fifth of the time to solve the swing-up.
Drawn with NumPy they cost milliseconds.

The JAX key stays the one seed of everything: :func:`generator` turns
``(key, label)`` into a NumPy generator, so different keys, or different
labels for the same key, give independent streams, and the same pair always
gives the same numbers.
"""

from __future__ import annotations

import zlib

import jax
import numpy as np


def generator(key: jax.Array, label: str) -> np.random.Generator:
    """A NumPy generator seeded by ``key``'s data and ``label``.

    ``key`` must be concrete (not traced inside ``jit``/``vmap``): the point is
    to draw on the host.
    """
    if isinstance(key, jax.core.Tracer):
        raise ValueError("host_random.generator draws on the host: call it outside jit/vmap (key is traced)")
    _check_single_key(key)
    if not isinstance(label, str):
        raise ValueError(f"host_random.generator: label must be a str, got {label!r}")
    key_words = np.asarray(jax.random.key_data(key), np.uint32).ravel().tolist()
    return np.random.default_rng([*key_words, zlib.crc32(label.encode())])


def new_key(rng: np.random.Generator, like: jax.Array) -> jax.Array:
    """A fresh JAX key of the same kind (PRNG implementation) as ``like``,
    made from host random bits: no device computation, nothing compiled."""
    _check_single_key(like)
    data_shape = jax.random.key_data(like).shape
    bits = rng.integers(0, 2**32, size=data_shape, dtype=np.uint32)
    return jax.random.wrap_key_data(bits, impl=jax.random.key_impl(like))


def _check_single_key(key) -> None:
    """One typed key (``jax.random.key``) or one legacy uint32 key (``PRNGKey``), not a batch."""
    if not isinstance(key, jax.Array):
        raise ValueError(f"expected a JAX PRNG key, got {type(key).__name__}")
    typed = jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
    if (typed and key.shape != ()) or (not typed and (key.dtype != np.uint32 or key.ndim != 1)):
        raise ValueError(f"expected a single PRNG key (jax.random.key(seed)), got shape {key.shape} dtype {key.dtype}")
