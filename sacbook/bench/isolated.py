"""Measurements in a fresh Python process.

A cold start is only cold in a process that has compiled and cached
nothing yet, and virtual CPU devices exist only in a process started with
the XLA flag that makes them. Both run ``sacbook.bench.<function>`` through
one helper, :func:`call_in_fresh_process`: the child prints its result as
one JSON line marked :data:`MARK`, which the parent reads back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

MARK = "@@"  # starts the child's result line on its stdout

# The child: time from before its imports, call, print [result, seconds].
_CHILD = (
    "import json, sys, time; t0 = time.perf_counter(); from sacbook import bench; "
    "r = getattr(bench, sys.argv[1])(**json.loads(sys.argv[2])); "
    f"print({MARK!r} + json.dumps([r, time.perf_counter() - t0]))"
)


def call_in_fresh_process(
    function: str, kwargs: dict | None = None, *, env: dict | None = None
) -> tuple[object, float]:
    """``sacbook.bench.<function>(**kwargs)`` in a fresh Python process.

    ``kwargs`` and the result must be JSON. ``env``: the child's environment
    (default: this process's). Returns ``(result, process_seconds)``, the
    second the wall-clock of the child's imports and call. Raises
    ``RuntimeError`` with the end of the child's stderr if it fails.
    """
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, function, json.dumps(kwargs or {})],
        capture_output=True,
        text=True,
        env=env,
    )
    lines = [x for x in proc.stdout.splitlines() if x.startswith(MARK)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"bench.{function} failed in a subprocess:\n{proc.stderr[-2000:]}"
        )
    result, seconds = json.loads(lines[-1][len(MARK) :])
    return result, seconds


def run_isolated(function: str, **kwargs) -> dict | None:
    """Run ``bench.<function>(**kwargs)`` in a fresh Python process, so that
    nothing is compiled or cached yet: a true cold start. Adds
    ``process_seconds``, the wall-clock of the whole call including imports.
    Returns None if the function returned None (a reference not installed)."""
    result, seconds = call_in_fresh_process(function, kwargs)
    if result is not None:
        result["process_seconds"] = seconds
    return result


def virtual_cpu_env(devices: int) -> dict:
    """This process's environment for a child with ``devices`` virtual CPU
    devices (``--xla_force_host_platform_device_count``), on the CPU."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    flag = f"--xla_force_host_platform_device_count={devices}"
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + flag).strip()
    return env


def sharded_throughput_virtual(devices: int = 4, **kwargs) -> dict:
    """:func:`sacbook.bench.sharded_throughput` in a fresh process with
    ``devices`` virtual CPU devices, for a machine with one device."""
    result, _ = call_in_fresh_process(
        "sharded_throughput", kwargs, env=virtual_cpu_env(devices)
    )
    return result
