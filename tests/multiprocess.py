"""One process of a job over several processes, run by tests/test_distributed.py
(``python multiprocess.py PROCESS PROCESSES DEVICES PORT OUT``): PROCESSES
processes with DEVICES virtual CPU devices each join through
``jax.distributed`` (PROCESSES = 1: one process alone) and train on the
global mesh:

1. a data-parallel run (each run's envs split over the 4 devices);
2. a sweep spread over the devices (whole runs per device);
3. with several processes, the first half of run 1 saved to a checkpoint,
   restored, and trained to the end (every process saves and reads its
   shards in one shared folder);
4. with several processes, that checkpoint again, with NaN angles in the
   last process's environments only: every process must stop at the same
   chunk with the same line, none left waiting in a collective.

Writes OUT/report_PROCESS.json: each run's history without wall-clock fields.
"""

import json
import os
import sys
from pathlib import Path

PROCESS, PROCESSES, DEVICES, PORT, OUT = sys.argv[1:6]
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "")
    + f" --xla_force_host_platform_device_count={DEVICES}"
)

import jax  # noqa: E402
import numpy as np  # noqa: E402
from conftest import MANY, SMALL, without_times  # noqa: E402

from sacbook import (  # noqa: E402
    checkpoint,
    distributed,
    jit,
    records,
    sharding,
    train,
)

SETTINGS = [{"tau": 0.01}, {"tau": 0.05}]


def main():
    process, processes = int(PROCESS), int(PROCESSES)
    if processes > 1:
        distributed.initialize(f"127.0.0.1:{PORT}", processes, process, timeout=30)
    jit.keep_compiled_programs(os.environ["SACBOOK_TEST_CACHE"])
    mesh = sharding.make_mesh("all")
    out = {"processes": jax.process_count(), "devices": jax.device_count()}
    out["local_devices"] = jax.local_device_count()

    # 1. one run, its envs and buffer split over every process's devices
    full = train.train(SMALL, 2, progress=False, mesh=mesh)
    out["data_parallel"] = without_times(full.history)
    rows = full.state.buffer.data.obs.addressable_shards
    out["buffer_rows_here"] = sum(s.data.shape[0] for s in rows)

    # 2. a sweep, whole runs per device, each run's checkpoint saved whole
    folders = [Path(OUT) / f"sweep_{k}" for k in range(2 * len(SETTINGS))]
    sweep = train.sweep(
        MANY,
        SETTINGS,
        [0, 1],
        progress=False,
        mesh=mesh,
        over="runs",
        checkpoint_dirs=folders,
    )
    out["sweep"] = [without_times(r.history) for row in sweep for r in row]
    distributed.barrier("sweep-saved")
    out["sweep_checkpoints"] = [
        json.loads(next(folder.glob("*/meta/metadata")).read_text())
        for folder in folders
    ]

    # 3. stop half-way with a checkpoint, restore it, train to the end
    if processes > 1:
        folder = Path(OUT) / "checkpoint"
        half = SMALL.replace(total_env_steps=SMALL.total_env_steps // 2)
        train.train(half, 2, progress=False, mesh=mesh, checkpoint_dir=folder)
        state, config, seed, history = checkpoint.restore(folder, mesh=mesh)
        resumed = train.train(
            SMALL, seed, state=state, history=history, progress=False, mesh=mesh
        )
        out["resumed"] = without_times(resumed.history)
        out["checkpoint_processes"] = json.loads(
            next(folder.glob("*/meta/metadata")).read_text()
        )["processes"]

        # 4. a NaN on one process's devices only
        state, config, seed, history = checkpoint.restore(folder, mesh=mesh)
        theta = state.env.theta
        poison = np.nan if process == processes - 1 else 1.0
        pieces = [s.data * poison for s in theta.addressable_shards]
        theta = jax.make_array_from_single_device_arrays(
            theta.shape, theta.sharding, pieces
        )
        state = state.replace(env=state.env.replace(theta=theta))
        try:
            train.train(
                SMALL, seed, state=state, history=history, progress=False, mesh=mesh
            )
            out["nan_stop"] = None
        except records.NonFiniteError as e:
            out["nan_stop"] = str(e).splitlines()[0]
    distributed.end()
    Path(OUT, f"report_{process}.json").write_text(json.dumps(out))


if __name__ == "__main__":
    main()
