"""Each process of a job as the child of a small parent, for one last line.

When the process that holds a job's coordination service (process 0) dies,
JAX's client in every other process ends that process at once, from a C++
thread: a fatal log (with a stack trace), and an exit (status 1, or SIGABRT
in newer versions). No Python code of the process runs again, so it cannot
say what happened in sacbook's one line.

So ``sacbook train --distributed`` runs the training in a child process
(:func:`run_child`) and only watches it. The parent passes the child's
standard error through as it comes, except the lines of JAX's C++ log
(``E1204 17:42:28.407640 18788 file.cc:289] ...``), which it holds for
:data:`HOLD_SECONDS`: if the child ends meanwhile because the job's
coordination ended, the parent prints one line in their place and exits
with :data:`sacbook.distributed.LOST_EXIT`; otherwise it passes them on,
late but whole. Standard output and input are the child's own.

Signals: a terminal's Ctrl-C reaches both (one process group), so the
parent ignores SIGINT; SIGTERM and SIGHUP sent to the parent are passed to
the child. On Linux the child dies with its parent (its parent-death
signal), so a ``kill -9`` of either ends the process, as it did before.
"""

from __future__ import annotations

import ctypes
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time

from sacbook.cli import interrupts

CHILD = "SACBOOK_JOB_CHILD"  # set in the child's environment
HOLD_SECONDS = 1.0  # how long JAX's log lines wait for the abort they may announce
# a line of JAX's C++ log: absl's format (``E1204 17:42:28.407640 18788
# file.cc:289]``: severity, date, time, thread, file:line), or TSL's in jax
# 0.7.0 and 0.7.1 (``2026-12-04 17:42:28.407640: E external/xla/.../file.cc:289]``)
_JAX_LOG = re.compile(
    rb"[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ [\w.\-]+:\d+\]"
    rb"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] [\w./\-]+:\d+\]"
)
# how each format's lines begin: "X" a severity letter, "#" a digit
_LOG_STARTS = (b"X#### ##:##:##.", b"####-##-## ##:##:##.")
# the fatal line of JAX's client, since jax 0.4 (it exits with status 1 through
# LOG(QFATAL), or aborts through LOG(FATAL) in newer versions)
_COORDINATION_ENDED = b"Terminating process because the JAX distributed service"


def is_child() -> bool:
    """Whether this process is the training child of :func:`run_child`."""
    return os.environ.get(CHILD) == "1"


def run_child(argv: list[str], process_id, num_processes, program=None) -> int:
    """Run ``sacbook`` with ``argv`` in a child process and return its exit
    status; one line instead of JAX's fatal log if the job's coordination
    ended it. ``process_id``, ``num_processes``: for that line (None: not
    known here, when JAX detects the cluster). ``program``: the command
    instead of ``python -m sacbook.cli`` (for tests)."""
    program = program or [sys.executable, "-m", "sacbook.cli"]
    if interrupts.take():  # a Ctrl-C while this command started: start no child
        raise KeyboardInterrupt
    child = subprocess.Popen(
        [*program, *argv],
        env={**os.environ, CHILD: "1"},
        stderr=subprocess.PIPE,
        preexec_fn=_die_with_parent if os.name == "posix" else None,
    )
    old = {signal.SIGINT: signal.signal(signal.SIGINT, signal.SIG_IGN)}
    for signum in (signal.SIGTERM, signal.SIGHUP):
        old[signum] = signal.signal(signum, lambda s, _: child.send_signal(s))
    relay = _Relay(child.stderr.fileno(), sys.stderr.buffer, child)
    relay.start()
    try:
        code = child.wait()
        relay.join()
    finally:
        for signum, handler in old.items():
            signal.signal(signum, handler)
    held = relay.release()
    if code != 0 and _COORDINATION_ENDED in held:
        from sacbook import distributed

        print(_lost_line(held, process_id, num_processes), file=sys.stderr, flush=True)
        return distributed.LOST_EXIT
    sys.stderr.buffer.write(held)
    sys.stderr.flush()
    return code if code >= 0 else 128 - code


def _lost_line(held: bytes, process_id, num_processes) -> str:
    """sacbook's line for a child that JAX's client ended: the lost process
    as JAX's log names it (``/task:N``), or the other one of two."""
    named = {int(n) for n in re.findall(rb"/task:(\d+)", held)} - {process_id}
    lost = None
    if len(named) == 1:
        lost = named.pop()
    elif num_processes == 2 and process_id in (0, 1):
        lost = 1 - process_id
    who = "this process" if process_id is None else f"process {process_id}"
    of = "" if num_processes is None else f" of {num_processes}"
    what = "lost a process of the job"
    if lost is not None:
        what = f"lost process {lost}{of}" + (", the coordinator" if lost == 0 else "")
    return (
        f"sacbook: {who} stops: {what}: JAX's distributed service ended this "
        "process; the last checkpoint is kept"
    )


def _may_begin_log(text: bytes) -> bool:
    """Whether ``text``, a line not yet ended, may still turn out to be a line
    of JAX's log (then it waits for its end); anything else passes on now."""

    def fits(char: int, pattern: int) -> bool:
        if pattern == ord("#"):
            return 48 <= char <= 57  # b"0" to b"9"
        return char in b"IWEF" if pattern == ord("X") else char == pattern

    return any(all(fits(c, p) for c, p in zip(text, start)) for start in _LOG_STARTS)


def _die_with_parent() -> None:
    """In the child, before it runs: die with the parent (Linux's
    PR_SET_PDEATHSIG), so that killing the parent kills the process."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG


class _Relay(threading.Thread):
    """Copies the child's stderr to ``sink`` as it comes, holding JAX's log
    lines (and all that follows them) for :data:`HOLD_SECONDS` while the
    child lives, and to the end once JAX's fatal line came (the child is
    ending, however slowly); :meth:`release` returns what is still held."""

    def __init__(self, fd: int, sink, child: subprocess.Popen):
        super().__init__(daemon=True)
        self.fd, self.sink, self.child = fd, sink, child
        self.held = bytearray()
        self.since = None  # when holding began
        self.fatal = False  # JAX's fatal line is held

    def run(self) -> None:
        pending = b""
        while True:
            ready, _, _ = select.select([self.fd], [], [], 0.2)
            if self.since is not None and not self.fatal and self.child.poll() is None:
                if time.monotonic() - self.since > HOLD_SECONDS:
                    self._write(bytes(self.held))  # no abort came: pass them on
                    self.held.clear()
                    self.since = None
            if not ready:
                continue
            data = os.read(self.fd, 1 << 16)
            if not data:
                break
            pending = self._feed(pending + data)
        self._hold_or_write(pending)

    def _feed(self, data: bytes) -> bytes:
        """Pass on or hold each complete line; returns the unfinished rest,
        after passing it on too unless it may begin a line of JAX's log."""
        *lines, rest = data.split(b"\n")
        for line in lines:
            self._hold_or_write(line + b"\n")
        if self.since is None and not _may_begin_log(rest):
            self._write(rest)  # a progress bar's partial line, say
            return b""
        return rest

    def _hold_or_write(self, line: bytes) -> None:
        if self.since is None and _JAX_LOG.match(line):
            self.since = time.monotonic()
        if self.since is None:
            self._write(line)
        else:
            self.held += line
            self.fatal = self.fatal or _COORDINATION_ENDED in line

    def _write(self, data: bytes) -> None:
        if data:
            self.sink.write(data)
            self.sink.flush()

    def release(self) -> bytes:
        held = bytes(self.held)
        self.held.clear()
        return held
