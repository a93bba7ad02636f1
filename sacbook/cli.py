"""Command line: ``sacbook render | train | bench``.

Bad options end with a one-line error and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


class CliError(Exception):
    """A user error: printed as one line, exit status 2."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def _writable_dir(path: str) -> Path:
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".sacbook-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise CliError(f"--out {path!r} is not a writable directory ({e.strerror or e})") from None
    return out


def _writable_file(path: str) -> Path:
    out = Path(path)
    _writable_dir(str(out.parent if str(out.parent) else "."))
    return out


def cmd_render(args) -> int:
    """Simulate a few pendulums (zero torque, or random torques) and write a GIF."""
    import jax
    import numpy as np

    from sacbook import pendulum, viz

    out = _writable_file(args.out)
    params = pendulum.PendulumParams.preset(args.preset)
    key_reset, key_torque = jax.random.split(jax.random.key(args.seed))
    state = pendulum.reset_state(key_reset, args.num_envs, params)
    torques = args.torque * np.ones((args.steps, args.num_envs), np.float32)
    thetas, _ = pendulum.rollout(state.theta, state.theta_dot, torques, params)
    anim = viz.animate_pendulums(np.asarray(thetas), dt=params.dt, torques=torques,
                                 max_torque=params.max_torque, every=args.every,
                                 suptitle=f"{args.preset} preset")
    viz.save_gif(anim, out)
    print(f"wrote {out} ({args.num_envs} pendulums, {args.steps} steps, {out.stat().st_size / 1e3:.0f} kB)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from sacbook.pendulum import PRESETS

    parser = argparse.ArgumentParser(prog="sacbook", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("render", help="simulate pendulums and write an animated GIF")
    p.add_argument("--out", default="pendulums.gif", help="GIF path (default: pendulums.gif)")
    p.add_argument("--preset", default="seed", choices=PRESETS)
    p.add_argument("--num-envs", type=_positive_int, default=4, help="pendulums to draw (default 4)")
    p.add_argument("--steps", type=_positive_int, default=120, help="time steps (default 120)")
    p.add_argument("--every", type=_positive_int, default=2, help="keep every k-th frame (default 2)")
    p.add_argument("--torque", type=float, default=0.0, help="constant torque (default 0: free swing)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_render)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (CliError, ValueError) as e:
        print(f"sacbook {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
