"""Ctrl-C and SIGTERM in ``sacbook``: held while a command starts, a request
to stop while it trains.

Python turns Ctrl-C into ``KeyboardInterrupt`` wherever the main thread is at
that moment. While JAX and its libraries are imported that is often inside a
garbage-collection or weakref callback, where Python prints the exception and
carries on: the run went on as if nothing had been pressed. So from the moment
the command line is read until a command is ready for it, a Ctrl-C is only
noted (:func:`hold`). :func:`release` then raises it where it is safe, and
``sacbook train`` takes it over as a request to stop at the end of a chunk
(:class:`StopOnSignal`), with the checkpoint saved there.

A process started with SIGINT ignored (a background job of a shell script) is
still stopped by one sent on purpose (``kill -INT``) while it starts or trains.
"""

from __future__ import annotations

import signal
import threading

from sacbook.cli.args import TrainingFailed

_held: list[int] = []  # the signals noted while held
_before: list = []  # the handler that hold() replaced, while it holds


def _note(signum, frame) -> None:
    _held.append(signum)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def hold() -> None:
    """Note Ctrl-C instead of raising ``KeyboardInterrupt``. From the main
    thread only (Python runs signal handlers there alone), and only over a
    handler Python can put back (not one an embedding program set in C)."""
    if _main_thread() and not _before and signal.getsignal(signal.SIGINT) is not None:
        _before.append(signal.signal(signal.SIGINT, _note))


def release(raise_held: bool = True) -> None:
    """Give Ctrl-C back its handler from before :func:`hold`; one pressed
    while held raises ``KeyboardInterrupt`` now, unless ``raise_held`` is
    False (then it stays noted: see :func:`take`)."""
    if _before and _main_thread():
        signal.signal(signal.SIGINT, _before.pop())
    if raise_held and take():
        raise KeyboardInterrupt


def take() -> bool:
    """Whether a Ctrl-C was noted while held; forgets it (and no other: one
    noted while this runs stays)."""
    noted = len(_held)
    del _held[:noted]
    return noted > 0


class StopOnSignal:
    """Ctrl-C or SIGTERM asks training to stop at the end of the current chunk
    (a checkpoint is saved there); a second one aborts at once. A Ctrl-C
    noted while the command started counts as the first."""

    def __init__(self):
        self.signum = None

    def __enter__(self):
        self._old = {
            s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)
        }
        if take():
            self.signum = signal.SIGINT
        return self

    def _handle(self, signum, frame):
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc):
        for s, handler in self._old.items():
            signal.signal(s, handler)

    def __call__(self) -> bool:
        return self.signum is not None

    def stopped(self, message: str) -> TrainingFailed:
        """The error that ends a run this signal stopped: exit 128 + signum
        (in a job over many processes, a process that got no signal stops
        with the one that did: exit 1)."""
        if self.signum is None:
            return TrainingFailed(f"stopped by a signal to another process{message}")
        name = signal.Signals(self.signum).name
        return TrainingFailed(f"stopped by {name}{message}", 128 + self.signum)
