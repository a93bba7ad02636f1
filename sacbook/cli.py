"""Command line: ``sacbook render | train | bench``.

Bad options end with a one-line error and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
import sys
from pathlib import Path


class CliError(Exception):
    """A user error: printed as one line, exit status 2."""


class TrainingFailed(Exception):
    """A run that stopped early (a signal, or non-finite numbers): one line,
    exit status ``exit_code``."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an integer >= 1, got {text!r}"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an integer in [0, 2**32 - 1], got {text!r}"
        ) from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(
            f"expected an integer in [0, 2**32 - 1], got {value}"
        )
    return value


def _seed_list(text: str) -> list[int]:
    """``0-7``, ``0,3,5`` or ``0-3,8``: the seeds, in order, without repeats."""
    seeds: list[int] = []
    for part in text.split(","):
        low, dash, high = part.strip().partition("-")
        try:
            first = _seed(low)
            last = _seed(high) if dash else first
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(
                f"expected seeds like 0-7 or 0,3,5 (each in [0, 2**32 - 1]), "
                f"got {text!r}"
            ) from None
        if last < first:
            raise argparse.ArgumentTypeError(
                f"expected a range low-high with low <= high, got {part!r}"
            )
        if last - first >= 4096:
            raise argparse.ArgumentTypeError(
                f"expected at most 4096 seeds, got {part!r}"
            )
        seeds += [seed for seed in range(first, last + 1) if seed not in seeds]
    return seeds


def _seeds_text(seeds: list[int]) -> str:
    first, last = seeds[0], seeds[-1]
    if seeds == list(range(first, last + 1)) and len(seeds) > 2:
        return f"{first}-{last}"
    return ",".join(map(str, seeds))


def _devices(text: str) -> int | str:
    """``all`` or a device count >= 1 (checked against the machine later)."""
    if text == "all":
        return text
    try:
        return _positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected 'all' or an integer >= 1, got {text!r}"
        ) from None


def _writable_dir(path: str) -> Path:
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".sacbook-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise CliError(
            f"--out {path!r} is not a writable directory ({e.strerror or e})"
        ) from None
    return out


def _writable_file(path: str, suffix: str | None = None, option: str = "--out") -> Path:
    out = Path(path)
    if out.is_dir():
        raise CliError(f"{option} {path!r} is a directory; give a file name")
    if suffix is not None and out.suffix.lower() != suffix:
        raise CliError(f"{option} {path!r} must end in {suffix}")
    _writable_dir(str(out.parent if str(out.parent) else "."))
    return out


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _seconds(text: str) -> float:
    value = _finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, got {text!r}")
    return value


