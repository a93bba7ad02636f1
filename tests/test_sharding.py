"""A run split over devices with jax.sharding, checked on 4 virtual CPU
devices in a subprocess (tests/multidevice.py), since JAX fixes its device
count when it starts. That the default recipe solves the task on four devices
is asserted by Chapter 4's live four-device cell, which nbval executes."""

import json
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from sacbook import sharding

SCRIPT = Path(__file__).with_name("multidevice.py")


@pytest.fixture(scope="module")
def report():
    run = subprocess.run(
        [sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=900
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_four_virtual_devices(report):
    assert report["devices"] == 4


def test_envs_and_buffer_sharded_networks_replicated(report):
    axis = "shards"
    specs = report["specs"]
    for leaf in ("buffer.obs", "buffer.reward", "env.theta", "obs"):
        assert specs[leaf][0] == axis and set(specs[leaf][1:]) <= {None}, leaf
    for leaf in ("buffer.size", "actor_kernel", "critic_opt_mu", "log_alpha"):
        assert set(specs[leaf]) <= {None}, leaf  # replicated
    assert report["shard_rows"] == [4096 // 4]
    # the chunk returns the state laid out as it came: nothing to recompile
    assert report["specs_after"]["buffer.obs"][0] == axis
    assert set(report["specs_after"]["actor_kernel"]) <= {None}
    assert report["replicas_identical"]


def test_no_host_holds_a_whole_buffer(report):
    """Placing fresh runs on a mesh (4 runs spread, 4 runs split, 1 run split)
    allocates on the host under a tenth of one run's buffer: the rows are made
    as zeros on the devices, as each process of a distributed run does."""
    assert report["buffer_bytes"] == 2**20 * 34  # 34 bytes a row
    assert report["host_peak_bytes"] < report["buffer_bytes"] / 10
    assert report["buffers_empty"]
    spread, split, one = report["buffer_specs"]
    assert spread[0] == "shards" and set(spread[1:]) <= {None}  # the run axis
    assert split[0] is None and split[1] == "shards"  # each run's rows
    assert one[0] == "shards"


def test_no_host_transfers_and_one_compilation(report):
    assert report["updated_all"]
    assert report["compiles_after_first_chunk"] == 0


def test_one_device_mesh_is_the_plain_run_bit_for_bit(report):
    assert report["one_device_identical"]


def test_checkpoint_resumes_a_sharded_run_bit_for_bit(report):
    assert report["restored_spec"][0] == "shards"
    assert report["resume_identical"]
    assert "sharded over 4 device(s)" in report["resume_without_mesh"]
    assert "--devices 4" in report["resume_without_mesh"]


def test_seeds_on_a_mesh_match_single_runs(report):
    assert report["seeds_on_mesh_rel"] < 1e-5


def test_runs_spread_over_devices_match_one_device(report):
    """over="runs": each device trains R/D whole runs (every leaf split along
    the run axis), with no recompile and no transfer between chunks, and each
    run learns what it learns on one device, up to the rounding of batched
    matrix products of another batch size."""
    assert report["runs_over_devices_seeds"] == [0, 1, 2, 3]
    assert report["runs_over_devices_rel"] < 1e-3
    specs = report["runs_specs"]
    assert specs["buffer.obs"] == ["shards", None, None]
    assert specs["actor_kernel"] == ["shards", None]  # a bias: (runs, width)
    assert specs["log_alpha"] == ["shards"]
    assert report["runs_one_per_device"] == [1, 1, 1, 1]
    assert report["runs_recompiles"] == 0
    assert report["runs_metrics_shape"] == [4, 10]
    assert report["sweep_over_devices"] == [[0.01, 0.01], [0.05, 0.05]]


def test_bad_meshes_are_refused_clearly(report):
    errors = report["errors"]
    assert (
        "num_envs (66) must be a multiple of the mesh's 4 devices" in errors["num_envs"]
    )
    assert (
        "batch_size (66) must be a multiple of the mesh's 4 devices" in errors["batch"]
    )
    assert "exactly one axis" in errors["two_axes"]
    assert "integer in [1, 4]" in errors["make_mesh"]
    assert (
        "runs (3) must be a multiple of the mesh's 4 devices" in errors["runs_divide"]
    )
    assert "over must be one of ('envs', 'runs')" in errors["over"]


def test_mesh_checks_in_this_process():
    """On the one device here: the axis, whatever its name; clear refusals."""
    mesh = jax.make_mesh((1,), ("anything",))
    assert sharding.mesh_axis(mesh) == ("anything", 1)
    with pytest.raises(ValueError, match="must be a jax.sharding.Mesh"):
        sharding.mesh_axis("data")
    with pytest.raises(ValueError, match=r"'all' or an integer in \[1, 1\]"):
        sharding.make_mesh(2)
    with pytest.raises(ValueError, match=r"integer in \[1, 1\]"):
        sharding.make_mesh(0)
    assert sharding.make_mesh("all").devices.size == 1
    twice = jax.sharding.Mesh(np.array(jax.devices()[:1] * 2), ("data",))
    with pytest.raises(ValueError, match="must hold each device once"):
        sharding.mesh_axis(twice)


def test_sharded_axis_averages_sums_and_folds_a_key_per_device(report):
    """collective_axis of the 4-device mesh is Sharded: under shard_map its
    mean is pmean and its sum psum (devices hold [0, 1], [2, 3], [4, 5],
    [6, 7]), and fold_in gives device i the key fold_in(key, i)."""
    axis = report["axis"]
    assert axis["kind"] == ["Sharded", 4, "shards"]
    assert axis["mean"] == [3.0, 4.0]
    assert axis["sum"] == [12.0, 16.0]
    assert axis["keys"] == axis["keys_expected"]
    assert len({tuple(k) for k in axis["keys"]}) == 4


def test_local_axis_is_one_device_with_nothing_to_communicate():
    """LOCAL's mean, sum and fold_in hand back what they are given; it is the
    axis of no mesh and of a one-device mesh (the plain program)."""
    local = sharding.LOCAL
    tree = {"a": np.arange(3.0), "b": (np.float32(2.0),)}
    assert local.mean(tree) is tree and local.sum(tree) is tree
    key = jax.random.key(5)
    assert local.fold_in(key) is key
    assert local.size == 1 and type(local) is sharding.Axis
    assert sharding.collective_axis(None) is local
    assert sharding.collective_axis(jax.make_mesh((1,), ("one",))) == local
    # control: a Sharded axis is another value, and hashable (a static argument)
    sharded = sharding.Sharded(4, "data")
    assert sharded != local and hash(sharded) != hash(local)
