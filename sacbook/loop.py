"""The compiled training program: its state, one iteration, a chunk.

One *iteration* does, for all N environments at once:

1. the shared policy acts (random actions during warm-up);
2. the batched environment steps, auto-resetting at the time limit;
3. the replay buffer takes the N transitions;
4. K gradient updates run in an inner ``lax.scan`` (every ``update_every``
   iterations, once the buffer holds ``learning_starts`` transitions).

:func:`run_chunk` runs ``chunk_iterations`` iterations in a ``lax.scan``;
:func:`chunk_program` is that chunk as one compiled call, with the training
state donated: for one run on one device, for many runs at once (seeds, a
sweep) and over the devices of a mesh. Everything here is pure and runs on
the device; the host drives it chunk by chunk in :mod:`sacbook.train`. Its
config is :class:`sacbook.config.LoopConfig`.
"""

from __future__ import annotations

import dataclasses
import functools
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from sacbook import host_random, jit, networks, pendulum, replay, sac, sharding
from sacbook.config import LoopConfig
from sacbook.sac import SACConfig
from sacbook.sharding import LOCAL, Axis


@struct.dataclass
class TrainState:
    """The whole state of a training run, one pytree (checkpoint this).

    Attributes:
      sac: networks, optimizers, temperature.
      buffer: the replay buffer.
      env: the N environments; ``obs`` ``(N, 3)`` their current observations.
      key: the PRNG key for everything that follows.
      iteration: iterations done so far (int32 scalar).
    """

    sac: sac.SACState
    buffer: replay.ReplayBuffer
    env: pendulum.EnvState
    obs: jax.Array
    key: jax.Array
    iteration: jax.Array


def init(
    config: LoopConfig, key: jax.Array, *, mesh: jax.sharding.Mesh | None = None
) -> TrainState:
    """A fresh run: new networks, an empty buffer, N freshly reset envs.

    Built on the host with NumPy and moved to the device in one transfer:
    nothing is compiled, so a cold start pays only for the training program
    (see :mod:`sacbook.host_random`). ``key`` must be concrete. With a
    ``mesh``, the state is placed on its devices as :mod:`sacbook.sharding`
    designs (and the config must divide evenly over them).

    Whether the run fits in memory is the caller's question, asked before
    anything is built (:func:`sacbook.device.check_fits`, which
    :func:`sacbook.train.train` and ``sacbook train`` ask).
    """
    check_mesh(config, mesh)
    return _put(_init_host(config, key, rows_on_device=mesh is not None), mesh)


def init_runs(
    config: LoopConfig,
    keys,
    *,
    sac_configs=None,
    mesh: jax.sharding.Mesh | None = None,
    over: str = "envs",
) -> TrainState:
    """R fresh runs as one state with a leading run axis on every leaf, for
    the batched chunk (:func:`chunk_program` with ``batched``), placed on
    ``mesh``'s devices: each run's envs split (``over="envs"``) or whole
    runs (``"runs"``; :mod:`sacbook.sharding`).

    Run r is exactly ``init(config, keys[r])``, stacked. ``sac_configs``
    (one per run, for a sweep) sets each run's initial temperature; their
    shapes must be ``config.sac``'s, and the state keeps ``config.sac`` as
    its static config (the swept values travel as
    :class:`~sacbook.sac.Hyperparams`).
    """
    keys = list(keys)
    if not keys:
        raise ValueError("keys must hold at least one run's key")
    sac_configs = list(sac_configs or [config.sac] * len(keys))
    if len(sac_configs) != len(keys):
        raise ValueError(
            f"sac_configs must have one entry per run ({len(keys)}), "
            f"got {len(sac_configs)}"
        )
    check_mesh(config, mesh, over=over, runs=len(keys))
    runs = [
        _init_host(config.replace(sac=sac_config), key, rows_on_device=mesh is not None)
        for sac_config, key in zip(sac_configs, keys, strict=True)
    ]
    runs = [run.replace(sac=run.sac.replace(config=config.sac)) for run in runs]
    keys = host_random.stack_keys([run.key for run in runs])
    runs = [run.replace(key=None) for run in runs]
    stacked = jax.tree.map(_stack, *runs)
    return _put(stacked.replace(key=keys), mesh, batched=True, over=over)


