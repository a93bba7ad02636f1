"""``sacbook train --distributed``: one run or one sweep over many processes.

Every process runs the same command. ``--distributed`` alone joins the job
that JAX's cluster detection finds (Slurm, Open MPI, Kubernetes,
``JAX_COORDINATOR_ADDRESS``); ``--coordinator HOST:PORT --num-processes P
--process-id I`` launch it by hand. The joining, the agreement between
processes and the watchdog are :mod:`sacbook.distributed`'s; this module
holds the command's side: its options, the checks of a launch, and how a
process of the job ends (one line, and no process left waiting).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys

from sacbook.cli.args import CliError, positive_int, seconds

FLAGS = {
    "--distributed": dict(
        action="store_true",
        help="one job over many processes (jax.distributed): every process runs "
        "this same command; the mesh spans every process's devices; needs --out, "
        "a folder every process can reach",
    ),
    "--coordinator": dict(
        metavar="HOST:PORT",
        help="with --distributed, launched by hand: process 0's address",
    ),
    "--num-processes": dict(
        type=positive_int, help="with --distributed, launched by hand: P processes"
    ),
    "--process-id": dict(
        type=int, help="with --distributed, launched by hand: this process, 0..P-1"
    ),
    "--peer-timeout": dict(
        type=seconds,
        default=60.0,
        help="with --distributed: seconds to wait for the other processes to join, "
        "and for a silent one before the job stops (default 60)",
    ),
}

# the options that may differ between the processes of one job
PER_PROCESS = ("process_id", "func", "argv")


def wanted(args: argparse.Namespace) -> bool:
    """Whether the command asks for a job over many processes; a clear
    error for launch options given without ``--distributed``."""
    explicit = [
        flag
        for flag in ("--coordinator", "--num-processes", "--process-id")
        if getattr(args, flag[2:].replace("-", "_")) is not None
    ]
    if explicit and not args.distributed:
        raise CliError(
            f"{explicit[0]} launches a job over many processes: add --distributed"
        )
    return args.distributed


def join(args: argparse.Namespace) -> None:
    """Join the job (before anything touches JAX) and check that every
    process runs the same command with ``--out``; each failure is one line
    (a :class:`CliError`), within ``--peer-timeout`` seconds."""
    from sacbook import distributed

    try:
        distributed.check_launch(
            args.coordinator, args.num_processes, args.process_id, args.peer_timeout
        )
    except distributed.LaunchError as e:
        raise CliError(str(e)) from None
    if args.out is None:
        raise CliError(
            "--distributed needs --out DIR, one folder for the whole job that "
            "every process can reach"
        )
    try:
        distributed.initialize(
            args.coordinator,
            args.num_processes,
            args.process_id,
            timeout=args.peer_timeout,
        )
        settings = {
            "--" + name.replace("_", "-"): json.dumps(value, default=str)
            for name, value in sorted(vars(args).items())
            if name not in PER_PROCESS
        }
        distributed.agree(settings, what="option")
    except distributed.LaunchError as e:
        raise CliError(str(e)) from None


def mesh(args: argparse.Namespace):
    """The job's mesh: every process's devices (``--devices`` may only say
    ``all`` or their number)."""
    import jax

    from sacbook import sharding

    total = jax.device_count()
    if args.devices not in (None, "all", total):
        raise CliError(
            f"--devices {args.devices} with --distributed: the mesh spans every "
            f"process's devices, {total} in all; give --devices all or omit it"
        )
    return sharding.make_mesh("all")


@contextlib.contextmanager
def quiet_unless_primary():
    """Process 0 speaks for the job: the others' standard output is
    dropped while the block runs (their errors still reach stderr)."""
    from sacbook import distributed

    if distributed.is_primary():
        yield
        return
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        yield


def end(line: str | None, code: int) -> int:
    """How a process of the job ends: ``line`` (an error) on stderr, the
    others told (so none waits in a collective for this one), and the exit.

    After a clean end JAX's shutdown waits for every process, as it should;
    after an error the process leaves at once (``os._exit``): the others
    are ending too, and would never reach that shutdown."""
    from sacbook import distributed

    if line is None:
        distributed.end()
        return code
    sys.stdout.flush()
    print(line, file=sys.stderr, flush=True)
    distributed.end(line)
    os._exit(code)


def after_failure(error: BaseException) -> None:
    """An unexpected error in a job (a collective that failed because a peer
    died): let the watchdog name the lost process first, within its
    timeout; it ends the process if it does."""
    from sacbook import distributed

    if isinstance(error, RuntimeError):  # XLA's and orbax's runtime errors
        distributed.wait_for_watchdog()
