"""sacbook: Soft Actor-Critic in JAX, from one pendulum to thousands on one device.

Modules, one concept each, each importing only those above it:
  checks      argument checks with one-line errors; real-valued fields' ranges
  jit         how the package compiles: jax.jit with its XLA options
  fastmath    the CPU-fast angle wrap and sin/cos the physics uses
  pendulum    physics parameters and presets, step, observe, reward, resets
  networks    Flax actor and twin critics, the tanh-squashed Gaussian
  replay      circular replay buffer as a pytree
  host_random NumPy draws seeded by JAX keys: runs start without compiling
  sharding    meshes, layouts, and the collective axis (one device or many)
  distributed many processes as one job: jax.distributed, shared host decisions
  sac         SAC config (static and swept fields), state, losses, one update
  config      LoopConfig and TrainConfig: what a run is
  cost        FLOPs and bytes of an update and an iteration, from the config
  forecast    what a GPU should do: training time predicted from the cost
  loop        the compiled program: state, init, iteration, chunk
  evaluate    deterministic evaluation, the solved return, rollouts
  records     a chunk's metrics as one record per run; the NaN check
  device      accelerator, memory, does a run fit
  integrity   checksums that tell an intact checkpoint from a damaged one
  checkpoint  save and resume runs with orbax, verified; load a trained policy
  export      a trained policy as a small JSON file that any language can run
  driver      the host loop between chunks, for one run or many
  train       the host runner: train, train_seeds and sweep on one driver
  stats       interquartile means and bootstrap intervals across seeds
  plots       training curves: live, across seeds, to a file
  viz         pendulum animations, the explorer widget, a policy's swing-up
  crowd       pictures of many pendulums at once
  live        the pendulum and trained policies, live in the reader's browser
  bench       throughput and time-to-solve measurements, references, reports
  notebook    the chapters' setup cell: devices, Colab's widget manager
  cli         ``sacbook render | train | bench``
"""

__version__ = "0.5.0"

from sacbook._source import show_source  # noqa: E402,F401
