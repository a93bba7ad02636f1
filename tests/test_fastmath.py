"""Tests for sacbook.fastmath: the fast wrap and sine/cosine against float64
NumPy, on a dense grid of [-pi, pi), at its edges, and at large angles.

Bounds for large angles, and why: float32 can only say which angle an ``x``
of size ``|x|`` means to within half an ulp of ``x``, about ``0.5 |x| eps``
(eps = 2^-23). ``wrap_angle`` computes ``x - turns * 2 pi``. Op by op
(eager), ``turns * float32(2 pi)`` is rounded once (it is exact only for
``|turns| <= 1``), which costs at most that much again; the result, below
2 pi, then takes a few roundings of at most 2.4e-7 each. Measured: ``0.5 |x|
eps`` at worst. Under ``jit``, XLA fuses the product and the subtraction into
one fused multiply-add where the CPU has one, and the error stays near 3e-7
for any ``|x|``. The tests allow ``|x| eps + 1e-6`` either way: twice the
worst measured growth, and no more. ``sin``/``cos`` are 1-Lipschitz, so the
wrap's error passes straight on to them, plus the polynomials' own 3e-7.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from angles import PI32, angle_diff, assert_in_wrapped_range, x64

from sacbook import fastmath, pendulum

EPS32 = float(np.finfo(np.float32).eps)  # 2^-23
POLY_ERROR = 3e-7  # sin_cos on [-pi, pi) against float64 (measured 2.1e-7)

# Jitted, as the pendulum uses them (eager mode would compile op by op).
wrap_angle = jax.jit(fastmath.wrap_angle)
sin_cos = jax.jit(fastmath.sin_cos)
# Under jit XLA may fuse multiplies and adds (FMA), op by op it cannot: test both.
COMPILED_AND_EAGER = pytest.mark.parametrize(
    "compiled", [True, False], ids=["jit", "eager"]
)


def _ulp_neighbours(centres, count):
    """The ``2 count + 1`` float32 values nearest each of ``C`` centres:
    ``(C * (2 count + 1),)``."""
    base = np.asarray(centres, np.float32).view(np.int32)
    steps = np.arange(-count, count + 1, dtype=np.int32)
    return (base[:, None] + steps[None, :]).view(np.float32).ravel()


def _dense_grid():
    """float32 angles in [-float32(pi), float32(pi)): 2^21 evenly spaced, plus
    the 10^5 float32 values next to each end, 0 and +-pi/2 (the fold points
    of sin_cos)."""
    grid = np.linspace(-np.pi, np.pi, 2**21, endpoint=False).astype(np.float32)
    ends = _ulp_neighbours([-PI32, PI32, 0.0, np.pi / 2, -np.pi / 2], 100_000)
    x = np.concatenate([grid, ends, [-PI32, np.float32(0.0)]])
    return x[(x >= -PI32) & (x < PI32) & np.isfinite(x)]


def _large_angles(radius):
    """Random float32 angles up to ``radius`` in size, plus the float32
    neighbours of odd multiples of pi near ``radius`` (where the wrap turns)."""
    x = np.random.default_rng(int(radius)).uniform(-radius, radius, 200_000)
    odd = (np.round(radius / (2 * np.pi)) - np.arange(50)) * 2 * np.pi + np.pi
    near_odd = _ulp_neighbours(np.concatenate([odd, -odd]), 40)
    return np.concatenate([x.astype(np.float32), near_odd])


def test_pendulum_re_exports_the_fast_math():
    """The physics module keeps the names the notebooks and other modules use."""
    assert pendulum.wrap_angle is fastmath.wrap_angle
    assert pendulum.sin_cos is fastmath.sin_cos


# -----------------------------------------------------------------------------
# wrap_angle
# -----------------------------------------------------------------------------


def test_wrap_angle_is_the_identity_on_its_range():
    """Every angle already in [-pi, pi) comes back unchanged, bit for bit
    (except subnormals below 1.2e-38, which XLA's CPU flushes to zero)."""
    x = _dense_grid()
    x = x[(np.abs(x) >= np.finfo(np.float32).tiny) | (x == 0)]
    np.testing.assert_array_equal(np.asarray(wrap_angle(jnp.asarray(x))), x)


def test_wrap_angle_edge_inputs():
    """wrap_angle maps pi, -pi, +-3pi, huge values and float32 neighbours of
    odd multiples of pi into [-pi, pi), keeps the angle mod 2pi, and
    wrap_angle(pi) is -pi to float32 precision (float32(pi) exceeds pi by 9e-8,
    so the exact answer is -pi + 9e-8, one ulp above -float32(pi))."""
    for value in (jnp.float32(jnp.pi), jnp.pi, jnp.float32(-jnp.pi)):
        wrapped = float(fastmath.wrap_angle(value))
        assert -float(PI32) <= wrapped < -float(PI32) + 1e-6
    assert float(fastmath.wrap_angle(jnp.float32(0.0))) == 0.0

    edges = np.array(
        [
            np.pi,
            -np.pi,
            3 * np.pi,
            -3 * np.pi,
            5 * np.pi,
            -5 * np.pi,
            2 * np.pi,
            -2 * np.pi,
            1e3,
            -1e3,
            1e5,
            -1e5,
            1e7,
            -1e7,
            3.4e38,
            -3.4e38,
        ],
        np.float32,
    )
    # the float32 neighbours (+-40 ulp) of odd multiples of pi, where rounding
    # could reach +pi
    neighbours = _ulp_neighbours((np.arange(-500, 501) * 2 + 1) * np.pi, 40)
    x = np.concatenate([edges, neighbours])
    w = wrap_angle(jnp.asarray(x))
    assert_in_wrapped_range(w)
    # same angle modulo 2pi, within a float32 ulp of the input
    small = np.abs(x) < 1e4
    bound = EPS32 * np.abs(x[small]) + 1e-6
    assert np.all(np.abs(angle_diff(np.asarray(w)[small], x[small])) <= bound)
    # +-3pi -> -pi
    np.testing.assert_allclose(np.asarray(w)[2:4], [-PI32, -PI32], atol=1e-6)


def test_wrap_angle_random_values_match_numpy():
    """On random float32 angles in [-100, 100], wrap_angle equals the float64
    formula mod(x + pi, 2 pi) - pi to float32 precision and stays in range."""
    x = np.random.default_rng(0).uniform(-100, 100, 100_000).astype(np.float32)
    w = wrap_angle(jnp.asarray(x))
    assert_in_wrapped_range(w)
    ref = np.mod(x.astype(np.float64) + np.pi, 2 * np.pi) - np.pi
    np.testing.assert_allclose(angle_diff(w, ref), 0.0, atol=2e-5)


@COMPILED_AND_EAGER
@pytest.mark.parametrize("radius", [1e3, 1e5])
def test_wrap_angle_large_angles_congruent_within_an_ulp_of_x(radius, compiled):
    """Up to |x| = 1e3 and 1e5 rad, jitted and op by op: the result is in
    [-pi, pi) and congruent to x mod 2pi within |x| eps + 1e-6 (see the module
    docstring for why)."""
    x = _large_angles(radius)
    wrap = wrap_angle if compiled else fastmath.wrap_angle
    w = np.asarray(wrap(jnp.asarray(x)))
    assert_in_wrapped_range(w)
    error = np.abs(angle_diff(w, x))  # float64 difference: exact reference
    bound = EPS32 * np.abs(x.astype(np.float64)) + 1e-6
    assert np.all(error <= bound), (error / bound).max()


# -----------------------------------------------------------------------------
# sin_cos
# -----------------------------------------------------------------------------


@COMPILED_AND_EAGER
def test_sin_cos_on_a_dense_grid_matches_float64(compiled):
    """On [-pi, pi) (2^21 points and 10^5 float32 values next to each end and
    fold point), jitted and op by op, sin and cos are within 3e-7 of float64
    NumPy's."""
    x = _dense_grid()
    fast_sin_cos = sin_cos if compiled else fastmath.sin_cos
    sin, cos = map(np.asarray, fast_sin_cos(jnp.asarray(x)))
    assert sin.dtype == cos.dtype == np.float32 and sin.shape == cos.shape == x.shape
    x64 = x.astype(np.float64)
    assert np.abs(sin - np.sin(x64)).max() <= POLY_ERROR
    assert np.abs(cos - np.cos(x64)).max() <= POLY_ERROR
    assert np.abs(sin).max() <= 1.0 and np.abs(cos).max() <= 1.0


@COMPILED_AND_EAGER
@pytest.mark.parametrize("radius", [1e3, 1e5])
def test_sin_cos_large_angles_within_the_wrap_error(radius, compiled):
    """Up to |x| = 1e3 and 1e5 rad, jitted and op by op: within |x| eps + 1e-6
    + 3e-7 of float64 (the wrap's error passes through the 1-Lipschitz sin and
    cos)."""
    x = _large_angles(radius)
    fast_sin_cos = sin_cos if compiled else fastmath.sin_cos
    sin, cos = map(np.asarray, fast_sin_cos(jnp.asarray(x)))
    x64 = x.astype(np.float64)
    bound = EPS32 * np.abs(x64) + 1e-6 + POLY_ERROR
    assert np.all(np.abs(sin - np.sin(x64)) <= bound)
    assert np.all(np.abs(cos - np.cos(x64)) <= bound)


def test_sin_cos_any_shape_and_float64():
    """Shapes pass through; float64 input (the tests' references) is wrapped in
    float64 and uses XLA's exact sine and cosine."""
    theta = jnp.linspace(-3.0, 3.0, 12).reshape(3, 4)
    sin, cos = fastmath.sin_cos(theta)
    assert sin.shape == cos.shape == (3, 4)
    assert fastmath.sin_cos(jnp.float32(0.5))[0].shape == ()
    with x64():
        x = np.random.default_rng(1).uniform(-1e3, 1e3, 10_000)
        sin, cos = sin_cos(jnp.asarray(x, jnp.float64))
        assert sin.dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(sin), np.sin(x), atol=1e-12)
        np.testing.assert_allclose(np.asarray(cos), np.cos(x), atol=1e-12)
