"""``sacbook bench``: throughput and time-to-solve, as a report or JSON.

The measurements are :mod:`sacbook.bench`'s; this module runs them in the
report's order and prints each as it comes.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from functools import partial

import jax

from sacbook import bench
from sacbook.cli import interrupts
from sacbook.cli.args import CliError, add_command, positive_int, seconds, writable_file


def _recipe(text: str) -> str:
    """A recipe spec that :func:`sacbook.bench.recipe` accepts, unchanged."""
    try:
        bench.recipe(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


# The options of ``sacbook bench``, in the order ``--help`` lists them.
FLAGS = {
    "--json": dict(action="store_true", help="print machine-readable JSON only"),
    "--compare": dict(
        action="store_true",
        help="also time gymnax, Gymnasium and rejax when installed",
    ),
    "--sizes": dict(
        type=positive_int,
        nargs="+",
        help=f"simulation sizes (default {' '.join(map(str, bench.SIM_SIZES))})",
    ),
    "--train-sizes": dict(
        type=positive_int,
        nargs="+",
        default=[1024],
        help="training-throughput sizes N (default 1024)",
    ),
    "--solve": dict(
        type=_recipe,
        nargs="+",
        default=["default", "few_envs"],
        help="time-to-solve recipes: default, few_envs, or changes to the default "
        "such as N=8192,B=4096,K=4,tau=0.1,it=600 (default: default few_envs)",
    ),
    "--skip-training": dict(action="store_true", help="only the simulation benchmark"),
    "--seeds": dict(
        type=positive_int,
        default=8,
        help="seeds of the one-program against one-after-another ratio (default 8)",
    ),
    "--device-counts": dict(
        type=positive_int,
        nargs="+",
        default=[1, 2, 4],
        help="device counts of the sharded-throughput ratio (default 1 2 4; "
        "virtual CPU devices when this machine has fewer)",
    ),
    "--roofline": dict(
        action="store_true",
        help="also measure this machine's limits (matmul FLOP/s at the update's "
        "shape and at 2048^3, memory bandwidth) and set each training "
        "throughput against them, with an iteration's FLOPs and bytes from "
        "sacbook.cost (with --skip-training: the limits only)",
    ),
    "--compile-stages": dict(
        action="store_true",
        help="also time trace, lower and XLA compile of each --solve recipe's "
        "chunk and of the evaluation, in a fresh process, with the programs' "
        "sizes (StableHLO lines, fusions, loops), and the default chunk under "
        "other XLA options (bench.OPTION_TRIALS): compile and run time, and "
        "whether the numbers change",
    ),
    "--processes": dict(
        action="store_true",
        help="also time 8 runs spread over 4 devices against one device, and one "
        "gradient mean across 2 jax.distributed processes of 2 devices against "
        "one process of 4 (virtual CPU devices where this machine has fewer: "
        "the mechanism and its cost, not a speed-up)",
    ),
    "--save": dict(help="also write the JSON report to this file"),
    "--repeats": dict(
        type=positive_int,
        default=1,
        help="time-to-solve runs per configuration, each in a fresh process, "
        "alternating with rejax's under --compare; reports the median and the "
        "ratio per pair (default 1)",
    ),
    "--pairs": dict(
        type=positive_int,
        default=7,
        help="--compare: pairs of simulation windows, sacbook and reference "
        "timed in turn (default 7; Gymnasium at most 5)",
    ),
    "--warm": dict(
        action="store_true",
        help="also time each --solve recipe warm: a second fresh process that "
        "finds its compiled programs in JAX's persistent cache, as a second "
        "`sacbook train` does",
    ),
    "--min-window": dict(
        type=partial(seconds, high=60.0),
        default=0.5,
        help="shortest timed window of the simulation benchmarks and of "
        "--roofline's, 0 to 60 seconds (default 0.5; 0 times single calls)",
    ),
}


def register(subparsers) -> None:
    """Add the ``bench`` command to ``subparsers``."""
    add_command(
        subparsers,
        "bench",
        "measure simulation/training throughput and time-to-solve",
        FLAGS,
        run,
    )


def run(args: argparse.Namespace) -> int:
    """Measure simulation and training throughput and time-to-solve."""
    interrupts.release()  # imported at the top: a Ctrl-C now ends the command
    # JAX takes 75% of a GPU's memory at first use, leaving the cold starts'
    # fresh processes too little: allocate as needed (the GPU suite did too).
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    save = None if args.save is None else writable_file(args.save, ".json", "--save")
    try:  # every size fits: checked before anything is measured
        bench.check_sizes(args.sizes, None if args.skip_training else args.train_sizes)
    except ValueError as e:
        raise CliError(str(e)) from None
    report = {"device": bench.device_info()}
    log = (lambda *a: None) if args.json else print
    log(
        f"device: {report['device']['platform']} ({report['device']['device']}), "
        f"jax {report['device']['versions'].get('jax')}"
    )
    if args.compare:
        report["compare"] = {}
    # Cold starts first, each in a fresh process, before this process does any
    # heavy JAX work: on a 2-core CPU, a parent that has already run the
    # throughput benchmarks slows its children's cold start by about 0.1 s.
    if not args.skip_training:
        _time_to_solve(args, report, log)
    if args.compile_stages:
        _compile_stages(args, report, log)
    sizes = tuple(args.sizes or bench.SIM_SIZES)
    report["simulation"] = bench.simulation_throughput(
        sizes, min_seconds=args.min_window
    )
    log("\nsimulation (random actions, auto-reset), env-steps/s")
    for row in report["simulation"]:
        log(f"  N = {row['num_envs']:>7}: {row['env_steps_per_second']:12.4g}")
    if not args.skip_training:
        _training(args, report, log)
    if args.processes:
        _processes(report, log)
    if args.roofline:
        _roofline(args, report, log)
    if args.compare:
        _compare_simulation(args, report, log)
    if args.json:
        print(json.dumps(report, indent=1))
    if save:
        save.write_text(json.dumps(report, indent=1) + "\n")
        log(f"\nwrote {save}")
    return 0


def _compile_stages(args, report: dict, log) -> None:
    """Trace, lower and compile seconds of each program, in a fresh process."""
    rows, _ = bench.call_in_fresh_process("compile_stages", {"recipes": args.solve})
    report["compile_stages"] = rows
    log(
        "\ncompile stages (s), in a fresh process; XLA compile as wall-clock "
        "and as CPU time"
    )
    log(
        f"  {'program':<22} {'trace':>6} {'lower':>6} {'compile':>8} {'(cpu)':>6}"
        f" {'StableHLO':>10} {'fusions':>8} {'loops':>6}"
    )
    for r in rows:
        log(
            f"  {r['program'][:22]:<22} {r['trace_seconds']:6.2f} "
            f"{r['lower_seconds']:6.2f} {r['compile_seconds']:8.2f} "
            f"{r['compile_cpu_seconds']:6.2f} {r['stablehlo_lines']:>10} "
            f"{r['fusions']:>8} {r['loops']:>6}"
        )
    trials, _ = bench.call_in_fresh_process("option_trials")
    report["option_trials"] = trials
    log("\nXLA options on the default chunk, in a fresh process: compile s, chunk s")
    for t in trials:
        outcome = t.get("error") or (
            f"{t['compile_seconds']:6.2f} {t['chunk_seconds']:7.3f}  "
            + ("same numbers" if t["same_numbers"] else "other numbers")
        )
        log(f"  {t['trial'][:22]:<22} {outcome}")


def _time_to_solve(args, report: dict, log) -> None:
    """Each recipe of ``--solve`` ``--repeats`` times in a fresh process,
    with rejax's run after each round under ``--compare``."""
    rejax = args.compare and bench.installed("rejax")
    log(
        "\ntime to solve (gymnasium preset, eval >= -200), "
        "each in a fresh process (compile included)"
        + (", runs alternating with rejax's" if rejax else "")
        + (f", median of {args.repeats} runs:" if args.repeats > 1 else ":")
    )
    # One round runs each recipe once, then rejax: ours and rejax alternate,
    # so a change in the machine's load falls on both sides of each ratio.
    calls = [
        partial(bench.run_isolated, "time_to_solve", config=name) for name in args.solve
    ]
    if rejax:
        calls.append(partial(bench.run_isolated, "rejax_time_to_solve"))
    runs = bench.interleave(calls, args.repeats)
    report["time_to_solve"] = []
    for name, name_runs in zip(args.solve, runs):
        s = bench.median_of(name_runs)
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
    if args.warm:
        _warm_start(args, report, log)
    if not args.compare:
        return
    row = bench.median_of(runs[-1]) if rejax else None
    report["compare"]["rejax"] = row
    if row is None:
        log("  rejax: not installed")
        return
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
    # per pair (round): rejax's time / ours, so > 1 means sacbook is faster
    row["ratio_by_recipe"] = bench.rejax_ratios(dict(zip(args.solve, runs)), runs[-1])
    for name, stats in row["ratio_by_recipe"].items():
        ratio = bench.format_ratio(stats) if stats else "no pair where both solved"
        log(f"  time to solve, rejax / sacbook {name}: {ratio}")
    row["ratio"] = row["ratio_by_recipe"][
        "default" if "default" in args.solve else args.solve[0]
    ]


