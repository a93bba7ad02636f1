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
import errno
import fcntl
import gc
import json
import logging
import math
import os
import resource
import shutil
import sys
import threading
from pathlib import Path

from sacbook.cli.args import CliError, writable_dir

RUNS = Path("runs")  # where fresh folders go by default
LATEST = "latest"
RUN_CONFIG = "run.json"  # a fresh run's config and seed, written before it starts
RESTARTED = "metrics-before-restart.jsonl"  # see keep_unbacked_metrics

# What a run writes into its folder (a --seeds run: seed_* folders and more);
# --overwrite removes these and nothing else.
RUN_FILES = (
    "checkpoint",
    "metrics.jsonl",
    "learning_curve.png",
    "policy.gif",
    "policy.json",
    "learning_curves.png",
    "summary.json",
    RESTARTED,
    RUN_CONFIG,
    "sacbook.log",
)


def choose(out: str | None, resume: bool) -> Path:
    """The folder ``--out`` names; without it, ``runs/latest`` to resume, or a
    fresh ``runs/<date>-<time>`` (``-2``, ``-3``... if taken) made now."""
    if out is not None:
        if resume and not Path(out).is_dir():  # made by nobody: make nothing
            raise CliError(f"--resume: no run in {out!r}")
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
    """Remove a previous run's files from ``folder`` (``--overwrite``),
    refusing if a run writes in one of its ``seed_*`` folders (each is a run
    folder of its own, resumed with ``--out DIR/seed_S --resume``)."""
    seeds = [p for p in folder.glob("seed_*") if p.is_dir() and not p.is_symlink()]
    with contextlib.ExitStack() as held:
        for seed_folder in seeds:
            held.enter_context(locked(seed_folder))
        for path in [*(folder / name for name in RUN_FILES), *folder.glob("seed_*")]:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()


def write_record(file, record: dict) -> None:
    """One record as a line of strict JSON: NaN and infinities (a chunk with
    no updates has no losses) as null, not the bare ``NaN`` that Python
    writes and ``jq`` or JavaScript's ``JSON.parse`` refuse."""
    file.write(json.dumps(strict_json(record), allow_nan=False) + "\n")
    file.flush()


def strict_json(value):
    """``value`` with every non-finite float, however deep, as None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def rewrite_records(path: Path, records: list) -> None:
    """``path`` holding exactly ``records``, one JSON line each, replaced at
    once (a kill leaves the old file or the new, never half of one)."""
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("w") as file:
        for record in records:
            write_record(file, record)
        os.fsync(file.fileno())
    os.replace(temporary, path)


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


def set_aside(ckpt_dir: Path, restored: int, rename: bool = True) -> str:
    """Rename the checkpoints newer than the ``restored`` step (damaged ones:
    restore fell back past them) to ``<step>.damaged``, kept for a look but
    out of the way: left in place, a damaged step would stand for the step
    the resumed run reaches, which would then never be saved again. Returns
    the phrase that says so. In a job over many processes every process
    calls it (orbax lists the steps together) and process 0 alone renames
    (``rename``)."""
    from sacbook import checkpoint

    later = [step for step in checkpoint.all_steps(ckpt_dir) if step > restored]
    moved = [
        checkpoint.set_aside(ckpt_dir, step).name if rename else f"{step}.damaged"
        for step in later
    ]
    return f"; moved to {', '.join(moved)}" if moved else ""


def write_run_config(out: Path, config, seed: int) -> None:
    """Record a fresh run's config and seed in ``out/RUN_CONFIG`` (replaced
    at once), so that ``--resume`` can restart a run killed before its first
    checkpoint."""
    from sacbook.config import config_to_dict

    path = out / RUN_CONFIG
    temporary = path.with_name(path.name + ".tmp")
    record = {"config": config_to_dict(config), "seed": seed}
    temporary.write_text(json.dumps(record) + "\n")
    os.replace(temporary, path)


def read_run_config(out: Path):
    """``(config, seed)`` of the run ``out`` holds, from its RUN_CONFIG."""
    from sacbook.config import config_from_dict

    path = out / RUN_CONFIG
    try:
        record = json.loads(path.read_text())
        return config_from_dict(record["config"]), record["seed"]
    except FileNotFoundError:
        if any(out.glob("seed_*")):
            raise CliError(
                f"--resume: {out} holds a --seeds run; resume one of its seeds "
                f"with --out {out / 'seed_S'} --resume"
            ) from None
        raise CliError(
            f"--resume: {out} holds no run to resume (it was stopped before it "
            "began): start it again without --resume"
        ) from None
    except (ValueError, KeyError, TypeError) as e:
        raise CliError(f"--resume: {path} is unreadable ({e})") from None


def keep_unbacked_metrics(out: Path) -> str:
    """A run resumed without a checkpoint starts again from the beginning; the
    records its ``metrics.jsonl`` held (chunks no checkpoint kept) are moved
    to :data:`RESTARTED`, after any moved there before, not dropped: written
    whole under a temporary name and renamed before ``metrics.jsonl`` goes.
    Returns a phrase saying so, or ``""`` when there were none."""
    metrics, kept = out / "metrics.jsonl", out / RESTARTED
    lines = metrics.read_text().splitlines() if metrics.exists() else []
    if not lines:
        return ""
    earlier = kept.read_text().splitlines(keepends=True) if kept.exists() else []
    temporary = kept.with_name(kept.name + ".tmp")
    with temporary.open("w") as file:
        file.writelines(earlier)
        for line in lines:  # as strict JSON, as write_record writes
            file.write(json.dumps(strict_json(json.loads(line)), allow_nan=False))
            file.write("\n")
    os.replace(temporary, kept)
    metrics.unlink()
    return f"; its {len(lines)} earlier records are kept in {kept}"


def room_for_files(count: int) -> None:
    """Raise this process's limit on open files (to its hard limit at most)
    so that ``count`` more fit beside what is open: a --seeds run holds two
    a seed, and 4096 seeds would pass the common soft limit of 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = count + 256
    if soft != resource.RLIM_INFINITY and soft < want:
        top = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (top, hard))


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
def one_line_when_full(folder: Path):
    """A full disk while the block writes (metrics, plots; a checkpoint says
    so itself) ends in one line naming the folder, not a bare errno."""
    try:
        yield
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise
        from sacbook.device import format_bytes

        free = format_bytes(shutil.disk_usage(folder).free)
        raise CliError(
            f"--out {folder}: no space left on the device ({free} free); the last "
            f"checkpoint is kept: free some space, then sacbook train --resume "
            f"--out {folder}"
        ) from None


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
    # a log that cannot be written (a full disk) is dropped, not reported on stderr
    raise_exceptions, logging.raiseExceptions = logging.raiseExceptions, False
    sys.unraisablehook = lambda u: log.error(
        "unraisable: %s", u.exc_value, exc_info=(u.exc_type, u.exc_value, None)
    )
    threading.excepthook = lambda a: log.error(
        "in thread %s", a.thread, exc_info=(a.exc_type, a.exc_value, a.exc_traceback)
    )
    try:
        yield
    finally:
        gc.collect()  # the failed writes' asyncio tasks log as they go: to the file
        logging.captureWarnings(False)
        logging.raiseExceptions = raise_exceptions
        root.handlers, root.level, absl.handlers, absl.propagate = saved[:4]
        sys.unraisablehook, threading.excepthook = saved_hooks
        with contextlib.suppress(OSError):  # a full disk: the log is lost
            handler.close()
        _keep_asyncio_quiet(folder / "sacbook.log")


