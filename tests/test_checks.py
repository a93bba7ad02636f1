"""sacbook.checks: one-line refusals of bad numbers, naming the field and
the range; the range of every real-valued config field declared once, on
the field, and checked (and stored as a float) when a config is built."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from sacbook import checks
from sacbook.config import LoopConfig, TrainConfig
from sacbook.pendulum import PendulumParams
from sacbook.sac import SACConfig

Range = checks.Range

# ----------------------------------------------------------------------------
# real: each form of Range
# ----------------------------------------------------------------------------

# (range, its description, values it admits, values it refuses)
FORMS = [
    (Range(), "finite", [-1e300, 0, 7, 2.5], []),
    (Range(0, 1), "in [0, 1]", [0, 0.5, 1], [-1e-9, 1.0000001]),
    (Range(0, 1, high_open=True), "in [0, 1)", [0, 0.999], [1, -0.1]),
    (Range(0, 1, low_open=True), "in (0, 1]", [1e-30, 1], [0, 1.5]),
    (Range(-2, 3, True, True), "in (-2, 3)", [-1.99, 2.99], [-2, 3]),
    (Range(0.0, low_open=True), "> 0", [1e-30, 1e30], [0, -1]),
    (Range(low=0.0), ">= 0", [0, 1e30], [-1e-30]),
    (Range(high=5), "<= 5", [5, -1e30], [5.5]),
    (Range(high=5, high_open=True), "< 5", [4.9], [5]),
]


@pytest.mark.parametrize(
    "allowed, described, good, bad", FORMS, ids=[f[1] for f in FORMS]
)
def test_real_admits_the_range_and_refuses_what_is_outside(
    allowed, described, good, bad
):
    """Each form of Range: the values inside come back as Python floats, each
    one outside is one line naming the field, the range and the value."""
    assert allowed.describe() == described
    for value in good:
        back = checks.real("Thing.x", value, allowed)
        assert type(back) is float and back == value
    for value in bad:
        with pytest.raises(ValueError) as info:
            checks.real("Thing.x", value, allowed)
        assert str(info.value) == f"Thing.x must be {described}, got {value:g}"


@pytest.mark.parametrize("allowed", [f[0] for f in FORMS], ids=[f[1] for f in FORMS])
def test_real_refuses_nan_infinities_bools_and_non_numbers(allowed):
    for value in (math.nan, np.float32("nan")):
        with pytest.raises(ValueError, match=r"^Thing\.x must be a real number, got"):
            checks.real("Thing.x", value, allowed)
    for value in (math.inf, -math.inf, np.float64("-inf")):
        with pytest.raises(ValueError, match=r"^Thing\.x must be finite, got -?inf$"):
            checks.real("Thing.x", value, allowed)
    for value in (True, False, np.bool_(True), "1.0", None, [1.0], 1j):
        with pytest.raises(ValueError) as info:
            checks.real("Thing.x", value, allowed)
        assert str(info.value) == f"Thing.x must be a real number, got {value!r}"


def test_real_takes_numpy_numbers_as_python_floats():
    for value in (np.float32(0.25), np.float64(0.25), np.int64(3), np.int8(-1)):
        back = checks.real("x", value)
        assert type(back) is float and back == float(value)


def test_inf_only_where_allowed_and_only_plus_inf():
    """Range(inf=True): +inf means "no limit"; -inf and NaN are still refused,
    and so are finite values outside the bounds."""
    no_limit = Range(0.0, low_open=True, inf=True)
    assert checks.real("speed", math.inf, no_limit) == math.inf
    assert checks.real("speed", np.float32("inf"), no_limit) == math.inf
    with pytest.raises(ValueError, match=r"^speed must be finite, got -inf$"):
        checks.real("speed", -math.inf, no_limit)
    with pytest.raises(ValueError, match=r"^speed must be a real number, got nan$"):
        checks.real("speed", math.nan, no_limit)
    with pytest.raises(ValueError, match=r"^speed must be > 0, got 0$"):
        checks.real("speed", 0.0, no_limit)
    # an upper bound still bounds: +inf is above it
    with pytest.raises(ValueError, match=r"^x must be <= 5, got inf$"):
        checks.real("x", math.inf, Range(high=5, inf=True))


def test_none_only_where_optional():
    optional = Range(optional=True)
    assert checks.real("SACConfig.target_entropy", None, optional) is None
    assert checks.real("SACConfig.target_entropy", -3, optional) == -3.0
    with pytest.raises(ValueError) as info:
        checks.real("SACConfig.target_entropy", math.nan, optional)
    assert str(info.value) == (
        "SACConfig.target_entropy must be a real number or None, got nan"
    )
    with pytest.raises(ValueError, match=r"^g must be a real number, got None$"):
        checks.real("g", None, Range(0.0, low_open=True))


def test_integer_refuses_bools_floats_and_out_of_range():
    assert checks.integer("n", np.int64(4), 1) == 4
    assert type(checks.integer("n", np.int64(4), 1)) is int
    for value in (True, 2.0, math.nan, "3", 0, 11):
        with pytest.raises(
            ValueError, match=r"^n must be an integer in \[1, 10\], got"
        ):
            checks.integer("n", value, 1, 10)


# ----------------------------------------------------------------------------
# fields: a config's real_field fields, checked and stored as floats
# ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Example:
    rate: float = checks.real_field(0.5, Range(0, 1, low_open=True), sweep="traced")
    scale: float | None = checks.real_field(None, Range(optional=True))
    count: int = 3  # not a real_field: left alone

    def __post_init__(self):
        checks.fields(self)


def test_fields_stores_floats_and_keeps_the_metadata():
    """NumPy scalars and ints become Python floats (so configs given either
    way are equal and hash alike); other fields are untouched; metadata
    given to real_field rides along with the range."""
    example = Example(rate=np.float32(0.25), scale=np.int64(2), count=np.int64(3))
    assert type(example.rate) is float and example.rate == 0.25
    assert type(example.scale) is float and example.scale == 2.0
    assert type(example.count) is np.int64  # not a real_field
    assert Example(rate=0.25, scale=2.0) == Example(rate=np.float32(0.25), scale=2)
    assert hash(Example(rate=np.float64(0.5))) == hash(Example())
    assert Example().scale is None
    rate = {f.name: f for f in dataclasses.fields(Example)}["rate"]
    assert rate.metadata["sweep"] == "traced"
    assert rate.metadata["range"] == Range(0, 1, low_open=True)
    assert rate.default == 0.5


def test_fields_names_the_class_and_the_field():
    with pytest.raises(ValueError) as info:
        Example(rate=0.0)
    assert str(info.value) == "Example.rate must be in (0, 1], got 0"
    with pytest.raises(ValueError, match=r"^Example\.scale must be finite, got inf$"):
        Example(scale=math.inf)


# ----------------------------------------------------------------------------
# Every config
# ----------------------------------------------------------------------------


def _real_fields(cls):
    return [f for f in dataclasses.fields(cls) if "range" in f.metadata]


REAL_FIELDS = [
    (cls, f.name, f.metadata["range"])
    for cls in (PendulumParams, SACConfig)
    for f in _real_fields(cls)
]


def test_the_real_fields_of_the_configs_declare_their_ranges():
    """Every float field of the configs is a real_field (checked on build)."""
    names = {(cls.__name__, name) for cls, name, _ in REAL_FIELDS}
    assert names == {
        *(("PendulumParams", f) for f in ("g", "l", "m", "dt")),
        ("PendulumParams", "max_torque"),
        ("PendulumParams", "max_speed"),
        *(("SACConfig", f) for f in ("gamma", "tau", "actor_lr", "critic_lr")),
        *(("SACConfig", f) for f in ("alpha_lr", "target_entropy", "init_alpha")),
    }
    for cls in (PendulumParams, SACConfig, LoopConfig, TrainConfig):
        floats = [f.name for f in dataclasses.fields(cls) if "float" in str(f.type)]
        assert floats == [f.name for f in _real_fields(cls)], cls


def _outside(allowed: Range) -> list[float]:
    """Finite values just outside ``allowed``."""
    out = []
    if allowed.low is not None:
        out.append(allowed.low if allowed.low_open else allowed.low - 0.5)
    if allowed.high is not None:
        out.append(allowed.high if allowed.high_open else allowed.high + 0.5)
    return out


@pytest.mark.parametrize(
    "cls, field, allowed",
    REAL_FIELDS,
    ids=[f"{cls.__name__}.{name}" for cls, name, _ in REAL_FIELDS],
)
def test_every_config_refuses_bad_reals_naming_class_and_field(cls, field, allowed):
    """NaN, -inf, +inf (where no limit is not allowed) and values outside
    the range: one line that starts with ``ClassName.field``."""
    bad = [math.nan, -math.inf, *_outside(allowed)]
    if not allowed.inf:
        bad.append(math.inf)
    if not allowed.optional:
        bad.append(None)
    for value in bad:
        with pytest.raises(ValueError) as info:
            cls(**{field: value})
        message = str(info.value)
        assert message.startswith(f"{cls.__name__}.{field} must be "), message
        assert "\n" not in message
        if value is not None and math.isfinite(value):
            assert allowed.describe() in message
    stored = getattr(cls(**{field: np.float32(0.5)}), field, None)
    if allowed.low is None or allowed.low < 0.5 < (allowed.high or math.inf):
        assert type(stored) is float and stored == 0.5


@pytest.mark.parametrize("cls", [LoopConfig, TrainConfig])
@pytest.mark.parametrize("value", [math.nan, math.inf, 2.5, True, 0])
def test_loop_and_train_configs_refuse_bad_numbers_naming_the_class(cls, value):
    with pytest.raises(ValueError) as info:
        cls(num_envs=value)
    message = str(info.value)
    assert message.startswith(f"{cls.__name__}.num_envs must be an integer"), message
    assert "\n" not in message


def test_nested_configs_are_checked_when_built():
    """A bad real inside a TrainConfig is refused where it is built, naming
    its own class (the TrainConfig never sees it)."""
    config = TrainConfig.few_envs()
    with pytest.raises(ValueError, match=r"^SACConfig\.gamma must be in \[0, 1\)"):
        config.replace(sac=config.sac.replace(gamma=1.0))
    with pytest.raises(ValueError, match=r"^PendulumParams\.dt must be > 0, got -0.1"):
        config.replace(env=PendulumParams.gymnasium(dt=-0.1))
    with pytest.raises(ValueError, match=r"^TrainConfig\.sac must be a SACConfig"):
        config.replace(sac={"gamma": 0.9})
