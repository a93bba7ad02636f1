"""The compiled training program: its config, its state, one iteration, a chunk.

One *iteration* does, for all N environments at once:

1. the shared policy acts (random actions during warm-up);
2. the batched environment steps, auto-resetting at the time limit;
3. the replay buffer takes the N transitions;
4. K gradient updates run in an inner ``lax.scan`` (every ``update_every``
   iterations, once the buffer holds ``learning_starts`` transitions).

:func:`run_chunk` runs ``chunk_iterations`` iterations in a ``lax.scan``;
:func:`run_chunk_jit` is that chunk as one compiled call, with the training
state donated. Everything here is pure and runs on the device; the host
drives it chunk by chunk in :mod:`sacbook.train`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from sacbook import (
    checks,
    device,
    host_random,
    jit,
    networks,
    pendulum,
    replay,
    sac,
    sharding,
)
from sacbook.pendulum import PendulumParams
from sacbook.sac import SACConfig


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    """Everything that shapes the compiled training program, and nothing else.

    Frozen, hashable, validated here; the static argument of the compiled
    chunk, so each distinct config compiles once. The seed and the run's
    length are not in it: a new seed, a longer run or a resumed one reuses
    the compiled program.

    Attributes:
      env: pendulum parameters (a preset).
      sac: SAC hyperparameters.
      num_envs: N environments stepped in parallel, >= 1.
      buffer_capacity: replay capacity in transitions, >= max(N, batch size).
      warmup_env_steps: uniform random actions until this many env steps, >= 0.
      learning_starts: no updates until the buffer holds this many
        transitions (and at least the batch size).
      updates_per_iteration: K gradient updates per update round, >= 1.
      update_every: iterations between update rounds, >= 1. ``K /
        update_every`` is the number of updates per iteration, so ratios
        below one are ``updates_per_iteration=1, update_every=4`` and the like.
      chunk_iterations: iterations per compiled chunk, >= 1.
    """

    # Defaults: the massively parallel recipe, chosen by the study in Chapter 4
    # (time-to-solve on a 2-core CPU): 1024 envs, 16 updates of 96 per
    # iteration, tau 0.03 (K * tau <= 0.5 kept every seed stable).
    env: PendulumParams = PendulumParams.gymnasium()
    sac: SACConfig = SACConfig(batch_size=96, tau=0.03)
    num_envs: int = 1024
    buffer_capacity: int = 1_000_000
    warmup_env_steps: int = 1024
    learning_starts: int = 1024
    updates_per_iteration: int = 16
    update_every: int = 1
    chunk_iterations: int = 20

    def __post_init__(self):
        name = type(self).__name__
        if not isinstance(self.env, PendulumParams):
            raise ValueError(
                f"{name}.env must be a PendulumParams, got {type(self.env).__name__}"
            )
        if not isinstance(self.sac, SACConfig):
            raise ValueError(
                f"{name}.sac must be a SACConfig, got {type(self.sac).__name__}"
            )
        if self.sac.obs_dim != 3 or self.sac.action_dim != 1:
            raise ValueError(
                "SACConfig.obs_dim and action_dim must be 3 and 1 for the pendulum"
            )
        # int32 on the device: the buffer's row indices reach capacity + N
        n = self._set_int("num_envs", 1, checks.INT32_MAX // 2)
        capacity = self._set_int("buffer_capacity", 1, checks.INT32_MAX - n)
        if capacity < n:
            raise ValueError(
                f"{name}.buffer_capacity ({capacity}) must be >= num_envs ({n})"
            )
        if self.sac.batch_size > capacity:
            raise ValueError(
                f"SACConfig.batch_size ({self.sac.batch_size}) must be <= "
                f"buffer_capacity ({capacity})"
            )
        self._set_int("warmup_env_steps", 0)
        self._set_int("learning_starts", 0, checks.INT32_MAX)
        for field in ("updates_per_iteration", "update_every", "chunk_iterations"):
            self._set_int(field, 1, checks.INT32_MAX)

    def _set_int(self, field: str, low: int, high: int | None = None) -> int:
        """Check an integer field; store it as a Python int (so NumPy
        integers hash and print like the same config given as ints)."""
        value = checks.integer(
            f"{type(self).__name__}.{field}", getattr(self, field), low, high
        )
        object.__setattr__(self, field, value)
        return value

    @property
    def loop(self) -> LoopConfig:
        """The fields of :class:`LoopConfig` alone (itself, for a LoopConfig):
        what the compiled chunk is keyed on."""
        if type(self) is LoopConfig:
            return self
        return LoopConfig(
            **{f.name: getattr(self, f.name) for f in dataclasses.fields(LoopConfig)}
        )

    @property
    def updates_per_env_step(self) -> float:
        return self.updates_per_iteration / (self.update_every * self.num_envs)

    @property
    def warmup_iterations(self) -> int:
        """Iterations of random actions: ``ceil(warmup_env_steps / N)``,
        compared with the int32 iteration counter (never overflows)."""
        return min(math.ceil(self.warmup_env_steps / self.num_envs), checks.INT32_MAX)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


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
    config: LoopConfig,
    key: jax.Array,
    *,
    check_memory: bool = True,
    mesh: jax.sharding.Mesh | None = None,
) -> TrainState:
    """A fresh run: new networks, an empty buffer, N freshly reset envs.

    Built on the host with NumPy and moved to the device in one transfer:
    nothing is compiled, so a cold start pays only for the training program
    (see :mod:`sacbook.host_random`). ``key`` must be concrete. With a
    ``mesh``, the state is placed on its devices as :mod:`sacbook.sharding`
    designs (and the config must divide evenly over them).

    First, unless ``check_memory=False``, :func:`sacbook.device.check_fits`
    raises :class:`sacbook.device.RunTooLargeError` (a ``ValueError``) if the
    run would not fit in the device's memory: at once, instead of being
    killed by the operating system minutes later.
    """
    devices = _check_mesh(config, mesh)
    if check_memory:
        device.check_fits(config, devices=devices)
    return _put(_init_host(config, key), mesh)


def init_runs(
    config: LoopConfig,
    keys,
    *,
    sac_configs=None,
    check_memory: bool = True,
    mesh: jax.sharding.Mesh | None = None,
) -> TrainState:
    """R fresh runs as one state with a leading run axis on every leaf, for
    the batched chunk (:func:`parallel_chunk_program` with ``batched``).

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
    devices = _check_mesh(config, mesh)
    if check_memory:
        device.check_fits(config, runs=len(keys), devices=devices)
    runs = [
        _init_host(config.replace(sac=sac_config), key)
        for sac_config, key in zip(sac_configs, keys, strict=True)
    ]
    runs = [run.replace(sac=run.sac.replace(config=config.sac)) for run in runs]
    keys = jnp.stack([run.key for run in runs])  # typed keys: stacked by JAX
    runs = [run.replace(key=None) for run in runs]
    stacked = jax.tree.map(lambda *leaves: np.stack(leaves), *runs)
    return _put(stacked.replace(key=keys), mesh, batched=True)


