#!/usr/bin/env python
"""The GPU suite: record sacbook's figures on an accelerator, in one command.

On a machine with a GPU (or TPU) and this checkout, with JAX, Flax, optax,
orbax, NumPy, Matplotlib, tqdm and Pillow installed::

    python scripts/gpu_suite.py --out DIR [--wheels .whl]

It takes about 6 minutes (312 s on an H200, 2026-12-04: the bench 152 s
and the chapter 158 s, before the compile stages and the roofline were
added to the bench, about a minute more, and the XLA option trials of
``--compile-stages``, about another) and

1. installs what executing a notebook needs (ipykernel, nbclient, nbformat,
   ipywidgets) when it is missing, offline, from the wheels in ``--wheels``;
2. prints the device facts;
3. runs ``sacbook bench`` at accelerator sizes: simulation up to N = 2^20,
   training throughput up to N = 65,536, and time to solve at N = 1024 and
   8192 for the default recipe and large-batch recipes
   (:data:`sacbook.bench.ACCELERATOR_RECIPES`), with the compile stages of
   each and the roofline (``--compile-stages --roofline``);
4. on a machine with several devices, times 2 runs per device spread over
   every device (``over="runs"``) against the same runs on one device
   (``runs_over_devices.json``; with one device, on 2 virtual CPU devices
   under ``--smoke`` and skipped otherwise);
5. executes ``book/04_gpu_scaling.ipynb`` in place at accelerator sizes;
6. writes the bench JSON (``bench_<device>_<date>.json``), the executed
   notebook and ``suite.json`` (what ran, for how long, and whether it
   worked) to ``DIR``.

Then commit the JSON under ``sacbook/data/`` and the executed chapter.

``--smoke`` runs the same path on any device (a CPU too) with tiny sizes, in
about a minute, and leaves the checkout as it was: the notebook is executed
with ``SMOKE = True`` into ``DIR``. CI runs it.

A machine without network access needs the wheels prepared beforehand, on a
machine with it (Python 3.12, manylinux x86_64; adjust with the options)::

    python scripts/gpu_suite.py --download-wheels .whl

The folder is listed in ``.gitignore``.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = ROOT / "book" / "04_gpu_scaling.ipynb"
NOTEBOOK_PACKAGES = ("ipykernel", "nbclient", "nbformat", "ipywidgets")
WHEEL_PACKAGES = NOTEBOOK_PACKAGES + ("nbval",)

# sacbook bench's arguments: accelerator sizes, and tiny ones for --smoke.
# The time-to-solve recipes of the full run are sacbook.bench.ACCELERATOR_RECIPES.
FULL_BENCH = (
    "--sizes 1 16 256 1024 16384 131072 1048576 --train-sizes 1024 8192 65536 "
    "--compile-stages --roofline"
).split()
SMOKE_BENCH = (
    "--sizes 1 16 --train-sizes 16 --min-window 0.1 --solve N=16,B=16,K=2,it=20 "
    "--seeds 2 --device-counts 1 2 --pairs 2"
).split()


def log(message: str) -> None:
    print(f"[gpu_suite {time.strftime('%H:%M:%S')}] {message}", flush=True)


def download_wheels(folder: Path, python_version: str, platforms: list[str]) -> int:
    """``pip download`` the notebook packages and their dependencies as wheels."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--only-binary=:all:",
        "--python-version",
        python_version,
        "--implementation",
        "cp",
        "-d",
        str(folder),
    ]
    for platform in platforms:
        command += ["--platform", platform]
    proc = subprocess.run(command + list(WHEEL_PACKAGES))
    if proc.returncode == 0:
        wheels = sorted(folder.glob("*.whl"))
        size = sum(w.stat().st_size for w in wheels) / 2**20
        log(f"{len(wheels)} wheels, {size:.1f} MiB in {folder}")
    return proc.returncode


def missing_packages() -> list[str]:
    return [
        name for name in NOTEBOOK_PACKAGES if importlib.util.find_spec(name) is None
    ]


def install_notebook_packages(wheels: Path | None) -> None:
    """Install what running a notebook needs, offline from ``wheels``.
    Packages that are installed already are kept (pip only adds)."""
    missing = missing_packages()
    if not missing:
        log("notebook packages: all installed")
        return
    if wheels is None or not wheels.is_dir():
        raise RuntimeError(
            f"missing {', '.join(missing)} and no --wheels folder; "
            "prepare one with --download-wheels on a machine with network"
        )
    log(f"installing {', '.join(missing)} from {wheels} (offline)")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-index",
            "--find-links",
            str(wheels),
            *NOTEBOOK_PACKAGES,
        ],
        check=True,
    )
    importlib.invalidate_caches()
    still = missing_packages()
    if still:
        raise RuntimeError(f"still missing after the install: {', '.join(still)}")


def device_facts() -> dict:
    """The device, as ``sacbook bench`` records it, plus ``nvidia-smi -L``."""
    from sacbook import bench

    facts = bench.device_info()
    if shutil.which("nvidia-smi"):
        proc = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
        facts["nvidia_smi"] = proc.stdout.strip()
    import jax

    facts["devices"] = [str(d) for d in jax.devices()]
    return facts


def bench_name(facts: dict, smoke: bool) -> str:
    label = f"{facts['platform']}-{facts['device']}".lower()
    label = re.sub(r"[^a-z0-9]+", "-", label).strip("-")
    return f"bench_{'smoke-' if smoke else ''}{label}_{facts['date']}.json"


