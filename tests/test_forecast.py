"""The GPU forecast: the cost model's FLOPs and bytes against published
device figures, plus kernel launches, as (low, high) ranges."""

import pytest

from sacbook import cost, forecast
from sacbook.config import TrainConfig

DEFAULT = TrainConfig()


def test_an_iteration_is_launches_plus_arithmetic_plus_memory():
    p = forecast.iteration_seconds(DEFAULT, "T4")
    for i, end in enumerate(("low", "high")):
        assert p[end] == pytest.approx(
            p["launch"][i] + p["compute"][i] + p["memory"][i]
        )
    c = cost.iteration_cost(DEFAULT)
    assert p["memory"][0] == pytest.approx(c.bytes / 320e9)
    # high compute: the smallest share of peak that small products reach
    assert p["compute"][1] == pytest.approx(c.flops / (8.1e12 * 0.02))
    # 16 updates of 40-120 kernels and 15-40 more, 3-8 microseconds each
    assert p["launch"] == pytest.approx((655 * 3e-6, 1960 * 8e-6))


def test_launches_follow_the_updates_and_arithmetic_the_device():
    twice = DEFAULT.replace(updates_per_iteration=32)
    one, two = (forecast.iteration_seconds(c, "A100") for c in (DEFAULT, twice))
    assert two["launch"][1] - one["launch"][1] == pytest.approx(16 * 120 * 8e-6)
    t4, h100 = (forecast.iteration_seconds(DEFAULT, d) for d in ("T4", "H100"))
    # the fast end at the tensor cores' peak (the T4 has none: FP32), the slow
    # end at the FP32 peak
    assert t4["compute"][0] / h100["compute"][0] == pytest.approx(494.5 / 8.1)
    assert t4["compute"][1] / h100["compute"][1] == pytest.approx(67 / 8.1)


def test_matrix_products_run_on_tf32_tensor_cores_where_there_are_some():
    # JAX's default float32 precision uses TF32 on Ampere and later GPUs
    assert forecast.DEVICES["T4"].tf32_flops is None
    assert forecast.DEVICES["T4"].matmul_flops == 8.1e12
    for key, tf32 in (("L4", 60e12), ("A100", 156e12), ("H200", 494.5e12)):
        figures = forecast.DEVICES[key]
        assert figures.matmul_flops == tf32 > figures.fp32_flops


def test_large_batches_assume_a_larger_share_of_peak():
    large = DEFAULT.replace(sac=DEFAULT.sac.replace(batch_size=4096))
    c = cost.iteration_cost(large)
    p = forecast.iteration_seconds(large, "H100")
    assert p["compute"] == pytest.approx(
        (c.flops / (494.5e12 * 0.7), c.flops / 67e12 / 0.2)
    )


def test_seconds_to_solve_are_iterations_times_an_iteration():
    per = forecast.iteration_seconds(DEFAULT, "L4")
    low, high = forecast.seconds_to_solve(DEFAULT, "L4", iterations=(100, 200))
    assert (low, high) == pytest.approx((100 * per["low"], 200 * per["high"]))


def test_an_unknown_device_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match=r"device must be one of \['A100', 'H100'"):
        forecast.iteration_seconds(DEFAULT, "V100")


def _gpu_report(device="NVIDIA H200", platform="gpu", large_solved=True):
    """A GPU suite's bench report, reduced to what the comparison reads."""
    default = dict(num_envs=1024, batch_size=96, updates_per_iteration=16)
    large = dict(num_envs=8192, batch_size=4096, updates_per_iteration=4)
    return {
        "device": {"platform": platform, "device": device},
        "training": [
            {**default, "iterations_per_second": 250.0},
            {**large, "iterations_per_second": 90.0},
        ],
        "time_to_solve": [
            {**default, "solved": True, "solve_seconds_after_compile": 0.42},
            {**large, "solved": large_solved, "solve_seconds_after_compile": 1.7},
        ],
    }


def test_device_names_as_jax_writes_them_map_to_the_datasheets():
    names = {
        "NVIDIA H200": "H200",
        "Tesla T4": "T4",
        "NVIDIA A100-SXM4-80GB": "A100",
        "NVIDIA H100 80GB HBM3": "H100",
        "NVIDIA L4": "L4",
        "NVIDIA L40S": None,  # another device, not an L4
        "cpu": None,
    }
    assert {n: forecast.device_key(n) for n in names} == names


def test_a_gpu_report_is_read_in_the_predictions_terms():
    """Seconds per iteration from the default recipe's throughput, seconds
    to -200 after compiling per recipe, matched by N, B and K; a run that
    did not solve gives None, and a CPU report nothing."""
    got = forecast.measured(_gpu_report(large_solved=False))
    assert got == {
        "device": "H200",
        "iteration_seconds": pytest.approx(1 / 250),
        "default_solve_seconds": 0.42,
        "large_solve_seconds": None,
    }
    assert forecast.measured(_gpu_report(platform="cpu", device="cpu")) is None


def test_the_comparison_puts_each_measurement_beside_its_prediction():
    """Three columns (ms per iteration, s to -200 for the default and the
    large-batch recipes), one row per device, each cell the predicted range;
    a GPU reference adds "; measured X" to its device's cells only, and the
    newest report of a device counts."""
    cpu = ("bench_cpu.json", _gpu_report(platform="cpu", device="cpu"))
    columns = dict(forecast.comparison([cpu]))
    assert list(columns) == [
        "default: ms per iteration",
        "default: s to \u2212200",
        "N=8192, B=4096, K=4: s to \u2212200",
    ]
    per = forecast.iteration_seconds(DEFAULT, "T4")
    low, high = per["low"] * 1e3, per["high"] * 1e3
    assert (
        columns["default: ms per iteration"]["NVIDIA T4"]
        == f"{low:.1f}\u2013{high:.0f}"
    )
    assert not any("measured" in t for c in columns.values() for t in c.values())

    older = _gpu_report()
    older["training"][0]["iterations_per_second"] = 100.0
    references = [cpu, ("bench_gpu_2.json", _gpu_report()), ("bench_gpu_1.json", older)]
    columns = dict(forecast.comparison(references))
    per = forecast.iteration_seconds(DEFAULT, "H200")
    iteration = columns["default: ms per iteration"]
    assert iteration["NVIDIA H200 SXM"] == (
        f"{per['low'] * 1e3:.1f}\u2013{per['high'] * 1e3:.0f}; measured 4"
    )  # 1 / 250 s, the newer report
    assert "measured" not in iteration["NVIDIA T4"]
    assert columns["default: s to \u2212200"]["NVIDIA H200 SXM"].endswith(
        "; measured 0.42"
    )
    large = columns["N=8192, B=4096, K=4: s to \u2212200"]
    assert large["NVIDIA H200 SXM"].endswith("; measured 1.7")
    assert list(iteration) == [d.name for d in forecast.DEVICES.values()]
