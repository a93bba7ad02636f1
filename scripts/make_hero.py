"""Draw the landing page's picture: 1024 pendulums at three stages of training.

Trains the default recipe (seed 0, 1024 environments) as Chapter 4 does, keeps
the actor after 20, 100 and 300 iterations, lets each drive 1024 pendulums from
the same starts for 5 simulated seconds, and draws every pendulum's angle over
time with :func:`sacbook.crowd.plot_angle_image`.

    python scripts/make_hero.py                 # writes book/images/hero_1024.png
    python scripts/make_hero.py --out other.png

About 40 s on a 2-core CPU. On a CPU the picture is the same on every run.
"""

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from sacbook import crowd, evaluate, train  # noqa: E402
from sacbook.config import TrainConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
STEPS = 100  # 5 simulated seconds
START_KEY = 7  # the starts, the same for every stage


def stages(config: TrainConfig, seed: int = 0):
    """The angles ``(STEPS, num_envs)`` of the policy after the first chunk,
    the fifth and the last, with a label for each."""
    last = config.total_iterations // config.chunk_iterations
    keep = {1: None, min(5, last): None, last: None}

    def keep_actor(progress):
        # the state's memory is reused by the next chunk: copy what we keep
        record = progress.record
        if record["chunk"] in keep:
            keep[record["chunk"]] = (
                jax.tree.map(jnp.copy, progress.state.sac.actor_params),
                record["iterations"],
            )

    train.train(config, seed=seed, progress=False, callbacks=[keep_actor])
    thetas, labels = [], []
    for actor_params, iterations in keep.values():
        angles, _, _ = evaluate.policy_rollout(
            actor_params,
            jax.random.key(START_KEY),
            config.sac,
            config.env,
            config.num_envs,
            STEPS,
        )
        thetas.append(np.asarray(angles))
        labels.append(f"after {iterations} iterations")
    return thetas, labels


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=ROOT / "book" / "images" / "hero_1024.png")
    args = parser.parse_args(argv)
    config = TrainConfig()
    thetas, labels = stages(config)
    fig = crowd.plot_angle_image(thetas, labels, dt=config.env.dt)
    fig.suptitle(
        f"{config.num_envs:,} pendulums, one policy at three stages of training",
        fontsize=11,
        y=1.03,
    )
    fig.savefig(args.out, dpi=100, bbox_inches="tight")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
