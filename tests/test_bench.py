"""sacbook.bench: recipes, the reference table of recorded reports, timing,
the fresh-process helper and the time-to-solve record."""

import json

import pytest

from sacbook import bench, cost, jit
from sacbook.bench import measure, roofline
from sacbook.config import TrainConfig
from sacbook.pendulum import PendulumParams
from sacbook.sac import SACConfig


def test_recipe_names_and_changes_to_the_default():
    assert bench.recipe("default") == TrainConfig()
    assert bench.recipe("N=1024") == TrainConfig()  # the same program, compiled once
    assert bench.recipe("few_envs") == TrainConfig.few_envs()
    c = bench.recipe("N=8192,B=4096,K=4,tau=0.1,it=600")
    assert (c.num_envs, c.sac.batch_size, c.updates_per_iteration, c.sac.tau) == (
        8192,
        4096,
        4,
        0.1,
    )
    assert c.total_iterations == 600 and c.buffer_capacity >= 2 * 8192
    # every recipe the GPU suite runs keeps K * tau <= 0.5, Chapter 4's rule
    for spec in bench.ACCELERATOR_RECIPES:
        c = bench.recipe(spec)
        assert c.updates_per_iteration * c.sac.tau <= 0.5 + 1e-9, spec
    # the training-throughput sizes: the default with N envs, the buffer >= 2N
    assert bench.with_num_envs(1024) == TrainConfig()
    big = bench.with_num_envs(1_000_000)
    assert big.num_envs == 1_000_000 and big.buffer_capacity == 2_000_000
    assert big.replace(num_envs=1024, buffer_capacity=1_000_000) == TrainConfig()


@pytest.mark.parametrize(
    "spec, words",
    [
        ("X=1", "KEY in N, B, K, tau, it"),
        ("B=abc", "B must be an integer"),
        ("tau=fast", "tau must be a number"),
        ("", "empty"),
        ("N=0", "N and it must be"),
        ("B=0", "batch_size"),
        ("tau=2", "tau"),
    ],
)
def test_bad_recipes_are_refused_with_a_clear_line(spec, words):
    with pytest.raises(ValueError, match=words) as info:
        bench.recipe(spec)
    assert "\n" not in str(info.value)


def _report(platform="cpu", device="cpu", solves=()):
    return {
        "device": {
            "date": "2026-11-30",
            "platform": platform,
            "device": device,
            "cpu_count": 2,
            "versions": {"jax": "0.7.2"},
        },
        "simulation": [
            {"num_envs": 1024, "env_steps_per_second": 4.5e7},
            {"num_envs": 1_048_576, "env_steps_per_second": 2.0e10},
        ],
        "training": [
            {"num_envs": 1024, "env_steps_per_second": 2e5, "updates_per_second": 3100},
            {
                "num_envs": 65536,
                "env_steps_per_second": 9e6,
                "updates_per_second": 2000,
            },
        ],
        "time_to_solve": list(solves),
    }


def test_summarize_report_reads_old_and_new_shapes():
    solves = [
        {
            "num_envs": 1024,
            "batch_size": 96,
            "solve_env_steps": 102400,
            "solve_seconds_total": 3.3,
            "compile_seconds": 2.5,
        },
        {"num_envs": 8192, "batch_size": 4096, "solve_seconds_total": 1.7},
    ]
    new = bench.summarize_report(_report("gpu", "NVIDIA H200", solves))
    assert new["device"] == "NVIDIA H200"
    assert new["sim steps/s, largest N"] == "2e+10 (1,048,576)"
    assert new["train steps/s, largest N"] == "9e+06 (65,536)"
    assert new["default: cold s to -200"] == "3.3"
    assert new["fastest cold s to -200"] == "1.7 (N=8192, B=4096)"
    old = _report()
    old["training"] = old["training"][0]  # reports before 0.2 stored one training row
    assert bench.summarize_report(old)["train updates/s, N=1024"] == "3100"
    assert bench.summarize_report(old)["device"] == "2-core CPU"
    assert bench.summarize_report({})["default: steps to -200"] == "-"
    assert new["seeds in one program, speed-up"] == "-"  # the report has no seeds
    seeds = {"seeds": 8, "ratio": {"median": 7.5495, "iqr": [7.5, 7.6]}}
    with_seeds = bench.summarize_report({**_report(), "seeds": seeds})
    assert with_seeds["seeds in one program, speed-up"] == "7.5x (8 seeds)"


