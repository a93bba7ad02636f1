"""sacbook.cli.supervise: the parent that watches each process of a job.

Each test runs the parent in a fresh Python process around a small child
script that behaves like the training process would: it writes, it gets
a signal, or JAX's client aborts it after its fatal log."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# JAX's fatal log when the job's coordination service is gone (abridged)
FATAL = (
    "W1204 17:42:28.407534   18788 preemption_sync_manager.cc:147] Failed to "
    "retrieve preemption notice from coordination service: UNAVAILABLE\n"
    "F1204 17:42:28.407717   18788 client.h:80] Terminating process because the "
    "JAX distributed service detected fatal errors.\n"
    "*** Check failure stack trace: ***\n"
    "    @     0x7f130c640634  absl::log_internal::LogMessage::SendToLog()\n"
)


def parent(child_code: str, process=1, processes=2, **popen) -> subprocess.Popen:
    """The parent (``process`` of ``processes``) around ``python -c child_code``."""
    program = [sys.executable, "-c", child_code]
    code = (
        "import sys; from sacbook.cli import supervise; sys.exit(supervise.run_child("
        f"[], {process}, {processes}, program={program!r}))"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-c", code],
        env=env,
        text=True,
        stderr=subprocess.PIPE,
        **popen,
    )


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err


# the same in TSL's format, as jax 0.7.0 and 0.7.1 write it
FATAL_TSL = (
    "2026-12-05 01:44:25.160144: W external/xla/xla/tsl/distributed_runtime/"
    "preemption/preemption_sync_manager.cc:149] Failed to retrieve preemption "
    "notice from coordination service: UNAVAILABLE: Socket closed\n"
    "2026-12-05 01:44:25.160288: F external/xla/xla/pjrt/distributed/client.h:75] "
    "Terminating process because the JAX distributed service detected fatal "
    "errors.\n"
)


# new JAX, old JAX, and an end slower than HOLD_SECONDS after the fatal line;
# jax 0.7.0's log format
@pytest.mark.parametrize(
    "how, log",
    [
        ("os.abort()", FATAL),
        ("os._exit(1)", FATAL),
        ("import time; time.sleep(1.6); os.abort()", FATAL),
        ("os.abort()", FATAL_TSL),
    ],
)
def test_jax_abort_after_the_coordinator_is_gone_becomes_one_line(how, log):
    child = (
        "import os, sys\n"
        "sys.stderr.write('training on 4 cpu devices\\n')\n"
        f"sys.stderr.write({log!r}); sys.stderr.flush()\n"
        f"{how}\n"
    )
    code, err = finish(parent(child))
    assert code == 3  # sacbook.distributed.LOST_EXIT
    assert err.splitlines() == [
        "training on 4 cpu devices",
        "sacbook: process 1 stops: lost process 0 of 2, the coordinator: JAX's "
        "distributed service ended this process; the last checkpoint is kept",
    ]


@pytest.mark.parametrize(
    "process, processes, log, lost",
    [
        (0, 2, "", "lost process 1 of 2"),  # the coordinator: the other one died
        (2, 3, "task /job:jax_worker/replica:0/task:1 lost", "lost process 1 of 3"),
        (2, 3, "", "lost a process of the job"),  # not named: not guessed
    ],
)
def test_the_line_names_the_lost_process_only_when_known(process, processes, log, lost):
    child = (
        "import os, sys\n"
        f"sys.stderr.write({FATAL + log!r}); sys.stderr.flush()\n"
        "os.abort()\n"
    )
    code, err = finish(parent(child, process, processes))
    assert code == 3
    assert err.splitlines() == [
        f"sacbook: process {process} stops: {lost}: JAX's distributed service "
        "ended this process; the last checkpoint is kept"
    ]


def test_other_aborts_and_log_lines_pass_through_whole():
    child = (
        "import os, sys, time\n"
        "sys.stderr.write('W1204 10:00:00.000001 7 a.cc:1] a warning\\nmore\\n')\n"
        "sys.stderr.flush(); time.sleep(1.6)\n"  # longer than HOLD_SECONDS
        "sys.stderr.write('still going\\n')\n"
        "sys.stderr.write('F1204 10:00:02.000001 7 b.cc:2] Check failed: x\\n')\n"
        "sys.stderr.flush(); os.abort()\n"
    )
    code, err = finish(parent(child))
    assert code == 128 + signal.SIGABRT  # the child's own end, as a shell says
    assert err.splitlines() == [
        "W1204 10:00:00.000001 7 a.cc:1] a warning",
        "more",
        "still going",
        "F1204 10:00:02.000001 7 b.cc:2] Check failed: x",
    ]


def test_sigterm_reaches_the_child_and_its_status_comes_back():
    child = (
        "import signal, sys, time\n"
        "def stop(s, f):\n"
        "    sys.stderr.write(f'stopping on {s}\\n'); sys.exit(128 + s)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "sys.stderr.write('ready\\n'); sys.stderr.flush(); time.sleep(30)\n"
    )
    proc = parent(child)
    assert proc.stderr.readline() == "ready\n"
    proc.send_signal(signal.SIGTERM)
    code, err = finish(proc)
    assert code == 128 + signal.SIGTERM
    assert err == f"stopping on {int(signal.SIGTERM)}\n"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's prctl")
def test_the_child_dies_with_its_parent():
    child = (
        "import os, sys, time\n"
        "sys.stderr.write(f'{os.getpid()}\\n'); sys.stderr.flush(); time.sleep(60)\n"
    )
    proc = parent(child)
    pid = int(proc.stderr.readline())
    proc.kill()
    proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while _running(pid):
        assert time.monotonic() < deadline, "the child outlived its parent"
        time.sleep(0.1)


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")  # a zombie has ended


def test_a_ctrl_c_while_the_command_started_starts_no_child(tmp_path):
    """A Ctrl-C held while ``sacbook train --distributed`` started (before the
    parent ignores it for its child's sake) is raised before a child starts:
    no training runs that the command would then report as interrupted."""
    from sacbook.cli import interrupts, supervise

    marker = tmp_path / "child ran"
    interrupts.hold()
    try:
        os.kill(os.getpid(), signal.SIGINT)
        program = [sys.executable, "-c", f"open({str(marker)!r}, 'w')"]
        with pytest.raises(KeyboardInterrupt):
            supervise.run_child([], 0, 2, program=program)
    finally:
        interrupts.release(raise_held=False)
    assert not marker.exists() and not interrupts.take()


def test_only_what_may_begin_a_log_line_waits_for_its_end():
    """A line not yet ended waits only while it may still become a line of
    JAX's log (either format); a progress bar or other text passes at once."""
    from sacbook.cli.supervise import _may_begin_log

    for text in (b"", b"2", b"2026-12-05 01:4", b"W1204 17:4", FATAL_TSL[:30].encode()):
        assert _may_begin_log(text), text
    for text in (b"\r 10%|##", b"2 of 3", b"Epoch 1", b"Wx", b"12345", b"\xb2"):
        assert not _may_begin_log(text), text


def test_a_fatal_line_that_comes_in_pieces_still_becomes_one_line():
    """JAX's fatal line split across writes (its first byte alone): held
    whole, and the one line comes."""
    child = (
        "import os, sys, time\n"
        f"log = {FATAL_TSL!r}\n"
        "sys.stderr.write(log[:1]); sys.stderr.flush(); time.sleep(0.3)\n"
        "sys.stderr.write(log[1:]); sys.stderr.flush()\n"
        "os.abort()\n"
    )
    code, err = finish(parent(child))
    assert code == 3, err
    assert err.splitlines() == [
        "sacbook: process 1 stops: lost process 0 of 2, the coordinator: JAX's "
        "distributed service ended this process; the last checkpoint is kept"
    ]
