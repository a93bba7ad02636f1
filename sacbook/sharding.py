"""Data parallelism over the devices of a one-axis mesh, with JAX's sharding.

A run on D devices splits its N environments and its replay buffer into D
equal shards along the env axis. The networks, optimizer states, PRNG key and
counters are replicated: every device holds the same copy. In each iteration
each device steps its N/D envs and writes their transitions to its own buffer
shard; in each update it draws B/D transitions from that shard, and the
gradients are averaged across devices (``lax.pmean`` in
:func:`sacbook.sac.update`). Every device then applies the same update to the
same parameters, so they stay identical without ever being sent around.

The chunk runs under ``jax.shard_map`` (:func:`sacbook.loop.chunk_program`
with a mesh): the code is written for one device's shard, and the only
communication is what it asks for through an :class:`Axis`: one mean of
the gradients per update (a few hundred kB for 64-wide networks), and the
sums of the chunk's metrics. Plain ``jit`` with sharding
annotations would let XLA decide: sampling rows at random from a buffer
sharded over devices is a gather that may read any shard, so it would move
transitions between devices on every update.

Many runs (seeds, or the settings of a sweep, stacked along a leading run
axis) can instead be spread over the devices: ``over="runs"`` gives each
device R/D whole runs, every leaf split along the run axis, and nothing is
communicated inside a chunk. Which to choose: one large run whose
environments and buffer outgrow a device, or that should finish sooner,
splits its envs (``over="envs"``, the default, which costs one gradient mean
per update); many small runs, a sweep of hundreds of settings, spread the
runs (no communication at all, the better use of 8 GPUs).

Several processes: after ``jax.distributed.initialize()`` joins them
(:mod:`sacbook.distributed`), ``jax.devices()`` lists every process's
devices and a mesh over all of them is used like a mesh over one host's;
:func:`put` hands each process's devices their shards, and the chunk is the
same program. Tested with 2 processes of 2 CPU devices each on one machine
(Gloo collectives), against 1 process of 4 devices: a sweep spread over the
devices matches bit for bit, a run split over them to 1e-3 (Gloo sums the
gradients in another order). Not yet tested across machines or on GPUs.

This module imports nothing of the package: the SAC update, the loop and
the runner all use it.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


@dataclasses.dataclass(frozen=True)
class Axis:
    """The devices a computation is split over, and the only ways they talk.

    The base class is one device (:data:`LOCAL`): nothing to communicate,
    so code written against an ``Axis`` reads, and compiles, as plain
    single-device code. :class:`Sharded` is the axis of a mesh under
    ``jax.shard_map``. Hashable: a static argument of ``jit``.
    """

    size: int = 1

    def mean(self, tree):
        """The mean of ``tree`` over the devices (``tree`` on one device)."""
        return tree

    def sum(self, tree):
        """The sum of ``tree`` over the devices (``tree`` on one device)."""
        return tree

    def fold_in(self, key):
        """A key of this device's own, from a key every device holds; the key
        itself on one device."""
        return key


@dataclasses.dataclass(frozen=True)
class Sharded(Axis):
    """Mesh axis ``name`` of ``size`` devices, inside ``jax.shard_map``:
    ``lax.pmean`` and ``lax.psum`` across it, keys folded with the device's
    index along it."""

    name: str = "data"

    def mean(self, tree):
        return jax.lax.pmean(tree, self.name)

    def sum(self, tree):
        return jax.lax.psum(tree, self.name)

    def fold_in(self, key):
        return jax.random.fold_in(key, jax.lax.axis_index(self.name))


LOCAL = Axis()


def collective_axis(mesh: Mesh | None) -> Axis:
    """The :class:`Axis` of a one-axis mesh; :data:`LOCAL` without a mesh or
    for a one-device mesh, which then runs exactly the single-device
    program, bit for bit."""
    if mesh is None:
        return LOCAL
    name, size = mesh_axis(mesh)
    return LOCAL if size == 1 else Sharded(size, name)


def mesh_axis(mesh: Mesh) -> tuple[str, int]:
    """``(name, size)`` of the one axis of ``mesh``, whatever it is named;
    a clear error for anything else."""
    if not isinstance(mesh, Mesh):
        raise ValueError(
            f"mesh must be a jax.sharding.Mesh (e.g. jax.make_mesh((4,), ('data',))), "
            f"got {type(mesh).__name__}"
        )
    if len(mesh.axis_names) != 1:
        raise ValueError(
            f"mesh must have exactly one axis (the env axis), got axes "
            f"{tuple(mesh.axis_names)} of sizes {tuple(mesh.devices.shape)}"
        )
    devices = list(mesh.devices.flat)
    if len(set(devices)) != len(devices):
        raise ValueError(f"mesh must hold each device once, got {devices}")
    return mesh.axis_names[0], int(mesh.devices.size)


def make_mesh(devices: int | str = "all", axis_name: str = "data") -> Mesh:
    """A one-axis mesh over the first ``devices`` devices (``"all"``: every
    device JAX sees), for ``sacbook train --devices``."""
    available = jax.devices()
    if devices == "all":
        devices = len(available)
    if (
        isinstance(devices, bool)
        or not isinstance(devices, (int, np.integer))
        or not 1 <= devices <= len(available)
    ):
        raise ValueError(
            f"devices must be 'all' or an integer in [1, {len(available)}] "
            f"(the {jax.default_backend()} devices available), got {devices!r}"
        )
    return Mesh(np.array(available[: int(devices)]), (axis_name,))


def check_divides(config, mesh: Mesh) -> None:
    """Refuse a config that does not split evenly over the mesh's D devices:
    N envs, the buffer's capacity and the batch must all divide by D."""
    _, d = mesh_axis(mesh)
    for field, value in (
        ("num_envs", config.num_envs),
        ("buffer_capacity", config.buffer_capacity),
        ("sac.batch_size", config.sac.batch_size),
    ):
        if value % d:
            raise ValueError(
                f"{type(config).__name__}.{field} ({value}) must be a multiple of "
                f"the mesh's {d} devices: each device takes an equal share"
            )


