"""Argument checks shared across the package.

Bad input gets one line that names the parameter and the allowed range,
before anything reaches JAX or XLA.
"""

from __future__ import annotations

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
