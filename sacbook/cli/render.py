"""``sacbook render``: simulate a few pendulums and write a GIF."""

from __future__ import annotations

import argparse

from sacbook import pendulum
from sacbook.cli import interrupts
from sacbook.cli.args import (
    CliError,
    add_command,
    finite_float,
    int_in,
    positive_int,
    seed_number,
    writable_file,
)

# The options of ``sacbook render``.
FLAGS = {
    "--out": dict(default="pendulums.gif", help="GIF path (default: pendulums.gif)"),
    "--preset": dict(
        default="point_mass",
        choices=pendulum.PRESETS,
        help="physics preset (default point_mass)",
    ),
    "--num-envs": dict(
        type=int_in(1, 64),
        default=4,
        help="pendulums to draw, a panel each, 1 to 64 (default 4)",
    ),
    "--steps": dict(
        type=int_in(1, 5000), default=120, help="time steps, 1 to 5000 (default 120)"
    ),
    "--every": dict(
        type=positive_int,
        default=2,
        help="keep every k-th frame (default 2)",
    ),
    "--torque": dict(
        type=finite_float,
        default=0.0,
        help="constant torque in N m, within the preset's motor limit "
        "(default 0: free swing)",
    ),
    "--seed": dict(type=seed_number, default=0),
}


def register(subparsers) -> None:
    """Add the ``render`` command to ``subparsers``."""
    add_command(
        subparsers, "render", "simulate pendulums and write an animated GIF", FLAGS, run
    )


def run(args: argparse.Namespace) -> int:
    """Simulate a few pendulums (a free swing, or a constant torque) and
    write a GIF."""
    import jax
    import numpy as np

    from sacbook import viz

    interrupts.release()  # imports done: a Ctrl-C now ends the command
    params = pendulum.PendulumParams.preset(args.preset)
    if abs(args.torque) > params.max_torque:
        raise CliError(
            f"--torque must be within the {args.preset} preset's motor limit, "
            f"[-{params.max_torque:g}, {params.max_torque:g}] N m; got {args.torque:g}"
        )
    out = writable_file(args.out, ".gif")
    key_reset, _ = jax.random.split(jax.random.key(args.seed))
    state = pendulum.reset_state(key_reset, args.num_envs, params)
    torques = args.torque * np.ones((args.steps, args.num_envs), np.float32)
    thetas, _ = pendulum.rollout(state.theta, state.theta_dot, torques, params)
    anim = viz.animate_pendulums(
        np.asarray(thetas),
        dt=params.dt,
        torques=torques,
        max_torque=params.max_torque,
        every=args.every,
        suptitle=f"{args.preset} preset",
    )
    viz.save_gif(anim, out)
    print(
        f"wrote {out} ({args.num_envs} pendulums, {args.steps} steps, "
        f"{out.stat().st_size / 1e3:.0f} kB)"
    )
    return 0
