"""Many processes, one run or one sweep: ``jax.distributed`` for sacbook.

The model is JAX's: every process runs the same program on its own devices, and one
global mesh spans every process's devices. Arrays are global (``jax.Array``); each
process holds, and puts, only its own devices' shards
(:func:`sacbook.sharding.put`), so no process ever holds the whole replay buffer.
The compiled chunk is the one a single host runs; the collectives it asks for (the
gradient mean) cross processes through the backend's collectives (Gloo on a CPU,
NCCL on GPUs).

What this module adds is the host's side of it, all through JAX's own machinery (the
distributed runtime's key-value store and barriers,
:mod:`jax.experimental.multihost_utils`):

* :func:`initialize`: ``jax.distributed.initialize`` with one-line errors, Gloo
  collectives on a CPU, and bounded waits (a coordinator that never answers is a
  time-out, not a hang);
* host decisions that every process agrees on: :func:`fetch` gives each process the
  same host copy of metrics and small state, :func:`any_process` makes a stop asked
  by one process a stop for all, :func:`on_primary` runs file-system work on process
  0 and shares its outcome, and :func:`agree` refuses a launch whose processes were
  given different options;
* a watchdog: each process posts a sign of life every second; a peer that falls
  silent for ``timeout`` seconds (killed, its machine gone) or that ends with an
  error makes every other process exit with one line naming it. JAX's own heartbeat,
  at twice that, is the backstop. Process 0 holds the job's coordination service: if
  it dies, JAX's client aborts every other process at once, with its own fatal log,
  which ``sacbook train``'s parent process turns into the same one line
  (:mod:`sacbook.cli.supervise`).

With one process every function here is the single-process behaviour
(:func:`fetch` is ``jax.device_get``, :func:`any_process` the flag itself).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable

import jax
import numpy as np
from jax.experimental import multihost_utils

DEFAULT_TIMEOUT = 60.0  # seconds a process waits for a silent peer
LOST_EXIT = 3  # exit status of a process whose peer was lost
_PREFIX = "sacbook/"  # the keys this module writes in the runtime's store
_WAIT_MS = 600_000  # a peer that is lost ends the job through the watchdog first


class LaunchError(ValueError):
    """A bad or failed launch: one line naming the option at fault."""


def check_launch(
    coordinator: str | None,
    num_processes: int | None,
    process_id: int | None,
    timeout: float = DEFAULT_TIMEOUT,
) -> None:
    """Refuse, in one line, launch settings that cannot work: a coordinator
    that is not ``HOST:PORT``, a process count below 1, a process id outside
    ``[0, num_processes - 1]``, a timeout that is not a positive number of
    seconds. ``None`` leaves a setting to JAX's cluster detection."""
    if coordinator is not None:
        host, colon, port = str(coordinator).rpartition(":")
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise LaunchError(
                f"--coordinator must be HOST:PORT with PORT in [1, 65535], "
                f"got {coordinator!r}"
            )
    if num_processes is not None and (
        isinstance(num_processes, bool)
        or not isinstance(num_processes, int)
        or num_processes < 1
    ):
        raise LaunchError(f"--num-processes must be >= 1, got {num_processes!r}")
    if process_id is not None:
        if num_processes is None:
            high = "--num-processes - 1"
        else:
            high = str(num_processes - 1)
        if (
            isinstance(process_id, bool)
            or not isinstance(process_id, int)
            or process_id < 0
            or (num_processes is not None and process_id >= num_processes)
        ):
            raise LaunchError(
                f"--process-id must be in [0, {high}], got {process_id!r}"
            )
    if not isinstance(timeout, (int, float)) or not 0 < timeout < 1e6:
        raise LaunchError(
            f"--peer-timeout must be seconds in (0, 1e6), got {timeout!r}"
        )