OVER = ("envs", "runs")  # what a mesh's devices split: each run's envs, or the runs


def check_over(over: str, batched: bool = True) -> str:
    """``over`` if it names a layout (:data:`OVER`) that fits; one line if not."""
    if over not in OVER:
        raise ValueError(
            f"over must be one of {OVER} (what the devices split), got {over!r}"
        )
    if over == "runs" and not batched:
        raise ValueError(
            'over="runs" spreads many runs over the devices: it needs a batch of '
            "runs (train_seeds, sweep), not one run"
        )
    return over


def check_runs_divide(runs: int, mesh: Mesh) -> None:
    """Refuse ``runs`` runs that do not split evenly over the mesh's devices."""
    _, d = mesh_axis(mesh)
    if runs % d:
        raise ValueError(
            f"runs ({runs}) must be a multiple of the mesh's {d} devices to spread "
            f"them over the devices (over='runs'): each device trains an equal share"
        )


def run_specs(tree, axis_name: str):
    """Every leaf of ``tree`` split along its leading run axis, the rest
    whole: the layout of ``over="runs"`` (full-rank specs, as in
    :func:`state_specs`)."""

    def split(x):
        return PartitionSpec(axis_name, *[None] * (np.ndim(x) - 1))

    return jax.tree.map(split, tree)


def take_run(x, i: int):
    """``x[i]`` for a leaf with a leading run axis. Where the runs are spread
    over devices (``over="runs"``), run ``i`` is taken from the device that
    holds it: no other device's runs move."""
    where = getattr(x, "sharding", None)
    if isinstance(where, NamedSharding) and where.spec and where.spec[0] is not None:
        for shard in x.addressable_shards:
            start, stop, _ = shard.index[0].indices(x.shape[0])
            if start <= i < stop:
                piece = shard.data[i - start]
                if x.is_fully_addressable:
                    return piece
                return _on_one_device(piece.shape, shard.device, [piece])
        # another process holds run i: the same array here, with no data
        for device, index in where.devices_indices_map(x.shape).items():
            start, stop, _ = index[0].indices(x.shape[0])
            if start <= i < stop:
                piece = jax.ShapeDtypeStruct(x.shape[1:], x.dtype)
                return _on_one_device(piece.shape, device, [], x.dtype)
    return x[i]