def check_mesh(
    config: LoopConfig,
    mesh: jax.sharding.Mesh | None,
    *,
    over: str = "envs",
    runs: int = 1,
) -> int:
    """The mesh's device count (1 without one), after checking that what it
    splits splits evenly: ``config``'s envs, buffer and batch
    (``over="envs"``), or the ``runs`` (``"runs"``). One line if not."""
    if mesh is None:
        return 1
    if sharding.check_over(over) == "runs":
        sharding.check_runs_divide(runs, mesh)
    else:
        sharding.check_divides(config, mesh)
    return sharding.mesh_axis(mesh)[1]


def _put(host_state: TrainState, mesh, batched=False, over="envs") -> TrainState:
    if mesh is None:
        return jax.device_put(host_state)
    return sharding.put(host_state, mesh, batched=batched, over=over)


def abstract_state(config: LoopConfig) -> TrainState:
    """The shapes and dtypes of a :class:`TrainState` for ``config``
    (``jax.ShapeDtypeStruct`` leaves). For restoring checkpoints, compiling
    ahead of time and estimating memory (:mod:`sacbook.device`).

    Nothing of size N or capacity is allocated, and nothing is compiled: a
    state with one env and one buffer row is built on the host, and the
    leading axes of its env and buffer arrays are set to N and the capacity.
    (The networks are drawn at full size; they are small.)
    """
    rng = np.random.default_rng(0)  # the values are thrown away
    tiny = _host_state(config, rng, rng, num_envs=1, buffer_capacity=1)

    def spec(x, n=None):  # with n: the leading axis (one env or row) becomes n
        shape = np.shape(x) if n is None else (n,) + np.shape(x)[1:]
        return jax.ShapeDtypeStruct(shape, np.asarray(x).dtype)

    def rows(tree, n):
        return jax.tree.map(lambda x: spec(x, n), tree)

    return TrainState(
        sac=jax.tree.map(spec, tiny.sac),
        buffer=jax.tree.map(spec, tiny.buffer).replace(
            data=rows(tiny.buffer.data, config.buffer_capacity)
        ),
        env=rows(tiny.env, config.num_envs),
        obs=spec(tiny.obs, config.num_envs),
        key=jax.eval_shape(lambda: jax.random.key(0)),  # default key type, not compiled
        iteration=spec(tiny.iteration),
    )


def check_state(state: TrainState, config: LoopConfig) -> None:
    """Refuse a state that does not fit ``config`` (another N, network size
    or buffer capacity), with a message that names the mismatch, before it
    can reach the compiled program as a shape error."""
    have = getattr(getattr(state, "sac", None), "config", None)
    if isinstance(have, SACConfig) and have != config.sac:
        diff = [
            f"{f.name} {getattr(have, f.name)!r} in the state, "
            f"{getattr(config.sac, f.name)!r} in the config"
            for f in dataclasses.fields(SACConfig)
            if getattr(have, f.name) != getattr(config.sac, f.name)
        ]
        raise ValueError(
            f"the state does not fit the config: its SAC settings differ "
            f"({'; '.join(diff)})"
        )
    expected = abstract_state(config)
    got_leaves, got_tree = jax.tree_util.tree_flatten_with_path(state)
    want_leaves, want_tree = jax.tree_util.tree_flatten_with_path(expected)
    if got_tree != want_tree:
        raise ValueError(
            "the state does not fit the config: its structure differs "
            "(a state of another kind)"
        )
    for (path, got), (_, want) in zip(got_leaves, want_leaves):
        shape, dtype = np.shape(got), getattr(got, "dtype", None)
        if shape != want.shape or (dtype is not None and dtype != want.dtype):
            where = "state" + jax.tree_util.keystr(path)
            raise ValueError(
                f"the state does not fit the config: {where} is {shape} {dtype} but "
                f"the config needs {want.shape} {want.dtype} "
                f"(check {_field_for(where)})"
            )


def _field_for(where: str) -> str:
    """The config field that sets the shape at ``where`` in a state."""
    if ".buffer" in where:
        return "buffer_capacity (and num_envs)"
    if ".env" in where or where.endswith(".obs"):
        return "num_envs"
    return "the network sizes, sac.hidden_sizes"


def _init_host(config: LoopConfig, key, *, rows_on_device=False) -> TrainState:
    """:func:`init` as NumPy arrays (the run key is already a JAX key); the
    buffer's rows as shapes if ``rows_on_device`` (:func:`_host_state`)."""
    rng = host_random.generator(key, "train")
    sac_rng = host_random.generator(key, "sac")
    capacity = config.buffer_capacity
    state = _host_state(config, sac_rng, rng, config.num_envs, capacity, rows_on_device)
    return state.replace(key=host_random.new_key(rng, like=key))  # drawn after the envs


