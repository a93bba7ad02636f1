"""Helpers for tests that compare angles and float32 results with float64."""

import jax
import numpy as np

PI32 = np.float32(np.pi)  # float32(pi) is slightly above the real pi


def x64():
    """Context manager enabling float64 in JAX, across JAX versions."""
    try:
        from jax.experimental import enable_x64  # older JAX

        return enable_x64()
    except ImportError:
        return jax.enable_x64(True)  # newer JAX: the config state is a context manager


def angle_diff(a, b):
    """Signed difference a - b of two angles, wrapped to (-pi, pi], in float64."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    return np.angle(np.exp(1j * d))


def assert_in_wrapped_range(theta):
    """float32 angles in [-pi, pi), with float32's pi."""
    theta = np.asarray(theta)
    assert theta.dtype == np.float32
    assert np.all(theta >= -PI32), theta[theta < -PI32]
    assert np.all(theta < PI32), theta[theta >= PI32]
