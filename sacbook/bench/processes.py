"""Many devices and many processes: what spreading runs and averaging
gradients across processes cost (``sacbook bench --processes``).

* :func:`runs_over_devices_throughput`: R runs as one program on one
  device, against the same R runs spread over D devices (``over="runs"``,
  R/D whole runs per device, nothing communicated), timed in turn.
* :func:`gradient_mean_seconds`: one mean of the SAC gradients (every
  parameter of the actor and the twin critics, the shapes of ``config``)
  over every device of the job, the one collective a run split over devices
  (``over="envs"``) pays per update; with ``coordinator`` given, the process
  first joins a ``jax.distributed`` job.
* :func:`gradient_mean_across_processes`: that mean timed in P processes of
  D virtual CPU devices each, joined through ``jax.distributed`` on this
  machine (Gloo), and in one process of P x D devices, side by side.

On virtual CPU devices all devices share the same cores: these figures show
the mechanism and its overhead, not a speed-up.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from sacbook import distributed, loop, sharding
from sacbook.bench.isolated import MARK, call_in_fresh_process, virtual_cpu_env
from sacbook.bench.measure import _Chunks, _interleaved_rates, _updating
from sacbook.bench.timing import MIN_WINDOW_SECONDS, ratio_stats
from sacbook.config import TrainConfig


def runs_over_devices_throughput(
    config: TrainConfig | None = None,
    *,
    runs: int = 8,
    devices: int = 4,
    num_envs: int = 256,
    pairs: int = 3,
    min_seconds: float = MIN_WINDOW_SECONDS,
) -> dict:
    """Env-steps/s of ``runs`` runs (default: the default recipe with
    ``num_envs`` envs, updates running) as one program on one device, and
    spread over ``devices`` devices (R/D whole runs each), timed in turn;
    the ratio per round."""
    config = config or TrainConfig(num_envs=num_envs, buffer_capacity=256 * num_envs)
    config = _updating(config)
    keys = [jax.random.key(seed) for seed in range(runs)]
    mesh = sharding.make_mesh(devices)
    one = _Chunks(
        loop.chunk_program(batched=True), loop.init_runs(config, keys), config
    )
    state = loop.init_runs(config, keys, mesh=mesh, over="runs")
    spread = _Chunks(loop.chunk_program(mesh, batched=True, over="runs"), state, config)
    one.run(1)
    spread.run(1)
    steps = runs * config.chunk_iterations * config.num_envs
    one_rates, spread_rates = _interleaved_rates(
        [one.run, spread.run], [steps, steps], pairs, min_seconds
    )
    return {
        "runs": runs,
        "devices": devices,
        "num_envs": config.num_envs,
        "platform": jax.devices()[0].platform,
        "virtual_devices": "xla_force_host_platform_device_count"
        in os.environ.get("XLA_FLAGS", ""),
        "one_device_env_steps_per_second": max(one_rates),
        "spread_env_steps_per_second": max(spread_rates),
        "ratio": ratio_stats(
            [s / o for s, o in zip(spread_rates, one_rates)],
            f"env-steps/s of {runs} runs spread over {devices} devices / on one "
            "device, per round",
        ),
    }


def runs_over_devices_virtual(devices: int = 4, **kwargs) -> dict:
    """:func:`runs_over_devices_throughput` in a fresh process with
    ``devices`` virtual CPU devices."""
    kwargs["devices"] = devices
    result, _ = call_in_fresh_process(
        "runs_over_devices_throughput", kwargs, env=virtual_cpu_env(devices)
    )
    return result


def gradient_mean_seconds(
    config: TrainConfig | None = None,
    *,
    repeats: int = 30,
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> dict:
    """Seconds of one mean, over every device of the job, of a tree shaped
    like the gradients of ``config``'s networks (default recipe): the median
    of ``repeats`` calls, each waited for. ``coordinator``: join a
    ``jax.distributed`` job of ``num_processes`` first."""
    if coordinator is not None:
        distributed.initialize(coordinator, num_processes, process_id, timeout=60)
    config = config or TrainConfig()
    abstract = loop.abstract_state(config).sac
    grads = {"critic": abstract.critic_params, "actor": abstract.actor_params}
    mesh = sharding.make_mesh("all")
    axis = sharding.collective_axis(mesh)
    replicated = jax.tree.map(lambda x: PartitionSpec(), grads)
    where = NamedSharding(mesh, PartitionSpec())
    tree = jax.tree.map(
        lambda x: jax.make_array_from_callback(
            x.shape, where, lambda i: np.ones(x.shape, x.dtype)[i]
        ),
        grads,
    )
    mean = jax.jit(
        jax.shard_map(
            axis.mean,
            mesh=mesh,
            in_specs=(replicated,),
            out_specs=replicated,
            check_vma=False,
        )
    )
    jax.block_until_ready(mean(tree))  # compiled and warmed up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(mean(tree))
        times.append(time.perf_counter() - t0)
    distributed.end()
    return {
        "processes": jax.process_count(),
        "devices": jax.device_count(),
        "bytes": int(sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(grads))),
        "seconds": float(np.median(times)),
    }


def gradient_mean_across_processes(
    processes: int = 2, devices: int = 2, *, repeats: int = 30, timeout: float = 300
) -> dict:
    """:func:`gradient_mean_seconds` in ``processes`` fresh processes of
    ``devices`` virtual CPU devices each, joined on this machine, and in one
    fresh process of ``processes x devices`` devices. Returns both results
    and the ratio (across processes / in one process)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    child = (
        "import json, sys; from sacbook import bench; "
        "r = bench.gradient_mean_seconds(**json.loads(sys.argv[1])); "
        f"print({MARK!r} + json.dumps(r))"
    )
    procs = []
    for i in range(processes):
        kwargs = dict(repeats=repeats, coordinator=f"127.0.0.1:{port}")
        kwargs.update(num_processes=processes, process_id=i)
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", child, json.dumps(kwargs)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=virtual_cpu_env(devices),
                start_new_session=True,
            )
        )
    try:
        outputs = [p.communicate(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    lines = [line for out, _ in outputs for line in out.splitlines()]
    marked = [line for line in lines if line.startswith(MARK)]
    if len(marked) != processes:
        raise RuntimeError(
            f"gradient mean across {processes} processes failed:\n"
            + outputs[0][1][-2000:]
        )
    across = json.loads(marked[0][len(MARK) :])
    alone, _ = call_in_fresh_process(
        "gradient_mean_seconds",
        dict(repeats=repeats),
        env=virtual_cpu_env(processes * devices),
    )
    return {
        "across_processes": across,
        "one_process": alone,
        "ratio": across["seconds"] / alone["seconds"],
    }