def _check_mesh(config: LoopConfig, mesh) -> int:
    """The mesh's device count (1 without one), after checking that
    ``config`` splits evenly over it."""
    if mesh is None:
        return 1
    sharding.check_divides(config, mesh)
    return sharding.mesh_axis(mesh)[1]


def _put(host_state: TrainState, mesh, batched: bool = False) -> TrainState:
    if mesh is None:
        return jax.device_put(host_state)
    return sharding.put(host_state, mesh, batched=batched)


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


def _init_host(config: LoopConfig, key: jax.Array) -> TrainState:
    """:func:`init` as NumPy arrays (the run key is already a JAX key)."""
    rng = host_random.generator(key, "train")
    state = _host_state(
        config,
        host_random.generator(key, "sac"),
        rng,
        config.num_envs,
        config.buffer_capacity,
    )
    return state.replace(key=host_random.new_key(rng, like=key))  # drawn after the envs


def _host_state(
    config: LoopConfig,
    sac_rng: np.random.Generator,
    rng: np.random.Generator,
    num_envs: int,
    buffer_capacity: int,
) -> TrainState:
    """The state as NumPy arrays for ``num_envs`` envs and ``buffer_capacity``
    buffer rows, networks drawn from ``sac_rng``, envs from ``rng``; its
    ``key`` is None (the caller draws it)."""
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
    return TrainState(
        sac=sac_state,
        buffer=replay.init(buffer_capacity, example, on_host=True),
        env=env_state,
        obs=obs,
        key=None,
        iteration=np.int32(0),
    )


def _collective_axis(axis) -> tuple[str | None, int]:
    """``(name, D)`` of the device axis, with no name when there is nothing to
    communicate (one device): a one-device mesh then runs exactly the
    single-device program, bit for bit."""
    name, devices = axis or (None, 1)
    return (name if devices > 1 else None), devices


def _update_round(sac_state, buffer, key, config: LoopConfig, hyper=None, axis=None):
    """K gradient updates on fresh batches, in a ``lax.scan``. Returns the
    new SAC state and the metrics averaged over the K updates.

    On D devices (``axis = (name, D)``) each device draws B/D of each batch
    from its own buffer shard, and :func:`sacbook.sac.update` averages the
    gradients across them."""
    axis_name, devices = _collective_axis(axis)
    batch_size = config.sac.batch_size // devices

    def one_update(state, k):
        k_batch, k_update = jax.random.split(k)
        batch = replay.sample(buffer, k_batch, batch_size)
        return sac.update(state, batch, k_update, hyper, axis_name)

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


