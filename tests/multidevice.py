"""Checks of a sharded run on 4 virtual CPU devices, run in a subprocess by
tests/test_sharding.py (the device count is fixed when JAX starts).

Prints one JSON object: each check's name and its measured answer.
"""

import json
import os
import sys
import tempfile
import tracemalloc

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
)

import jax  # noqa: E402
import numpy as np  # noqa: E402
from conftest import MANY, SMALL, same_state, without_times  # noqa: E402
from jax.sharding import NamedSharding  # noqa: E402

from sacbook import checkpoint, loop, sac, sharding, train  # noqa: E402


def spec_of(x):
    return tuple(x.sharding.spec) + (None,) * (x.ndim - len(x.sharding.spec))


def error_of(fn):
    try:
        fn()
    except ValueError as e:
        return str(e)
    return None


def main():
    out = {"devices": len(jax.devices())}
    mesh = jax.make_mesh((4,), ("shards",))  # any axis name

    # 1. where each leaf lives
    state = loop.init(SMALL, jax.random.key(0), mesh=mesh)
    out["specs"] = {
        "buffer.obs": spec_of(state.buffer.data.obs),
        "buffer.reward": spec_of(state.buffer.data.reward),
        "buffer.size": spec_of(state.buffer.size),
        "env.theta": spec_of(state.env.theta),
        "obs": spec_of(state.obs),
        "actor_kernel": spec_of(jax.tree.leaves(state.sac.actor_params)[0]),
        "critic_opt_mu": spec_of(jax.tree.leaves(state.sac.critic_opt_state)[1]),
        "log_alpha": spec_of(state.sac.log_alpha),
    }
    out["shard_rows"] = sorted(
        {s.data.shape[0] for s in state.buffer.data.obs.addressable_shards}
    )

    # the host builds no buffer: its rows are made as zeros on the devices
    big = SMALL.replace(buffer_capacity=2**20)  # 34 MiB of rows a run
    keys = [jax.random.key(i) for i in range(4)]
    tracemalloc.start()
    spread = loop.init_runs(big, keys, mesh=mesh, over="runs")
    split = loop.init_runs(big, keys, mesh=mesh)
    one = loop.init(big, jax.random.key(0), mesh=mesh)
    out["host_peak_bytes"] = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    out["buffer_bytes"] = sum(x.nbytes for x in jax.tree.leaves(one.buffer.data))
    out["buffers_empty"] = all(
        not np.asarray(x).any() for x in jax.tree.leaves((spread.buffer, split.buffer))
    )
    out["buffer_specs"] = [
        spec_of(spread.buffer.data.obs),
        spec_of(split.buffer.data.obs),
        spec_of(one.buffer.data.obs),
    ]
    del spread, split, one

    # 2. no host transfers inside a chunk, no recompiles between chunks
    program = loop.chunk_program(mesh)
    state, _ = program(state, SMALL.loop)
    jax.block_until_ready(state)
    compiles = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, seconds, **_: (
            compiles.append(event)
            if event == "/jax/core/compile/backend_compile_duration"
            else None
        )
    )
    with jax.transfer_guard("disallow"):
        for _ in range(3):
            state, metrics = program(state, SMALL.loop)
        jax.block_until_ready((state, metrics))
    out["compiles_after_first_chunk"] = len(compiles)
    out["updated_all"] = bool(np.asarray(metrics["updated"]).all())
    out["specs_after"] = {
        "buffer.obs": spec_of(state.buffer.data.obs),
        "actor_kernel": spec_of(jax.tree.leaves(state.sac.actor_params)[0]),
    }
    # the replicated networks are the same on every device
    kernel = jax.tree.leaves(state.sac.actor_params)[-1]
    copies = [np.asarray(s.data) for s in kernel.addressable_shards]
    out["replicas_identical"] = all(np.array_equal(copies[0], c) for c in copies)

    # 3. a one-device mesh is the plain run, bit for bit
    one = jax.make_mesh((1,), ("d",), devices=jax.devices()[:1])
    plain = train.train(SMALL, 5, progress=False)
    meshed = train.train(SMALL, 5, progress=False, mesh=one)
    out["one_device_identical"] = same_state(plain.state, meshed.state) and (
        as_json(plain.history) == as_json(meshed.history)
    )

    # 4. checkpoints save and resume a sharded run, bit for bit
    full = train.train(SMALL, 2, progress=False, mesh=mesh)
    with tempfile.TemporaryDirectory() as folder:
        half = SMALL.replace(total_env_steps=64 * 20)
        train.train(half, 2, progress=False, mesh=mesh, checkpoint_dir=folder)
        out["resume_without_mesh"] = error_of(lambda: checkpoint.restore(folder))
        state, config, seed, history = checkpoint.restore(folder, mesh=mesh)
        out["restored_spec"] = spec_of(state.buffer.data.obs)
        resumed = train.train(
            SMALL, seed, state=state, history=history, progress=False, mesh=mesh
        )
    out["resume_identical"] = same_state(full.state, resumed.state) and [
        h["eval_return"] for h in full.history
    ] == [h["eval_return"] for h in resumed.history]

    # 5. seeds on the mesh: each run as train() on the mesh
    seeds = train.train_seeds(SMALL, [2, 3], progress=False, mesh=mesh)
    first, alone = seeds[0].history[0], full.history[0]
    out["seeds_on_mesh_rel"] = max(
        abs(first[k] - alone[k]) / max(abs(alone[k]), 1e-12)
        for k in ("critic_loss", "actor_loss", "q_mean", "entropy", "reward_mean")
    )

    # 6. runs spread over the devices: each device trains its own runs
    alone = train.train_seeds(MANY, range(4), progress=False)
    spread = train.train_seeds(MANY, range(4), progress=False, mesh=mesh, over="runs")
    keys = ("critic_loss", "actor_loss", "q_mean", "entropy", "eval_return")
    out["runs_over_devices_rel"] = max(
        abs(a[k] - b[k]) / max(abs(a[k]), 1e-12)
        for x, y in zip(alone, spread)
        for a, b in zip(x.history, y.history)
        for k in keys
        if k in a
    )
    out["runs_over_devices_seeds"] = [r.seed for r in spread]
    state = loop.init_runs(
        MANY, [jax.random.key(s) for s in range(4)], mesh=mesh, over="runs"
    )
    out["runs_specs"] = {
        "buffer.obs": spec_of(state.buffer.data.obs),
        "actor_kernel": spec_of(jax.tree.leaves(state.sac.actor_params)[0]),
        "log_alpha": spec_of(state.sac.log_alpha),
    }
    out["runs_one_per_device"] = sorted(
        s.data.shape[0] for s in state.sac.log_alpha.addressable_shards
    )
    program = loop.chunk_program(mesh, batched=True, over="runs")
    state, _ = program(state, MANY.loop)
    before = len(compiles)  # XLA compilations, counted by section 2's listener
    with jax.transfer_guard("disallow"):
        for _ in range(2):
            state, metrics = program(state, MANY.loop)
        jax.block_until_ready((state, metrics))
    out["runs_recompiles"] = len(compiles) - before
    out["runs_metrics_shape"] = list(np.shape(metrics["critic_loss"]))
    sweep = train.sweep(
        MANY,
        [{"tau": 0.01}, {"tau": 0.05}],
        [0, 1],
        progress=False,
        mesh=mesh,
        over="runs",
    )
    out["sweep_over_devices"] = [[r.config.sac.tau for r in row] for row in sweep]

    # 7. bad input
    out["errors"] = {
        "num_envs": error_of(
            lambda: loop.init(SMALL.replace(num_envs=66), jax.random.key(0), mesh=mesh)
        ),
        "batch": error_of(
            lambda: train.train(
                SMALL.replace(sac=sac.SACConfig(hidden_sizes=(16, 16), batch_size=66)),
                0,
                mesh=mesh,
                progress=False,
            )
        ),
        "two_axes": error_of(
            lambda: train.train(
                SMALL, 0, mesh=jax.make_mesh((2, 2), ("a", "b")), progress=False
            )
        ),
        "make_mesh": error_of(lambda: sharding.make_mesh(5)),
        "runs_divide": error_of(
            lambda: train.train_seeds(
                MANY, range(3), progress=False, mesh=mesh, over="runs"
            )
        ),
        "over": error_of(
            lambda: train.train_seeds(MANY, range(4), mesh=mesh, over="seeds")
        ),
    }

    # 8. the collective axis of the mesh: means, sums and a key per device
    out["axis"] = axis_report(mesh)

    # (that four devices solve the task with the default recipe is checked by
    # Chapter 4's live four-device cell, which nbval executes)
    json.dump(out, sys.stdout)


