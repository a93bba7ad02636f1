"""Throughput and time-to-solve measurements (``sacbook bench``).

Three measurements, each a plain function returning dicts, so the CLI, the
notebooks and the tests share them:

* :func:`simulation_throughput`: env-steps/s of the full batched env step
  (random actions, auto-reset) for several N, as one jitted ``lax.scan``.
* :func:`training_throughput`: env-steps/s and updates/s of the fused loop.
* :func:`time_to_solve`: wall-clock from a cold start to a mean deterministic
  evaluation return >= -200, with compile time reported separately.

``--compare`` adds the references that are installed, timed in the same run:
gymnax's Pendulum-v1 and Gymnasium's vector env for simulation, rejax's SAC
for time-to-solve. Timings on a shared CPU spread by tens of percent, so each
reference is timed in turn with sacbook (ours, theirs, ours, theirs, ...;
windows of at least :data:`MIN_WINDOW_SECONDS`) and the ratio of each pair is
reported, with the median and spread over the pairs (:func:`compare_throughput`,
:func:`ratio_stats`): compare those, not absolute figures from different runs.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import math
import os
import platform
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from sacbook import evaluate, loop, pendulum, train
from sacbook.pendulum import PendulumParams

SIM_SIZES = (1, 16, 256, 1024, 16384, 131072)


def device_info() -> dict:
    """What the figures were measured on: device, versions, date; whether the
    device is an accelerator and the memory available on it (bytes, and the
    figure's source: see :func:`sacbook.device.available_bytes`)."""
    from sacbook.device import available_bytes, is_accelerator

    device = jax.devices()[0]
    memory, memory_source = available_bytes(device)
    versions = {}
    for name in ("jax", "jaxlib", "flax", "optax", "sacbook"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return {
        "date": datetime.date.today().isoformat(),
        "platform": device.platform,
        "device": getattr(device, "device_kind", str(device)),
        "accelerator": is_accelerator(device),
        "available_bytes": memory,
        "available_bytes_source": memory_source,
        "device_count": jax.device_count(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "versions": versions,
    }


def _best_of(fn, repeats: int) -> float:
    """Fastest of ``repeats`` timed calls of ``fn`` (which must block)."""
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


# ----------------------------------------------------------------------------
# Timing on a noisy, shared machine: windows of at least MIN_WINDOW_SECONDS,
# and comparisons as ratios of windows timed in turn (A B A B ...), so that
# both sides of each ratio see the same load.
# ----------------------------------------------------------------------------

MIN_WINDOW_SECONDS = 0.5


@dataclasses.dataclass
class Runner:
    """A workload to time: ``run(count)`` runs ``count`` units and blocks
    until they are done; each unit is ``env_steps_per_unit`` env steps (a
    compiled call of many steps, or one step of a Python vector env)."""

    name: str
    run: object  # Callable[[int], object]
    env_steps_per_unit: int
    num_envs: int
    version: str | None = None


def calibrate(
    run,
    *,
    min_seconds: float = MIN_WINDOW_SECONDS,
    count: int = 1,
    margin: float = 1.25,
    max_count: int = 10**7,
    clock=time.perf_counter,
) -> int:
    """The ``count`` for which one ``run(count)`` lasts at least ``min_seconds``.

    Times ``run(count)``, starting at ``count``; while it is shorter than
    ``min_seconds``, scales ``count`` up to aim at ``margin * min_seconds``
    (at most 100x a try) and times again. Once long enough, a window shorter
    than ``margin * min_seconds`` is scaled up once more (untimed), so that a
    machine that gets a little faster still gives windows >= ``min_seconds``.
    """
    target = margin * min_seconds
    while True:
        t0 = clock()
        run(count)
        seconds = clock() - t0
        scale = min(100.0, target / seconds) if seconds > 0 else 100.0
        if seconds >= min_seconds or count >= max_count:
            return min(max_count, math.ceil(count * scale)) if scale > 1 else count
        count = min(max_count, max(count + 1, math.ceil(count * scale)))


def timed(
    run, count: int, clock=time.perf_counter, min_seconds: float = 0.0
) -> tuple[int, float]:
    """One timed window: ``run(count)``, then ``run(1)`` again while the
    window is shorter than ``min_seconds`` (the machine may have got faster
    since :func:`calibrate`). Returns (units run, seconds)."""
    t0 = clock()
    run(count)
    while clock() - t0 < min_seconds:
        run(1)
        count += 1
    return count, clock() - t0


def interleave(calls, rounds: int) -> list[list]:
    """Call ``calls[0](), calls[1](), ..., calls[0](), calls[1](), ...``:
    ``rounds`` rounds of each in turn. Returns each call's results, in order:
    ``[[calls[0] results], [calls[1] results], ...]``."""
    results = [[] for _ in calls]
    for _ in range(rounds):
        for fn, out in zip(calls, results):
            out.append(fn())
    return results


def ratio_stats(values, definition: str = "") -> dict | None:
    """Median, interquartile range, min and max of per-pair ratios (None
    values, from pairs without a ratio, are left out), with the values
    themselves. None if no pair has a ratio."""
    kept = [float(v) for v in values if v is not None]
    if not kept:
        return None
    q1, median, q3 = (float(q) for q in np.percentile(kept, [25, 50, 75]))
    return {
        "definition": definition,
        "median": median,
        "iqr": [q1, q3],
        "min": min(kept),
        "max": max(kept),
        "pairs": len(kept),
        "values": kept,
    }


def format_ratio(stats: dict | None) -> str:
    """``"6.1x (IQR 5.9-6.3x, range 5.2-6.8x, 7 pairs)"``, or ``"-"``."""
    if not stats:
        return "-"
    q1, q3 = stats["iqr"]
    return (
        f"{stats['median']:.3g}x (IQR {q1:.3g}-{q3:.3g}x, "
        f"range {stats['min']:.3g}-{stats['max']:.3g}x, "
        f"{stats['pairs']} pair{'s' if stats['pairs'] != 1 else ''})"
    )


def compare_throughput(
    ours: Runner,
    reference: Runner,
    *,
    pairs: int = 7,
    min_seconds: float = MIN_WINDOW_SECONDS,
    clock=time.perf_counter,
) -> dict:
    """Env-steps/s of ``ours`` and ``reference``, timed interleaved: ``pairs``
    pairs of windows (ours, reference, ours, reference, ...), each window at
    least ``min_seconds`` long (see :func:`calibrate`; both must be compiled
    or warmed up beforehand). The ratio of each pair, ours / reference, is
    summarized by :func:`ratio_stats` under ``"ratio"``; ``env_steps_per_second``
    (the reference's) and ``sacbook_env_steps_per_second`` are each side's
    fastest window, the figures older reports hold."""
    count_a = calibrate(ours.run, min_seconds=min_seconds, clock=clock)
    count_b = calibrate(reference.run, min_seconds=min_seconds, clock=clock)
    win_a, win_b = interleave(
        [
            partial(timed, ours.run, count_a, clock, min_seconds),
            partial(timed, reference.run, count_b, clock, min_seconds),
        ],
        pairs,
    )
    sec_a, sec_b = [s for _, s in win_a], [s for _, s in win_b]
    rate_a = [units * ours.env_steps_per_unit / s for units, s in win_a]
    rate_b = [units * reference.env_steps_per_unit / s for units, s in win_b]
    return {
        "name": reference.name,
        "num_envs": reference.num_envs,
        "version": reference.version,
        "env_steps_per_second": max(rate_b),
        "sacbook_env_steps_per_second": max(rate_a),
        "ratio": ratio_stats(
            [a / b for a, b in zip(rate_a, rate_b)],
            f"sacbook env-steps/s / {reference.name} env-steps/s, "
            "per interleaved pair of windows",
        ),
        "window": {
            "min_seconds": min_seconds,
            "sacbook_env_steps": count_a * ours.env_steps_per_unit,
            "reference_env_steps": count_b * reference.env_steps_per_unit,
        },
        "rounds": [
            {
                "sacbook_seconds": a,
                "reference_seconds": b,
                "sacbook_env_steps_per_second": ra,
                "reference_env_steps_per_second": rb,
            }
            for a, b, ra, rb in zip(sec_a, sec_b, rate_a, rate_b)
        ],
    }


@partial(jax.jit, static_argnums=(2, 3))
def _simulate(state, key, steps: int, params: PendulumParams):
    """``steps`` env steps with uniform random torques, auto-reset included."""

    def body(carry, keys):
        state, total = carry
        torque = jax.random.uniform(
            keys[0],
            state.theta.shape,
            jnp.float32,
            -params.max_torque,
            params.max_torque,
        )
        state, result = pendulum.env_step(state, torque, keys[1], params)
        return (state, total + result.reward), None

    # all keys in one call: (steps, 2) = an action key and an env key per step
    keys = jax.random.split(key, (steps, 2))
    (state, total), _ = jax.lax.scan(body, (state, jnp.zeros_like(state.theta)), keys)
    return state, total


def _sim_steps(
    num_envs: int, min_env_steps: int = 2_000_000, max_steps: int = 2000
) -> int:
    """Steps per compiled call: clip(min_env_steps / N, 200, max_steps)."""
    return int(min(max_steps, max(200, min_env_steps // num_envs)))


def sacbook_runner(
    num_envs: int, *, params: PendulumParams | None = None, steps: int | None = None
) -> Runner:
    """:func:`_simulate` of ``num_envs`` pendulums as a :class:`Runner`: a
    unit is one compiled call of ``steps`` steps (compiled here; default
    :func:`_sim_steps`, as :func:`simulation_throughput` runs)."""
    params = params or PendulumParams.gymnasium()
    steps = steps or _sim_steps(num_envs)
    state = pendulum.reset_state(jax.random.key(0), num_envs, params)
    key = jax.random.key(1)

    def run(count: int):
        for _ in range(count):
            jax.block_until_ready(_simulate(state, key, steps, params))

    run(1)  # compile
    return Runner("sacbook", run, num_envs * steps, num_envs)


def simulation_throughput(
    sizes=SIM_SIZES,
    *,
    params: PendulumParams | None = None,
    min_env_steps: int = 2_000_000,
    max_steps: int = 2000,
    repeats: int = 3,
    min_seconds: float = MIN_WINDOW_SECONDS,
) -> list[dict]:
    """Env-steps/s of :func:`pendulum.env_step` with random actions, for each N.

    A compiled call runs ``steps`` = clip(min_env_steps / N, 200, max_steps)
    steps, compiled once per N beforehand; a timed window repeats it
    ``calls`` times, enough for the window to last ``min_seconds`` (see
    :func:`calibrate` and :func:`timed`; 0 times single calls). The fastest
    of ``repeats`` windows.
    """
    rows = []
    for n in sizes:
        steps = _sim_steps(n, min_env_steps, max_steps)
        runner = sacbook_runner(n, params=params, steps=steps)
        count = calibrate(runner.run, min_seconds=min_seconds) if min_seconds > 0 else 1
        calls, seconds = max(
            (timed(runner.run, count, min_seconds=min_seconds) for _ in range(repeats)),
            key=lambda w: w[0] / w[1],
        )
        rows.append(
            {
                "num_envs": n,
                "steps": steps,
                "calls": calls,
                "seconds": seconds,
                "env_steps_per_second": n * steps * calls / seconds,
            }
        )
    return rows


def training_throughput(
    config: train.TrainConfig | None = None, *, chunks: int = 3, seed: int = 0
) -> dict:
    """Env-steps/s and updates/s of the fused loop, with updates running
    (warm-up off, learning from the first batch), best of ``chunks`` timed
    chunks after compilation and one untimed chunk. The chunk is the same
    compiled program :func:`train.train` runs, so ``last_chunk`` (the last
    chunk's summary) is what training with this config and seed records."""
    config = config or train.TrainConfig()
    config = config.replace(warmup_env_steps=0, learning_starts=config.sac.batch_size)
    state = train.init(config, jax.random.key(seed))
    t0 = time.perf_counter()
    chunk = loop.chunk_program.lower(state, config.loop).compile()
    compile_seconds = time.perf_counter() - t0
    state, _ = chunk(state)  # fills the buffer past learning_starts
    jax.block_until_ready(state)
    best = math.inf
    for _ in range(chunks):
        t0 = time.perf_counter()
        state, metrics = chunk(state)
        jax.block_until_ready(state)
        best = min(best, time.perf_counter() - t0)
    updates = int(np.sum(np.asarray(metrics["updated"]))) * config.updates_per_iteration
    env_steps = config.chunk_iterations * config.num_envs
    return {
        "num_envs": config.num_envs,
        "batch_size": config.sac.batch_size,
        "updates_per_iteration": config.updates_per_iteration,
        "compile_seconds": compile_seconds,
        "env_steps_per_second": env_steps / best,
        "updates_per_second": updates / best,
        "iterations_per_second": config.chunk_iterations / best,
        "last_chunk": train.summarize_chunk(metrics, config),
    }


def seeds_throughput(
    config: train.TrainConfig | None = None,
    *,
    seeds: int = 8,
    pairs: int = 3,
    min_seconds: float = MIN_WINDOW_SECONDS,
) -> dict:
    """S seeds in one program against S runs one after another, side by side.

    Times, in turn, windows of chunks of the batched program (S seeds,
    vmapped) and windows of chunks of the single-run program, with updates
    running. The single run's time is multiplied by S (S runs one after
    another each run the same chunks). Returns both rates in env-steps/s of
    all seeds together and the ratio per pair (> 1: one program is faster).
    """
    config = config or train.TrainConfig()
    config = config.replace(warmup_env_steps=0, learning_starts=config.sac.batch_size)
    keys = [jax.random.key(seed) for seed in range(seeds)]
    batched_state = loop.init_runs(config, keys)
    single_state = train.init(config, keys[0])
    t0 = time.perf_counter()
    batched = loop.parallel_chunk_program(None, batched=True)
    batched_chunk = batched.lower(batched_state, config.loop).compile()
    batched_compile = time.perf_counter() - t0
    t0 = time.perf_counter()
    single_chunk = loop.chunk_program.lower(single_state, config.loop).compile()
    single_compile = time.perf_counter() - t0
    states = {"batched": batched_state, "single": single_state}

    def runner(name, chunk):
        def run(count):
            for _ in range(count):
                states[name], _ = chunk(states[name])
            jax.block_until_ready(states[name])

        return run

    run_batched = runner("batched", batched_chunk)
    run_single = runner("single", single_chunk)
    run_batched(1)  # fills the buffers past learning_starts
    run_single(1)
    counts = [calibrate(r, min_seconds=min_seconds) for r in (run_batched, run_single)]
    windows = interleave(
        [
            lambda: timed(run_batched, counts[0], min_seconds=min_seconds),
            lambda: timed(run_single, counts[1], min_seconds=min_seconds),
        ],
        pairs,
    )
    steps = config.chunk_iterations * config.num_envs
    batched_rates = [seeds * steps * c / t for c, t in windows[0]]
    single_rates = [steps * c / t for c, t in windows[1]]  # S runs in turn: the same
    return {
        "seeds": seeds,
        "num_envs": config.num_envs,
        "compile_seconds": {"one_program": batched_compile, "one_run": single_compile},
        "one_program_env_steps_per_second": max(batched_rates),
        "one_after_another_env_steps_per_second": max(single_rates),
        "ratio": ratio_stats(
            [b / s for b, s in zip(batched_rates, single_rates)],
            "env-steps/s of S seeds in one program / of S runs one after "
            "another, per interleaved pair of windows",
        ),
    }


def sharded_throughput(
    config: train.TrainConfig | None = None,
    *,
    device_counts=(1, 2, 4),
    pairs: int = 3,
    min_seconds: float = MIN_WINDOW_SECONDS,
) -> dict:
    """Training throughput of one run split over D devices, for each D in
    ``device_counts`` (those this machine has), timed in turn.

    Returns env-steps/s per D and, per round, each D's rate over D = 1's.
    On virtual CPU devices (``--xla_force_host_platform_device_count``) the
    devices share the same cores, so this measures the cost of the
    communication, not a speed-up.
    """
    from sacbook import sharding

    config = config or train.TrainConfig()
    config = config.replace(warmup_env_steps=0, learning_starts=config.sac.batch_size)
    available = jax.device_count()
    counts = [d for d in device_counts if d <= available]
    runs, compile_seconds = [], {}
    for d in counts:
        mesh = sharding.make_mesh(d)
        state = loop.init(config, jax.random.key(0), mesh=mesh)
        t0 = time.perf_counter()
        program = loop.parallel_chunk_program(mesh)
        chunk = program.lower(state, config.loop).compile()
        compile_seconds[str(d)] = time.perf_counter() - t0  # str: JSON keys
        box = {"state": state}

        def run(count, chunk=chunk, box=box):
            for _ in range(count):
                box["state"], _ = chunk(box["state"])
            jax.block_until_ready(box["state"])

        run(1)
        runs.append(run)
    windows_per_d = [calibrate(r, min_seconds=min_seconds) for r in runs]
    windows = interleave(
        [
            lambda r=r, c=c: timed(r, c, min_seconds=min_seconds)
            for r, c in zip(runs, windows_per_d)
        ],
        pairs,
    )
    steps = config.chunk_iterations * config.num_envs
    rates = [[steps * c / t for c, t in w] for w in windows]
    return {
        "platform": jax.devices()[0].platform,
        "virtual_devices": "xla_force_host_platform_device_count"
        in os.environ.get("XLA_FLAGS", ""),
        "num_envs": config.num_envs,
        "device_counts": counts,
        "compile_seconds": compile_seconds,
        "env_steps_per_second": {str(d): max(r) for d, r in zip(counts, rates)},
        "speedup": {
            str(d): ratio_stats(
                [x / one for x, one in zip(r, rates[0])],
                f"env-steps/s on {d} devices / on 1, per round",
            )
            for d, r in zip(counts, rates)
        },
    }


def sharded_throughput_virtual(devices: int = 4, **kwargs) -> dict:
    """:func:`sharded_throughput` in a fresh process with ``devices`` virtual
    CPU devices, for a machine with one device."""
    import json
    import subprocess
    import sys

    env = dict(os.environ, JAX_PLATFORMS="cpu")
    flag = f"--xla_force_host_platform_device_count={devices}"
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + flag).strip()
    code = (
        "import json, sys; from sacbook import bench; "
        "r = bench.sharded_throughput(**json.loads(sys.argv[1])); "
        "print('@@' + json.dumps(r))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(kwargs)],
        capture_output=True,
        text=True,
        env=env,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"sharded_throughput failed:\n{proc.stderr[-2000:]}")
    line = next(x for x in proc.stdout.splitlines() if x.startswith("@@"))
    return json.loads(line[2:])


NAMED_CONFIGS = {"default": train.TrainConfig, "few_envs": train.TrainConfig.few_envs}

# What a recipe spec may set (see recipe()), and the TrainConfig field it sets.
RECIPE_KEYS = {
    "N": "num_envs",
    "B": "batch_size",
    "K": "updates_per_iteration",
    "tau": "tau",
    "it": "iterations",
}

# Time-to-solve runs of the GPU suite: the default recipe, and large-batch ones
# in the style of FastTD3/FastSAC, each with K * tau <= 0.5 (Chapter 4's rule).
ACCELERATOR_RECIPES = (
    "N=1024",
    "N=8192",
    "N=1024,B=1024,K=8,tau=0.05",
    "N=8192,B=1024,K=8,tau=0.05",
    "N=8192,B=4096,K=4,tau=0.1,it=600",
    "N=8192,B=8192,K=4,tau=0.1,it=600",
)


def recipe(spec: str) -> train.TrainConfig:
    """The :class:`train.TrainConfig` a recipe spec names.

    ``spec`` is a name from :data:`NAMED_CONFIGS` (``"default"``,
    ``"few_envs"``) or comma-separated changes to the default config:
    ``N`` (environments), ``B`` (batch size), ``K`` (updates per iteration),
    ``tau`` and ``it`` (iterations to run, default 300). For example
    ``"N=8192,B=4096,K=4,tau=0.1,it=600"``.
    """
    if spec in NAMED_CONFIGS:
        return NAMED_CONFIGS[spec]()
    values = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, sep, text = part.partition("=")
        if not sep or name not in RECIPE_KEYS:
            raise ValueError(
                f"recipe {spec!r}: expected a name ({', '.join(NAMED_CONFIGS)}) "
                f"or KEY=VALUE items with KEY in {', '.join(RECIPE_KEYS)}; got {part!r}"
            )
        try:
            values[name] = float(text) if name == "tau" else int(text)
        except ValueError:
            kind = "a number" if name == "tau" else "an integer"
            raise ValueError(
                f"recipe {spec!r}: {name} must be {kind}, got {text!r}"
            ) from None
    if not values:
        raise ValueError(f"recipe {spec!r} is empty")
    default = train.TrainConfig()
    n = values.get("N", default.num_envs)
    iterations = values.get("it", 300)
    if n < 1 or iterations < 1:
        raise ValueError(f"recipe {spec!r}: N and it must be integers >= 1")
    sac = dataclasses.replace(
        default.sac,
        batch_size=values.get("B", default.sac.batch_size),
        tau=values.get("tau", default.sac.tau),
    )
    return default.replace(
        num_envs=n,
        total_env_steps=iterations * n,
        sac=sac,
        buffer_capacity=max(default.buffer_capacity, 2 * n),
        updates_per_iteration=values.get("K", default.updates_per_iteration),
    )


def run_isolated(function: str, **kwargs) -> dict | None:
    """Run ``bench.<function>(**kwargs)`` in a fresh Python process, so that
    nothing is compiled or cached yet: a true cold start. Adds
    ``process_seconds``, the wall-clock of the whole call including imports.
    Returns None if the function returned None (a reference not installed)."""
    import json
    import subprocess
    import sys

    code = (
        "import json, sys, time; t0 = time.perf_counter(); from sacbook import bench; "
        f"r = bench.{function}(**json.loads(sys.argv[1])); "
        "r is None or r.update(process_seconds=time.perf_counter() - t0); "
        "print('@@' + json.dumps(r))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(kwargs)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"bench.{function} failed in a subprocess:\n{proc.stderr[-2000:]}"
        )
    line = next(l for l in proc.stdout.splitlines() if l.startswith("@@"))
    return json.loads(line[2:])


def time_to_solve(
    config: train.TrainConfig | str | None = None,
    *,
    seed: int = 0,
    target_return: float = train.SOLVED_RETURN,
    final_eval_envs: int = 1024,
) -> dict:
    """Wall-clock from a cold start (init + compile + training) to the first
    evaluation (16 episodes) with mean return >= ``target_return``; the run
    then goes on to ``config.total_env_steps``. Both the policy that first
    reached the target (``solved_policy_return_many``) and the final one
    (``final_eval_return_many``) are also scored on ``final_eval_envs`` fresh
    episodes, since 16 episodes give a mean +-20.

    "Cold" means the first call in a process; later calls with the same
    config reuse JAX's in-memory compilation cache.
    """
    name = config if isinstance(config, str) else None
    if isinstance(config, str):
        config = recipe(config)
    config = config or train.TrainConfig()
    solved_policy = []

    def keep_solved_policy(
        record, state
    ):  # a host copy: the state is donated to the next chunk
        if not solved_policy and record.get("eval_return", -np.inf) >= target_return:
            solved_policy.append(
                jax.tree.map(np.array, state.sac.actor_params)
            )  # (jnp.copy would compile)

    t0 = time.perf_counter()
    result = train.train(
        config,
        seed,
        progress=False,
        target_return=target_return,
        callbacks=[keep_solved_policy],
    )
    total = time.perf_counter() - t0
    solved = result.solved_at
    setup = (
        total - result.history[-1]["wall_seconds"]
    )  # init + compile + first dispatch
    # The 16 evaluation episodes give a mean +-20, so the policies are also
    # scored on many fresh starts: the one that first reached the target, and the
    # final one.
    many_key = jax.random.key(seed + 1_000_003)
    final_returns = evaluate.evaluate(
        result.state.sac.actor_params, many_key, config.sac, config.env, final_eval_envs
    )
    solved_returns = (
        evaluate.evaluate(
            solved_policy[0], many_key, config.sac, config.env, final_eval_envs
        )
        if solved_policy
        else None
    )
    return {
        "recipe": name,
        "preset": "gymnasium"
        if config.env == PendulumParams.gymnasium()
        else "point_mass",
        "num_envs": config.num_envs,
        "batch_size": config.sac.batch_size,
        "updates_per_iteration": config.updates_per_iteration,
        "tau": config.sac.tau,
        "seed": seed,
        "compile_seconds": result.compile_seconds,
        "solved": solved is not None,
        "solve_env_steps": solved["env_steps"] if solved else None,
        "solve_seconds_after_compile": solved["wall_seconds"] if solved else None,
        "solve_seconds_total": (setup + solved["wall_seconds"]) if solved else None,
        "solved_policy_return_many": float(np.mean(np.asarray(solved_returns)))
        if solved
        else None,
        "final_eval_return": result.final_eval_return,
        "final_eval_return_many": float(np.mean(np.asarray(final_returns))),
        "final_eval_episodes": final_eval_envs,
        "total_env_steps": result.history[-1]["env_steps"],
        "total_seconds": total,
    }


# ----------------------------------------------------------------------------
# References, timed in the same run when installed.
# ----------------------------------------------------------------------------


def gymnax_runner(num_envs: int = 1024, steps: int = 500) -> Runner | None:
    """gymnax Pendulum-v1 as a :class:`Runner` (compiled here): vmap over
    envs, scan over ``steps`` steps a call, random actions, gymnax's own
    auto-reset. None if gymnax is not installed."""
    try:
        import gymnax
    except ImportError:
        return None
    env, env_params = gymnax.make("Pendulum-v1")
    keys = jax.random.split(jax.random.key(0), num_envs)
    _, env_state = jax.vmap(env.reset, in_axes=(0, None))(keys, env_params)

    @jax.jit
    def scan(env_state, key):
        def body(env_state, k):
            k_act, k_step = jax.random.split(k)
            actions = jax.random.uniform(k_act, (num_envs, 1), minval=-2.0, maxval=2.0)
            _, env_state, reward, _, _ = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
                jax.random.split(k_step, num_envs), env_state, actions, env_params
            )
            return env_state, reward

        return jax.lax.scan(body, env_state, jax.random.split(key, steps))

    key = jax.random.key(1)

    def run(count: int):
        for _ in range(count):
            jax.block_until_ready(scan(env_state, key))

    run(1)  # compile
    return Runner(
        "gymnax Pendulum-v1",
        run,
        num_envs * steps,
        num_envs,
        importlib.metadata.version("gymnax"),
    )


def gymnasium_runner(num_envs: int = 1024) -> Runner | None:
    """Gymnasium's ``SyncVectorEnv`` of Pendulum-v1 as a :class:`Runner`: a
    unit is one step of all envs, random actions, auto-reset included. None
    if gymnasium is not installed."""
    try:
        import gymnasium as gym
    except ImportError:
        return None
    envs = gym.make_vec("Pendulum-v1", num_envs=num_envs, vectorization_mode="sync")
    envs.reset(seed=0)
    actions = (
        np.random.default_rng(0).uniform(-2, 2, (64, num_envs, 1)).astype(np.float32)
    )
    step = [0]

    def run(count: int):
        for _ in range(count):
            envs.step(actions[step[0] % len(actions)])
            step[0] += 1

    run(1)
    return Runner(
        "Gymnasium SyncVectorEnv Pendulum-v1",
        run,
        num_envs,
        num_envs,
        importlib.metadata.version("gymnasium"),
    )


REFERENCE_RUNNERS = {"gymnax": gymnax_runner, "gymnasium": gymnasium_runner}


def compare_simulation(
    reference: str,
    num_envs: int = 1024,
    *,
    pairs: int = 7,
    min_seconds: float = MIN_WINDOW_SECONDS,
    ours: Runner | None = None,
) -> dict | None:
    """sacbook's simulation against ``reference`` (a key of
    :data:`REFERENCE_RUNNERS`) at ``num_envs``, timed interleaved by
    :func:`compare_throughput`. ``ours`` reuses a :func:`sacbook_runner`.
    None if the reference is not installed."""
    runner = REFERENCE_RUNNERS[reference](num_envs)
    if runner is None:
        return None
    return compare_throughput(
        ours or sacbook_runner(num_envs), runner, pairs=pairs, min_seconds=min_seconds
    )


def gymnax_simulation(num_envs: int = 1024, **kwargs) -> dict | None:
    """:func:`compare_simulation` against gymnax's Pendulum-v1."""
    return compare_simulation("gymnax", num_envs, **kwargs)


def gymnasium_simulation(num_envs: int = 1024, **kwargs) -> dict | None:
    """:func:`compare_simulation` against Gymnasium's vector env."""
    return compare_simulation("gymnasium", num_envs, **kwargs)


def rejax_time_to_solve(
    seed: int = 0, target_return: float = train.SOLVED_RETURN
) -> dict | None:
    """rejax's SAC with the Pendulum configuration from rejax's repository,
    timed from a cold start (compile included) for its whole 10k-step run,
    with the env step at which its evaluation first reached ``target_return``.
    None if rejax is not installed."""
    try:
        import rejax
    except ImportError:
        return None
    algo = rejax.SAC.create(
        env="Pendulum-v1",
        num_envs=1,
        buffer_size=10_000,
        fill_buffer=256,
        batch_size=256,
        learning_rate=0.01,
        num_epochs=1,
        total_timesteps=10_000,
        eval_freq=500,
        gamma=0.99,
        polyak=0.98,
        target_entropy_ratio=None,
        normalize_observations=True,
        agent_kwargs={"activation": "swish"},
    )
    t0 = time.perf_counter()
    train_fn = jax.jit(algo.train).lower(jax.random.key(seed)).compile()
    compile_seconds = time.perf_counter() - t0
    _, (lengths, returns) = jax.block_until_ready(train_fn(jax.random.key(seed)))
    total = time.perf_counter() - t0
    mean_returns = np.asarray(returns).mean(axis=-1)
    steps = np.arange(len(mean_returns)) * 500
    hit = np.nonzero(mean_returns >= target_return)[0]
    solve_steps = int(steps[hit[0]]) if hit.size else None
    # rejax runs its 10k steps as one call, so the time to reach the return is
    # estimated as compile + the same fraction of the run time
    run_seconds = total - compile_seconds
    return {
        "name": "rejax SAC (repository Pendulum config)",
        "compile_seconds": compile_seconds,
        "total_seconds": total,
        "solve_env_steps": solve_steps,
        "solve_seconds_total": (compile_seconds + run_seconds * solve_steps / 10_000)
        if hit.size
        else None,
        "final_eval_return": float(mean_returns[-1]),
        "version": importlib.metadata.version("rejax"),
    }


# ----------------------------------------------------------------------------
# Reference results: the bench reports that ship in sacbook/data, as a table.
# ----------------------------------------------------------------------------


def load_references() -> list[tuple[str, dict]]:
    """Every ``sacbook/data/bench_*.json`` as ``(file name, report)``, by name."""
    import importlib.resources
    import json

    folder = importlib.resources.files("sacbook") / "data"
    if not folder.is_dir():
        return []
    files = sorted(
        (
            f
            for f in folder.iterdir()
            if f.name.startswith("bench_") and f.name.endswith(".json")
        ),
        key=lambda f: f.name,
    )
    return [(f.name, json.loads(f.read_text())) for f in files]


def _rows(value) -> list[dict]:
    """A report entry as a list of rows (older reports stored one dict)."""
    return (
        value if isinstance(value, list) else [value] if isinstance(value, dict) else []
    )


def _fmt(x, fmt: str = "{:.3g}") -> str:
    return "-" if x is None else fmt.format(x)


def summarize_report(report: dict) -> dict[str, str]:
    """The comparable figures of a bench report (or of a live run shaped like
    one), as short label -> text pairs for :func:`format_table`."""
    dev = report.get("device", {})
    sims = _rows(report.get("simulation"))
    sim_1024 = next((r for r in sims if r["num_envs"] == 1024), None)
    sim_max = max(sims, key=lambda r: r["num_envs"], default=None)
    trains = _rows(report.get("training"))
    train_1024 = next((r for r in trains if r["num_envs"] == 1024), None)
    train_max = max(trains, key=lambda r: r["num_envs"], default=None)
    solves = [
        r
        for r in _rows(report.get("time_to_solve"))
        if r.get("preset", "gymnasium") == "gymnasium"
    ]
    default = next(
        (
            r
            for r in solves
            if r.get("num_envs") == 1024 and r.get("batch_size", 96) == 96
        ),
        None,
    )
    cold = [r for r in solves if r.get("solve_seconds_total") is not None]
    fastest = min(cold, key=lambda r: r["solve_seconds_total"], default=None)
    platform = dev.get("platform", "?")
    device = dev.get("device", "?")
    if platform == "cpu" and dev.get("cpu_count"):
        device = f"{dev['cpu_count']}-core CPU"
    out = {
        "recorded": dev.get("date", "-"),
        "device": device if platform != "cpu" or "CPU" in device else f"{device} (CPU)",
        "jax": dev.get("versions", {}).get("jax", "-"),
        "sim steps/s, N=1024": _fmt(sim_1024 and sim_1024["env_steps_per_second"]),
        "sim steps/s, largest N": (
            f"{_fmt(sim_max['env_steps_per_second'])} ({sim_max['num_envs']:,})"
            if sim_max
            else "-"
        ),
        "train steps/s, N=1024": _fmt(
            train_1024 and train_1024["env_steps_per_second"]
        ),
        "train updates/s, N=1024": _fmt(
            train_1024 and train_1024["updates_per_second"], "{:.0f}"
        ),
        "train steps/s, largest N": (
            f"{_fmt(train_max['env_steps_per_second'])} ({train_max['num_envs']:,})"
            if train_max
            else "-"
        ),
        "default: steps to -200": _fmt(
            default and default.get("solve_env_steps"), "{:,}"
        ),
        "default: train s to -200": _fmt(
            default and default.get("solve_seconds_after_compile"), "{:.1f}"
        ),
        "default: compile s": _fmt(
            default and default.get("compile_seconds"), "{:.1f}"
        ),
        # cold, in a fresh process: only `sacbook bench` measures it
        "default: cold s to -200": _fmt(
            default and default.get("solve_seconds_total"), "{:.1f}"
        ),
    }
    if fastest is not None and fastest is not default:
        out["fastest cold s to -200"] = (
            f"{fastest['solve_seconds_total']:.1f} (N={fastest['num_envs']}, "
            f"B={fastest['batch_size']})"
        )
    for name, row in (report.get("compare") or {}).items():
        if row and "env_steps_per_second" in row:
            out[f"{name} sim steps/s, N=1024"] = _fmt(row["env_steps_per_second"])
        elif row and row.get("solve_seconds_total") is not None:
            out[f"{name}: cold s to -200"] = _fmt(row["solve_seconds_total"], "{:.1f}")
    # sacbook's speed over each reference: median of interleaved pairs (reports
    # since 0.2)
    for name, row in (report.get("compare") or {}).items():
        stats = (row or {}).get("ratio")
        if stats:
            what = (
                f"N={row['num_envs']}"
                if "env_steps_per_second" in row
                else f"{stats.get('recipe', 'default')} to -200"
            )
            out[f"x {name}, {what} (median)"] = (
                f"{stats['median']:.3g} ({stats['iqr'][0]:.3g}-{stats['iqr'][1]:.3g})"
            )
    return out


def format_table(columns: list[tuple[str, dict]], width: int = 88) -> str:
    """Columns of :func:`summarize_report` side by side as text, at most
    ``width`` characters a line: columns that do not fit go to a next block."""
    keys = list(dict.fromkeys(k for _, col in columns for k in col))
    label_w = max(map(len, keys))
    widths = [
        max(len(title), *(len(col.get(k, "-")) for k in keys)) for title, col in columns
    ]
    blocks, block, used = [], [], label_w
    for i, w in enumerate(widths):
        if block and used + 3 + w > width:
            blocks.append(block)
            block, used = [], label_w
        block.append(i)
        used += 3 + w
    blocks.append(block)
    lines = []
    for block in blocks:
        if lines:
            lines.append("")
        lines.append(
            f"{'':{label_w}} | "
            + " | ".join(f"{columns[i][0]:>{widths[i]}}" for i in block)
        )
        lines.append("-" * label_w + "-+-" + "-+-".join("-" * widths[i] for i in block))
        for k in keys:
            lines.append(
                f"{k:{label_w}} | "
                + " | ".join(f"{columns[i][1].get(k, '-'):>{widths[i]}}" for i in block)
            )
    return "\n".join(lines)
