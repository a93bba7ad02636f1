"""Where a cold start's compile time goes: trace, lower and XLA compile.

A cold run waits for its programs before it trains a single step: on a
2-core CPU the default chunk takes longer to compile than to reach -200.
:func:`compile_stages` times JAX's three stages for each program a run
compiles (the training chunk of a recipe, and the evaluation), with what
decides them: the StableHLO's length (tracing and lowering), and the
compiled module's fusions and loops (XLA's code generation, most of its
compile time on a CPU):

* trace: Python runs the functions on abstract values (``jit(f).trace``);
* lower: the jaxpr becomes a StableHLO module (``.lower()``);
* compile: XLA optimises it and generates machine code (``.compile()``);
  ``compile_cpu_seconds`` adds up the threads XLA compiles on.

Each stage starts from nothing in memory (``jax.clear_caches``); run it in
a fresh process (``sacbook bench --compile-stages`` does) so that JAX's
persistent cache is not in play either.
"""

from __future__ import annotations

import hashlib
import statistics
import time

import jax
import numpy as np

from sacbook import evaluate, loop
from sacbook.bench.recipes import recipe

# What the timings count in the compiled module's text
_FUSION = "fusion("
_LOOP = " while("


def _stages(name: str, program, *args) -> dict:
    """Trace, lower and compile ``program`` (a :class:`sacbook.jit.Program`)
    at ``args`` from empty caches; returns seconds and sizes."""
    jax.clear_caches()
    t0 = time.perf_counter()
    traced = program.jitted().trace(*args)
    t1 = time.perf_counter()
    lowered = traced.lower()
    t2 = time.perf_counter()
    cpu0 = time.process_time()
    compiled = lowered.compile()
    t3, cpu1 = time.perf_counter(), time.process_time()
    module = compiled.as_text() or ""  # XLA's optimised module, as text
    return {
        "program": name,
        "trace_seconds": t1 - t0,
        "lower_seconds": t2 - t1,
        "compile_seconds": t3 - t2,
        "compile_cpu_seconds": cpu1 - cpu0,
        "stablehlo_lines": lowered.as_text().count("\n"),
        "fusions": module.count(_FUSION),
        "loops": module.count(_LOOP),
    }


def compile_stages(recipes: list[str] | None = None) -> list[dict]:
    """Trace, lower and compile seconds of each recipe's training chunk
    (:func:`sacbook.bench.recipe` specs; default ``["default",
    "few_envs"]``), then of the default recipe's evaluation.

    Returns one dict per program: ``program``, ``trace_seconds``,
    ``lower_seconds``, ``compile_seconds`` (wall-clock),
    ``compile_cpu_seconds`` (every thread of this process),
    ``stablehlo_lines``, and the compiled module's ``fusions`` and
    ``loops`` (``while`` loops: the scans, and XLA's own loops for
    scatters and for the PRNG's hash on a CPU).
    """
    rows = []
    for spec in recipes or ["default", "few_envs"]:
        config = recipe(spec)
        state = loop.init(config.loop, jax.random.key(0))
        rows.append(_stages(f"chunk {spec}", loop.chunk_program(), state, config.loop))
    config = recipe("default")
    actor = loop.init(config.loop, jax.random.key(0)).sac.actor_params
    rows.append(
        _stages(
            "evaluation",
            evaluate.evaluate_run,
            actor,
            jax.random.key(0),
            config.sac,
            config.env,
            config.eval_envs,
        )
    )
    return rows


# XLA options tried on the default chunk by `option_trials`, per platform, on
# top of sacbook's own (:mod:`sacbook.jit`). On a CPU -O0 is the one option
# found that halves the compile, at a price. On a GPU: XLA's autotuning of
# its kernels, Triton's matrix products (autotuned too) and command buffers
# (CUDA graphs: fewer launches for a launch-bound loop, built at compile time).
OPTION_TRIALS = {
    "cpu": {
        "sacbook's options": {},
        "LLVM -O0": {"xla_backend_optimization_level": 0},
    },
    "gpu": {
        "XLA's defaults": {},
        "no autotuning": {"xla_gpu_autotune_level": 0},
        "no Triton matmuls": {"xla_gpu_enable_triton_gemm": False},
        "no command buffers": {"xla_gpu_enable_command_buffer": ""},
    },
}


def option_trials(trials: dict[str, dict] | None = None, chunks: int = 3) -> list:
    """The default recipe's chunk compiled with each set of XLA options in
    ``trials`` (default :data:`OPTION_TRIALS` for this platform; the first is
    the reference), then run for ``chunks`` chunks from the same fresh state.

    Returns one dict per trial: ``trial``, ``options``, ``compile_seconds``,
    ``chunk_seconds`` (median over the chunks after the first), and
    ``same_numbers``: whether every metric of every chunk equals the first
    trial's, bit for bit. A set that XLA refuses gives ``error`` (its first
    line) instead.
    """
    backend = jax.default_backend()
    platform = "gpu" if backend in ("gpu", "cuda", "rocm") else backend
    trials = trials or OPTION_TRIALS.get(platform, {"XLA's defaults": {}})
    config = recipe("default")
    program = loop.chunk_program()
    rows, reference = [], None
    for name, options in trials.items():
        row = {"trial": name, "options": options}
        rows.append(row)
        state = loop.init(config.loop, jax.random.key(0))
        jax.clear_caches()
        lowered = program.lower(state, config.loop, None)
        t0 = time.perf_counter()
        try:
            chunk = lowered.compile(options)
        except Exception as err:  # an option this XLA does not know, say
            row["error"] = (str(err).strip().splitlines() or [repr(err)])[0][:200]
            continue
        row["compile_seconds"] = time.perf_counter() - t0
        digest, seconds = hashlib.sha256(), []
        for _ in range(chunks):
            t0 = time.perf_counter()
            state, metrics = chunk(state, None)
            metrics = jax.device_get(metrics)
            seconds.append(time.perf_counter() - t0)
            for key in sorted(metrics):
                digest.update(np.asarray(metrics[key]).tobytes())
        row["chunk_seconds"] = statistics.median(seconds[1:] or seconds)
        reference = reference or digest.hexdigest()
        row["same_numbers"] = digest.hexdigest() == reference
    return rows