def _recipe(text: str) -> str:
    from sacbook import bench

    try:
        bench.recipe(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def cmd_render(args) -> int:
    """Simulate a few pendulums (zero torque, or random torques) and write a GIF."""
    import jax
    import numpy as np

    from sacbook import pendulum, viz

    out = _writable_file(args.out, ".gif")
    params = pendulum.PendulumParams.preset(args.preset)
    key_reset, key_torque = jax.random.split(jax.random.key(args.seed))
    state = pendulum.reset_state(key_reset, args.num_envs, params)
    torques = args.torque * np.ones((args.steps, args.num_envs), np.float32)
    thetas, _ = pendulum.rollout(state.theta, state.theta_dot, torques, params)
    anim = viz.animate_pendulums(
        np.asarray(thetas),
        dt=params.dt,
        torques=torques,
        max_torque=params.max_torque,
        every=args.every,
        suptitle=f"{args.preset} preset",
    )
    viz.save_gif(anim, out)
    print(
        f"wrote {out} ({args.num_envs} pendulums, {args.steps} steps, "
        f"{out.stat().st_size / 1e3:.0f} kB)"
    )
    return 0


# Options that shape a run; --resume continues the checkpoint's run, so these
# must match it (only --total-env-steps may change).
_RUN_OPTIONS = (
    "preset",
    "num_envs",
    "batch_size",
    "buffer_capacity",
    "updates_per_iteration",
    "seed",
)


def _train_config(args):
    """The TrainConfig the options ask for; its checks speak of the options."""
    try:
        return _make_train_config(args)
    except ValueError as e:
        raise CliError(_as_options(str(e))) from None


def _as_options(message: str) -> str:
    """A config's error message with its field names spelled as options."""
    from sacbook.device import CLI_OPTION_NAMES

    for field, option in {
        **CLI_OPTION_NAMES,
        "total_env_steps": "--total-env-steps",
    }.items():
        field = field.split(".")[-1]
        message = re.sub(
            rf"\b(?:TrainConfig\.|SACConfig\.|sac\.)?{field}\b", option, message
        )
    return message


def _check_divides(config, mesh) -> None:
    from sacbook import sharding

    try:
        sharding.check_divides(config, mesh)
    except ValueError as e:
        raise CliError(_as_options(str(e)) + " (--devices)") from None


def _make_train_config(args):
    from sacbook import checks, train
    from sacbook.pendulum import PendulumParams

    config = train.TrainConfig(env=PendulumParams.preset(args.preset or "gymnasium"))
    changes = {}
    if args.num_envs is not None:
        changes["num_envs"] = args.num_envs
        # room for two iterations of data, within the int32 row indices
        room = min(2 * args.num_envs, checks.INT32_MAX - args.num_envs)
        changes["buffer_capacity"] = max(config.buffer_capacity, room)
    if args.total_env_steps is not None:
        changes["total_env_steps"] = args.total_env_steps
    if args.buffer_capacity is not None:
        changes["buffer_capacity"] = args.buffer_capacity
    if args.updates_per_iteration is not None:
        changes["updates_per_iteration"] = args.updates_per_iteration
    sac_changes = {}
    if args.batch_size is not None:
        sac_changes["batch_size"] = args.batch_size
    if sac_changes:
        changes["sac"] = dataclasses.replace(config.sac, **sac_changes)
    return config.replace(**changes)


def _check_resume_options(args, config, seed) -> None:
    """--resume with an option that would change the run: one clear line."""
    from sacbook.pendulum import PendulumParams

    saved = {
        "num_envs": config.num_envs,
        "batch_size": config.sac.batch_size,
        "buffer_capacity": config.buffer_capacity,
        "updates_per_iteration": config.updates_per_iteration,
        "seed": seed,
    }
    for name in _RUN_OPTIONS:
        asked = getattr(args, name)
        if asked is None:
            continue
        same = (
            PendulumParams.preset(asked) == config.env
            if name == "preset"
            else asked == saved[name]
        )
        if not same:
            option = "--" + name.replace("_", "-")
            was = "" if name == "preset" else f" (the checkpoint's is {saved[name]})"
            raise CliError(
                f"--resume continues the checkpoint's run, so {option} {asked} "
                f"cannot apply{was}; only --total-env-steps may change"
            )


class _StopOnSignal:
    """Ctrl-C or SIGTERM asks training to stop at the end of the current chunk
    (a checkpoint is saved there); a second one aborts at once."""

    def __init__(self):
        self.signum = None

    def __enter__(self):
        import signal

        self._old = {
            s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)
        }
        return self

    def _handle(self, signum, frame):
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc):
        import signal

        for s, handler in self._old.items():
            signal.signal(s, handler)

    def __call__(self) -> bool:
        return self.signum is not None


