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
    assert t4["compute"][0] / h100["compute"][0] == pytest.approx(67 / 8.1)


def test_large_batches_assume_a_larger_share_of_peak():
    large = DEFAULT.replace(sac=DEFAULT.sac.replace(batch_size=4096))
    c = cost.iteration_cost(large)
    p = forecast.iteration_seconds(large, "H100")
    assert p["compute"] == pytest.approx(
        (c.flops / (67e12 * 0.7), c.flops / 67e12 / 0.2)
    )


def test_seconds_to_solve_are_iterations_times_an_iteration():
    per = forecast.iteration_seconds(DEFAULT, "L4")
    low, high = forecast.seconds_to_solve(DEFAULT, "L4", iterations=(100, 200))
    assert (low, high) == pytest.approx((100 * per["low"], 200 * per["high"]))


def test_an_unknown_device_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match=r"device must be one of \['A100', 'H100'"):
        forecast.iteration_seconds(DEFAULT, "V100")
