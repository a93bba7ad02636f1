"""A minimal Chrome DevTools Protocol client over ``--remote-debugging-pipe``.

Only the standard library: Chrome reads commands on its fd 3 and writes
replies and events on its fd 4, one JSON message per NUL-terminated chunk.
Sessions are "flattened" (``Target.attachToTarget(flatten=True)``): every
message for a page carries its ``sessionId``.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable
from typing import Any

CHROME_NAMES = (
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
    "chrome",
)


def find_chrome() -> str | None:
    """The browser to drive: $SACBOOK_CHROMIUM, else the first on PATH."""
    explicit = os.environ.get("SACBOOK_CHROMIUM")
    if explicit:
        return shutil.which(explicit)
    for name in CHROME_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


class CDPError(RuntimeError):
    pass


class Browser:
    """A headless Chrome driven over a pipe. Use as a context manager."""

    def __init__(self, executable: str, extra_args: tuple[str, ...] = ()):
        self.profile = tempfile.mkdtemp(prefix="sacbook-chrome-")
        args = [
            executable,
            "--headless",
            "--remote-debugging-pipe",
            f"--user-data-dir={self.profile}",
            "--no-sandbox",  # CI runs as root
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",  # so window.innerWidth is the layout width
            "--force-device-scale-factor=1",
            "--mute-audio",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-features=Translate,MediaRouter,OptimizationHints",
            *extra_args,
            "about:blank",
        ]
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def plumb():  # in the child: its fd 3 reads our commands, fd 4 writes replies
            import fcntl

            r = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10)
            w = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)
            os.dup2(r, 3)
            os.dup2(w, 4)

        self._log = open(os.path.join(self.profile, "chrome-stderr.log"), "wb")
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            preexec_fn=plumb,
            pass_fds=(3, 4),
            close_fds=True,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._ids = itertools.count(1)
        self._pending: dict[int, queue.Queue] = {}
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._handlers: dict[tuple[str | None, str], list[Callable[[dict], Any]]] = {}
        self._events: queue.Queue = queue.Queue()
        self.closed = False
        threading.Thread(target=self._read, daemon=True, name="cdp-reader").start()
        threading.Thread(target=self._dispatch, daemon=True, name="cdp-events").start()
        try:
            self.version = self.send("Browser.getVersion", timeout=60)
        except CDPError as exc:
            tail = self._stderr_tail()
            self.close()
            raise CDPError(f"{executable} did not start: {exc}\n{tail}") from None

    def _stderr_tail(self) -> str:
        try:
            with open(self._log.name, "rb") as f:
                return f.read()[-2000:].decode(errors="replace")
        except OSError:
            return ""

    # -- plumbing ---------------------------------------------------------------
    def _read(self):
        buf = b""
        while True:
            try:
                chunk = os.read(self._from_chrome, 1 << 20)
            except OSError:
                chunk = b""
            if not chunk:
                break
            buf += chunk
            *messages, buf = buf.split(b"\0")
            for raw in messages:
                msg = json.loads(raw)
                if "id" in msg:
                    with self._lock:
                        waiter = self._pending.pop(msg["id"], None)
                    if waiter is not None:
                        waiter.put(msg)
                else:
                    self._events.put(msg)
        self.closed = True
        with self._lock:
            for waiter in self._pending.values():
                waiter.put({"error": {"message": "browser closed the pipe"}})
            self._pending.clear()
        self._events.put(None)

    def _dispatch(self):
        while True:
            msg = self._events.get()
            if msg is None:
                return
            key = (msg.get("sessionId"), msg["method"])
            for handler in list(self._handlers.get(key, ())):
                try:
                    handler(msg.get("params", {}))
                except Exception as exc:  # never kill the event thread
                    print(f"[cdp] handler for {key[1]} failed: {exc!r}")

    def on(
        self, method: str, handler: Callable[[dict], Any], session: str | None = None
    ):
        self._handlers.setdefault((session, method), []).append(handler)

    def off_session(self, session: str):
        for key in [k for k in self._handlers if k[0] == session]:
            del self._handlers[key]

    def send(
        self,
        method: str,
        params: dict | None = None,
        session: str | None = None,
        timeout: float = 30,
    ):
        if self.closed:
            raise CDPError(f"{method}: browser is gone")
        msg_id = next(self._ids)
        msg: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        waiter: queue.Queue = queue.Queue(1)
        with self._lock:
            self._pending[msg_id] = waiter
        data = json.dumps(msg).encode() + b"\0"
        with self._write_lock:
            view = memoryview(data)
            while view:
                n = os.write(self._to_chrome, view)
                view = view[n:]
        try:
            reply = waiter.get(timeout=timeout)
        except queue.Empty:
            with self._lock:
                self._pending.pop(msg_id, None)
            raise CDPError(f"{method}: no reply in {timeout} s") from None
        if "error" in reply:
            raise CDPError(
                f"{method}: {reply['error'].get('message')} {reply['error'].get('data', '')}"
            )
        return reply.get("result", {})

    # -- pages ------------------------------------------------------------------
    def new_page(self) -> Page:
        """A tab in a fresh browser context: no cookies, storage or cache from other tabs."""
        context = self.send("Target.createBrowserContext", {"disposeOnDetach": True})[
            "browserContextId"
        ]
        target = self.send(
            "Target.createTarget", {"url": "about:blank", "browserContextId": context}
        )["targetId"]
        session = self.send(
            "Target.attachToTarget", {"targetId": target, "flatten": True}
        )["sessionId"]
        return Page(self, target, session, context)

    def close(self):
        if self.proc.poll() is None:
            try:
                self.send("Browser.close", timeout=5)
            except CDPError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for fd in (self._to_chrome, self._from_chrome):
            try:
                os.close(fd)
            except OSError:
                pass
        self._log.close()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Page:
    """One tab, attached with its own session."""

    def __init__(
        self, browser: Browser, target: str, session: str, context: str | None = None
    ):
        self.browser, self.target, self.session, self.context = (
            browser,
            target,
            session,
            context,
        )

    def send(self, method: str, params: dict | None = None, timeout: float = 30):
        return self.browser.send(method, params, session=self.session, timeout=timeout)

    def on(self, method: str, handler: Callable[[dict], Any]):
        self.browser.on(method, handler, session=self.session)

    def evaluate(
        self, expression: str, await_promise: bool = False, timeout: float = 30
    ):
        """The JSON value of a JavaScript expression; raises on a thrown exception."""
        result = self.send(
            "Runtime.evaluate",
            {
                "expression": expression,
                "returnByValue": True,
                "awaitPromise": await_promise,
            },
            timeout=timeout,
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get(
                "text"
            )
            raise CDPError(f"evaluate failed: {text}")
        return result["result"].get("value")

    def close(self):
        self.browser.off_session(self.session)
        try:
            self.browser.send(
                "Target.closeTarget", {"targetId": self.target}, timeout=10
            )
            if self.context:
                self.browser.send(
                    "Target.disposeBrowserContext",
                    {"browserContextId": self.context},
                    timeout=10,
                )
        except CDPError:
            pass