def run_bench(path: Path, smoke: bool, timeout: float) -> None:
    from sacbook import bench

    args = (
        SMOKE_BENCH if smoke else [*FULL_BENCH, "--solve", *bench.ACCELERATOR_RECIPES]
    )
    command = [sys.executable, "-m", "sacbook.cli", "bench", *args, "--save", str(path)]
    log("$ " + " ".join(command[1:]))
    subprocess.run(command, check=True, timeout=timeout, cwd=ROOT)


def run_spread(out: Path, smoke: bool) -> dict:
    """Runs spread over every device against one device, written to
    ``out/runs_over_devices.json``: 2 runs per device, 1024 envs each (16
    under --smoke, on 2 virtual CPU devices where there is one device)."""
    import jax

    from sacbook import bench

    devices = jax.device_count()
    kwargs = dict(num_envs=16, pairs=2, min_seconds=0.1) if smoke else {}
    if devices >= 2:
        result = bench.runs_over_devices_throughput(
            runs=2 * devices, devices=devices, **kwargs
        )
    elif smoke:  # the same path on 2 virtual CPU devices
        result = bench.runs_over_devices_virtual(2, runs=4, **kwargs)
    else:
        result = {"skipped": "one device: nothing to spread the runs over"}
    (out / "runs_over_devices.json").write_text(json.dumps(result, indent=1) + "\n")
    log(json.dumps({k: v for k, v in result.items() if k != "ratio"}))
    return result


def run_chapter(out: Path, smoke: bool, cell_timeout: int) -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    import run_notebook

    target = out / CHAPTER.name
    if smoke:  # tiny sizes, written to --out only: the checkout stays as it was
        ok = run_notebook.run(
            CHAPTER, cell_timeout, "python3", target, ["SMOKE = True"]
        )
    else:
        ok = run_notebook.run(CHAPTER, cell_timeout, "python3")
        shutil.copy(CHAPTER, target)
    if not ok:
        raise RuntimeError(f"{CHAPTER.name} did not run to the end (see {target})")


# The suite's options.
FLAGS = {
    "--out": dict(type=Path, help="folder for the JSON, notebook and log"),
    "--smoke": dict(
        action="store_true",
        help="tiny sizes on any device, in about a minute (what CI runs)",
    ),
    "--wheels": dict(
        type=Path,
        default=ROOT / ".whl",
        help="wheels to install missing notebook packages from (default .whl)",
    ),
    "--skip-notebook": dict(action="store_true", help="only the bench"),
    "--download-wheels": dict(
        type=Path,
        metavar="FOLDER",
        help="only download the wheels the suite may need, then exit",
    ),
    "--python-version": dict(
        default="3.12",
        help="for --download-wheels (default 3.12)",
    ),
    "--platform": dict(
        action="append",
        help="for --download-wheels (default: manylinux x86_64 tags)",
    ),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag, keywords in FLAGS.items():
        parser.add_argument(flag, **keywords)
    args = parser.parse_args(argv)
    if args.download_wheels:
        platforms = args.platform or [
            "manylinux_2_28_x86_64",
            "manylinux_2_17_x86_64",
            "manylinux2014_x86_64",
            "any",
        ]
        return download_wheels(args.download_wheels, args.python_version, platforms)
    if args.out is None:
        parser.error("--out is required")
    args.out.mkdir(parents=True, exist_ok=True)
    # sacbook from this checkout, for this process, the bench and the kernel
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])
    )
    sys.path.insert(0, str(ROOT))

    started = time.perf_counter()
    phases = []

    def phase(name, fn, *fn_args):
        t0 = time.perf_counter()
        log(f"--- {name}")
        try:
            result = fn(*fn_args)
            ok, error = True, None
        except Exception as err:  # record it, and go on with the next phase
            result, ok, error = None, False, f"{type(err).__name__}: {err}"
            log(f"{name} FAILED: {error}")
        phases.append(
            {
                "phase": name,
                "ok": ok,
                "seconds": round(time.perf_counter() - t0, 1),
                "error": error,
            }
        )
        return result

    facts = phase("device facts", device_facts)
    if facts:
        log(json.dumps(facts, indent=1))
        if not args.smoke and facts["platform"] == "cpu":
            log("warning: no accelerator found; the figures will be CPU figures")
    bench_path = args.out / bench_name(
        facts
        or {
            "platform": "unknown",
            "device": "device",
            "date": datetime.date.today().isoformat(),
        },
        args.smoke,
    )
    phase(
        "sacbook bench", run_bench, bench_path, args.smoke, 150 if args.smoke else 330
    )
    phase("runs over devices", run_spread, args.out, args.smoke)
    if not args.skip_notebook:
        phase("notebook packages", install_notebook_packages, args.wheels)
        if phases[-1]["ok"]:
            phase(
                "Chapter 4",
                run_chapter,
                args.out,
                args.smoke,
                300 if args.smoke else 600,
            )
    total = time.perf_counter() - started
    summary = {
        "smoke": args.smoke,
        "seconds": round(total, 1),
        "phases": phases,
        "device": facts,
        "bench_json": bench_path.name,
    }
    (args.out / "suite.json").write_text(json.dumps(summary, indent=1) + "\n")
    for p in phases:
        log(f"{p['phase']:>18}: {'ok' if p['ok'] else 'FAILED'} in {p['seconds']} s")
    ok = all(p["ok"] for p in phases)
    log(f"{'done' if ok else 'FAILED'} in {total:.0f} s; wrote {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
