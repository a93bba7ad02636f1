"""``sacbook train``: one run (``--resume`` continues it), or several seeds as
one program (``--seeds``). Writes metrics, plots, a GIF and checkpoints.

The options that shape a run are :mod:`sacbook.cli.options`'s table; the
pictures and the fresh-start score come from :mod:`sacbook.viz` and
:mod:`sacbook.evaluate`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import warnings
from pathlib import Path

from sacbook.cli import launch, options, run_folder, supervise
from sacbook.cli.args import (
    CliError,
    TrainingFailed,
    add_flags,
    describe,
    device_count,
    positive_int,
    seed_list,
    seeds_text,
)
from sacbook.cli.interrupts import StopOnSignal

# The options of ``sacbook train`` that do not shape the run (those that do are
# in options.OPTIONS).
FLAGS = {
    "--seeds": dict(
        type=seed_list,
        help="train several seeds as one program, e.g. 0-7 or 0,3,5: metrics and a "
        "checkpoint per seed in --out/seed_S, and one plot of every curve",
    ),
    "--devices": dict(
        type=device_count,
        help="split each run over N devices (or all): envs and replay buffer "
        "sharded, networks replicated (default: one device)",
    ),
    "--spread": dict(
        choices=("envs", "runs"),
        default="envs",
        help="with --seeds and --devices: what the devices split, each run's envs "
        "(envs, the default) or the seeds, whole runs per device with no "
        "communication (runs; the seed count must divide by the devices)",
    ),
    "--out": dict(
        help="the run's folder (default: a fresh runs/<date>-<time>, linked as "
        "runs/latest; with --resume, runs/latest)",
    ),
    "--resume": dict(action="store_true", help="continue from the checkpoint in --out"),
    "--overwrite": dict(
        action="store_true",
        help="replace the run that --out holds (default: refuse to)",
    ),
    "--checkpoint-every": dict(
        type=positive_int,
        default=10,
        help="chunks between checkpoints (default 10)",
    ),
    "--quiet": dict(action="store_true", help="no progress bar"),
    "--no-cache": dict(
        action="store_true",
        help="do not keep compiled programs in ~/.cache/sacbook",
    ),
}


def register(subparsers) -> None:
    """Add the ``train`` command to ``subparsers``."""
    p = subparsers.add_parser("train", help="train SAC on many pendulums at once")
    options.add_arguments(p)
    add_flags(p, FLAGS)
    add_flags(p, launch.FLAGS)
    p.set_defaults(func=run)


def _mesh(args: argparse.Namespace):
    """The mesh ``--devices`` asks for (None without the option)."""
    if args.distributed:
        return launch.mesh(args)
    if args.devices is None:
        return None
    from sacbook import sharding

    return sharding.make_mesh(args.devices)


def _train(train_fn, args, stop, callback, after_nan: str, *run, **kw):
    """``train_fn(*run, **kw)`` (:func:`sacbook.train.train` or
    ``train_seeds``) with ``callback``, the progress bar unless ``--quiet``,
    checkpoints every ``--checkpoint-every`` chunks and ``stop`` (Ctrl-C or
    SIGTERM, caught since the command began: a signal before training
    starts stops it before it starts). No memory check: a fresh run was
    checked before anything was written, and a resumed one has its state.
    Returns the result; a non-finite run ends with one line (the error, then
    ``after_nan``)."""
    from sacbook import records

    if stop():
        raise stop.stopped(" before training began")
    try:
        return train_fn(
            *run,
            progress=not args.quiet,
            callbacks=[callback],
            check_memory=False,
            checkpoint_every=args.checkpoint_every,
            should_stop=stop,
            **kw,
        )
    except records.NonFiniteError as e:
        raise TrainingFailed(f"{e}{after_nan}") from None


def run(args: argparse.Namespace) -> int:
    """Train SAC; write metrics, a learning curve, a GIF of the policy and a
    checkpoint. With ``--distributed``, as one process of a job
    (:mod:`sacbook.cli.launch`): every failure ends each process in one line."""
    if not launch.wanted(args):
        return _run(args)
    if getattr(args, "argv", None) is not None and not supervise.is_child():
        # the training runs in a child: one line even if JAX aborts it
        return supervise.run_child(args.argv, args.process_id, args.num_processes)
    try:
        launch.join(args)
        with launch.quiet_unless_primary():
            code = _run(args)
    except BaseException as e:  # every process ends, none left in a collective
        launch.after_failure(e)
        return launch.end(*describe("train", e))
    return launch.end(None, code)


def _run(args: argparse.Namespace) -> int:
    if args.seeds is not None:
        return _run_seeds(args)
    if args.spread == "runs":
        raise CliError("--spread runs spreads the seeds of --seeds over the devices")
    mesh = _mesh(args)
    if not args.resume:  # first: a run that cannot fit ends at once, touching nothing
        config = options.train_config(args)
        options.check_run(config, mesh)
    with StopOnSignal() as stop, run_folder.prepared(args) as out:
        return _run_one(args, out, mesh, None if args.resume else config, stop)


def _run_one(args, out: Path, mesh, config, stop) -> int:
    """One run into ``out``: fresh with ``config``, or resumed (None). In a
    job over many processes, process 0 writes the files; every process
    trains and writes its checkpoint shards."""
    import jax

    from sacbook import checkpoint, distributed, evaluate, export, plots, train, viz

    primary = distributed.is_primary()
    if not args.resume and primary:  # first: --resume can restart it from here on
        run_folder.write_run_config(out, config, args.seed or 0)
    distributed.barrier("run-config")

    devices = 1 if mesh is None else mesh.devices.size
    ckpt_dir = out / "checkpoint"
    state = history = None
    if args.resume and checkpoint.latest_step(ckpt_dir) is None:
        # stopped before its first checkpoint (killed while compiling): the
        # run's settings are in RUN_CONFIG, and it starts from the beginning
        if ckpt_dir.exists() and not ckpt_dir.is_dir():
            raise CliError(f"--resume: {ckpt_dir} is not a folder; move it away")
        config, seed = run_folder.read_run_config(out)
        options.check_resume(args, config, seed)
        if args.total_env_steps is not None:
            config = config.replace(total_env_steps=args.total_env_steps)
        kept = run_folder.keep_unbacked_metrics(out) if primary else ""
        print(f"no checkpoint in {ckpt_dir}: the run starts from the beginning{kept}")
    elif args.resume:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", checkpoint.CheckpointWarning)
            state, config, seed, history = checkpoint.restore(ckpt_dir, mesh=mesh)
        for warning in caught:
            step = int(state.iteration)
            moved = run_folder.set_aside(ckpt_dir, step, rename=primary)
            if primary:
                print(f"sacbook train: {warning.message}{moved}", file=sys.stderr)
        distributed.barrier("set-aside")
        options.check_resume(args, config, seed)
        if args.total_env_steps is not None:
            config = config.replace(total_env_steps=args.total_env_steps)
        done = int(state.iteration) >= config.total_iterations
        print(
            f"resuming from {ckpt_dir} at step {int(state.iteration)}, "
            f"{history[-1]['env_steps'] if history else 0} env steps"
            + (": the run is as long as asked already, nothing to train" * done)
        )
    else:
        seed = args.seed or 0

    saved = len(checkpoint.all_steps(ckpt_dir))  # every process: orbax syncs them

    def check_space():
        try:
            run_folder.check_checkpoint_space(out, config, saved=saved)
        except CliError:
            if not args.resume:  # a refused run leaves no run behind
                (out / run_folder.RUN_CONFIG).unlink(missing_ok=True)
            raise

    distributed.on_primary(check_space, "space", CliError)
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
    if primary:
        run_folder.rewrite_records(metrics_path, history or [])
    opened = metrics_path.open("a") if primary else contextlib.nullcontext()
    with opened as metrics_file:
        if stop():
            raise stop.stopped(
                f" before training began; start it with: sacbook train --resume "
                f"--out {out}"
            )

        def log_metrics(progress) -> None:
            if primary:
                run_folder.write_record(metrics_file, progress.record)

        result = _train(
            train.train,
            args,
            stop,
            log_metrics,
            f"; the checkpoints in {ckpt_dir} are from before it",
            config,
            seed,
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

    if not primary:
        return 0
    # the networks on this host (replicated on every device): what follows
    # runs on this process's own device, never the job's mesh
    params = distributed.fetch(result.state.sac.actor_params)
    plots.save_learning_curve(result.history, out / "learning_curve.png")
    viz.save_policy_gif(params, config, seed, out / "policy.gif")
    if stop():  # a signal after training: the run is saved, the rest can wait
        raise stop.stopped(
            f" after training, checkpoint saved; write policy.json with: "
            f"sacbook train --resume --out {out}"
        )
    solved = result.solved_at
    # the config.eval_envs evaluation episodes use fixed starts (a steady
    # curve); a mean over many fresh starts says more about the final policy
    many = evaluate.fresh_start_return(params, config, seed)
    facts = {"seed": seed, "env_steps": result.history[-1]["env_steps"]}
    facts["fresh_start_return"] = many
    export.write_policy(out / "policy.json", params, config.sac, config.env, facts)
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
        f"{out / 'policy.gif'}, {out / 'policy.json'}, {ckpt_dir}/"
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
    devices = options.check_run(config, mesh, runs=len(seeds), over=args.spread)
    from sacbook import distributed

    with StopOnSignal() as stop, run_folder.prepared(args) as out:
        distributed.on_primary(
            lambda: run_folder.check_checkpoint_space(out, config, runs=len(seeds)),
            "space",
            CliError,
        )
        return _seeds_into(args, out, config, seeds, mesh, devices, stop)


def _seeds_into(args, out: Path, config, seeds, mesh, devices: int, stop) -> int:
    """``--seeds`` into ``out``: every seed in one program."""
    import jax
    import matplotlib.pyplot as plt

    from sacbook import distributed, plots, stats, train

    primary = distributed.is_primary()  # process 0 writes; all save checkpoints
    print(
        f"training {len(seeds)} seeds ({seeds_text(seeds)}) as one program on "
        f"{devices} {jax.devices()[0].platform} device(s)"
        + (" (seeds spread over them)" if args.spread == "runs" else "")
        + f": {config.num_envs} envs "
        f"and {config.total_iterations * config.num_envs} env steps per seed"
    )
    folders = [out / f"seed_{seed}" for seed in seeds]
    # each seed's folder is a run folder of its own (--out DIR/seed_S --resume):
    # its lock held while this runs, its run.json for a resume before a checkpoint
    with contextlib.ExitStack() as held:
        if primary:
            run_folder.room_for_files(2 * len(seeds))  # a lock and metrics a seed
        for folder, seed in zip(folders, seeds) if primary else ():
            folder.mkdir(exist_ok=True)
            held.enter_context(run_folder.locked(folder))
            run_folder.write_run_config(folder, config, seed)
        paths = [folder / "metrics.jsonl" for folder in folders] if primary else []
        files = [held.enter_context(path.open("w")) for path in paths]
        distributed.barrier("seed-folders")

        def log_metrics(progress) -> None:
            for file, record in zip(files, progress.records):
                run_folder.write_record(file, record)

        results = _train(
            train.train_seeds,
            args,
            stop,
            log_metrics,
            "",
            config=config,
            seeds=seeds,
            checkpoint_dirs=[folder / "checkpoint" for folder in folders],
            mesh=mesh,
            over=args.spread,
        )
    if not primary:
        if results[0].interrupted:
            raise stop.stopped("; each seed's state is saved in its checkpoint")
        return 0

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
