"""A tiny client of the Chrome DevTools Protocol over a pipe, for the report's browser test.

Chromium started with `--remote-debugging-pipe` reads protocol commands from its file
descriptor 3 and writes replies and events to descriptor 4, each message JSON ended by a
NUL byte: no websocket library, no port, no network. `open_page` loads a file, waits for
its load event, and returns what went wrong in it (console errors, uncaught exceptions,
images that did not decode) plus a full-page screenshot.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--no-first-run",
    "--no-default-browser-check",
    "--mute-audio",
    "--remote-debugging-pipe",
)
# Every <img> that is not fully decoded (a broken data URI, a missing file) has no pixels.
BROKEN_IMAGES_JS = """JSON.stringify(Array.from(document.images)
    .filter(function (i) { return !i.complete || i.naturalWidth === 0; })
    .map(function (i) { return i.alt || i.src.slice(0, 60); }))"""


def _high_fd(fd: int) -> int:
    """`fd` moved to a number above 4 (close-on-exec), the original closed."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


def chromium_missing_reason() -> str | None:
    """Why the browser test cannot run here, or None when it can."""
    if not Path(CHROMIUM).is_file() or shutil.which(CHROMIUM) is None:
        return (
            f"{CHROMIUM} is not installed (Debian: apt-get install chromium; .ci/run does it "
            "when it runs as root with apt-get)"
        )
    return None


@dataclass
class PageResult:
    """What a page did while it loaded."""

    console_errors: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    log_errors: list[str] = field(default_factory=list)
    broken_images: list[str] = field(default_factory=list)
    image_count: int = 0
    screenshot: bytes = b""

    @property
    def problems(self) -> list[str]:
        return [
            *(f"console error: {m}" for m in self.console_errors),
            *(f"uncaught exception: {m}" for m in self.exceptions),
            *(f"browser log error: {m}" for m in self.log_errors),
            *(f"broken image: {m}" for m in self.broken_images),
        ]


class Browser:
    """One headless chromium process, spoken to over the DevTools pipe."""

    def __init__(self, user_data_dir: Path, *, timeout: float = 60.0) -> None:
        self.timeout = timeout
        # Both ends chromium gets are moved above 4 first, so the dup2 calls below cannot
        # overwrite one with the other.
        to_chrome_read, self._to_chrome = (_high_fd(fd) for fd in os.pipe())
        self._from_chrome, from_chrome_write = (_high_fd(fd) for fd in os.pipe())

        def child_fds() -> None:  # in the child, before exec: the pipe ends become fds 3, 4
            os.dup2(to_chrome_read, 3)  # dup2's copies stay open across exec
            os.dup2(from_chrome_write, 4)

        # close_fds=False: the only descriptors without close-on-exec are 0-2, 3 and 4
        # (Python opens everything else non-inheritable).
        self.process = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={user_data_dir}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            close_fds=False,
            preexec_fn=child_fds,  # the tests start no threads
        )
        os.close(to_chrome_read)
        os.close(from_chrome_write)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def close(self) -> None:
        with contextlib.suppress(OSError, TimeoutError, RuntimeError):
            self.send("Browser.close")
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for fd in (self._to_chrome, self._from_chrome):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        """Send one command and return its result; events seen meanwhile are kept."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._receive()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result
            self.events.append(reply)

    def wait_for(self, method: str) -> dict[str, Any]:
        """The first event `method` (seen before or now)."""
        while True:
            for event in self.events:
                if event.get("method") == method:
                    return event
            self.events.append(self._receive())

    def _receive(self) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._from_chrome], [], [], max(left, 0))
            if not ready:
                raise TimeoutError(f"chromium did not answer within {self.timeout} s")
            chunk = os.read(self._from_chrome, 1 << 20)
            if not chunk:
                raise RuntimeError(f"chromium exited (code {self.process.poll()})")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        value: dict[str, Any] = json.loads(message)
        return value

    def open_page(self, page: Path, *, width: int = 1280, height: int = 900) -> PageResult:
        """Load `page`, wait for its load event, collect its problems and a screenshot."""
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable", session)
        self.send(
            "Emulation.setDeviceMetricsOverride",
            session,
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        self.events.clear()
        self.send("Page.navigate", session, url=page.resolve().as_uri())
        self.wait_for("Page.loadEventFired")
        result = PageResult()
        broken = self.evaluate(session, BROKEN_IMAGES_JS)
        result.broken_images = json.loads(broken)
        result.image_count = int(self.evaluate(session, "document.images.length"))
        size = self.send("Page.getLayoutMetrics", session)["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        shot = self.send(
            "Page.captureScreenshot", session, format="png", clip=clip, captureBeyondViewport=True
        )
        result.screenshot = base64.b64decode(shot["data"])
        for event in self.events:
            params = event.get("params", {})
            if event.get("method") == "Runtime.consoleAPICalled" and params.get("type") in (
                "error",
                "assert",
            ):
                result.console_errors.append(
                    " ".join(str(a.get("value", a.get("description"))) for a in params["args"])
                )
            elif event.get("method") == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                result.exceptions.append(
                    str(details.get("exception", {}).get("description") or details.get("text"))
                )
            elif event.get("method") == "Log.entryAdded":
                entry = params.get("entry", {})
                if entry.get("level") == "error":
                    result.log_errors.append(f"{entry.get('source')}: {entry.get('text')}")
        self.session = session
        return result

    def evaluate(self, session: str, expression: str) -> Any:
        """The value of a JavaScript expression in the page; a thrown exception fails."""
        reply = self.send("Runtime.evaluate", session, expression=expression, returnByValue=True)
        if "exceptionDetails" in reply:
            raise RuntimeError(f"{expression!r} threw: {reply['exceptionDetails']}")
        return reply["result"].get("value")
