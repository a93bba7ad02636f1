"""sacbook: Soft Actor-Critic in JAX, from one pendulum to thousands on one device.

Modules, one concept each:
  pendulum    physics, observation, reward, batched environments with auto-reset
  networks    Flax actor and twin critics, the tanh-squashed Gaussian
  replay      circular replay buffer as a pytree
  sac         SAC config, state, losses and one gradient update
  host_random NumPy draws seeded by JAX keys: runs start without compiling
  train       the fused training loop (act, step, store, update) and evaluation
  checkpoint  save and resume runs with orbax; load a trained policy
  viz         animations, widgets and training plots
  bench       throughput and time-to-solve measurements
  cli         ``sacbook render | train | bench``
"""

__version__ = "0.1.0"

from sacbook._source import show_source  # noqa: E402,F401
