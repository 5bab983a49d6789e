"""
The demo report in a real browser: Debian's headless Chromium, driven through its DevTools protocol (a small
client over ``websocket-client``). Fails on any console error or uncaught exception, an image that does not
decode, a leaderboard whose row count differs from the number of models, a sort that does not order the rows, or
a page wider than the viewport; saves a screenshot of the first screen under ``tests/artifacts/``. Skipped when
Chromium (``make chromium`` installs it as root) or ``websocket-client`` is missing.
"""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from art_geometry.datasets import Dataset

websocket = pytest.importorskip("websocket", reason="the browser test needs websocket-client (the 'test' extra)")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (make chromium, as root)")

ARTIFACTS = Path(__file__).parent / "artifacts"
WIDTH, HEIGHT = 1280, 900
MODELS = ["A: natural, batch 512", "B: natural, batch 32", "C: Jacobian-regularised", "D: PGD adversarial"]


class DevTools:
    """A minimal Chrome DevTools Protocol client: numbered commands, events kept until read."""

    def __init__(self, url: str) -> None:
        self.ws = websocket.create_connection(url, timeout=60, suppress_origin=True)
        self.ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """:return: The result of one command (events that arrive meanwhile are kept)."""
        n = next(self.ids)
        self.ws.send(json.dumps({"id": n, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == n:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]
            self.events.append(message)

    def wait_for(self, method: str, timeout: float = 60.0) -> dict[str, Any]:
        """:return: The first event ``method`` (already received or the next ones)."""
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if event.get("method") == method:
                    return event
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {method} event within {timeout} s")
            self.events.append(json.loads(self.ws.recv()))

    def evaluate(self, expression: str) -> Any:
        """:return: The value of a JavaScript expression (promises awaited)."""
        out = self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in out:
            raise RuntimeError(f"page script failed: {out['exceptionDetails']}")
        return out["result"].get("value")

    def errors(self) -> list[str]:
        """:return: Console errors, uncaught exceptions and error log entries seen so far."""
        out = []
        for e in self.events:
            method, p = e.get("method"), e.get("params", {})
            if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append("console: " + " ".join(str(a.get("value", a.get("description"))) for a in p["args"]))
            elif method == "Runtime.exceptionThrown":
                out.append("exception: " + json.dumps(p["exceptionDetails"])[:500])
            elif method == "Log.entryAdded" and p["entry"]["level"] == "error":
                out.append("log: " + p["entry"]["text"])
        return out


@pytest.fixture(scope="module")
def demo_report(digits, tmp_path_factory) -> Path:
    """
    The page of ``art-geometry report --demo`` (the four tracked demo models, every section) on 256 / 100 digits,
    one epoch, 20 samples, with smaller surface grids and DCT sweep than the command's so that it takes seconds.
    """
    from art_geometry.report import ReportContext, default_sections, write_report
    from art_geometry.report.demo import demo_models

    data = Dataset(digits.x_train[:256], digits.y_train[:256], digits.x_test[:100], digits.y_test[:100], "digits")
    demo = demo_models(data, epochs=1, track=True, verbose=False)
    extras = {"training": demo.histories, "surface": {"n_show": 2, "resolution": 15, "n_hessian": 2, "k": 2}}
    ctx = ReportContext(models=demo.models, data=data, n_samples=20, verbose=False, extras=extras)
    sections = default_sections()
    for section in sections:
        if section.key == "margins":
            section.dct_samples = 5
    _, html_path, _ = write_report(ctx, sections, tmp_path_factory.mktemp("browser"))
    return html_path


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    profile = tmp_path_factory.mktemp("chromium-profile")
    proc = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--no-first-run", "--remote-debugging-port=0", f"--user-data-dir={profile}",
         f"--window-size={WIDTH},{HEIGHT}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"Chromium did not start its DevTools endpoint (exit status {proc.poll()})")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30) as response:
            page = next(t for t in json.load(response) if t["type"] == "page")
        client = DevTools(page["webSocketDebuggerUrl"])
        yield client
        client.ws.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


_CHECKS = """(async () => {
  const images = Array.from(document.images);
  const decoded = await Promise.all(images.map(img => img.decode().then(
    () => img.naturalWidth > 0 && img.naturalHeight > 0, () => false)));
  const rows = Array.from(document.querySelectorAll("#leaderboard-table tbody tr"));
  return {
    images: images.length,
    broken: images.filter((img, i) => !decoded[i]).map(img => img.alt),
    rows: rows.length,
    names: rows.map(r => r.cells[0].getAttribute("data-v")),
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
    height: document.documentElement.scrollHeight,
  };
})()"""

_SORT = """(() => {
  const table = document.getElementById("leaderboard-table");
  const heads = Array.from(table.tHead.rows[0].cells);
  const col = heads.findIndex(th => th.textContent.startsWith("robust accuracy"));
  heads[col].click();
  const values = Array.from(table.tBodies[0].rows).map(r => Number(r.cells[col].getAttribute("data-v")));
  return {col: col, values: values};
})()"""


def test_demo_report_in_chromium(browser, demo_report):
    browser.call("Page.enable")
    browser.call("Runtime.enable")
    browser.call("Log.enable")
    browser.call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=HEIGHT, deviceScaleFactor=1, mobile=False)
    browser.call("Page.navigate", url=demo_report.resolve().as_uri())
    browser.wait_for("Page.loadEventFired")
    result = browser.evaluate(_CHECKS)
    shot = browser.call("Page.captureScreenshot", format="png")["data"]
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / "report_browser.png"
    path.write_bytes(base64.b64decode(shot))
    print(f"screenshot of the demo report: {path} (page {result['height']} px tall)")

    assert browser.errors() == []
    assert result["images"] > 10 and result["broken"] == []
    assert result["rows"] == len(MODELS) and result["names"] == MODELS
    assert result["scrollWidth"] <= result["innerWidth"], "the page is wider than the viewport"
    report = json.loads((demo_report.parent / "report.json").read_text())
    assert len(report["models"]) == len(MODELS)

    sort = browser.evaluate(_SORT)
    assert sort["col"] > 0
    assert sort["values"] == sorted(sort["values"], reverse=True)
    expected = sorted((r["robust_accuracy"] for r in report["models"]), reverse=True)
    assert sort["values"] == pytest.approx(expected)
    assert browser.errors() == []
