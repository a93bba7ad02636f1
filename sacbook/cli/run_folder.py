"""The folder a ``sacbook train`` writes: chosen, locked, checked, logged.

* **A fresh folder per run by default**, as Hydra, Lightning and W&B do:
  ``runs/<date>-<time>``, with ``runs/latest`` a link to the newest, so a
  second ``sacbook train`` never touches the first one's results, and
  ``sacbook train --resume`` continues the newest. An explicit ``--out DIR``
  is the run's own folder (its ``metrics.jsonl`` and ``checkpoint/``
  directly inside); if it holds a run already, it is refused unless the
  command says ``--resume`` or ``--overwrite``.
* **One writer per folder**: an OS file lock (``fcntl.flock``) on
  ``DIR/.lock``, which the OS releases when the process ends, however it
  ends; a second run on the folder stops at once, naming the first one's pid.
* **Room for the checkpoints**, checked before training starts.
* **A log file**, ``DIR/sacbook.log``: what the libraries underneath print
  (absl's warnings, orbax's, asyncio's tracebacks in background threads) goes
  there, not to the terminal, where sacbook prints its own lines.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import logging
import os
import shutil
import sys
import threading
from pathlib import Path

from sacbook.cli.args import CliError, writable_dir

RUNS = Path("runs")  # where fresh folders go by default
LATEST = "latest"

# What a run writes into its folder (a --seeds run: seed_* folders and more);
# --overwrite removes these and nothing else.
RUN_FILES = (
    "checkpoint",
    "metrics.jsonl",
    "learning_curve.png",
    "policy.gif",
    "learning_curves.png",
    "summary.json",
    "sacbook.log",
)


def choose(out: str | None, resume: bool) -> Path:
    """The folder ``--out`` names; without it, ``runs/latest`` to resume, or a
    fresh ``runs/<date>-<time>`` (``-2``, ``-3``... if taken) made now."""
    if out is not None:
        return writable_dir(out)
    if resume:
        return RUNS / LATEST
    writable_dir(str(RUNS))
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    for n in range(1, 1000):
        folder = RUNS / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue
    raise CliError(f"could not make a fresh folder under {RUNS}/")


def point_latest_at(folder: Path) -> None:
    """Make ``runs/latest`` a link to ``folder`` (a fresh default folder),
    replacing the old link at once; a ``runs/latest`` that is a real folder
    (from sacbook 0.4) is left alone."""
    link = RUNS / LATEST
    if link.exists() and not link.is_symlink():
        logging.getLogger(__name__).info("%s is a folder: not replaced by a link", link)
        return
    temporary = RUNS / f".{LATEST}-{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    os.symlink(folder.name, temporary)
    os.replace(temporary, link)


def holds_run(folder: Path) -> bool:
    """Whether ``folder`` holds what a run writes (one run or ``--seeds``)."""
    return any((folder / name).exists() for name in RUN_FILES[:-1]) or any(
        folder.glob("seed_*")
    )


def clear(folder: Path) -> None:
    """Remove a previous run's files from ``folder`` (``--overwrite``)."""
    for path in [*(folder / name for name in RUN_FILES), *folder.glob("seed_*")]:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


@contextlib.contextmanager
def locked(folder: Path):
    """Hold the folder's lock while the block runs; refuse at once, naming
    the holder's pid, if another process holds it."""
    path = folder / ".lock"
    try:
        handle = open(path, "a+")  # noqa: SIM115 (held for the whole block)
    except OSError as e:
        raise CliError(f"--out {folder}: cannot create its lock file ({e})") from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise CliError(
                f"--out {folder} is in use by another sacbook train (pid {holder}); "
                "wait for it to end or choose another --out"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()  # closing releases the lock


def check_space(folder: Path, per_checkpoint: int, checkpoints: int) -> None:
    """Refuse, in one line, a run whose ``checkpoints`` new checkpoints of
    ``per_checkpoint`` bytes each would not fit on ``folder``'s disk."""
    from sacbook.device import format_bytes

    needed = per_checkpoint * checkpoints
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise CliError(
            f"--out {folder} has {format_bytes(free)} free, but this run's "
            f"checkpoints need about {format_bytes(needed)} ({checkpoints} of "
            f"{format_bytes(per_checkpoint)}); free some space or choose another --out"
        )


@contextlib.contextmanager
def logging_to(folder: Path):
    """Send the libraries' logs, warnings and background-thread tracebacks
    to ``folder/sacbook.log`` while the block runs; sacbook's own lines
    still go to the terminal."""
    try:
        handler = logging.FileHandler(folder / "sacbook.log")
    except OSError:
        handler = logging.NullHandler()  # a read-only folder: nowhere to log
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
    root, absl = logging.getLogger(), logging.getLogger("absl")
    saved = (root.handlers[:], root.level, absl.handlers[:], absl.propagate)
    saved_hooks = (sys.unraisablehook, threading.excepthook)
    log = logging.getLogger("sacbook.background")
    root.handlers, absl.handlers, absl.propagate = [handler], [], True
    root.setLevel(logging.WARNING)
    logging.captureWarnings(True)
    sys.unraisablehook = lambda u: log.error(
        "unraisable: %s", u.exc_value, exc_info=(u.exc_type, u.exc_value, None)
    )
    threading.excepthook = lambda a: log.error(
        "in thread %s", a.thread, exc_info=(a.exc_type, a.exc_value, a.exc_traceback)
    )
    try:
        yield
    finally:
        logging.captureWarnings(False)
        root.handlers, root.level, absl.handlers, absl.propagate = saved[:4]
        sys.unraisablehook, threading.excepthook = saved_hooks
        handler.close()