def _stack(*leaves):  # the runs' leaves along a new run axis; shapes stay shapes
    if isinstance(leaves[0], jax.ShapeDtypeStruct):
        return jax.ShapeDtypeStruct((len(leaves), *leaves[0].shape), leaves[0].dtype)
    return np.stack(leaves)


def _host_state(
    config: LoopConfig,
    sac_rng: np.random.Generator,
    rng: np.random.Generator,
    num_envs: int,
    buffer_capacity: int,
    rows_on_device: bool = False,
) -> TrainState:
    """The state as NumPy arrays for ``num_envs`` envs and ``buffer_capacity``
    buffer rows, networks from ``sac_rng``, envs from ``rng``, ``key`` None
    (the caller draws it). ``rows_on_device``: the empty buffer as shapes,
    made as zeros on the devices (:func:`sacbook.sharding.put`): no host, or
    process of many, ever holds it whole."""
    sac_state = sac.init_host(sac_rng, config.sac)
    env_state, obs = pendulum.reset_host(rng, num_envs, config.env)
    example = replay.Transition(
        obs=np.zeros(3, np.float32),
        action=np.zeros(1, np.float32),
        reward=np.float32(0),
        next_obs=np.zeros(3, np.float32),
        terminated=np.bool_(False),
        truncated=np.bool_(False),
    )
    if rows_on_device:
        buffer = jax.eval_shape(lambda: replay.init(buffer_capacity, example))
    else:
        buffer = replay.init(buffer_capacity, example, on_host=True)
    return TrainState(
        sac=sac_state,
        buffer=buffer,
        env=env_state,
        obs=obs,
        key=None,
        iteration=np.int32(0),
    )


def update_round(
    sac_state,
    buffer,
    key,
    config: LoopConfig,
    hyper=None,  # [sweep]
    axis: Axis = LOCAL,  # [devices]
):
    """K gradient updates on fresh batches, in a ``lax.scan``. Returns the
    new SAC state and the metrics averaged over the K updates.

    Args:
      sac_state, buffer, key: the SAC state, the replay buffer, a PRNG key.
      config: the :class:`~sacbook.config.LoopConfig` (static).
      hyper: see :func:`iteration`.
      axis: on D devices each device draws B/D of each batch from its own
        buffer shard, and :func:`sacbook.sac.update` averages the gradients
        across them.
    """
    batch_size = config.sac.batch_size
    batch_size //= axis.size  # [devices]: each device draws its share

    def one_update(state, k):
        k_batch, k_update = jax.random.split(k)
        batch = replay.sample(buffer, k_batch, batch_size)
        return sac.update(state, batch, k_update, hyper, axis)

    keys = jax.random.split(key, config.updates_per_iteration)
    sac_state, metrics = jax.lax.scan(one_update, sac_state, keys)
    return sac_state, jax.tree.map(jnp.mean, metrics)


def _always_updates(config: LoopConfig) -> bool:
    """True when every iteration updates: one round per iteration, and the
    first iteration's N transitions already start learning. The iteration
    then calls the update round directly; a ``lax.cond`` whose predicate is
    always true would only cost copies of the SAC state (about 5% of a chunk
    on CPU)."""
    first_update = max(config.learning_starts, config.sac.batch_size)
    return config.update_every == 1 and first_update <= config.num_envs