def whole_run(tree, i: int):
    """Run ``i`` of a tree whose runs are spread over the devices of several
    processes (``over="runs"`` under ``jax.distributed``), replicated on
    every device of their mesh: the form in which orbax saves it (it
    refuses an array that one process holds alone). For a checkpoint: run
    ``i``'s state crosses to every device, once per save."""
    mesh = jax.tree.leaves(tree)[0].sharding.mesh
    return _whole_run_program(mesh)(tree, i)


@functools.cache
def _whole_run_program(mesh: Mesh):
    everywhere = NamedSharding(mesh, PartitionSpec())
    return jax.jit(
        lambda tree, i: jax.tree.map(lambda x: x[i], tree), out_shardings=everywhere
    )


def runs_span_processes(tree) -> bool:
    """Whether ``tree``'s leading run axis is split over the devices of more
    than one process (each run then lives on one process alone)."""
    leaf = jax.tree.leaves(tree)[0]
    where = getattr(leaf, "sharding", None)
    return (
        isinstance(where, NamedSharding)
        and bool(where.spec)
        and where.spec[0] is not None
        and len({d.process_index for d in where.device_set}) > 1
    )


def _on_one_device(shape, device, pieces, dtype=None):
    """A global array on ``device`` alone, of which this process holds
    ``pieces`` (its one piece, or none where another process owns
    ``device``): the form in which every process of a ``jax.distributed``
    job names run ``i`` of runs spread over devices, to save it together."""
    where = NamedSharding(Mesh(np.array([device]), ("run",)), PartitionSpec())
    if pieces:
        return jax.make_array_from_single_device_arrays(shape, where, pieces)
    if "jax_enable_empty_arrays" in jax.config.values:
        # jax 0.7.0 and 0.7.1 build an array with no piece here only under this
        # flag (set for the whole process, as later versions behave: they have
        # no flag)
        jax.config.update("jax_enable_empty_arrays", True)
    return jax.make_array_from_single_device_arrays(shape, where, [], dtype=dtype)


def state_specs(state, axis_name: str, *, batched: bool = False):
    """The ``PartitionSpec`` of every leaf of a :class:`~sacbook.loop.TrainState`
    (arrays or ``ShapeDtypeStruct`` leaves): env and buffer arrays split
    along their env axis, everything else replicated. ``batched``: the
    leaves have a leading run axis (seeds), which is not split."""
    lead = (None,) if batched else ()  # the run axis is not split

    # Specs name every dimension (P(None, None), not P()): with explicit
    # mesh axes the spec is part of an array's type, and the chunk returns
    # full-rank specs, so a shorter one here would compile the chunk twice.
    def split(x):
        return PartitionSpec(*lead, axis_name, *[None] * (np.ndim(x) - len(lead) - 1))

    def replicated(x):
        return PartitionSpec(*[None] * np.ndim(x))

    return state.replace(
        sac=jax.tree.map(replicated, state.sac),
        buffer=state.buffer.replace(
            data=jax.tree.map(split, state.buffer.data),
            position=replicated(state.buffer.position),
            size=replicated(state.buffer.size),
        ),
        env=jax.tree.map(split, state.env),
        obs=split(state.obs),
        key=replicated(state.key),
        iteration=replicated(state.iteration),
    )


def state_shardings(state, mesh: Mesh, *, batched: bool = False, over: str = "envs"):
    """:func:`state_specs` (or :func:`run_specs`, ``over="runs"``) as
    ``NamedSharding`` leaves on ``mesh``."""
    axis_name, _ = mesh_axis(mesh)
    if check_over(over, batched) == "runs":
        specs = run_specs(state, axis_name)
    else:
        specs = state_specs(state, axis_name, batched=batched)
    return jax.tree.map(lambda spec: NamedSharding(mesh, spec), specs)


def put(state, mesh: Mesh, *, batched: bool = False, over: str = "envs"):
    """Place a state (host or device arrays) on ``mesh`` as designed: each
    run's envs split (``over="envs"``), or whole runs (``"runs"``).

    Each device receives only its own shard, cut from the full array
    (``jax.make_array_from_callback``): this also works when the mesh spans
    several processes (``jax.distributed``), where each process builds the
    same full state from the seed and hands over its devices' shards. Leaves
    already placed as designed are kept as they are. ``jax.ShapeDtypeStruct``
    leaves (the rows of an empty replay buffer) become zeros made on the
    devices (:func:`zeros`): no host builds them whole.
    """
    leaves, treedef = jax.tree.flatten(state)
    targets = treedef.flatten_up_to(
        state_shardings(state, mesh, batched=batched, over=over)
    )
    empty = [i for i, x in enumerate(leaves) if isinstance(x, jax.ShapeDtypeStruct)]
    made = zeros([leaves[i] for i in empty], [targets[i] for i in empty])
    placed = dict(zip(empty, made))
    return treedef.unflatten(
        [
            placed[i] if i in placed else place(leaf, target)
            for i, (leaf, target) in enumerate(zip(leaves, targets))
        ]
    )