def test_reference_table_fits_88_columns_and_shows_every_column():
    columns = [(f"reference {i}", bench.summarize_report(_report())) for i in range(5)]
    text = bench.format_table(columns)
    assert max(map(len, text.splitlines())) <= 88
    assert all(f"reference {i}" in text for i in range(5))


def test_shipped_references_load():
    refs = bench.load_references()
    assert refs and all(
        name.startswith("bench_") and "device" in rep for name, rep in refs
    )


# ----------------------------------------------------------------------------
# Timing on a noisy machine: calibrated windows, interleaved pairs, ratios
# ----------------------------------------------------------------------------


class FakeClock:
    """A clock that moves only when a fake workload runs."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_calibrate_finds_a_window_of_at_least_min_seconds():
    clock, counts = FakeClock(), []

    def run(count):  # 0.1 s of fixed cost, then 3 ms a step
        counts.append(count)
        clock.now += 0.1 + 0.003 * count

    count = bench.calibrate(run, min_seconds=0.5, clock=clock)
    assert 0.1 + 0.003 * count >= 0.5  # scaled towards 1.25 x 0.5 s, the margin
    assert 0.1 + 0.003 * count < 0.5 * 1.25 * 1.5  # and not much longer
    assert (
        counts[0] == 1 and len(counts) <= 6
    )  # a few geometric tries (the fixed cost slows them)
    assert counts == sorted(counts)
    # a call already longer than the window: one unit, no more tries
    clock, counts = FakeClock(), []

    def slow(count):
        counts.append(count)
        clock.now += 2.0 * count

    assert bench.calibrate(slow, min_seconds=0.5, clock=clock) == 1 and counts == [1]
    # min_seconds 0 times single calls
    assert bench.calibrate(run, min_seconds=0.0, clock=clock) == 1


def test_interleave_calls_in_turn():
    order = []
    a = lambda: order.append("A") or len(order)  # noqa: E731
    b = lambda: order.append("B") or -len(order)  # noqa: E731
    results = bench.interleave([a, b], 3)
    assert order == ["A", "B"] * 3
    assert results == [[1, 3, 5], [-2, -4, -6]]
    assert bench.interleave([a, b, a], 0) == [[], [], []]


def test_ratio_stats_from_pairs():
    stats = bench.ratio_stats([4.0, None, 6.0, 5.0, 8.0, 7.0], "a / b")
    assert stats["median"] == 6.0 and stats["iqr"] == [5.0, 7.0]
    assert (stats["min"], stats["max"], stats["pairs"]) == (4.0, 8.0, 5)
    assert (
        stats["values"] == [4.0, 6.0, 5.0, 8.0, 7.0] and stats["definition"] == "a / b"
    )
    assert bench.ratio_stats([None]) is None
    assert bench.format_ratio(stats) == "6x (IQR 5-7x, range 4-8x, 5 pairs)"
    assert bench.format_ratio(None) == "-"


def test_compare_throughput_interleaves_windows_and_reports_the_ratio_per_pair():
    """Both sides see the same load in a pair: the load changes from pair to
    pair (x1, x3, x1.5, ...), the ratio of each pair does not."""
    clock, order = FakeClock(), []
    load = iter(
        [1.0] * 2 + [1.0, 1.0, 3.0, 3.0, 1.5, 1.5, 2.0, 2.0, 1.0, 1.0]
    )  # 2 calibration calls, then pairs

    def runner(name, seconds_per_unit, env_steps_per_unit):
        def run(count):
            order.append(name)
            clock.now += count * seconds_per_unit * next(load)

        return bench.Runner(name, run, env_steps_per_unit, num_envs=1024, version="0")

    ours = runner("A", 0.7, 70_000)  # 1e5 env-steps/s unloaded
    ref = runner("B", 1.0, 20_000)  # 2e4 env-steps/s unloaded: ratio 5
    row = bench.compare_throughput(ours, ref, pairs=5, min_seconds=0.5, clock=clock)
    assert (
        order == ["A", "B"] + ["A", "B"] * 5
    )  # calibrations (each long enough at once), then pairs
    stats = row["ratio"]
    assert stats["pairs"] == 5 and len(row["rounds"]) == 5
    assert stats["median"] == pytest.approx(5.0) and stats["iqr"] == pytest.approx(
        [5.0, 5.0]
    )
    assert stats["values"] == pytest.approx(
        [
            r["sacbook_env_steps_per_second"] / r["reference_env_steps_per_second"]
            for r in row["rounds"]
        ]
    )
    assert row["env_steps_per_second"] == pytest.approx(
        2e4
    )  # the fastest window, as older reports
    assert row["sacbook_env_steps_per_second"] == pytest.approx(1e5)
    assert all(
        r["sacbook_seconds"] >= 0.5 and r["reference_seconds"] >= 0.5
        for r in row["rounds"]
    )


def test_a_window_is_extended_when_the_machine_got_faster_since_calibration():
    clock, speed = FakeClock(), [1.0]

    def run(count):  # 1/8 s a unit at calibration, then 4x faster
        clock.now += 0.125 * count / speed[0]

    count = bench.calibrate(run, min_seconds=0.5, clock=clock)
    assert count == 5  # 1 unit (0.125 s), then x 1.25 x 0.5 / 0.125: 0.625 s
    speed[0] = 4.0
    units, seconds = bench.timed(run, count, clock, min_seconds=0.5)
    assert (units, seconds) == (16, 0.5)  # 5 units, then one at a time up to 0.5 s
    assert bench.timed(run, count, clock) == (
        5,
        0.15625,
    )  # no min_seconds: as calibrated


def test_summarize_report_shows_median_ratios_within_88_columns():
    report = _report()
    ratio = bench.ratio_stats([5.8, 6.1, 6.0, 6.4, 5.9])
    report["compare"] = {
        "gymnax": {"num_envs": 1024, "env_steps_per_second": 7.7e6, "ratio": ratio},
        "gymnasium": {
            "num_envs": 1024,
            "env_steps_per_second": 5.1e4,
            "ratio": bench.ratio_stats([925.0, 1010.5, 880.25]),
        },
        "rejax": {
            "solve_seconds_total": 10.8,
            "ratio": dict(bench.ratio_stats([3.2, 3.3]), recipe="default"),
        },
    }
    row = bench.summarize_report(report)
    assert row["x gymnax, N=1024 (median)"] == "6 (5.9-6.1)"
    assert row["x gymnasium, N=1024 (median)"] == "925 (903-968)"
    assert row["x rejax, default to -200 (median)"] == "3.25 (3.23-3.27)"
    assert (
        row["gymnax sim steps/s, N=1024"] == "7.7e+06"
        and row["rejax: cold s to -200"] == "10.8"
    )
    text = bench.format_table([(f"reference {i}", row) for i in range(5)])
    assert max(map(len, text.splitlines())) <= 88
    old = _report()  # reports before the ratios: no ratio rows
    old["compare"] = {"gymnax": {"num_envs": 1024, "env_steps_per_second": 7.7e6}}
    assert not any(k.startswith("x ") for k in bench.summarize_report(old))


# ----------------------------------------------------------------------------
# Repeated cold starts: the median run, and the ratio to rejax per pair
# ----------------------------------------------------------------------------


def test_median_of_repeated_runs_counts_unsolved_as_slowest():
    """--repeats N reports the run with the median time (an unsolved run
    counts as slowest), listing every run's time in the order run."""
    runs = [{"solve_seconds_total": t, "id": i} for i, t in enumerate([3.0, None, 1.0])]
    row = bench.median_of(runs)
    assert row["id"] == 0 and row["runs_solve_seconds_total"] == [3.0, None, 1.0]
    assert "runs_solve_seconds_total" not in runs[0]  # a copy: the runs unchanged
    assert bench.median_of([None, None]) is None  # a reference not installed


