"""Headless Chromium for the tests that look at a page: the dashboard (test_web.py) and the Airflow
UI's connection form (test_provider.py)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest


class Secret(str):
    """A token that pytest's failure reports show as *** (they print fixture values)."""

    def __repr__(self) -> str:
        return "'***'"



def chromium() -> str:
    """Debian's chromium (scripts/test.sh installs it when run as root); skips without it."""
    found = shutil.which("chromium")
    if not found:
        pytest.skip("no headless Chromium: install Debian's chromium (scripts/test.sh does as root)")
    return found


class Browser:
    """Headless Chromium driven over the DevTools protocol (a websocket per page, JSON messages).

    Twenty lines of CDP instead of a driver package: ``websockets`` is already installed with
    uvicorn, and the protocol gives what the test needs, cookies, console errors and screenshots.
    """

    def __init__(self, binary: str, profile: Path, size: tuple[int, int] = (1400, 1000)) -> None:
        self.process = subprocess.Popen(
            [
                binary,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                f"--window-size={size[0]},{size[1]}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.close()
                raise RuntimeError("Chromium did not open its DevTools port")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        page = next(t for t in httpx.get(f"http://127.0.0.1:{port}/json/list").json() if t["type"] == "page")
        from websockets.sync.client import connect

        self._stack = ExitStack()
        self.ws = self._stack.enter_context(connect(page["webSocketDebuggerUrl"], max_size=None))
        self.next_id = 0
        self.errors: list[str] = []
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Sends one command and returns its result; events read meanwhile are checked for errors."""
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=30))
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]
            self._note(message)

    def _note(self, event: dict[str, Any]) -> None:
        params = event.get("params", {})
        if event.get("method") == "Runtime.exceptionThrown":
            self.errors.append(
                params["exceptionDetails"].get("exception", {}).get("description", "exception")
            )
        elif event.get("method") == "Runtime.consoleAPICalled" and params.get("type") == "error":
            self.errors.append(
                " ".join(str(arg.get("value", arg.get("description"))) for arg in params["args"])
            )
        elif event.get("method") == "Log.entryAdded" and params["entry"]["level"] == "error":
            self.errors.append(f"{params['entry']['text']} {params['entry'].get('url', '')}")

    def evaluate(self, expression: str) -> Any:
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30) -> Any:
        """Polls ``expression`` until it is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        while not (value := self.evaluate(expression)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{expression!r} still false after {timeout:.0f} s")
            time.sleep(0.2)
        return value

    def click(self, element: str) -> None:
        """A mouse click at the middle of the element JS ``element`` finds (React and Ark UI widgets
        react to pointer events, not to ``element.click()``)."""
        self.wait_for(f"!!({element})")
        x, y = self.evaluate(
            f"(() => {{ const e = {element}; e.scrollIntoView({{block: 'center'}});"
            " const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def type_into(self, element: str, text: str) -> None:
        """Types ``text`` into the input JS ``element`` finds, replacing what it holds, as keystrokes do."""
        self.wait_for(f"!!({element})")
        self.evaluate(f"(() => {{ const e = {element}; e.focus(); e.select && e.select(); }})()")
        self.call("Input.insertText", text=text)

    def choose(self, element: str, option: str) -> None:
        """Picks ``option`` of the searchable select whose input JS ``element`` finds: typed, then Enter."""
        self.type_into(element, option)
        for kind in ("keyDown", "keyUp"):
            self.call("Input.dispatchKeyEvent", type=kind, key="Enter", code="Enter", windowsVirtualKeyCode=13)

    def screenshot(self, path: Path) -> None:
        """The whole page, not only the window, as a PNG."""
        height = self.evaluate("document.documentElement.scrollHeight")
        width = self.evaluate("document.documentElement.scrollWidth")
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))

    def close(self) -> None:
        if hasattr(self, "_stack"):
            self._stack.close()
        if self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)


@pytest.fixture(name="browser")
def browser_fixture() -> Iterator[Browser]:
    """A fresh headless Chromium with a profile of its own; a test module imports it to use it."""
    binary = chromium()
    profile = Path(tempfile.mkdtemp(prefix="kis-chromium-"))
    chrome = Browser(binary, profile)
    try:
        yield chrome
    finally:
        chrome.close()
        shutil.rmtree(profile, ignore_errors=True)


def log_in(browser: Browser, base: str, token: str) -> None:
    """What the UI's login page does after POST /auth/token: the ``_token`` cookie at path /."""
    browser.call("Network.setCookie", name="_token", value=token, url=base + "/", path="/")