def zeros(shapes: list, shardings: list) -> list:
    """Zeros shaped like ``shapes`` (``jax.ShapeDtypeStruct`` each), laid out
    as ``shardings``, made where they live: one small program in which each
    device fills its own shard, so that neither the host nor, over many
    processes, any one process ever holds a whole array."""
    if not shapes:
        return []
    make = jax.jit(
        lambda: [jnp.zeros(s.shape, s.dtype) for s in shapes],
        out_shardings=list(shardings),
    )
    return make()


def put_runs(tree, mesh: Mesh):
    """Place ``tree`` (run keys, a sweep's values: a leading run axis on
    every leaf) split along that axis over ``mesh``, beside the runs of
    ``over="runs"``; each process hands over only its devices' shards."""
    specs = run_specs(tree, mesh_axis(mesh)[0])
    return jax.tree.map(
        lambda x, spec: place(x, NamedSharding(mesh, spec)), tree, specs
    )


def place(leaf, where: NamedSharding):
    """``leaf`` (a host or device array, or a typed PRNG key) laid out as
    ``where``: each of this process's devices receives its shard, cut from
    the full array (``jax.make_array_from_callback``), which also works when
    ``where``'s mesh spans several processes. A leaf already laid out so is
    kept as it is."""
    if getattr(leaf, "sharding", None) == where:
        return leaf
    if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        impl = jax.random.key_impl(leaf)
        data = jax.random.key_data(leaf)  # (..., words): one more axis
        spec = PartitionSpec(*where.spec, *[None] * (data.ndim - len(where.spec)))
        data = place(data, NamedSharding(where.mesh, spec))
        return jax.random.wrap_key_data(data, impl=impl)
    full = np.asarray(leaf)
    return jax.make_array_from_callback(full.shape, where, lambda i: full[i])


def parallel(run, state, hyper=None, *, mesh, batched: bool, over: str = "envs"):
    """``run(state, hyper, axis) -> (state, metrics)``, written for one run on
    one device, for a batch of runs (``batched``: a leading run axis on every
    leaf of ``state`` and ``hyper``) and/or over the devices of ``mesh``.

    ``over="envs"``: each run's envs are split over the devices
    (``jax.shard_map`` with :func:`state_specs`); ``run`` talks to the other
    devices through its :class:`Axis`, and its metrics come back already
    reduced, the same on every device. ``over="runs"``: each device runs its
    R/D runs, vmapped, as if alone (:data:`LOCAL`, no communication), and the
    metrics keep their run axis.
    """
    if mesh is not None and check_over(over, batched) == "runs":
        name, _ = mesh_axis(mesh)

        def local_runs(state, hyper):
            in_axes = (0, None if hyper is None else 0)
            return jax.vmap(lambda s, h: run(s, h, LOCAL), in_axes)(state, hyper)

        specs = run_specs(state, name)
        hyper_specs = None if hyper is None else run_specs(hyper, name)
        return jax.shard_map(
            local_runs,
            mesh=mesh,
            in_specs=(specs, hyper_specs),
            out_specs=(specs, PartitionSpec(name)),  # the metrics: per run
            check_vma=False,
        )(state, hyper)
    axis = collective_axis(mesh)

    def local(state, hyper):
        return run(state, hyper, axis)

    if batched:
        local = jax.vmap(local, in_axes=(0, None if hyper is None else 0))
    if mesh is None:
        return local(state, hyper)
    specs = state_specs(state, mesh_axis(mesh)[0], batched=batched)
    return jax.shard_map(
        lambda state: local(state, hyper),  # hyper: the same on every device
        mesh=mesh,
        in_specs=(specs,),
        out_specs=(specs, PartitionSpec()),  # metrics are already summed/averaged
        check_vma=False,
    )(state)