def test_rejax_ratios_per_recipe_leave_out_unsolved_pairs():
    def runs(*times):
        return [{"solve_seconds_total": t} for t in times]

    ratios = bench.rejax_ratios(
        {"default": runs(3.0, 6.0, 3.5), "few_envs": runs(20.0, 40.0, None)},
        runs(9.0, 24.0, 14.0),
    )
    assert ratios["default"]["values"] == [3.0, 4.0, 4.0]
    assert ratios["default"]["recipe"] == "default"
    assert ratios["few_envs"]["values"] == [0.45, 0.6]  # the unsolved pair left out
    assert bench.rejax_ratios({"x": runs(None)}, runs(1.0)) == {"x": None}


# ----------------------------------------------------------------------------
# One helper for every run in a fresh process
# ----------------------------------------------------------------------------


def test_a_fresh_process_returns_the_functions_json_and_its_time():
    stats = bench.run_isolated("ratio_stats", values=[1.0, 2.0, 4.0])
    assert stats["median"] == 2.0 and stats["pairs"] == 3
    assert stats["process_seconds"] > 0  # imports included
    assert bench.call_in_fresh_process("format_ratio", {"stats": None})[0] == "-"


def test_a_failing_fresh_process_raises_with_the_end_of_its_stderr():
    with pytest.raises(RuntimeError, match="bench.recipe failed") as info:
        bench.run_isolated("recipe", spec="X=1")
    assert "KEY in N, B, K, tau, it" in str(info.value)  # the child's error


