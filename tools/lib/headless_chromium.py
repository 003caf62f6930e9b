"""A minimal headless-Chromium driver for poolgate's tools (python3 standard library only).

Chromium is started with --remote-debugging-pipe: it reads DevTools protocol messages
(JSON, each ended by a NUL byte) on fd 3 and writes its answers and events on fd 4, so
no port and no WebSocket client are needed. The browser runs in its own process group,
with a fresh profile in a temporary directory; every wait is bounded, and leaving the
`with` block kills the whole group and removes the profile.

    with Browser("http://127.0.0.1:9901/") as b:
        b.wait_for("document.body.dataset.polls > 2", timeout=10)
        png = base64.b64decode(b.call("Page.captureScreenshot", {"format": "png"})["data"])
"""

import fcntl
import json
import os
import select
import shutil
import signal
import tempfile
import time

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
    "--disable-extensions", "--disable-default-apps", "--disable-dev-shm-usage", "--hide-scrollbars",
    "--mute-audio",
    "--remote-debugging-pipe",
]


class BrowserError(Exception):
    pass


def _high_fd(fd):
    """A close-on-exec duplicate of fd numbered 10 or more (so that dup2 onto 3/4 is real)."""
    dup = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return dup


class Browser:
    def __init__(self, url, width=1280, height=900, binary=None, start_timeout=20.0):
        self.url, self.width, self.height = url, width, height
        self.binary = binary or shutil.which("chromium") or shutil.which("chromium-browser")
        if not self.binary:
            raise BrowserError("chromium is not installed (tools/install-deps installs it: "
                               "apt-get install chromium)")
        self.start_timeout = start_timeout
        self.pid = None
        self.profile = None
        self.log_path = None
        self._buf = b""
        self._next_id = 0
        self.session = None

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self):
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def _start(self):
        self.profile = tempfile.mkdtemp(prefix="poolgate-chromium-")
        self.log_path = os.path.join(self.profile, "chromium.log")
        to_browser_r, to_browser_w = (_high_fd(fd) for fd in os.pipe())
        from_browser_r, from_browser_w = (_high_fd(fd) for fd in os.pipe())
        log_fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        null_fd = os.open(os.devnull, os.O_RDONLY)
        argv = [self.binary] + FLAGS + [
            "--user-data-dir=" + os.path.join(self.profile, "profile"),
            "--window-size=%d,%d" % (self.width, self.height),
            "about:blank",
        ]
        try:
            self.pid = os.posix_spawn(self.binary, argv, os.environ, file_actions=[
                (os.POSIX_SPAWN_DUP2, null_fd, 0),
                (os.POSIX_SPAWN_DUP2, log_fd, 1),
                (os.POSIX_SPAWN_DUP2, log_fd, 2),
                (os.POSIX_SPAWN_DUP2, to_browser_r, 3),
                (os.POSIX_SPAWN_DUP2, from_browser_w, 4),
            ], setpgroup=0)
        finally:
            for fd in (to_browser_r, from_browser_w, log_fd, null_fd):
                os.close(fd)
        self._out, self._in = to_browser_w, from_browser_r

        deadline = time.monotonic() + self.start_timeout
        target = None
        while target is None:
            infos = self.call("Target.getTargets", {}, timeout=deadline - time.monotonic(),
                              session=False)["targetInfos"]
            pages = [t for t in infos if t.get("type") == "page"]
            if pages:
                target = pages[0]["targetId"]
            elif time.monotonic() > deadline:
                raise BrowserError("chromium opened no page within %.0f s" % self.start_timeout)
            else:
                time.sleep(0.05)
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True},
                                 timeout=10, session=False)["sessionId"]
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False})
        self.call("Page.enable", {})
        nav = self.call("Page.navigate", {"url": self.url}, timeout=15)
        if nav.get("errorText"):
            raise BrowserError("cannot load %s: %s" % (self.url, nav["errorText"]))

    def close(self):
        if self.pid is not None:
            try:
                if self.session is not None:
                    self._send({"id": self._new_id(), "method": "Browser.close"})
            except (OSError, BrowserError):
                pass
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                pid, _ = os.waitpid(self.pid, os.WNOHANG)
                if pid:
                    break
                time.sleep(0.02)
            # Whatever is left of the group (renderers, zygote, the browser itself).
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass
            self.pid = None
        for fd in ("_out", "_in"):
            if getattr(self, fd, None) is not None:
                os.close(getattr(self, fd))
                setattr(self, fd, None)
        if self.profile:
            shutil.rmtree(self.profile, ignore_errors=True)
            self.profile = None

    def log_tail(self, lines=20):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except (OSError, TypeError):
            return ""

    # ------------------------------------------------------------------ protocol

    def _new_id(self):
        self._next_id += 1
        return self._next_id

    def _send(self, message):
        data = json.dumps(message).encode() + b"\0"
        while data:
            _, writable, _ = select.select([], [self._out], [], 10)
            if not writable:
                raise BrowserError("chromium does not read its DevTools pipe")
            try:
                n = os.write(self._out, data)
            except BrokenPipeError:
                raise BrowserError("chromium exited\n" + self.log_tail())
            data = data[n:]

    def call(self, method, params=None, timeout=10.0, session=True):
        """Sends one command and returns its result (raises BrowserError on error or timeout)."""
        message = {"id": self._new_id(), "method": method, "params": params or {}}
        if session and self.session is not None:
            message["sessionId"] = self.session
        self._send(message)
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            while b"\0" in self._buf:
                raw, self._buf = self._buf.split(b"\0", 1)
                answer = json.loads(raw)
                if answer.get("id") != message["id"]:
                    continue  # events and stale answers
                if "error" in answer:
                    raise BrowserError("%s: %s" % (method, answer["error"].get("message")))
                return answer.get("result", {})
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("%s: no answer within %.1f s" % (method, timeout))
            readable, _, _ = select.select([self._in], [], [], left)
            if readable:
                chunk = os.read(self._in, 1 << 16)
                if not chunk:
                    raise BrowserError("chromium exited\n" + self.log_tail())
                self._buf += chunk

    def evaluate(self, expression, timeout=10.0):
        """The value of a JavaScript expression in the page (JSON-serialisable)."""
        r = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True},
                      timeout=timeout)
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise BrowserError("JavaScript error: %s" % d.get("exception", {}).get("description", d.get("text")))
        return r.get("result", {}).get("value")

    def wait_for(self, expression, timeout=10.0, interval=0.1):
        """Polls the expression until it is truthy; returns that value."""
        deadline = time.monotonic() + timeout
        last_error = None
        while True:
            try:
                value = self.evaluate(expression, timeout=max(1.0, deadline - time.monotonic()))
                if value:
                    return value
            except BrowserError as e:
                if "chromium exited" in str(e):
                    raise
                last_error = e
            if time.monotonic() > deadline:
                raise BrowserError("timed out after %.0f s waiting for: %s%s" % (
                    timeout, expression, " (last error: %s)" % last_error if last_error else ""))
            time.sleep(interval)
