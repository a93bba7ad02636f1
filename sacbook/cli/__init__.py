"""Command line: ``sacbook render | train | bench``.

- ``sacbook render``: simulate a few pendulums and write a GIF
  (:mod:`sacbook.cli.render`);
- ``sacbook train``: train SAC, one run or several seeds as one program,
  and write metrics, plots, a GIF and checkpoints (:mod:`sacbook.cli.train`,
  its options in :mod:`sacbook.cli.options`);
- ``sacbook bench``: measure throughput and time-to-solve
  (:mod:`sacbook.cli.bench`).

Bad options end with a one-line error and exit status 2, never a traceback.
Each command module has ``register(subparsers)``, which adds its parser with
``func=run``, and ``run(args) -> int``, the exit status.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

# Importing the commands imports JAX and its libraries (about a second). A
# Ctrl-C then would raise KeyboardInterrupt wherever Python happens to be,
# often in JAX's garbage-collection callback, which ignores it: the run went
# on, with a traceback on stderr. It is held here while the commands are
# imported, and main() ends with one line.
_interrupted: list[int] = []


def _hold(signum, frame) -> None:
    _interrupted.append(signum)


_holding = (
    threading.current_thread() is threading.main_thread()
    and signal.getsignal(signal.SIGINT) is signal.default_int_handler
)
if _holding:
    signal.signal(signal.SIGINT, _hold)
try:
    from sacbook.cli import bench, render, train
    from sacbook.cli.args import CliError, TrainingFailed
finally:
    if _holding:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def build_parser() -> argparse.ArgumentParser:
    """The ``sacbook`` parser, with one sub-parser per command."""
    parser = argparse.ArgumentParser(
        prog="sacbook", description=__doc__.splitlines()[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    render.register(sub)
    train.register(sub)
    bench.register(sub)
    return parser


def main(argv=None) -> int:
    """Run ``sacbook`` with ``argv`` (default: the process's arguments);
    returns the exit status."""
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for a child process
    if _interrupted:  # a Ctrl-C while the commands were imported
        _interrupted.clear()
        print(f"sacbook {args.command}: interrupted", file=sys.stderr)
        return 130
    try:
        return args.func(args)
    except (CliError, ValueError, OSError) as e:
        print(f"sacbook {args.command}: error: {e}", file=sys.stderr)
        return 2
    except TrainingFailed as e:
        print(f"sacbook {args.command}: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"sacbook {args.command}: interrupted", file=sys.stderr)
        return 130