def test_virtual_devices_come_from_the_child_environment():
    env = bench.virtual_cpu_env(3)
    assert env["JAX_PLATFORMS"] == "cpu"
    assert env["XLA_FLAGS"].endswith("--xla_force_host_platform_device_count=3")
    info, _ = bench.call_in_fresh_process("device_info", env=env)
    assert info["device_count"] == 3 and info["platform"] == "cpu"


# ----------------------------------------------------------------------------
# sacbook's measurements
# ----------------------------------------------------------------------------


def test_simulation_compiles_as_a_sacbook_program():
    """The simulation bench compiles with the package's XLA options, as
    training does."""
    assert isinstance(measure._simulate, jit.Program)
    (row,) = bench.simulation_throughput((8,), repeats=1, min_seconds=0.0)
    assert row["num_envs"] == 8 and row["steps"] == 2000 and row["calls"] == 1
    assert row["env_steps_per_second"] > 0


@pytest.mark.parametrize(
    "env, name",
    [
        (PendulumParams.gymnasium(), "gymnasium"),
        (PendulumParams.point_mass(), "point_mass"),
        (PendulumParams.gymnasium(m=2.0), "custom"),
        (PendulumParams.point_mass(max_speed=10.0), "custom"),
    ],
)
def test_the_preset_is_named_or_custom(env, name):
    assert bench.preset_name(env) == name


def test_time_to_solve_records_the_preset_and_fresh_start_scores():
    """A tiny run on the point-mass preset: not solved, labelled point_mass,
    the final policy scored on ``final_eval_envs`` fresh starts."""
    config = TrainConfig(
        env=PendulumParams.point_mass(),
        sac=SACConfig(batch_size=16, hidden_sizes=(8, 8)),
        num_envs=8,
        buffer_capacity=256,
        warmup_env_steps=0,
        learning_starts=16,
        updates_per_iteration=1,
        chunk_iterations=5,
        total_env_steps=8 * 10,
        eval_envs=4,
    )
    row = bench.time_to_solve(config, target_return=0.0, final_eval_envs=8)
    assert row["preset"] == "point_mass" and row["recipe"] is None
    assert not row["solved"] and row["solve_seconds_total"] is None
    assert row["solved_policy_return_many"] is None
    assert row["final_eval_episodes"] == 8 and row["total_env_steps"] == 80
    assert row["final_eval_return_many"] < 0 and row["compile_seconds"] > 0


