"""``sacbook train``: one run (``--resume`` continues it), or several seeds as
one program (``--seeds``). Writes metrics, plots, a GIF and checkpoints.

The options that shape a run are :mod:`sacbook.cli.options`'s table; the
pictures and the fresh-start score come from :mod:`sacbook.viz` and
:mod:`sacbook.evaluate`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
from pathlib import Path

from sacbook.cli import options
from sacbook.cli.args import (
    CliError,
    TrainingFailed,
    device_count,
    positive_int,
    seed_list,
    seeds_text,
    writable_dir,
)


def register(subparsers) -> None:
    """Add the ``train`` command to ``subparsers``."""
    p = subparsers.add_parser("train", help="train SAC on many pendulums at once")
    options.add_arguments(p)
    p.add_argument(
        "--seeds",
        type=seed_list,
        help="train several seeds as one program, e.g. 0-7 or 0,3,5: metrics and a "
        "checkpoint per seed in --out/seed_S, and one plot of every curve",
    )
    p.add_argument(
        "--devices",
        type=device_count,
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
        type=positive_int,
        default=10,
        help="chunks between checkpoints (default 10)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--no-cache",
        action="store_true",
        help="do not keep compiled programs in ~/.cache/sacbook",
    )
    p.set_defaults(func=run)


class _StopOnSignal:
    """Ctrl-C or SIGTERM asks training to stop at the end of the current chunk
    (a checkpoint is saved there); a second one aborts at once."""

    def __init__(self):
        self.signum = None

    def __enter__(self):
        self._old = {
            s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)
        }
        return self

    def _handle(self, signum, frame):
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc):
        for s, handler in self._old.items():
            signal.signal(s, handler)

    def __call__(self) -> bool:
        return self.signum is not None

    def stopped(self, message: str) -> TrainingFailed:
        """The error that ends a run this signal stopped: exit 128 + signum."""
        name = signal.Signals(self.signum).name
        return TrainingFailed(f"stopped by {name}{message}", 128 + self.signum)


def _enable_compilation_cache() -> None:
    """Keep compiled programs on disk (JAX's persistent cache), so a second
    ``sacbook train`` with the same settings starts without compiling
    (3-4 s saved on a 2-core CPU). ``--no-cache`` turns it off."""
    import jax

    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    try:
        (base / "sacbook" / "xla").mkdir(parents=True, exist_ok=True)
    except OSError:
        return  # no writable cache folder: compile every time
    jax.config.update("jax_compilation_cache_dir", str(base / "sacbook" / "xla"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)


def _mesh(args: argparse.Namespace):
    """The mesh ``--devices`` asks for (None without the option)."""
    if args.devices is None:
        return None
    from sacbook import sharding

    return sharding.make_mesh(args.devices)


def _open_output(args: argparse.Namespace) -> Path:
    """The --out folder, writable, with the compilation cache turned on
    unless --no-cache."""
    out = writable_dir(args.out)
    if not args.no_cache:
        _enable_compilation_cache()
    return out


def _train(train_fn, args: argparse.Namespace, callback, after_nan: str, **kwargs):
    """``train_fn(**kwargs)`` (:func:`sacbook.train.train` or
    ``train_seeds``) with ``callback``, the progress bar unless ``--quiet``,
    checkpoints every ``--checkpoint-every`` chunks and a stop on Ctrl-C or
    SIGTERM. No memory check: a fresh run was checked before anything was
    written, and a resumed one has its state. Returns ``(result, stop)``; a
    non-finite run ends with one line (the error, then ``after_nan``)."""
    from sacbook import records

    try:
        with _StopOnSignal() as stop:
            result = train_fn(
                progress=not args.quiet,
                callbacks=[callback],
                check_memory=False,
                checkpoint_every=args.checkpoint_every,
                should_stop=stop,
                **kwargs,
            )
    except records.NonFiniteError as e:
        raise TrainingFailed(f"{e}{after_nan}") from None
    return result, stop


def _write_record(file, record: dict) -> None:
    file.write(json.dumps(record) + "\n")
    file.flush()


def run(args: argparse.Namespace) -> int:
    """Train SAC; write metrics, a learning curve, a GIF of the policy and a
    checkpoint."""
    if args.seeds is not None:
        return _run_seeds(args)
    mesh = _mesh(args)
    devices = 1 if mesh is None else mesh.devices.size
    if not args.resume:  # first: a run that cannot fit ends at once, touching nothing
        config = options.train_config(args)
        options.check_run(config, mesh)
    import jax

    from sacbook import checkpoint, evaluate, plots, train, viz

    out = _open_output(args)
    ckpt_dir = out / "checkpoint"
    state = history = None
    if args.resume:
        if checkpoint.latest_step(ckpt_dir) is None:
            raise CliError(f"--resume: no checkpoint in {str(ckpt_dir)!r}")
        state, config, seed, history = checkpoint.restore(ckpt_dir, mesh=mesh)
        options.check_resume(args, config, seed)
        if args.total_env_steps is not None:
            config = config.replace(total_env_steps=args.total_env_steps)
        print(
            f"resuming from {ckpt_dir} at "
            f"{history[-1]['env_steps'] if history else 0} env steps"
        )
    else:
        seed = args.seed or 0
        if ckpt_dir.exists():  # a fresh run replaces the previous one in --out
            print(f"replacing the previous run's checkpoint in {ckpt_dir}")
            shutil.rmtree(ckpt_dir)
    preset = "(checkpoint)" if args.resume else args.preset or "gymnasium"
    platform = jax.devices()[0].platform
    print(
        f"training on {f'{devices} {platform} devices' if mesh else platform}: "
        f"preset {preset}, {config.num_envs} envs, "
        f"{config.total_iterations * config.num_envs} env steps, seed {seed}"
    )

    # metrics.jsonl holds exactly the checkpoint's history, then each new chunk:
    # a resumed run rewrites it, so lines written after the last checkpoint of
    # an interrupted run are neither lost nor doubled
    metrics_path = out / "metrics.jsonl"
    with metrics_path.open("w") as metrics_file:
        for record in history or []:
            _write_record(metrics_file, record)
        result, stop = _train(
            train.train,
            args,
            lambda progress: _write_record(metrics_file, progress.record),
            f"; the checkpoints in {ckpt_dir} are from before it",
            config=config,
            seed=seed,
            state=state,
            history=history,
            checkpoint_dir=ckpt_dir,
            mesh=mesh,
        )
    if result.interrupted:
        steps = result.history[-1]["env_steps"] if result.history else 0
        raise stop.stopped(
            f" at {steps} env steps, checkpoint saved; "
            f"resume with: sacbook train --resume --out {out}"
        )

    params = result.state.sac.actor_params
    plots.save_learning_curve(result.history, out / "learning_curve.png")
    viz.save_policy_gif(params, config, seed, out / "policy.gif")
    solved = result.solved_at
    # the config.eval_envs evaluation episodes use fixed starts (a steady
    # curve); a mean over many fresh starts says more about the final policy
    many = evaluate.fresh_start_return(params, config, seed)
    print(
        f"compile {result.compile_seconds:.1f} s; "
        + (
            f"solved (eval >= {evaluate.SOLVED_RETURN:.0f}) after "
            f"{solved['env_steps']} env steps, "
            f"{solved['wall_seconds']:.1f} s of training; "
            if solved
            else "not solved; "
        )
        + f"final evaluation return {result.final_eval_return:.1f} "
        + f"over {config.eval_envs} episodes, "
        + f"{many:.1f} over {evaluate.FRESH_EPISODES} fresh episodes"
    )
    print(
        f"wrote {metrics_path}, {out / 'learning_curve.png'}, "
        f"{out / 'policy.gif'}, {ckpt_dir}/"
    )
    return 0


def _run_seeds(args: argparse.Namespace) -> int:
    """``sacbook train --seeds``: every seed in one program; metrics and a
    checkpoint per seed, one plot of every curve, a summary across seeds."""
    if args.resume:
        raise CliError(
            "--resume continues one run: resume a seed of a --seeds run with "
            "--out DIR/seed_S --resume"
        )
    if args.seed is not None:
        raise CliError("use either --seed or --seeds, not both")
    config, seeds = options.train_config(args), args.seeds
    mesh = _mesh(args)
    devices = options.check_run(config, mesh, runs=len(seeds))
    import jax
    import matplotlib.pyplot as plt

    from sacbook import plots, stats, train

    out = _open_output(args)
    print(
        f"training {len(seeds)} seeds ({seeds_text(seeds)}) as one program on "
        f"{devices} {jax.devices()[0].platform} device(s): {config.num_envs} envs "
        f"and {config.total_iterations * config.num_envs} env steps per seed"
    )
    folders = [out / f"seed_{seed}" for seed in seeds]
    files = []
    for folder in folders:
        folder.mkdir(exist_ok=True)
        if (folder / "checkpoint").exists():  # a fresh run replaces the previous
            shutil.rmtree(folder / "checkpoint")
        files.append((folder / "metrics.jsonl").open("w"))

    def log_metrics(progress) -> None:
        for file, record in zip(files, progress.records):
            _write_record(file, record)

    try:
        results, stop = _train(
            train.train_seeds,
            args,
            log_metrics,
            "",
            config=config,
            seeds=seeds,
            checkpoint_dirs=[folder / "checkpoint" for folder in folders],
            mesh=mesh,
        )
    finally:
        for file in files:
            file.close()

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    plots.plot_runs([r.history for r in results], ax, label="IQM, 95% CI")
    ax.set_title(f"{len(seeds)} seeds ({seeds_text(seeds)})", fontsize=10)
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
        raise stop.stopped("; each seed's state is saved in its checkpoint")
    return 0
