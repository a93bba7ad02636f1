"""sacbook: Soft Actor-Critic in JAX, from one pendulum to thousands on one device.

Modules, one concept each:
  pendulum    physics, observation, reward, batched environments with auto-reset
  fastmath    the CPU-fast angle wrap and sin/cos the physics uses
  networks    Flax actor and twin critics, the tanh-squashed Gaussian
  replay      circular replay buffer as a pytree
  sac         SAC config, state, losses and one gradient update
  host_random NumPy draws seeded by JAX keys: runs start without compiling
  loop        the compiled training program: config, state, iteration, chunk
  evaluate    deterministic evaluation and policy rollouts
  train       the host runner: train(), history, checkpoints, clean stops
  jit         how the package compiles: jax.jit with one set of XLA options
  device      is it an accelerator, how much memory, does a run fit
  checkpoint  save and resume runs with orbax; load a trained policy
  viz         animations, widgets and training plots
  bench       throughput and time-to-solve measurements, reference tables
  notebook    the chapters' setup cell: devices, Colab's widget manager
  checks      argument checks with one-line errors
  cli         ``sacbook render | train | bench``
"""

__version__ = "0.4.0"

from sacbook._source import show_source  # noqa: E402,F401
