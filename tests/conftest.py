"""Shared test set-up, and the small training configs several test files use.

pytest puts this folder on ``sys.path`` (it has no ``__init__.py``), so a
test imports a config as ``from conftest import TINY``; so does
``multidevice.py``, which runs as a script from this folder. A config that
one test needs to be special stays in that test.
"""

import subprocess
import warnings

import jax
import numpy as np
import pytest

from sacbook.config import TrainConfig
from sacbook.pendulum import PendulumParams
from sacbook.sac import SACConfig

# Tests build animations to check their frames without rendering them.
# Matplotlib warns about each such animation when it is garbage-collected,
# which can happen after pytest has stopped capturing warnings, so the
# warning would print after the summary line. It says nothing about sacbook.
warnings.filterwarnings("ignore", message="Animation was deleted without rendering")

EPISODE = 7  # TINY's episodes: short, so that a chunk sees time limits

# Three envs, 8-wide networks: 4 chunks of 10 iterations that compile fast.
TINY = TrainConfig(
    env=PendulumParams.gymnasium(episode_length=EPISODE),
    sac=SACConfig(hidden_sizes=(8, 8), batch_size=8),
    num_envs=3,
    total_env_steps=100,
    buffer_capacity=50,
    warmup_env_steps=12,  # iterations 0-3 act at random
    learning_starts=20,  # the buffer holds 3 (i + 1) after iteration i: updates from i = 6
    updates_per_iteration=1,
    chunk_iterations=10,
    eval_envs=4,
)

# 64 envs (a multiple of 4 devices), 2 updates per iteration from iteration 2:
# 4 chunks of 10 iterations, each of which updates after the first.
SMALL = TrainConfig(
    num_envs=64,
    total_env_steps=64 * 40,
    buffer_capacity=4096,
    warmup_env_steps=128,
    learning_starts=128,
    updates_per_iteration=2,
    chunk_iterations=10,
    sac=SACConfig(hidden_sizes=(16, 16), batch_size=64),
)

# Many runs side by side (seeds, sweeps): 2 chunks of 10 iterations of 32 envs.
MANY = SMALL.replace(num_envs=32, total_env_steps=32 * 20, buffer_capacity=2048)
MANY = MANY.replace(warmup_env_steps=64, learning_starts=64, eval_envs=8)
MANY = MANY.replace(sac=SMALL.sac.replace(batch_size=32))


def without_times(history: list[dict]) -> list[dict]:
    """A history's records without their wall-clock fields, which differ
    between any two runs (compare with ``np.testing.assert_equal``, for
    which NaN equals NaN)."""
    timed = ("wall_seconds", "env_steps_per_second")
    return [{k: v for k, v in r.items() if k not in timed} for r in history]


def raw(leaf) -> np.ndarray:
    """A leaf as a NumPy array; a typed PRNG key as its key data."""
    if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        leaf = jax.random.key_data(leaf)
    return np.asarray(leaf)


def same_state(a, b) -> bool:
    """Whether two pytrees (training states) have the same structure, static
    configs included, and bit-identical leaves."""
    return jax.tree.structure(a) == jax.tree.structure(b) and all(
        np.array_equal(raw(x), raw(y))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


@pytest.fixture
def tmpfs(tmp_path):
    """``tmpfs(name, size="4m", read_only=False)``: a small filesystem of its
    own mounted on ``tmp_path / name`` (a full disk, a read-only one), or
    None where this process may not mount one (not root, no mount(8)):
    the test then fakes it. Unmounted at the end of the test."""
    mounted = []

    def mount(name: str, size: str = "4m", read_only: bool = False):
        folder = tmp_path / name
        folder.mkdir()
        options = f"size={size}" + (",ro" if read_only else "")
        try:
            proc = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                capture_output=True,
                timeout=30,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        if proc.returncode != 0:
            return None
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, timeout=30)


# a small, fast `sacbook train` on the command line: 64 envs, batch 64, K = 1
CLI_SMALL = [
    *("--num-envs", "64", "--batch-size", "64", "--updates-per-iteration", "1"),
    *("--quiet", "--no-cache"),
]