def _warm_start(args, report: dict, log) -> None:
    """Each recipe in two fresh processes sharing a new compilation cache:
    the first fills it (a cold start), the second finds its programs there."""
    log("  warm start (programs from the persistent cache), the same recipes:")
    report["warm_start"] = []
    for name in args.solve:
        with tempfile.TemporaryDirectory(prefix="sacbook-cache-") as cache:
            cold, warm = (
                bench.run_isolated("time_to_solve", config=name, cache_dir=cache)
                for _ in range(2)
            )
        row = {"config": name, "cold": cold, "warm": warm}
        report["warm_start"].append(row)
        log(
            f"  sacbook {name:>8}: "
            + (
                f"{warm['solve_seconds_total']:.2f} s warm "
                f"(compile {warm['compile_seconds']:.2f} s) against "
                f"{cold['solve_seconds_total']:.2f} s cold"
                if warm["solved"] and cold["solved"]
                else "not solved"
            )
        )


def _training(args, report: dict, log) -> None:
    """Training throughput per ``--train-sizes``, then the two ratios: S seeds
    in one program, and one run split over D devices."""
    log("\ntraining throughput (default recipe, updates running)")
    report["training"] = []
    for n in args.train_sizes:
        t = bench.training_throughput(bench.with_num_envs(n))
        report["training"].append(t)
        log(
            f"  N = {n:>7}: {t['env_steps_per_second']:.4g} env-steps/s, "
            f"{t['updates_per_second']:.4g} updates/s "
            f"(compile {t['compile_seconds']:.2f} s)"
        )
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
    timing = dict(device_counts=counts, pairs=args.pairs, min_seconds=args.min_window)
    if jax.device_count() >= max(counts):
        scaling = bench.sharded_throughput(**timing)
    else:  # one device here: virtual CPU devices, in a fresh process
        scaling = bench.sharded_throughput_virtual(max(counts), **timing)
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


