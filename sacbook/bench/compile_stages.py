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

import time

import jax

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
