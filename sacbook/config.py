"""The two configs of a run: :class:`LoopConfig` shapes the compiled program,
:class:`TrainConfig` adds how long to run it and how to evaluate it.

Both are frozen, hashable and validated when built, with one-line errors
that name the field. This module imports neither the loop nor the runner:
everything else reads its configs from here.
"""

from __future__ import annotations

import dataclasses
import math

from sacbook import checks
from sacbook.pendulum import PendulumParams
from sacbook.sac import SACConfig


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    """Everything that shapes the compiled training program, and nothing else.

    Frozen, hashable, validated here; the static argument of the compiled
    chunk, so each distinct config compiles once. The seed and the run's
    length are not in it: a new seed, a longer run or a resumed one reuses
    the compiled program.

    Attributes:
      env: pendulum parameters (a preset).
      sac: SAC hyperparameters.
      num_envs: N environments stepped in parallel, >= 1.
      buffer_capacity: replay capacity in transitions, >= max(N, batch size).
      warmup_env_steps: uniform random actions until this many env steps, >= 0.
      learning_starts: no updates until the buffer holds this many
        transitions (and at least the batch size).
      updates_per_iteration: K gradient updates per update round, >= 1.
      update_every: iterations between update rounds, >= 1. ``K /
        update_every`` is the number of updates per iteration, so ratios
        below one are ``updates_per_iteration=1, update_every=4`` and the like.
      chunk_iterations: iterations per compiled chunk, >= 1.
    """

    # Defaults: the massively parallel recipe, chosen by the study in Chapter 4
    # (time-to-solve on a 2-core CPU): 1024 envs, 16 updates of 96 per
    # iteration, tau 0.03 (K * tau <= 0.5 kept every seed stable).
    env: PendulumParams = PendulumParams.gymnasium()
    sac: SACConfig = SACConfig(batch_size=96, tau=0.03)
    num_envs: int = 1024
    buffer_capacity: int = 1_000_000
    warmup_env_steps: int = 1024
    learning_starts: int = 1024
    updates_per_iteration: int = 16
    update_every: int = 1
    chunk_iterations: int = 20

    def __post_init__(self):
        name = type(self).__name__
        if not isinstance(self.env, PendulumParams):
            raise ValueError(
                f"{name}.env must be a PendulumParams, got {type(self.env).__name__}"
            )
        if not isinstance(self.sac, SACConfig):
            raise ValueError(
                f"{name}.sac must be a SACConfig, got {type(self.sac).__name__}"
            )
        if self.sac.obs_dim != 3 or self.sac.action_dim != 1:
            raise ValueError(
                "SACConfig.obs_dim and action_dim must be 3 and 1 for the pendulum"
            )
        # int32 on the device: the buffer's row indices reach capacity + N
        n = self._set_int("num_envs", 1, checks.INT32_MAX // 2)
        capacity = self._set_int("buffer_capacity", 1, checks.INT32_MAX - n)
        if capacity < n:
            raise ValueError(
                f"{name}.buffer_capacity ({capacity}) must be >= num_envs ({n})"
            )
        if self.sac.batch_size > capacity:
            raise ValueError(
                f"SACConfig.batch_size ({self.sac.batch_size}) must be <= "
                f"buffer_capacity ({capacity})"
            )
        self._set_int("warmup_env_steps", 0)
        self._set_int("learning_starts", 0, checks.INT32_MAX)
        for field in ("updates_per_iteration", "update_every", "chunk_iterations"):
            self._set_int(field, 1, checks.INT32_MAX)

    def _set_int(self, field: str, low: int, high: int | None = None) -> int:
        """Check an integer field; store it as a Python int (so NumPy
        integers hash and print like the same config given as ints)."""
        value = checks.integer(
            f"{type(self).__name__}.{field}", getattr(self, field), low, high
        )
        object.__setattr__(self, field, value)
        return value

    @property
    def loop(self) -> LoopConfig:
        """The fields of :class:`LoopConfig` alone (itself, for a LoopConfig):
        what the compiled chunk is keyed on."""
        if type(self) is LoopConfig:
            return self
        return LoopConfig(
            **{f.name: getattr(self, f.name) for f in dataclasses.fields(LoopConfig)}
        )

    @property
    def updates_per_env_step(self) -> float:
        return self.updates_per_iteration / (self.update_every * self.num_envs)

    @property
    def warmup_iterations(self) -> int:
        """Iterations of random actions: ``ceil(warmup_env_steps / N)``,
        compared with the int32 iteration counter (never overflows)."""
        return min(math.ceil(self.warmup_env_steps / self.num_envs), checks.INT32_MAX)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True)
class TrainConfig(LoopConfig):
    """A training run: the compiled program's :class:`LoopConfig`,
    plus how long to run it and how to evaluate it (neither recompiles).

    Attributes:
      total_env_steps: training length in environment steps (all envs), >= 1;
        rounded up to whole chunks, at most ``2**31 - 1`` iterations.
      eval_envs: environments in each deterministic evaluation (fixed
        starts per run), >= 1.
    """

    # The default recipe solved the gymnasium preset in 100-140 iterations
    # for seeds 0-9 (Chapter 4): 300 iterations leave room for the slow ones.
    total_env_steps: int = 300 * 1024
    # "Solved" is a mean over 64 fixed starts: 16 gave seeds that looked
    # solved by luck of the starts (see Chapter 3's statistics).
    eval_envs: int = 64

    def __post_init__(self):
        super().__post_init__()
        self._set_int("total_env_steps", 1)
        self._set_int("eval_envs", 1, checks.INT32_MAX)
        if self.total_iterations > checks.INT32_MAX:  # the iteration counter is int32
            limit = checks.INT32_MAX // self.chunk_iterations * self.chunk_iterations
            raise ValueError(
                f"TrainConfig.total_env_steps must be at most "
                f"{limit * self.num_envs} with num_envs={self.num_envs} "
                f"(2**31 - 1 iterations), got {self.total_env_steps}"
            )

    @classmethod
    def few_envs(cls, **overrides) -> TrainConfig:
        """Chapter 3's setting: 4 envs, one update per iteration (one update
        per 4 env steps), 20k env steps. Reaches -200 in 6k-13k env steps
        (seeds 0-2)."""
        setting = dict(
            sac=SACConfig(),
            num_envs=4,
            total_env_steps=20_000,
            buffer_capacity=100_000,
            warmup_env_steps=1_000,
            learning_starts=1_000,
            updates_per_iteration=1,
            update_every=1,
            chunk_iterations=250,
        )
        return cls(**{**setting, **overrides})

    @property
    def total_iterations(self) -> int:
        """Iterations needed for ``total_env_steps``, rounded up to whole chunks."""
        iterations = math.ceil(self.total_env_steps / self.num_envs)
        return math.ceil(iterations / self.chunk_iterations) * self.chunk_iterations


def config_to_dict(config: TrainConfig) -> dict:
    """``config`` as plain JSON-able data (a checkpoint's, a run folder's)."""
    return dataclasses.asdict(config)


def config_from_dict(data: dict) -> TrainConfig:
    """The :class:`TrainConfig` that :func:`config_to_dict` wrote, validated."""
    data = dict(data)
    env = PendulumParams(**data.pop("env"))
    sac_config = SACConfig(**{**data.pop("sac")})
    return TrainConfig(env=env, sac=sac_config, **data)