def initialize(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    on_lost: Callable[[str], None] | None = None,
) -> tuple[int, int]:
    """Join this process to the job: ``(process_index, process_count)``.

    Call it before anything else touches JAX. Settings left ``None`` come
    from JAX's cluster detection (Slurm, Open MPI, Kubernetes, TPU pods,
    ``JAX_COORDINATOR_ADDRESS``). On a CPU the cross-process collectives are
    Gloo's. Joining waits at most ``timeout`` seconds for the coordinator and
    the other processes; any failure raises :class:`LaunchError` in one
    line. Then the watchdog starts: a peer silent for ``timeout`` seconds,
    or one that ends with an error, calls ``on_lost(line)`` (default: print
    the line to stderr and exit with status :data:`LOST_EXIT` at once).
    """
    check_launch(coordinator, num_processes, process_id, timeout)
    # harmless where the backend is not a CPU; must precede the backend's start
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    where = f" at {coordinator}" if coordinator else ""
    # JAX's client ends the process (a C++ fatal error, many lines) when it
    # cannot join in time: this timer says so in one line first
    late = threading.Timer(
        timeout,
        _exit_with,
        (
            f"sacbook: could not join the job{where} within --peer-timeout "
            f"{timeout:g} s: is the coordinator (process 0) running and reachable, "
            f"and are all the processes started?",
            2,
        ),
    )
    late.daemon = True
    late.start()
    try:
        jax.distributed.initialize(
            coordinator,
            num_processes,
            process_id,
            initialization_timeout=max(1, round(timeout + 10)),
            heartbeat_timeout_seconds=max(2, round(2 * timeout)),
        )
    except Exception as e:  # JAX's errors: ValueError, RuntimeError, XlaRuntimeError
        late.cancel()
        _abandon_client()
        text = " ".join(str(e).split())
        if "should be defined" in text or "must be defined" in text:
            raise LaunchError(
                "--distributed found no cluster to join (no Slurm, MPI or "
                "JAX_COORDINATOR_ADDRESS): give --coordinator HOST:PORT "
                "--num-processes P --process-id I"
            ) from None
        if "DEADLINE_EXCEEDED" in text or "timed out" in text.lower():
            raise LaunchError(
                f"could not join the job{where} within --peer-timeout "
                f"{timeout:g} s: is the coordinator (process 0) running and "
                f"reachable, and are all --num-processes processes started?"
            ) from None
        if "address already in use" in text.lower() or "bind" in text.lower():
            raise LaunchError(
                f"the coordinator{where} cannot listen on its port (already in "
                f"use?): choose another --coordinator port"
            ) from None
        raise LaunchError(f"could not join the job{where}: {text[:300]}") from None
    late.cancel()
    index, count = jax.process_index(), jax.process_count()
    if count > 1:
        _Watchdog(index, count, timeout, on_lost or _exit_with).start()
    return index, count


def _abandon_client() -> None:
    """Forget a half-made connection, so that Python's exit does not wait on
    JAX's shutdown barrier for peers that never came."""
    from jax._src import distributed as state

    state.global_state.client = None
    state.global_state.service = None
    state.global_state.preemption_sync_manager = None


def _exit_with(line: str, code: int = LOST_EXIT) -> None:
    print(line, file=sys.stderr, flush=True)
    os._exit(code)


def _client():
    from jax._src import distributed as state

    return state.global_state.client


def is_distributed() -> bool:
    """Whether this process is one of several (``jax.distributed``)."""
    return _client() is not None and jax.process_count() > 1


def is_primary() -> bool:
    """Whether this process is process 0: the one that writes the outputs."""
    return jax.process_index() == 0


# ----------------------------------------------------------------------------
# Host decisions every process agrees on
# ----------------------------------------------------------------------------


def fetch(tree):
    """``tree`` as NumPy arrays on the host, the same in every process.

    Arrays this process holds whole, or that are replicated on every device
    (metrics of a split run, networks), are copied from a local device.
    Arrays split across processes (a sweep's per-run metrics) are gathered
    from every process (``multihost_utils.process_allgather``): a collective,
    so every process must call this at the same point. Keep it for small
    trees: a gathered array is held whole by every process.
    """

    leaves, treedef = jax.tree.flatten(tree)
    split = [i for i, x in enumerate(leaves) if not held_here(x)]
    here = [i for i in range(len(leaves)) if i not in split]
    out = [None] * len(leaves)
    for i, value in zip(here, jax.device_get([leaves[i] for i in here])):
        out[i] = value  # one transfer for all of them, as jax.device_get(tree)
    if split:
        gathered = multihost_utils.process_allgather(
            [leaves[i] for i in split], tiled=True
        )
        for i, value in zip(split, gathered):
            out[i] = np.asarray(value)
    return jax.tree.unflatten(treedef, out)