def _enable_compilation_cache() -> None:
    """Keep compiled programs on disk (JAX's persistent cache), so a second
    ``sacbook train`` with the same settings starts without compiling
    (3-4 s saved on a 2-core CPU). ``--no-cache`` turns it off."""
    import os

    import jax

    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    try:
        (base / "sacbook" / "xla").mkdir(parents=True, exist_ok=True)
    except OSError:
        return  # no writable cache folder: compile every time
    jax.config.update("jax_compilation_cache_dir", str(base / "sacbook" / "xla"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)


def _check_fits(config, runs: int = 1, devices: int = 1) -> None:
    """A run too large for the device's memory ends here with one line that
    names the options to lower as this command spells them."""
    from sacbook import device

    try:
        device.check_fits(config, runs=runs, devices=devices)
    except device.RunTooLargeError as e:
        message = e.describe(device.CLI_OPTION_NAMES, subject="this run")
        raise CliError(message) from None


def _mesh(args):
    """The mesh ``--devices`` asks for (None without the option)."""
    if args.devices is None:
        return None
    from sacbook import sharding

    return sharding.make_mesh(args.devices)


def cmd_train(args) -> int:
    """Train SAC; write metrics, a learning curve, a GIF of the policy and a
    checkpoint."""
    if args.seeds is not None:
        return _train_seeds(args)
    mesh = _mesh(args)
    devices = 1 if mesh is None else mesh.devices.size
    if not args.resume:  # first: a run that cannot fit ends at once, touching nothing
        config = _train_config(args)
        if mesh is not None:
            _check_divides(config, mesh)
        _check_fits(config, devices=devices)
    import json

    import jax
    import numpy as np

    from sacbook import checkpoint, evaluate, train, viz

    out = _writable_dir(args.out)
    if not args.no_cache:
        _enable_compilation_cache()
    ckpt_dir = out / "checkpoint"
    state = history = None
    if args.resume:
        if checkpoint.latest_step(ckpt_dir) is None:
            raise CliError(f"--resume: no checkpoint in {str(ckpt_dir)!r}")
        state, config, seed, history = checkpoint.restore(ckpt_dir, mesh=mesh)
        _check_resume_options(args, config, seed)
        if args.total_env_steps is not None:
            config = config.replace(total_env_steps=args.total_env_steps)
        print(
            f"resuming from {ckpt_dir} at "
            f"{history[-1]['env_steps'] if history else 0} env steps"
        )
    else:
        config, seed = _train_config(args), args.seed or 0
        if ckpt_dir.exists():  # a fresh run replaces the previous one in --out
            import shutil

            print(f"replacing the previous run's checkpoint in {ckpt_dir}")
            shutil.rmtree(ckpt_dir)
    preset = "(checkpoint)" if args.resume else args.preset or "gymnasium"
    where = f"{devices} {jax.devices()[0].platform} devices" if mesh else None
    print(
        f"training on {where or jax.devices()[0].platform}: preset {preset}, "
        f"{config.num_envs} envs, "
        f"{config.total_iterations * config.num_envs} env steps, seed {seed}"
    )

    # metrics.jsonl holds exactly the checkpoint's history, then each new chunk:
    # a resumed run rewrites it, so lines written after the last checkpoint of
    # an interrupted run are neither lost nor doubled
    metrics_path = out / "metrics.jsonl"
    metrics_file = metrics_path.open("w")
    for record in history or []:
        metrics_file.write(json.dumps(record) + "\n")
    metrics_file.flush()

    def log_metrics(record, state):
        metrics_file.write(json.dumps(record) + "\n")
        metrics_file.flush()

    try:
        with _StopOnSignal() as stop:
            # check_memory=False: a fresh run was checked above; a resumed one has
            # its state
            result = train.train(
                config,
                seed,
                state=state,
                history=history,
                progress=not args.quiet,
                callbacks=[log_metrics],
                check_memory=False,
                checkpoint_dir=ckpt_dir,
                checkpoint_every=args.checkpoint_every,
                should_stop=stop,
                mesh=mesh,
            )
    except train.NonFiniteError as e:
        raise TrainingFailed(
            f"{e}; the checkpoints in {ckpt_dir} are from before it"
        ) from None
    finally:
        metrics_file.close()
    if result.interrupted:
        import signal

        steps = result.history[-1]["env_steps"] if result.history else 0
        raise TrainingFailed(
            f"stopped by {signal.Signals(stop.signum).name} at {steps} env steps, "
            f"checkpoint saved; resume with: sacbook train --resume --out {out}",
            exit_code=128 + stop.signum,
        )

    # learning curve
    import matplotlib.pyplot as plt

    steps = np.array([h["env_steps"] for h in result.history])
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    # with many envs all episodes end together, so few chunks have training
    # returns: draw markers
    ax.plot(
        steps,
        [h["episode_return"] for h in result.history],
        "s-",
        ms=4,
        label="training episodes",
        alpha=0.6,
    )
    evals = [
        (h["env_steps"], h["eval_return"]) for h in result.history if "eval_return" in h
    ]
    if evals:
        ax.plot(*zip(*evals), "o-", ms=3, label="deterministic evaluation")
    ax.axhline(train.SOLVED_RETURN, color="k", ls="--", lw=1, label="solved (-200)")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("episode return")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "learning_curve.png")
    plt.close(fig)

    # the final policy swinging up a few pendulums
    thetas, torques, _ = evaluate.policy_rollout(
        result.state.sac.actor_params,
        jax.random.key(seed + 1),
        config.sac,
        config.env,
        4,
        100,
    )
    anim = viz.animate_pendulums(
        np.asarray(thetas),
        dt=config.env.dt,
        torques=np.asarray(torques),
        max_torque=config.env.max_torque,
        every=2,
        suptitle="trained policy",
    )
    viz.save_gif(anim, out / "policy.gif")

    solved = result.solved_at
    # the 16 evaluation episodes use fixed starts (a steady curve); a mean over
    # many fresh starts says more about the final policy
    many = float(
        np.mean(
            np.asarray(
                evaluate.evaluate(
                    result.state.sac.actor_params,
                    jax.random.key(seed + 1_000_003),
                    config.sac,
                    config.env,
                    1024,
                )
            )
        )
    )
    print(
        f"compile {result.compile_seconds:.1f} s; "
        + (
            f"solved (eval >= {train.SOLVED_RETURN:.0f}) after "
            f"{solved['env_steps']} env steps, "
            f"{solved['wall_seconds']:.1f} s of training; "
            if solved
            else "not solved; "
        )
        + f"final evaluation return {result.final_eval_return:.1f} "
        + f"over {config.eval_envs} episodes, "
        + f"{many:.1f} over 1024 fresh episodes"
    )
    print(
        f"wrote {metrics_path}, {out / 'learning_curve.png'}, "
        f"{out / 'policy.gif'}, {ckpt_dir}/"
    )
    return 0