def iteration(
    state: TrainState,
    config: LoopConfig,
    hyper=None,  # [sweep]
    axis: Axis = LOCAL,  # [devices]
):
    """One iteration for all N envs; returns the new state and its metrics.

    Args:
      state: the :class:`TrainState`.
      config: the :class:`~sacbook.config.LoopConfig` (static).
      hyper: traced :class:`~sacbook.sac.Hyperparams` (a sweep) or None.
      axis: the devices the chunk runs on under ``shard_map``
        (:mod:`sacbook.sharding`); then ``state`` holds this device's N/D envs
        and buffer shard, and the networks are the same everywhere.
    """
    n = state.obs.shape[0]  # the N envs (on D devices: this device's N / D)
    key, k_act, k_env, k_update = jax.random.split(state.key, 4)
    # [devices]: the key is replicated; each device needs its own
    k_act, k_env, k_update = map(axis.fold_in, (k_act, k_env, k_update))  # [devices]

    def random_action(k):
        return jax.random.uniform(k, (n, 1), jnp.float32, -1.0, 1.0)

    def explore_action(k):  # a sample of the policy: the squashed Gaussian
        mean, log_std = config.sac.actor().apply(state.sac.actor_params, state.obs)
        return networks.sample_action(k, mean, log_std)[0]

    warming_up = state.iteration < config.warmup_iterations
    action = jax.lax.cond(warming_up, random_action, explore_action, k_act)
    torque = networks.scale_action(action[:, 0], config.env.max_torque)
    env_state, result = pendulum.env_step(state.env, torque, k_env, config.env)
    buffer = replay.add(
        state.buffer,
        replay.Transition(
            obs=state.obs,
            action=action,
            reward=result.reward,
            # the true next observation, even at a time limit
            next_obs=result.final_obs,
            terminated=result.terminated,
            truncated=result.truncated,
        ),
    )

    filled = buffer.size  # transitions in the buffer
    filled *= axis.size  # [devices]: every device's shard holds as many rows
    should_update = filled >= max(config.learning_starts, config.sac.batch_size)
    should_update &= state.iteration % config.update_every == 0
    update = partial(update_round, config=config, hyper=hyper, axis=axis)

    def skip(sac_state, buffer, key):
        return sac_state, {name: jnp.float32(0) for name in sac.METRIC_NAMES}

    if _always_updates(config):
        sac_state, metrics = update(state.sac, buffer, k_update)
    else:
        sac_state, metrics = jax.lax.cond(
            should_update, update, skip, state.sac, buffer, k_update
        )
    done = result.terminated | result.truncated
    totals = {
        "episodes_done": jnp.sum(done),
        "episode_return_sum": jnp.sum(jnp.where(done, result.episode_return, 0.0)),
    }
    reward_mean = jnp.mean(result.reward)
    totals = axis.sum(totals)  # [devices]: over all devices' envs
    reward_mean = axis.mean(reward_mean)  # [devices]
    metrics = {
        **metrics,
        "updated": should_update,
        **totals,
        "reward_mean": reward_mean,
    }
    new_state = TrainState(
        sac=sac_state,
        buffer=buffer,
        env=env_state,
        obs=result.obs,
        key=key,
        iteration=state.iteration + 1,
    )
    return new_state, metrics


def run_chunk(
    state: TrainState,
    config: LoopConfig,
    hyper=None,  # [sweep]
    axis: Axis = LOCAL,  # [devices]
):
    """``config.chunk_iterations`` iterations in one ``lax.scan``.

    Returns ``(state, metrics)``, each metric of shape ``(chunk_iterations,)``.

    Args:
      hyper, axis: see :func:`iteration`.
    """

    def step(state, _):
        return iteration(state, config, hyper, axis)

    return jax.lax.scan(step, state, None, length=config.chunk_iterations)


def parallel_chunk(
    state, config: LoopConfig, hyper=None, *, mesh, batched: bool, over="envs"
):
    """:func:`run_chunk` for a batch of runs (``batched``: every leaf has a
    leading run axis, and so has ``hyper`` if given) and/or across the
    devices of ``mesh``, which split each run's envs (``over="envs"``) or
    the runs (``"runs"``): :func:`sacbook.sharding.parallel`."""

    def one_run(state, hyper, axis):
        return run_chunk(state, config, hyper, axis)

    return sharding.parallel(
        one_run, state, hyper, mesh=mesh, batched=batched, over=over
    )


@functools.cache
def chunk_program(
    mesh: jax.sharding.Mesh | None = None, batched: bool = False, over: str = "envs"
) -> jit.Program:
    """The compiled chunk ``(state, config, hyper=None) -> (state, metrics)``.

    ``mesh``: split each run over its devices (None: one device), or, with
    ``over="runs"``, spread the runs over them.
    ``batched``: the state has a leading run axis (seeds, or the settings of
    a sweep, with ``hyper`` stacked the same way). One program per pair,
    each compiled once per :class:`LoopConfig`: pass ``config.loop``, so a
    ``TrainConfig``'s run length never recompiles. ``state`` is donated
    (the old one must not be used again).
    """
    if mesh is None and not batched:
        fun = run_chunk  # one run on one device: no vmap, no shard_map
    else:
        fun = partial(parallel_chunk, mesh=mesh, batched=batched, over=over)
    return jit.Program(fun, static_argnums=1, donate_argnums=0)