def held_here(x) -> bool:
    """Whether this process holds all of ``x`` (a host value, an array on
    its own devices, or one replicated on every device of the mesh)."""
    if not isinstance(x, jax.Array):
        return True
    return x.is_fully_addressable or (
        x.is_fully_replicated and bool(x.addressable_shards)
    )


def any_process(flag: bool) -> bool:
    """True in every process if ``flag`` is True in any (a collective: every
    process calls it at the same point). One process: ``flag``."""
    if not is_distributed():
        return bool(flag)
    flags = multihost_utils.process_allgather(np.array([bool(flag)]))
    return bool(np.any(flags))


_counters: dict[str, int] = {}


def _key(name: str) -> str:
    """A fresh key for the ``n``-th use of ``name`` in this job: every
    process calls in the same order, so they all name the same key."""
    n = _counters.get(name, 0)
    _counters[name] = n + 1
    return f"{_PREFIX}{name}/{n}"


def on_primary(fn: Callable, name: str, error: type[Exception] = LaunchError):
    """``fn()`` run by process 0 alone (file-system work: a folder, its lock,
    a check of free space), its outcome shared with every process: each
    returns ``fn()``'s value (JSON-able), or raises ``error`` with the same
    message when process 0's ``fn`` raised ``error``. One process: ``fn()``.
    """
    if not is_distributed():
        return fn()
    key = _key(name)
    if is_primary():
        try:
            value = fn()
        except error as e:
            _client().key_value_set(key, json.dumps({"error": str(e)}))
            raise
        except BaseException as e:
            message = f"process 0 failed: {type(e).__name__}: {e}"
            _client().key_value_set(key, json.dumps({"error": message}))
            raise
        _client().key_value_set(key, json.dumps({"value": value}))
        return value
    outcome = json.loads(_client().blocking_key_value_get(key, _WAIT_MS))
    if "error" in outcome:
        raise error(outcome["error"])
    return outcome["value"]


def barrier(name: str) -> None:
    """Wait until every process reaches this point (JAX's barrier)."""
    if is_distributed():
        _client().wait_at_barrier(_key(name).replace("/", "_"), _WAIT_MS)


def agree(settings: dict[str, str], what: str = "option") -> None:
    """Refuse, in every process and in one line, a launch whose processes
    were given different ``settings`` (``{name: value as text}``): the
    first ``what`` that differs, with its values. One process: nothing."""
    if not is_distributed():
        return
    key, client = _key("settings"), _client()
    client.key_value_set(f"{key}/{jax.process_index()}", json.dumps(settings))
    for other in range(jax.process_count()):
        theirs = json.loads(client.blocking_key_value_get(f"{key}/{other}", _WAIT_MS))
        for name in sorted(set(settings) | set(theirs)):
            a, b = settings.get(name), theirs.get(name)
            if a != b:
                raise LaunchError(
                    f"every process must run the same command, but {what} {name} "
                    f"differs: {a!r} in process {jax.process_index()}, {b!r} in "
                    f"process {other}"
                )


# ----------------------------------------------------------------------------
# The watchdog: a silent or failed peer ends every process, in one line
# ----------------------------------------------------------------------------

_watchdog: _Watchdog | None = None