class _AppendOrDrop(logging.Handler):
    """Appends each record to a file, and drops it where it cannot."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = path
        self.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))

    def emit(self, record):
        with contextlib.suppress(Exception):
            with open(self.path, "a") as f:
                f.write(self.format(record) + "\n")


def _keep_asyncio_quiet(path: Path) -> None:
    """After a failed save, orbax's abandoned asyncio tasks report themselves
    when Python shuts down ("Future exception was never retrieved"), after
    the block above has ended: send those to the log file too, for the rest
    of the process."""
    asyncio_log = logging.getLogger("asyncio")
    asyncio_log.handlers = [_AppendOrDrop(path)]
    asyncio_log.propagate = False


def enable_compilation_cache() -> None:
    """Keep compiled programs on disk (JAX's persistent cache), so a second
    ``sacbook train`` with the same settings starts without compiling
    (3-4 s saved on a 2-core CPU). ``--no-cache`` turns it off."""
    from sacbook import jit

    folder = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    folder = folder / "sacbook" / "xla"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return  # no writable cache folder: compile every time
    jit.keep_compiled_programs(folder)


@contextlib.contextmanager
def prepared(args):
    """The folder of ``sacbook train``'s ``args``, chosen, locked, checked
    and logged to while the block runs; the compilation cache on unless
    --no-cache. In a job over many processes, process 0 alone chooses,
    checks and locks it, and every process gets its name."""
    from sacbook import distributed

    if args.resume and args.overwrite:
        raise CliError("--resume continues the run in --out; --overwrite replaces it")

    def prepare(stack: contextlib.ExitStack) -> str:
        out = choose(args.out, args.resume)
        if args.resume and not out.is_dir():
            raise CliError(f"--resume: no run in {str(out)!r}")
        stack.enter_context(locked(out))
        if not args.resume and holds_run(out):
            if not args.overwrite:
                raise CliError(
                    f"--out {out} holds a run already: continue it with --resume, "
                    "choose another --out, or replace it with --overwrite"
                )
            print(f"--overwrite: replacing the run in {out}")
            clear(out)
        if args.out is None and not args.resume:
            point_latest_at(out)
        return str(out)

    # in a job over many processes, process 0 alone prepares and locks it
    with contextlib.ExitStack() as stack:
        out = distributed.on_primary(lambda: prepare(stack), "folder", CliError)
        out = Path(out)
        if not args.no_cache:
            enable_compilation_cache()
        with logging_to(out), one_line_when_full(out):
            yield out


def check_checkpoint_space(out: Path, config, runs: int = 1, saved: int = 0) -> None:
    """Room for the checkpoints still to be written: KEEP of them and one
    being written, less those already there (a resumed run)."""
    from sacbook import checkpoint, device

    per_run = device.estimate_train_bytes(config)["state"]
    new = max(checkpoint.KEEP + 1 - saved, 1)
    check_space(out, per_run * runs, new)