def test_a_warm_start_finds_every_program_in_the_cache(tmp_path):
    """``time_to_solve(cache_dir=...)`` keeps the compiled programs; a second
    fresh process with the same folder adds none (it compiled nothing) and
    trains to the same result."""
    spec, cache = "N=8,B=16,K=1,it=10", str(tmp_path / "xla")
    cold = bench.run_isolated("time_to_solve", config=spec, cache_dir=cache)
    kept = sorted(p.name for p in (tmp_path / "xla").iterdir())
    assert kept, "the cold start kept no compiled program"
    warm = bench.run_isolated("time_to_solve", config=spec, cache_dir=cache)
    assert sorted(p.name for p in (tmp_path / "xla").iterdir()) == kept
    assert warm["final_eval_return"] == cold["final_eval_return"]
    assert warm["total_env_steps"] == cold["total_env_steps"] > 0


# ----------------------------------------------------------------------------
# The roofline: this machine's limits, and training against them
# ----------------------------------------------------------------------------


def test_the_limits_are_measured_by_sacbook_programs():
    """Tiny sizes, single calls: each figure is positive and is its units
    over its time; the balance is the large matmul's FLOP/s over the
    bandwidth, the faster of reading and scaling in place."""
    assert isinstance(roofline._CHAIN, jit.Program)
    mm = bench.matmul_throughput(4, 8, steps=3, repeats=1, min_seconds=0.0)
    assert (mm["m"], mm["n"], mm["steps"], mm["calls"]) == (4, 8, 3, 1)
    assert mm["flops_per_second"] == pytest.approx(2 * 4 * 8 * 8 * 3 / mm["seconds"])
    assert bench.matmul_throughput(2, 2, repeats=1, min_seconds=0.0)["steps"] == 1000
    limits = bench.machine_limits(
        4, 8, large=16, size_bytes=4096, repeats=1, min_seconds=0.0
    )
    memory = limits["bandwidth"]
    assert memory["size_bytes"] == 4096
    assert memory["bytes_per_second"] == max(
        memory["read_bytes_per_second"], memory["scale_bytes_per_second"]
    )
    assert min(memory.values()) > 0
    assert limits["matmul_large"]["m"] == limits["matmul_large"]["n"] == 16
    assert limits["balance"] == pytest.approx(
        limits["matmul_large"]["flops_per_second"] / memory["bytes_per_second"]
    )
    with pytest.raises(ValueError, match="m must be an integer >= 1"):
        bench.matmul_throughput(0, 8)
    with pytest.raises(ValueError, match="size_bytes"):
        bench.memory_bandwidth(-1)


def _limits(m=96, n=64):
    return {
        "matmul_update_shape": {"m": m, "n": n, "flops_per_second": 1e11},
        "matmul_large": {"m": 2048, "n": 2048, "flops_per_second": 4e11},
        "bandwidth": {"bytes_per_second": 2e10},
        "balance": 20.0,
    }


def test_training_against_the_limits():
    config = TrainConfig()
    assert bench.update_shape(config) == (96, 64)
    row = bench.training_roofline(config, 200.0, _limits())
    c = cost.iteration_cost(config)
    assert row["flops_per_second"] == pytest.approx(200 * c.flops)
    assert row["bytes_per_second"] == pytest.approx(200 * c.bytes)
    assert row["fraction_of_matmul_update_shape"] == pytest.approx(200 * c.flops / 1e11)
    assert row["fraction_of_matmul_large"] == pytest.approx(200 * c.flops / 4e11)
    assert row["fraction_of_bandwidth"] == pytest.approx(200 * c.bytes / 2e10)
    assert row["intensity"] == pytest.approx(c.flops / c.bytes)
    assert (row["num_envs"], row["batch_size"], row["width"]) == (1024, 96, 64)
    # about 36 FLOPs a byte: above a balance of 20, below one of 100
    assert row["bound"] == "compute"
    # 11.7% of the large matmul's FLOP/s: near enough a roof to be held by it
    assert row["limited_by"] == "compute"
    memory_bound = {**_limits(), "balance": 100.0}
    slow = bench.training_roofline(config, 1.0, memory_bound)
    assert slow["bound"] == "memory"
    # 0.06% of the FLOP/s, 0.03% of the bandwidth: held back by neither
    assert slow["limited_by"] == "latency"
    with pytest.raises(ValueError, match="iterations_per_second"):
        bench.training_roofline(config, 0.0, _limits())
    with pytest.raises(ValueError, match=r"measured at the shape \(256, 64\)"):
        bench.training_roofline(config, 1.0, _limits(m=256))


