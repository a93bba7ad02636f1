"""Argument checks shared across the package.

Bad input gets one line that names the parameter and the allowed range,
before anything reaches JAX or XLA. The configs declare the range of each
real-valued field once, on the field (:func:`real_field`), and check every
field with :func:`fields` when they are built.
"""

from __future__ import annotations

import dataclasses
import math
import numbers

INT32_MAX = 2**31 - 1  # counters and buffer indices on the device are int32


def integer(name: str, value, low: int = 1, high: int | None = None) -> int:
    """``value`` as a Python int if it is an integer (Python or NumPy, not a
    bool) in ``[low, high]``; otherwise a ``ValueError`` naming ``name``."""
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not ok or value < low or (high is not None and value > high):
        allowed = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be an integer {allowed}, got {value!r}")
    return int(value)


def seed(name: str, value) -> int:
    """``value`` as a run's seed: an integer in ``[0, 2**32 - 1]``, as the
    command line takes; otherwise a ``ValueError`` naming ``name``. Without
    64-bit integers JAX keeps a seed's low 32 bits (``jax.random.key(2**32)``
    is ``jax.random.key(0)``), so a wider seed would repeat another's run."""
    return integer(name, value, 0, 2**32 - 1)


@dataclasses.dataclass(frozen=True)
class Range:
    """The values a real-valued field allows: ``low`` and ``high`` (None: no
    bound), each included or not; infinities only where ``inf`` allows
    (``+inf`` as "no limit"); ``None`` itself only where ``optional``."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    inf: bool = False
    optional: bool = False

    def describe(self) -> str:
        """``"in [0, 1)"``, ``"> 0"``, ``">= 0"`` or ``"finite"``."""
        lo = None if self.low is None else f"{self.low:g}"
        hi = None if self.high is None else f"{self.high:g}"
        if lo is not None and hi is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f"in {left}{lo}, {hi}{right}"
        if lo is not None:
            return f"{'>' if self.low_open else '>='} {lo}"
        if hi is not None:
            return f"{'<' if self.high_open else '<='} {hi}"
        return "finite"


def real(name: str, value, allowed: Range = Range()) -> float | None:
    """``value`` as a Python float if it is a real number (not a bool) that
    ``allowed`` admits; otherwise a ``ValueError`` naming ``name`` and the
    allowed range."""
    if value is None and allowed.optional:
        return None
    number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not number or math.isnan(value):
        kind = "a real number" + (" or None" if allowed.optional else "")
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    value = float(value)
    if math.isinf(value) and not (allowed.inf and value > 0):
        raise ValueError(f"{name} must be finite, got {value}")
    low, high = allowed.low, allowed.high
    too_low = low is not None and (value <= low if allowed.low_open else value < low)
    too_high = high is not None and (
        value >= high if allowed.high_open else value > high
    )
    if too_low or too_high:
        raise ValueError(f"{name} must be {allowed.describe()}, got {value:g}")
    return value


def real_field(default, allowed: Range = Range(), **metadata):
    """A dataclass field of real numbers that :func:`fields` checks against
    ``allowed``; ``metadata`` rides along (e.g. ``sweep=...``)."""
    return dataclasses.field(default=default, metadata={"range": allowed, **metadata})


def fields(config) -> None:
    """Check every :func:`real_field` of the frozen dataclass ``config`` and
    store it as a Python float (so NumPy scalars hash and print like floats);
    errors name ``ClassName.field``."""
    for f in dataclasses.fields(config):
        if "range" in f.metadata:
            name = f"{type(config).__name__}.{f.name}"
            value = real(name, getattr(config, f.name), f.metadata["range"])
            object.__setattr__(config, f.name, value)
