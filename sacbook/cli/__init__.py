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
``func=run``, and ``run(args) -> int``, the exit status. ``run`` starts with
Ctrl-C held, and releases it once its imports are done (``train`` takes it
over instead: :mod:`sacbook.cli.interrupts`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sacbook.cli import interrupts

# Importing the commands imports JAX and its libraries (about a second): a
# Ctrl-C meanwhile is noted. On the command line it stays held until main()
# (which ends with one line); imported by other code (a notebook), the Ctrl-C
# is raised at the end of the import.
_COMMAND_LINE = sys.argv[:1] == ["-m"] or Path(sys.argv[0]).stem == "sacbook"
interrupts.hold()
try:
    from sacbook.cli import bench, render, train
    from sacbook.cli.args import CliError, TrainingFailed
finally:
    if not _COMMAND_LINE:
        interrupts.release()


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
    interrupts.hold()  # until the command is ready for a Ctrl-C
    try:
        args = build_parser().parse_args(argv)
        args.argv = list(sys.argv[1:] if argv is None else argv)  # for a child
        return _run(args)
    finally:
        interrupts.release(raise_held=False)
        interrupts.take()  # none carries over to a later call in this process


def _run(args: argparse.Namespace) -> int:
    """The command, its failures as one line and an exit status."""
    try:
        if interrupts.take():  # a Ctrl-C while starting
            raise KeyboardInterrupt
        code = args.func(args)  # it releases Ctrl-C once it is ready for it
        if interrupts.take():  # a Ctrl-C noted after its work
            raise KeyboardInterrupt
        return code
    except (CliError, ValueError, OSError) as e:
        print(f"sacbook {args.command}: error: {e}", file=sys.stderr)
        return 2
    except TrainingFailed as e:
        print(f"sacbook {args.command}: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"sacbook {args.command}: interrupted", file=sys.stderr)
        return 130
