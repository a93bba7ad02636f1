"""sacbook: Soft Actor-Critic in JAX, from one pendulum to thousands on one device.

Modules, one concept each:
  pendulum  physics, observation, reward, batched environments with auto-reset
  viz       animations, widgets and training plots
"""

__version__ = "0.1.0"

from sacbook._source import show_source  # noqa: E402,F401
