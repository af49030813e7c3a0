"""The search page at / in a real headless Chromium, driven over the DevTools protocol (no extra packages).

Chromium is started with ``--remote-debugging-pipe``: DevTools messages (JSON, NUL-terminated) go in on
its fd 3 and come out on its fd 4. Skipped when Chromium is not installed.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_server import _Server

from xlir.server.app import create_app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Chromium is not installed: apt-get update && apt-get install -y chromium chromium-driver",
)
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1200,900",
    "--remote-debugging-pipe",
]


def _high_pipe() -> tuple[int, int]:
    """A pipe whose fds are above 9, so that the shell's "3<&X 4>&Y" cannot clobber one with the other."""
    ends = []
    for fd in os.pipe():
        ends.append(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10))
        os.close(fd)
    return ends[0], ends[1]


class DevTools:
    """A minimal Chrome DevTools protocol client over Chromium's debugging pipe."""

    def __init__(self, profile: Path) -> None:
        to_chrome_r, self._to_chrome = _high_pipe()
        self._from_chrome, from_chrome_w = _high_pipe()
        command = " ".join([CHROMIUM or "chromium", *FLAGS, f"--user-data-dir={profile}", "about:blank"])
        self.process = subprocess.Popen(
            ["bash", "-c", f"exec {command} 3<&{to_chrome_r} 4>&{from_chrome_w}"],
            pass_fds=(to_chrome_r, from_chrome_w),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer = b""
        self._next_id = 0
        self.session: str | None = None

    def send(self, method: str, params: dict[str, Any] | None = None, timeout: float = 20) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if self.session:
            message["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reply = self._read()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
        raise TimeoutError(f"no answer to {method}")

    def _read(self) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            chunk = os.read(self._from_chrome, 1 << 16)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self._buffer += chunk
        raw, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(raw)

    def open(self, url: str) -> None:
        target = self.send("Target.createTarget", {"url": url})["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        # The new target starts as about:blank (already "complete"): wait for the page itself.
        self.wait_for(f"location.href === {json.dumps(url)} && document.readyState === 'complete'")

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, condition: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.evaluate(f"Boolean({condition})"):
                return
            time.sleep(0.05)
        raise TimeoutError(f"the page never satisfied {condition}")

    def type_and_enter(self, selector: str, text: str) -> None:
        self.evaluate(f"document.querySelector({json.dumps(selector)}).focus()")
        self.send("Input.insertText", {"text": text})
        for kind in ("keyDown", "keyUp"):
            event = {"type": kind, "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13}
            self.send("Input.dispatchKeyEvent", {**event, **({"text": "\r"} if kind == "keyDown" else {})})

    def screenshot(self, path: Path) -> Path:
        data = self.send("Page.captureScreenshot", {"format": "png"})["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            self.session = None
            self.send("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        os.close(self._to_chrome)
        os.close(self._from_chrome)


@pytest.fixture(scope="module")
def page_url(sample_index: Path) -> Iterator[str]:
    with _Server(create_app(sample_index)) as url:
        yield url + "/"


@pytest.fixture()
def browser(tmp_path: Path) -> Iterator[DevTools]:
    devtools = DevTools(tmp_path / "profile")
    try:
        yield devtools
    finally:
        devtools.close()


def test_typing_a_query_shows_hits_with_languages_snippets_and_explanations(
    browser: DevTools, page_url: str, tmp_path: Path
) -> None:
    browser.open(page_url)
    browser.wait_for("document.querySelectorAll('input.lang').length === 6")
    browser.type_and_enter("#q", "How many points did the Panthers defense surrender?")
    browser.wait_for("document.querySelectorAll('li.hit').length > 0")
    first = browser.evaluate(
        """(() => { const hit = document.querySelector('li.hit');
        return {id: hit.querySelector('.docid').textContent, lang: hit.querySelector('.tag').textContent,
                marks: [...hit.querySelectorAll('.snippet mark')].map(m => m.textContent),
                explain: hit.querySelector('.explain').textContent}; })()"""
    )
    assert first["id"] == "en-a00p00" and first["lang"] == "en"
    assert "Panthers" in first["marks"] and "defense" in first["marks"]
    assert first["explain"].startswith("bm25: rank 1, score")
    assert "query language: en" in browser.evaluate("document.getElementById('status').textContent")

    # only German documents
    browser.evaluate("document.querySelector('input.lang[value=de]').click()")
    browser.evaluate("document.getElementById('go').click()")
    browser.wait_for("[...document.querySelectorAll('li.hit .tag')].every(t => t.textContent === 'de')")
    assert browser.evaluate("document.querySelector('li.hit .docid').textContent") == "de-a00p00"
    shot = browser.screenshot(Path(os.environ.get("XLIR_SCREENSHOT_DIR", tmp_path)) / "search-page.png")
    assert shot.stat().st_size > 10_000


def test_errors_are_shown_on_the_page(browser: DevTools, page_url: str) -> None:
    browser.open(page_url)
    browser.type_and_enter("#q", "x" * 5000)
    browser.wait_for("document.getElementById('error').style.display === 'block'")
    assert "4096" in browser.evaluate("document.getElementById('error').textContent")