def test_the_recorded_h200_run_is_latency_bound():
    """The H200's limits and training throughput as `sacbook bench --roofline`
    recorded them (sacbook/data): about 0.1% of both roofs at N = 1024."""
    from importlib import resources

    name = "data/roofline_gpu-nvidia-h200_2026-12-04.json"
    report = json.loads(resources.files("sacbook").joinpath(name).read_text())
    assert report["device"]["device"] == "NVIDIA H200"
    limits = report["roofline"]["limits"]
    measured = report["training"][0]
    assert measured["num_envs"] == 1024
    row = bench.training_roofline(
        TrainConfig(), measured["iterations_per_second"], limits
    )
    assert row["bound"] == "compute"  # what the roofline alone would say
    assert row["limited_by"] == "latency"
    assert row["fraction_of_matmul_large"] < 0.01


def test_growth_fits_overhead_plus_flops_over_rate():
    from sacbook.bench import growth

    rows = [
        {"flops": f, "seconds_per_iteration": 2e-3 + f / 4e10} for f in (1e8, 4e8, 2e9)
    ]
    fit = growth.fit_line(rows)
    assert fit["overhead"] == pytest.approx(2e-3) and fit["rate"] == pytest.approx(4e10)
    with pytest.raises(ValueError, match="two points with different FLOPs"):
        growth.fit_line(rows[:1])
    with pytest.raises(ValueError, match="axis must be one of"):
        growth.point("hidden", 64)


def test_growth_counts_every_run_of_one_program():
    from sacbook.bench import growth

    one = growth.point("batch_size", 96, chunks=1, chunk_iterations=2)
    two = growth.point("runs", 2, chunks=1, chunk_iterations=2)
    assert two["flops"] == pytest.approx(2 * one["flops"], rel=1e-9)
    assert two["seconds_per_iteration"] > 0 and one["seconds_per_iteration"] > 0


# ----------------------------------------------------------------------------
# Compile stages: where a cold start's compile time goes
# ----------------------------------------------------------------------------


def test_option_trials_compile_the_default_chunk_under_each_option_set():
    """Each set of XLA options compiles the default chunk once and runs it
    from the same state: the same options give the same numbers, bit for bit,
    and an option XLA does not know is a row with XLA's error, not a crash."""
    rows = bench.option_trials(
        {"ours": {}, "ours again": {}, "unknown": {"xla_no_such_option_xyz": 1}},
        chunks=2,
    )
    ours, again, unknown = rows
    assert [r["trial"] for r in rows] == ["ours", "ours again", "unknown"]
    for r in (ours, again):
        assert 0 < r["compile_seconds"] < 60 and r["chunk_seconds"] > 0
        assert r["same_numbers"] is True
    assert "xla_no_such_option_xyz" in unknown["error"]
    assert "compile_seconds" not in unknown
    assert set(bench.OPTION_TRIALS) == {"cpu", "gpu"}
    assert all(next(iter(t.values())) == {} for t in bench.OPTION_TRIALS.values())


def test_compile_stages_time_each_program_and_count_what_xla_made():
    """A small recipe's chunk and the evaluation: every stage timed, XLA's
    CPU time at least a fraction of its wall-clock, and the sizes of what was
    compiled: the chunk has the scans' loops and far more fusions than the
    evaluation, whose single scan is one of its loops."""
    rows = bench.compile_stages(["N=16,B=8,K=2"])
    chunk, evaluation = rows
    assert [r["program"] for r in rows] == ["chunk N=16,B=8,K=2", "evaluation"]
    for r in rows:
        for stage in ("trace", "lower", "compile"):
            assert 0 < r[f"{stage}_seconds"] < 60
        assert r["compile_cpu_seconds"] > 0
        assert r["stablehlo_lines"] > 100
    # the chunk: an iteration scan and an update scan, at least
    assert chunk["loops"] >= 2 and evaluation["loops"] >= 1
    assert chunk["fusions"] > 3 * evaluation["fusions"] > 0
    assert chunk["stablehlo_lines"] > 2 * evaluation["stablehlo_lines"]