def axis_report(mesh):
    """What ``sharding.collective_axis(mesh)`` computes under ``shard_map``:
    each of the 4 devices holds 2 of the values 0..7 and folds key 0."""
    axis = sharding.collective_axis(mesh)
    spec = jax.sharding.PartitionSpec

    def per_device(x, key):  # x: this device's (2,)
        key_data = jax.random.key_data(axis.fold_in(key))
        return axis.mean(x), axis.sum(x), key_data[None]

    mean, total, keys = jax.shard_map(
        per_device,
        mesh=mesh,
        in_specs=(spec("shards"), spec()),
        out_specs=(spec(), spec(), spec("shards")),
        check_vma=False,
    )(
        jax.device_put(
            np.arange(8, dtype=np.float32), NamedSharding(mesh, spec("shards"))
        ),
        jax.device_put(jax.random.key(0), NamedSharding(mesh, spec())),
    )
    expected_keys = [
        jax.random.key_data(jax.random.fold_in(jax.random.key(0), i)).tolist()
        for i in range(4)
    ]
    return {
        "kind": [type(axis).__name__, axis.size, axis.name],
        "mean": np.asarray(mean).tolist(),
        "sum": np.asarray(total).tolist(),
        "keys": np.asarray(keys).tolist(),
        "keys_expected": expected_keys,
    }


def as_json(history):
    """A history as JSON (NaN == NaN there) without its wall-clock fields."""
    return json.dumps(without_times(history))


if __name__ == "__main__":
    main()
