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

Network weights are drawn on the host only where NumPy can reproduce Flax's
distribution exactly: :func:`draw_params` checks that every parameter is an
``nn.Dense`` kernel or bias with Flax's default initialisers, and hands any
other module to ``module.init``. Optimizer states that start at zero
(Adam's) are NumPy zeros too (:func:`optimizer_state`).
"""

from __future__ import annotations

import math
import operator
import zlib

import flax.linen as nn
import jax
import numpy as np
import optax

from sacbook import jit, networks


def generator(key: jax.Array, label: str) -> np.random.Generator:
    """A NumPy generator seeded by ``key``'s data and ``label``.

    ``key`` must be concrete (not traced inside ``jit``/``vmap``): the point is
    to draw on the host.
    """
    if isinstance(key, jax.core.Tracer):
        raise ValueError(
            "host_random.generator draws on the host: call it outside jit/vmap "
            "(key is traced)"
        )
    _check_single_key(key)
    if not isinstance(label, str):
        raise ValueError(f"host_random.generator: label must be a str, got {label!r}")
    key_words = np.asarray(jax.random.key_data(key), np.uint32).ravel().tolist()
    return np.random.default_rng([*key_words, zlib.crc32(label.encode())])


# The seeds whose threefry key is [0, seed] whether or not JAX runs with 64-bit
# integers: the key's two words are the seed's high and low 32 bits.
_HOST_SEEDS = range(2**31)


def seed_key(seed: int) -> jax.Array:
    """``jax.random.key(seed)``, made on the host: the same key, and nothing
    compiled (JAX compiles two small programs to hash a seed, about 0.05 s of
    a cold start). Seeds outside 0 .. 2**31 - 1, or a PRNG other than JAX's
    default threefry, go through ``jax.random.key``."""
    seed = operator.index(seed)
    if jax.config.jax_default_prng_impl != "threefry2x32" or seed not in _HOST_SEEDS:
        return jax.random.key(seed)
    return jax.random.wrap_key_data(np.array([0, seed], np.uint32))


def stack_keys(keys) -> jax.Array:
    """``jnp.stack(keys)`` for concrete single keys of one kind, stacked on the
    host: the same ``(R,)`` keys, and nothing compiled."""
    for key in keys:
        _check_single_key(key)
    words = np.stack([np.asarray(jax.random.key_data(key)) for key in keys])
    return jax.random.wrap_key_data(words, impl=jax.random.key_impl(keys[0]))


def new_key(rng: np.random.Generator, like: jax.Array) -> jax.Array:
    """A fresh JAX key of the same kind (PRNG implementation) as ``like``,
    made from host random bits: no device computation, nothing compiled."""
    _check_single_key(like)
    data_shape = jax.random.key_data(like).shape
    bits = rng.integers(0, 2**32, size=data_shape, dtype=np.uint32)
    return jax.random.wrap_key_data(bits, impl=jax.random.key_impl(like))


def _check_single_key(key) -> None:
    """One typed key (``jax.random.key``) or one legacy uint32 key (``PRNGKey``),
    not a batch."""
    if not isinstance(key, jax.Array):
        raise ValueError(f"expected a JAX PRNG key, got {type(key).__name__}")
    typed = jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
    if (typed and key.shape != ()) or (
        not typed and (key.dtype != np.uint32 or key.ndim != 1)
    ):
        raise ValueError(
            "expected a single PRNG key (jax.random.key(seed)), "
            f"got shape {key.shape} dtype {key.dtype}"
        )


# ----------------------------------------------------------------------------
# Network parameters
# ----------------------------------------------------------------------------

_STD_OF_TRUNCATED = 0.87962566103423978  # std of N(0, 1) truncated to [-2, 2]


def draw_params(rng: np.random.Generator, module: nn.Module, *example_inputs) -> dict:
    """Fresh variables for a Flax ``module``, as NumPy arrays, drawn from ``rng``.

    Host path: when every parameter is the kernel or bias of a plain
    ``nn.Dense`` with Flax's default initialisers (kernels LeCun-normal:
    normal with variance 1/fan_in, truncated at two standard deviations and
    rescaled; biases zero), NumPy draws them and nothing is compiled.
    ``jax.eval_shape`` gives the tree. Why not ``module.init``: compiling it
    costs about 2 s on a 2-core CPU (one random-number kernel per
    parameter), longer than the whole swing-up takes to learn.

    Fallback: any other module (another initialiser, a LayerNorm, a
    parameter created with ``self.param``, an ensemble other than
    :class:`~sacbook.networks.TwinCritic`'s, a collection besides
    ``"params"``) is initialised by ``module.init``, compiled, with a key drawn
    from ``rng``: its own distribution, for one compilation.
    :func:`host_draw_refusal` says which case applies.

    Args:
      rng: the NumPy generator to draw from.
      module: a Flax linen module.
      *example_inputs: arrays to call ``module`` with, e.g. ``(1, obs_dim)``.
    Returns:
      The variables ``{"params": ...}`` with the structure, shapes and dtypes
      of ``module.init``, as NumPy arrays.
    """
    layout = _default_dense_layout(module, example_inputs)
    if isinstance(layout, str):  # not a layout NumPy can reproduce: Flax draws it
        key = jax.random.key(int(rng.integers(0, 2**32)))
        return jax.device_get(jit.Program(module.init)(key, *example_inputs))
    abstract, fan_ins = layout

    def draw(path, leaf):
        if path[-1].key == "bias":
            return np.zeros(leaf.shape, leaf.dtype)
        z = rng.standard_normal(leaf.shape)
        while np.any(outside := np.abs(z) > 2.0):  # resample until all lie within 2 std
            z[outside] = rng.standard_normal(int(outside.sum()))
        scale = math.sqrt(1.0 / fan_ins[_names(path)]) / _STD_OF_TRUNCATED
        return (z * scale).astype(leaf.dtype)

    return jax.tree_util.tree_map_with_path(draw, abstract)


def host_draw_refusal(module: nn.Module, *example_inputs) -> str | None:
    """Why :func:`draw_params` would hand ``module`` to ``module.init``, or
    ``None`` when it draws the parameters on the host. Compiles nothing."""
    layout = _default_dense_layout(module, example_inputs)
    return layout if isinstance(layout, str) else None


def _names(path) -> tuple[str, ...]:
    """A pytree key path of nested dicts as a tuple of names."""
    return tuple(str(getattr(entry, "key", entry)) for entry in path)


_LAYOUTS: dict = {}  # module description -> _default_dense_layout's answer


def _default_dense_layout(module: nn.Module, example_inputs):
    """:func:`_find_default_dense_layout`, remembered per module and input
    shapes: a run's memory estimate and its state draw the same networks, and
    the trace costs about 0.1 s. Modules whose description holds an object
    address (a lambda, say) are traced every time."""
    key = (
        type(module),
        repr(module),
        tuple((np.shape(x), np.asarray(x).dtype.str) for x in example_inputs),
    )
    if " at 0x" in key[1]:
        return _find_default_dense_layout(module, example_inputs)
    if key not in _LAYOUTS:
        _LAYOUTS[key] = _find_default_dense_layout(module, example_inputs)
    return _LAYOUTS[key]


def _find_default_dense_layout(module: nn.Module, example_inputs):
    """``(abstract variables, {kernel path: fan_in})`` when Flax's default
    ``nn.Dense`` initialisers describe every parameter of ``module``; else a
    sentence saying why not.

    Traces ``module.init`` abstractly (``jax.eval_shape``) while
    ``nn.intercept_methods`` records every ``nn.Dense`` called: its scope
    path, its initialisers, and its fan-in (the last axis of its input, as
    its initialiser sees it, also inside ``nn.vmap``). Then every parameter
    must be one of those Dense layers' kernel or bias, shaped as that layer
    makes it.
    """
    dense_calls = {}  # scope path -> (Dense module, fan_in, ensemble axes)
    running = []  # modules whose methods are running, outermost first

    def record(next_fun, args, kwargs, context):
        called = context.module
        if type(called) is nn.Dense and context.method_name == "__call__":
            inputs = args[0] if args else kwargs["inputs"]
            # TwinCritic's nn.vmap adds a leading axis of independent members
            # (split_rngs); no other lifted ensemble is known to draw that way
            ensembles = tuple(
                m.num_critics for m in running if type(m) is networks.TwinCritic
            )
            fan_in = np.shape(inputs)[-1]
            dense_calls[tuple(called.scope.path)] = (called, fan_in, ensembles)
        running.append(called)
        try:
            return next_fun(*args, **kwargs)
        finally:
            running.pop()

    def abstract_init(*inputs):
        return module.init(jax.random.key(0), *inputs)

    with nn.intercept_methods(record):
        abstract = jax.eval_shape(abstract_init, *example_inputs)
    if set(abstract) != {"params"}:
        return (
            f"variable collections {sorted(abstract)}: only 'params' is drawn "
            "on the host"
        )
    fan_ins = {}
    leaves = jax.tree_util.tree_flatten_with_path(abstract)[0]
    for path, leaf in leaves:
        names = _names(path)
        where, layer = "/".join(names[1:]), "/".join(names[1:-1])
        dense_call = dense_calls.get(names[1:-1])
        if dense_call is None:
            return f"parameter {where} does not belong to an nn.Dense"
        dense, fan_in, ensembles = dense_call
        if names[-1] == "kernel":
            lecun_normal = jax.nn.initializers.lecun_normal()
            if not _same_initializer(dense.kernel_init, lecun_normal):
                return f"{where}: kernel_init of {layer} is not LeCun normal"
            expected = ensembles + (fan_in, dense.features)
            fan_ins[names] = fan_in
        elif names[-1] == "bias":
            if not _same_initializer(dense.bias_init, jax.nn.initializers.zeros):
                return f"{where}: bias_init of {layer} is not zeros"
            expected = ensembles + (dense.features,)
        else:
            return f"parameter {where} is neither a kernel nor a bias"
        if tuple(leaf.shape) != expected:
            return (
                f"parameter {where} has shape {tuple(leaf.shape)}, not the "
                f"{expected} of a Dense {names[-1]}"
            )
    return abstract, fan_ins


def _same_initializer(init, reference) -> bool:
    """Whether ``init`` is ``reference``, or the same closure code holding
    equal values (another ``lecun_normal()``, for instance). Anything
    unrecognised counts as different: the safe answer, it only costs a
    compilation."""
    if init is reference:
        return True
    code = getattr(init, "__code__", None)
    if code is None or code is not getattr(reference, "__code__", None):
        return False
    cells, reference_cells = init.__closure__ or (), reference.__closure__ or ()
    try:
        pairs = zip(cells, reference_cells)
        return len(cells) == len(reference_cells) and all(
            bool(a.cell_contents == b.cell_contents) for a, b in pairs
        )
    except (TypeError, ValueError):  # e.g. arrays held in the closure
        return False


def optimizer_state(optimizer: optax.GradientTransformation, params):
    """``optimizer.init(params)`` as NumPy arrays.

    Adam's state (step count, first and second moments) starts at zero, so for
    it the state is NumPy zeros shaped by ``jax.eval_shape``: nothing is
    compiled. Any other optimizer state is computed by ``optimizer.init``
    itself (correct, but it compiles). ``tests/test_host_random.py`` checks both.
    """
    abstract = jax.eval_shape(optimizer.init, params)
    if not zero_initialised(abstract):
        return jax.device_get(optimizer.init(params))
    return jax.tree.map(lambda leaf: np.zeros(leaf.shape, leaf.dtype), abstract)


def zero_initialised(opt_state) -> bool:
    """Whether every part of an optax state is known to start at zero (Adam's
    moments and count, or no state at all)."""
    if isinstance(opt_state, (optax.ScaleByAdamState, optax.EmptyState)):
        return True
    if type(opt_state) in (tuple, list):  # optax.chain's tuple of states
        return all(zero_initialised(part) for part in opt_state)
    return False