def _train_seeds(args) -> int:
    """``sacbook train --seeds``: every seed in one program; metrics and a
    checkpoint per seed, one plot of every curve, a summary across seeds."""
    if args.resume:
        raise CliError(
            "--resume continues one run: resume a seed of a --seeds run with "
            "--out DIR/seed_S --resume"
        )
    if args.seed is not None:
        raise CliError("use either --seed or --seeds, not both")
    config = _train_config(args)
    mesh = _mesh(args)
    devices = 1 if mesh is None else mesh.devices.size
    if mesh is not None:
        _check_divides(config, mesh)
    _check_fits(config, runs=len(args.seeds), devices=devices)
    import json
    import shutil

    import jax
    import matplotlib.pyplot as plt

    from sacbook import checkpoint, stats, train, viz

    out = _writable_dir(args.out)
    if not args.no_cache:
        _enable_compilation_cache()
    seeds = args.seeds
    print(
        f"training {len(seeds)} seeds ({_seeds_text(seeds)}) as one program on "
        f"{devices} {jax.devices()[0].platform} device(s): {config.num_envs} envs "
        f"and {config.total_iterations * config.num_envs} env steps per seed"
    )
    files = {}
    for seed in seeds:
        folder = out / f"seed_{seed}"
        folder.mkdir(exist_ok=True)
        files[seed] = (folder / "metrics.jsonl").open("w")

    def log_metrics(records, state):
        for seed, record in zip(seeds, records):
            files[seed].write(json.dumps(record) + "\n")
            files[seed].flush()

    try:
        with _StopOnSignal() as stop:
            results = train.train_seeds(
                config,
                seeds,
                progress=not args.quiet,
                callbacks=[log_metrics],
                check_memory=False,
                should_stop=stop,
                mesh=mesh,
            )
    except train.NonFiniteError as e:
        raise TrainingFailed(str(e)) from None
    finally:
        for f in files.values():
            f.close()
    for result in results:
        ckpt_dir = out / f"seed_{result.seed}" / "checkpoint"
        if ckpt_dir.exists():
            shutil.rmtree(ckpt_dir)
        checkpoint.save(ckpt_dir, result)

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    viz.plot_runs([r.history for r in results], ax, label="IQM, 95% CI")
    ax.set_title(f"{len(seeds)} seeds ({_seeds_text(seeds)})", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "learning_curves.png")
    plt.close(fig)

    final = [r.final_eval_return for r in results]
    estimate = stats.interval(final)
    solved = sum(r.solved_at is not None for r in results)
    summary = {
        "seeds": seeds,
        "final_eval_return": dict(zip(map(str, seeds), final)),
        "iqm": estimate.point,
        "ci95": [estimate.low, estimate.high],
        "solved": solved,
        "solved_at_env_steps": {
            str(r.seed): r.solved_at and r.solved_at["env_steps"] for r in results
        },
        "eval_envs": config.eval_envs,
        "compile_seconds": results[0].compile_seconds,
        "wall_seconds": results[0].history[-1]["wall_seconds"],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(
        f"compile {results[0].compile_seconds:.1f} s, training "
        f"{summary['wall_seconds']:.1f} s; final evaluation return ({config.eval_envs} "
        f"fixed starts per seed): {estimate}; solved {solved} of {len(seeds)}"
    )
    print(
        f"wrote {out}/seed_*/metrics.jsonl, seed_*/checkpoint/, "
        f"{out / 'learning_curves.png'}, {out / 'summary.json'}"
    )
    if results[0].interrupted:
        import signal

        raise TrainingFailed(
            f"stopped by {signal.Signals(stop.signum).name}; each seed's state is "
            f"saved in its checkpoint",
            exit_code=128 + stop.signum,
        )
    return 0


def _median_run(function: str, repeats: int, **kwargs) -> dict | None:
    """``bench.run_isolated(function)`` ``repeats`` times; the run with the
    median ``solve_seconds_total`` (unsolved runs count as slowest), with the
    times of all runs under ``"runs_solve_seconds_total"``."""
    from sacbook import bench

    return _median_of([bench.run_isolated(function, **kwargs) for _ in range(repeats)])


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _median_of(runs: list) -> dict | None:
    """The run of ``runs`` with the median ``solve_seconds_total`` (see
    :func:`_median_run`); None if the first is None (not installed)."""
    if runs[0] is None:
        return None

    def key(r):
        return (r["solve_seconds_total"] is None, r["solve_seconds_total"] or 0.0)

    median = dict(sorted(runs, key=key)[(len(runs) - 1) // 2])
    median["runs_solve_seconds_total"] = [r["solve_seconds_total"] for r in runs]
    return median


def cmd_bench(args) -> int:
    """Measure simulation and training throughput and time-to-solve."""
    import json

    from sacbook import bench

    sizes = tuple(args.sizes) if args.sizes else bench.SIM_SIZES
    report = {"device": bench.device_info()}
    log = (lambda *a: None) if args.json else print
    log(
        f"device: {report['device']['platform']} ({report['device']['device']}), "
        f"jax {report['device']['versions'].get('jax')}"
    )
    if args.compare:
        report["compare"] = {}
    # Cold starts first, each in a fresh process, before this process does any
    # heavy JAX work: measured on a 2-core CPU, a parent that has already run
    # the throughput benchmarks slows its children's cold start by about 0.1 s.
    if not args.skip_training:
        from functools import partial

        report["time_to_solve"] = []
        rejax = args.compare and _installed("rejax")
        log(
            "\ntime to solve (gymnasium preset, eval >= -200), "
            "each in a fresh process (compile included)"
            + (", runs alternating with rejax's" if rejax else "")
            + (f", median of {args.repeats} runs:" if args.repeats > 1 else ":")
        )
        # One round runs each recipe once, then rejax: ours and rejax alternate,
        # so a change in the machine's load falls on both sides of each ratio.
        calls = [
            partial(bench.run_isolated, "time_to_solve", config=name)
            for name in args.solve
        ]
        if rejax:
            calls.append(partial(bench.run_isolated, "rejax_time_to_solve"))
        runs = bench.interleave(calls, args.repeats)
        for name, name_runs in zip(args.solve, runs):
            s = _median_of(name_runs)
            s["config"] = name
            report["time_to_solve"].append(s)
            log(
                f"  sacbook {name:>8} (N = {s['num_envs']:>4}, B = {s['batch_size']}, "
                f"K = {s['updates_per_iteration']}, tau = {s['tau']:g}): "
                + (
                    f"{s['solve_seconds_total']:.2f} s "
                    f"(compile {s['compile_seconds']:.2f} s), "
                    f"{s['solve_env_steps']} env steps; "
                    f"that policy {s['solved_policy_return_many']:.1f}"
                    if s["solved"]
                    else "not solved"
                )
                + f", final policy {s['final_eval_return_many']:.1f} "
                + f"(mean returns over {s['final_eval_episodes']} fresh episodes)"
            )
        if args.compare:
            row = _median_of(runs[-1]) if rejax else None
            report["compare"]["rejax"] = row
            if row is None:
                log("  rejax: not installed")
            else:
                solve = (
                    f"eval >= -200 at {row['solve_env_steps']} steps, about "
                    f"{row['solve_seconds_total']:.2f} s"
                    if row["solve_env_steps"] is not None
                    else "not solved"
                )
                log(
                    f"  {row['name']}: {row['total_seconds']:.2f} s for its 10k steps "
                    f"(compile {row['compile_seconds']:.2f} s); {solve}; "
                    f"final return {row['final_eval_return']:.1f}"
                )
                # per pair (round): rejax's time / ours, so > 1 means sacbook is
                # faster
                row["ratio_by_recipe"] = {}
                for name, name_runs in zip(args.solve, runs):
                    stats = bench.ratio_stats(
                        [
                            r["solve_seconds_total"] / o["solve_seconds_total"]
                            if r["solve_seconds_total"] and o["solve_seconds_total"]
                            else None
                            for o, r in zip(name_runs, runs[-1])
                        ],
                        "rejax solve_seconds_total / sacbook solve_seconds_total, "
                        "per interleaved pair of runs",
                    )
                    if stats:
                        stats["recipe"] = name
                    row["ratio_by_recipe"][name] = stats
                    log(
                        f"  time to solve, rejax / sacbook {name}: "
                        + (
                            bench.format_ratio(stats)
                            if stats
                            else "no pair where both solved"
                        )
                    )
                row["ratio"] = row["ratio_by_recipe"][
                    "default" if "default" in args.solve else args.solve[0]
                ]
    report["simulation"] = bench.simulation_throughput(
        sizes, min_seconds=args.min_window
    )
    log("\nsimulation (random actions, auto-reset), env-steps/s")
    for row in report["simulation"]:
        log(f"  N = {row['num_envs']:>7}: {row['env_steps_per_second']:12.4g}")
    if not args.skip_training:
        from sacbook import train

        log("\ntraining throughput (default recipe, updates running)")
        report["training"] = []
        for n in args.train_sizes:
            config = train.TrainConfig()
            config = config.replace(
                num_envs=n, buffer_capacity=max(config.buffer_capacity, 2 * n)
            )
            t = bench.training_throughput(config)
            report["training"].append(t)
            log(
                f"  N = {n:>7}: {t['env_steps_per_second']:.4g} env-steps/s, "
                f"{t['updates_per_second']:.4g} updates/s "
                f"(compile {t['compile_seconds']:.2f} s)"
            )
    if not args.skip_training:
        import jax

        seeds = bench.seeds_throughput(
            seeds=args.seeds, pairs=args.pairs, min_seconds=args.min_window
        )
        report["seeds"] = seeds
        log(
            f"\n{args.seeds} seeds in one program against {args.seeds} runs one after "
            f"another (default recipe, updates running), env-steps/s of all seeds:\n"
            f"  one program {seeds['one_program_env_steps_per_second']:.4g}, one "
            f"after another {seeds['one_after_another_env_steps_per_second']:.4g}; "
            f"ratio {bench.format_ratio(seeds['ratio'])}"
        )
        counts = tuple(args.device_counts)
        if jax.device_count() >= max(counts):
            scaling = bench.sharded_throughput(
                device_counts=counts, pairs=args.pairs, min_seconds=args.min_window
            )
        else:  # one device here: virtual CPU devices, in a fresh process
            scaling = bench.sharded_throughput_virtual(
                max(counts),
                device_counts=counts,
                pairs=args.pairs,
                min_seconds=args.min_window,
            )
        report["sharding"] = scaling
        kind = "virtual CPU" if scaling["virtual_devices"] else scaling["platform"]
        log(f"\none run split over D {kind} devices (default recipe), env-steps/s:")
        for d in scaling["device_counts"]:
            rate = scaling["env_steps_per_second"][str(d)]
            speedup = scaling["speedup"][str(d)]
            log(f"  D = {d}: {rate:.4g}; / D = 1: {bench.format_ratio(speedup)}")
        if scaling["virtual_devices"]:
            log(
                "  (virtual devices share this machine's cores: this is the cost "
                "of the communication, not a speed-up)"
            )
    if args.compare:
        log(
            "\nsimulation references at N = 1024, timed in turn with sacbook "
            f"(sacbook, reference, sacbook, ...; windows >= {args.min_window:g} s), "
            "env-steps/s of the fastest window, and sacbook / reference per pair:"
        )
        ours = bench.sacbook_runner(1024)
        # Gymnasium's windows hold few steps and its pairs cost as much as
        # gymnax's: at most 5
        for name, pairs in (("gymnax", args.pairs), ("gymnasium", min(args.pairs, 5))):
            row = bench.compare_simulation(
                name, 1024, pairs=pairs, min_seconds=args.min_window, ours=ours
            )
            report["compare"][name] = row
            if row is None:
                log(f"  {name}: not installed")
            else:
                log(
                    f"  {row['name']}: {row['env_steps_per_second']:.4g} (sacbook "
                    f"{row['sacbook_env_steps_per_second']:.4g} in the same run)\n"
                    f"    sacbook / {name}: {bench.format_ratio(row['ratio'])}"
                )
    if args.json:
        print(json.dumps(report, indent=1))
    if args.save:
        path = _writable_file(args.save, ".json", "--save")
        path.write_text(json.dumps(report, indent=1) + "\n")
        log(f"\nwrote {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from sacbook.bench import SIM_SIZES as SIM
    from sacbook.pendulum import PRESETS

    parser = argparse.ArgumentParser(
        prog="sacbook", description=__doc__.splitlines()[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("render", help="simulate pendulums and write an animated GIF")
    p.add_argument(
        "--out", default="pendulums.gif", help="GIF path (default: pendulums.gif)"
    )
    p.add_argument(
        "--preset",
        default="point_mass",
        choices=PRESETS,
        help="physics preset (default point_mass)",
    )
    p.add_argument(
        "--num-envs",
        type=_positive_int,
        default=4,
        help="pendulums to draw (default 4)",
    )
    p.add_argument(
        "--steps", type=_positive_int, default=120, help="time steps (default 120)"
    )
    p.add_argument(
        "--every",
        type=_positive_int,
        default=2,
        help="keep every k-th frame (default 2)",
    )
    p.add_argument(
        "--torque",
        type=_finite_float,
        default=0.0,
        help="constant torque (default 0: free swing)",
    )
    p.add_argument("--seed", type=_seed, default=0)
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("train", help="train SAC on many pendulums at once")
    p.add_argument(
        "--preset", choices=PRESETS, help="physics preset (default gymnasium)"
    )
    p.add_argument(
        "--num-envs", type=_positive_int, help="parallel environments (default 1024)"
    )
    p.add_argument(
        "--total-env-steps",
        type=_positive_int,
        help="training length in env steps, all envs together",
    )
    p.add_argument(
        "--batch-size", type=_positive_int, help="transitions per gradient step"
    )
    p.add_argument(
        "--buffer-capacity",
        type=_positive_int,
        help="replay buffer capacity in transitions",
    )
    p.add_argument(
        "--updates-per-iteration",
        type=_positive_int,
        help="gradient updates per env step of all envs",
    )
    p.add_argument("--seed", type=_seed, help="PRNG seed (default 0)")
    p.add_argument(
        "--seeds",
        type=_seed_list,
        help="train several seeds as one program, e.g. 0-7 or 0,3,5: metrics and a "
        "checkpoint per seed in --out/seed_S, and one plot of every curve",
    )
    p.add_argument(
        "--devices",
        type=_devices,
        help="split each run over N devices (or all): envs and replay buffer "
        "sharded, networks replicated (default: one device)",
    )
    p.add_argument(
        "--out", default="runs/latest", help="output directory (default runs/latest)"
    )
    p.add_argument(
        "--resume", action="store_true", help="continue from the checkpoint in --out"
    )
    p.add_argument(
        "--checkpoint-every",
        type=_positive_int,
        default=10,
        help="chunks between checkpoints (default 10)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--no-cache",
        action="store_true",
        help="do not keep compiled programs in ~/.cache/sacbook",
    )
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "bench", help="measure simulation/training throughput and time-to-solve"
    )
    p.add_argument(
        "--json", action="store_true", help="print machine-readable JSON only"
    )
    p.add_argument(
        "--compare",
        action="store_true",
        help="also time gymnax, Gymnasium and rejax when installed",
    )
    p.add_argument(
        "--sizes",
        type=_positive_int,
        nargs="+",
        help=f"simulation sizes (default {' '.join(map(str, SIM))})",
    )
    p.add_argument(
        "--train-sizes",
        type=_positive_int,
        nargs="+",
        default=[1024],
        help="training-throughput sizes N (default 1024)",
    )
    p.add_argument(
        "--solve",
        type=_recipe,
        nargs="+",
        default=["default", "few_envs"],
        help="time-to-solve recipes: default, few_envs, or changes to the default "
        "such as N=8192,B=4096,K=4,tau=0.1,it=600 (default: default few_envs)",
    )
    p.add_argument(
        "--skip-training", action="store_true", help="only the simulation benchmark"
    )
    p.add_argument(
        "--seeds",
        type=_positive_int,
        default=8,
        help="seeds of the one-program against one-after-another ratio (default 8)",
    )
    p.add_argument(
        "--device-counts",
        type=_positive_int,
        nargs="+",
        default=[1, 2, 4],
        help="device counts of the sharded-throughput ratio (default 1 2 4; "
        "virtual CPU devices when this machine has fewer)",
    )
    p.add_argument("--save", help="also write the JSON report to this file")
    p.add_argument(
        "--repeats",
        type=_positive_int,
        default=1,
        help="time-to-solve runs per configuration, each in a fresh process, "
        "alternating with rejax's under --compare; reports the median and the "
        "ratio per pair (default 1)",
    )
    p.add_argument(
        "--pairs",
        type=_positive_int,
        default=7,
        help="--compare: pairs of simulation windows, sacbook and reference "
        "timed in turn (default 7; Gymnasium at most 5)",
    )
    p.add_argument(
        "--min-window",
        type=_seconds,
        default=0.5,
        help="shortest timed window of the simulation benchmarks, seconds "
        "(default 0.5; 0 times single calls)",
    )
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (CliError, ValueError, OSError) as e:
        print(f"sacbook {args.command}: error: {e}", file=sys.stderr)
        return 2
    except TrainingFailed as e:
        print(f"sacbook {args.command}: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"sacbook {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