def _processes(report: dict, log) -> None:
    """Runs spread over 4 devices against one, and one gradient mean across
    2 processes against one process (:mod:`sacbook.bench.processes`)."""
    if jax.device_count() >= 4:
        spread = bench.runs_over_devices_throughput(devices=4)
    else:
        spread = bench.runs_over_devices_virtual(4)
    mean = bench.gradient_mean_across_processes(2, 2)
    report["processes"] = {"runs_over_devices": spread, "gradient_mean": mean}
    kind = "virtual CPU" if spread["virtual_devices"] else spread["platform"]
    log(
        f"\n{spread['runs']} runs ({spread['num_envs']} envs each) spread over "
        f"{spread['devices']} {kind} devices against one device, env-steps/s: "
        f"{spread['spread_env_steps_per_second']:.4g} against "
        f"{spread['one_device_env_steps_per_second']:.4g}; ratio "
        f"{bench.format_ratio(spread['ratio'])}"
    )
    across, alone = mean["across_processes"], mean["one_process"]
    log(
        f"one gradient mean ({across['bytes'] / 1e3:.0f} kB) over 4 devices: "
        f"{across['seconds'] * 1e3:.3g} ms across 2 processes (Gloo), "
        f"{alone['seconds'] * 1e3:.3g} ms in one process; ratio {mean['ratio']:.3g}"
    )
    if spread["virtual_devices"]:
        log(
            "  (virtual devices share this machine's cores: the mechanism and "
            "its cost, not a speed-up)"
        )