def _iteration(state: TrainState, _, config: LoopConfig, hyper=None, axis=None):
    """One iteration for all N envs; returns the new state and its metrics.

    ``hyper``: traced :class:`~sacbook.sac.Hyperparams` (a sweep) or None.
    ``axis``: ``(name, D)`` when the chunk runs under ``shard_map`` on D
    devices (:mod:`sacbook.sharding`): then ``state`` holds this device's
    N/D envs and buffer shard, and the networks are the same everywhere.
    """
    axis_name, devices = _collective_axis(axis)
    n = state.obs.shape[0]  # this device's envs: N / D
    key, k_act, k_env, k_update = jax.random.split(state.key, 4)
    if axis_name is not None:  # the key is replicated; each device needs its own
        shard = jax.lax.axis_index(axis_name)
        k_act, k_env, k_update = (
            jax.random.fold_in(k, shard) for k in (k_act, k_env, k_update)
        )

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

    # every shard holds the same number of rows: D * size in all
    filled = buffer.size * devices
    should_update = filled >= max(config.learning_starts, config.sac.batch_size)
    should_update &= state.iteration % config.update_every == 0

    def skip(sac_state, buffer, key):
        return sac_state, {name: jnp.float32(0) for name in sac.METRIC_NAMES}

    if _always_updates(config):
        sac_state, metrics = _update_round(
            state.sac, buffer, k_update, config, hyper, axis
        )
    else:
        update = partial(_update_round, config=config, hyper=hyper, axis=axis)
        sac_state, metrics = jax.lax.cond(
            should_update, update, skip, state.sac, buffer, k_update
        )
    done = result.terminated | result.truncated
    totals = {
        "episodes_done": jnp.sum(done),
        "episode_return_sum": jnp.sum(jnp.where(done, result.episode_return, 0.0)),
    }
    reward_mean = jnp.mean(result.reward)
    if axis_name is not None:  # over all devices' envs
        totals = jax.lax.psum(totals, axis_name)
        reward_mean = jax.lax.pmean(reward_mean, axis_name)
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


def run_chunk(state: TrainState, config: LoopConfig, hyper=None, axis=None):
    """``config.chunk_iterations`` iterations in one ``lax.scan``.

    Returns ``(state, metrics)``, each metric of shape ``(chunk_iterations,)``.
    ``hyper`` and ``axis``: see :func:`_iteration`.
    """
    step = partial(_iteration, config=config, hyper=hyper, axis=axis)
    return jax.lax.scan(step, state, None, length=config.chunk_iterations)


chunk_program = jit.Program(run_chunk, static_argnums=1, donate_argnums=0)


def run_chunk_jit(state: TrainState, config: LoopConfig):
    """:func:`run_chunk` as one compiled call, with ``state`` donated (the old
    one must not be used again). Compiled once per :class:`LoopConfig`: a
    ``TrainConfig`` is keyed on its loop fields alone (``config.loop``), so
    its run length never recompiles."""
    return chunk_program(state, config.loop)


def _parallel_chunk(state, config: LoopConfig, hyper=None, *, mesh, batched: bool):
    """:func:`run_chunk` for a batch of runs (``batched``: every leaf has a
    leading run axis, and so has ``hyper`` if given) and/or across the
    devices of ``mesh`` (``shard_map``; see :mod:`sacbook.sharding`)."""
    axis = None if mesh is None else sharding.mesh_axis(mesh)

    def local(state, hyper):
        return run_chunk(state, config, hyper, axis)

    if batched:
        local = jax.vmap(local, in_axes=(0, None if hyper is None else 0))
    if mesh is None:
        return local(state, hyper)
    specs = sharding.state_specs(state, axis[0], batched=batched)
    replicated = jax.sharding.PartitionSpec()
    return jax.shard_map(
        lambda state: local(state, hyper),  # hyper: the same on every device
        mesh=mesh,
        in_specs=(specs,),
        out_specs=(specs, replicated),  # metrics are already summed/averaged
        check_vma=False,
    )(state)


@functools.cache
def parallel_chunk_program(mesh=None, batched: bool = False) -> jit.Program:
    """The compiled chunk ``(state, config, hyper=None) -> (state, metrics)``
    for ``mesh`` (None: one device) and, with ``batched``, a leading run axis
    (seeds, or the settings of a sweep). One program per pair, each compiled
    once per config; ``state`` is donated."""
    if mesh is None and not batched:
        return chunk_program
    return jit.Program(
        partial(_parallel_chunk, mesh=mesh, batched=batched),
        static_argnums=1,
        donate_argnums=0,
    )
