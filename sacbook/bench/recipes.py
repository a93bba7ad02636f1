"""Named training recipes of the time-to-solve runs.

A recipe spec is a name of :data:`NAMED_CONFIGS` or comma-separated changes
to the default :class:`~sacbook.config.TrainConfig` (:data:`RECIPE_KEYS`),
for example ``"N=8192,B=4096,K=4,tau=0.1,it=600"``; :func:`recipe` turns it
into the config. The GPU suite runs :data:`ACCELERATOR_RECIPES`.
"""

from __future__ import annotations

import dataclasses

from sacbook.config import TrainConfig

NAMED_CONFIGS = {"default": TrainConfig, "few_envs": TrainConfig.few_envs}

# What a recipe spec may set (see recipe()), and the TrainConfig field it sets.
RECIPE_KEYS = {
    "N": "num_envs",
    "B": "batch_size",
    "K": "updates_per_iteration",
    "tau": "tau",
    "it": "iterations",
}

# Time-to-solve runs of the GPU suite: the default recipe, and large-batch ones
# in the style of FastTD3/FastSAC, each with K * tau <= 0.5 (Chapter 4's rule).
ACCELERATOR_RECIPES = (
    "N=1024",
    "N=8192",
    "N=1024,B=1024,K=8,tau=0.05",
    "N=8192,B=1024,K=8,tau=0.05",
    "N=8192,B=4096,K=4,tau=0.1,it=600",
    "N=8192,B=8192,K=4,tau=0.1,it=600",
)


def with_num_envs(num_envs: int) -> TrainConfig:
    """The default config with ``num_envs`` environments and a replay buffer
    of at least twice that many transitions."""
    default = TrainConfig()
    return default.replace(
        num_envs=num_envs, buffer_capacity=max(default.buffer_capacity, 2 * num_envs)
    )


def recipe(spec: str) -> TrainConfig:
    """The :class:`~sacbook.config.TrainConfig` a recipe spec names.

    ``spec`` is a name from :data:`NAMED_CONFIGS` (``"default"``,
    ``"few_envs"``) or comma-separated changes to the default config:
    ``N`` (environments), ``B`` (batch size), ``K`` (updates per iteration),
    ``tau`` and ``it`` (iterations to run, default 300). For example
    ``"N=8192,B=4096,K=4,tau=0.1,it=600"``. A bad spec raises ``ValueError``
    with one line naming what is allowed.
    """
    if spec in NAMED_CONFIGS:
        return NAMED_CONFIGS[spec]()
    values = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, sep, text = part.partition("=")
        if not sep or name not in RECIPE_KEYS:
            raise ValueError(
                f"recipe {spec!r}: expected a name ({', '.join(NAMED_CONFIGS)}) "
                f"or KEY=VALUE items with KEY in {', '.join(RECIPE_KEYS)}; got {part!r}"
            )
        try:
            values[name] = float(text) if name == "tau" else int(text)
        except ValueError:
            kind = "a number" if name == "tau" else "an integer"
            raise ValueError(
                f"recipe {spec!r}: {name} must be {kind}, got {text!r}"
            ) from None
    if not values:
        raise ValueError(f"recipe {spec!r} is empty")
    default = TrainConfig()
    n = values.get("N", default.num_envs)
    iterations = values.get("it", 300)
    if n < 1 or iterations < 1:
        raise ValueError(f"recipe {spec!r}: N and it must be integers >= 1")
    sac = dataclasses.replace(
        default.sac,
        batch_size=values.get("B", default.sac.batch_size),
        tau=values.get("tau", default.sac.tau),
    )
    return with_num_envs(n).replace(
        total_env_steps=iterations * n,
        sac=sac,
        updates_per_iteration=values.get("K", default.updates_per_iteration),
    )