def _roofline(args, report: dict, log) -> None:
    """The machine's limits at the default recipe's update shape, and each
    training throughput of the report against them."""
    config = bench.with_num_envs(1024)
    limits = bench.machine_limits(
        *bench.update_shape(config), min_seconds=args.min_window
    )
    rows = [
        bench.training_roofline(
            bench.with_num_envs(t["num_envs"]), t["iterations_per_second"], limits
        )
        for t in report.get("training", [])
    ]
    report["roofline"] = {"limits": limits, "training": rows}
    at_update, large = limits["matmul_update_shape"], limits["matmul_large"]
    memory, big = limits["bandwidth"], f"{large['m']}^3"
    log(
        "\nroofline: this machine's limits (float32)\n"
        f"  matmul ({at_update['m']} x {at_update['n']}) @ ({at_update['n']} x "
        f"{at_update['n']}), {at_update['steps']} chained in a scan: "
        f"{at_update['flops_per_second']:.3g} FLOP/s\n"
        f"  matmul {big}: {large['flops_per_second']:.3g} FLOP/s\n"
        f"  memory, {memory['size_bytes'] / 2**20:.0f} MiB: read "
        f"{memory['read_bytes_per_second']:.3g} B/s, scaled in place "
        f"{memory['scale_bytes_per_second']:.3g} B/s\n"
        f"  balance: {limits['balance']:.3g} FLOP/B (the {big} matmul over memory)"
    )
    if rows:
        log("training against them (an iteration's FLOPs and bytes: sacbook.cost):")
    for r in rows:
        log(
            f"  N = {r['num_envs']}, B = {r['batch_size']}: "
            f"{r['iterations_per_second']:.4g} it/s x "
            f"{r['flops_per_iteration']:.3g} FLOP and "
            f"{r['bytes_per_iteration']:.3g} B\n"
            f"    {r['flops_per_second']:.3g} FLOP/s: "
            f"{r['fraction_of_matmul_update_shape']:.1%} of the matmul at "
            f"({r['batch_size']} x {r['width']}), "
            f"{r['fraction_of_matmul_large']:.1%} of {big}\n"
            f"    {r['bytes_per_second']:.3g} B/s: "
            f"{r['fraction_of_bandwidth']:.1%} of memory's\n"
            f"    intensity {r['intensity']:.3g} FLOP/B, balance "
            f"{r['balance']:.3g}: by the roofline, {r['bound']}-bound"
            + (
                f"; under {bench.LATENCY_FRACTION:.0%} of both roofs: "
                "latency-bound (many small steps)"
                if r["limited_by"] == "latency"
                else ""
            )
        )


def _compare_simulation(args, report: dict, log) -> None:
    """gymnax and Gymnasium at N = 1024, each timed in turn with sacbook."""
    log(
        "\nsimulation references at N = 1024, timed in turn with sacbook "
        f"(sacbook, reference, sacbook, ...; windows >= {args.min_window:g} s), "
        "env-steps/s of the fastest window, and sacbook / reference per pair:"
    )
    ours = bench.sacbook_runner(1024)
    # Gymnasium's windows hold few steps and its pairs cost as much as gymnax's:
    # at most 5
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