class _Watchdog(threading.Thread):
    """Posts this process's sign of life every ``interval`` seconds and
    watches the others'; calls ``on_lost(line)`` once when a peer has been
    silent for ``timeout`` seconds, has ended with an error, or the
    coordinator can no longer be reached."""

    def __init__(self, index: int, count: int, timeout: float, on_lost):
        super().__init__(name="sacbook-watchdog", daemon=True)
        self.index, self.count, self.timeout = index, count, timeout
        self.on_lost = on_lost
        self.interval = min(1.0, timeout / 5)

    def start(self):
        global _watchdog
        _watchdog = self
        super().start()

    def run(self):
        client, beat = _client(), 0
        heard = {p: (None, time.monotonic()) for p in range(self.count)}
        ended: set[int] = set()
        while True:
            now = time.monotonic()
            try:
                beat += 1
                client.key_value_set(
                    f"{_PREFIX}alive/{self.index}", str(beat), allow_overwrite=True
                )
                for peer in range(self.count):
                    if peer == self.index or peer in ended:
                        continue
                    end = _try_get(client, f"{_PREFIX}ended/{peer}")
                    if end == "ok":
                        ended.add(peer)
                        continue
                    if end is not None:
                        return self._lost(f"process {peer} of {self.count} {end}")
                    last = _try_get(client, f"{_PREFIX}alive/{peer}")
                    if last != heard[peer][0]:
                        heard[peer] = (last, now)
                    elif now - heard[peer][1] > self.timeout:
                        return self._lost(
                            f"lost process {peer} of {self.count}: no sign of life "
                            f"for {self.timeout:g} s (killed, or its machine is gone)"
                        )
            except Exception as e:  # the store is gone: so is process 0
                if self.index == 0:
                    return self._lost(f"the job's coordination failed ({e})")
                return self._lost(
                    f"lost process 0 of {self.count}, the coordinator: "
                    f"{' '.join(str(e).split())[:160]}"
                )
            if len(ended) == self.count - 1 and _ended.is_set():
                return  # every process has finished cleanly
            time.sleep(self.interval)

    def _lost(self, why: str) -> None:
        if _failed.is_set():
            return  # this process is ending with its own line
        self.on_lost(
            f"sacbook: process {self.index} stops: {why}; the last checkpoint is kept"
        )


def _try_get(client, key: str) -> str | None:
    """The store's value at ``key``, or None if nothing is there yet."""
    try:
        return client.key_value_try_get(key)
    except Exception as e:
        if "NOT_FOUND" in str(e) or "not found" in str(e).lower():
            return None
        raise


_ended = threading.Event()  # this process has finished (end())
_failed = threading.Event()  # ... with an error of its own


def end(error: str | None = None) -> None:
    """Tell the other processes that this one is done: cleanly (``error``
    None; they stop watching it), or with ``error``, which ends each of them
    with one line naming this process. One process: nothing."""
    if not is_distributed():
        return
    _ended.set()
    if error is not None:
        _failed.set()  # this process reports its own error: the watchdog is quiet
    text = "ok" if error is None else f"ended with an error: {error}"[:400]
    client = _client()
    try:
        client.key_value_set(
            f"{_PREFIX}ended/{jax.process_index()}", text, allow_overwrite=True
        )
    except Exception:
        return  # the coordinator is gone: the others' watchdogs see that
    if error is None and _watchdog is not None:
        # until every peer ends or is lost: a watchdog in C++ at exit would abort
        _watchdog.join(_watchdog.timeout + 2 * _watchdog.interval + 1)
    if error is None or not is_primary():
        return
    # process 0 holds the job's coordination service: on an error the others
    # may be ending too (an error they all found), so it keeps the service up
    # until they have said so, or for a few seconds
    limit = time.monotonic() + min(10.0, _watchdog.timeout if _watchdog else 10.0)
    others = range(1, jax.process_count())
    while time.monotonic() < limit:
        try:
            if all(_try_get(client, f"{_PREFIX}ended/{p}") for p in others):
                time.sleep(1.0)  # for each to leave, before JAX's client ends it
                return
        except Exception:
            return
        time.sleep(0.05)


def wait_for_watchdog(seconds: float | None = None) -> None:
    """After a collective failed in this process: give the watchdog up to
    ``seconds`` (default its timeout and a margin) to name the lost peer
    and end the process, before the caller reports the failure itself."""
    if _watchdog is None or not _watchdog.is_alive():
        return
    if seconds is None:
        seconds = _watchdog.timeout + 2 * _watchdog.interval + 1
    _watchdog.join(seconds)
