"""A real browser opens the reports from disk: headless Chromium (Debian's package) driven over the DevTools
protocol on a pipe (--remote-debugging-pipe, so no extra Python package and no network port).

It checks what a person would see: the page loads with no console error, a screenshot is not blank, and every
chart figure has drawn SVG paths and visible coloured pixels in its own screenshot. The tests install nothing and
the browser resolves no host name (the reports are self-contained files): when Chromium is not on PATH they skip
saying why; `make test` first runs `make browser`, which installs Debian's chromium where it can.
"""
from __future__ import annotations

import base64
import io
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from harness.report.render import write_report
from harness.results import Campaign
from harness.site import build_index

pytestmark = pytest.mark.browser

CAMPAIGN = Path(__file__).parent / "fixtures" / "campaign_handmade"  # hand-made curves, real harness records
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-pipe", "--window-size=1280,1000", "--hide-scrollbars",
         "--host-resolver-rules=MAP * ~NOTFOUND"]   # no connection leaves the machine
CHARTS_JS = """JSON.stringify([...document.querySelectorAll('figure[data-chart]')].map(f => {
  const r = f.getBoundingClientRect();
  const drawn = [...f.querySelectorAll('svg path')].filter(p => {
    const b = p.getBBox(); return (b.width > 0 || b.height > 0) && getComputedStyle(p).visibility !== 'hidden'; });
  return {name: f.dataset.chart, x: r.left + scrollX, y: r.top + scrollY, w: r.width, h: r.height,
          drawn: drawn.length};
}))"""


def _find_chromium() -> str | None:
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)


@pytest.fixture(scope="session")
def chromium() -> str:
    """The browser on PATH; the tests install nothing (`make browser`, run by `make test`, installs it)."""
    path = _find_chromium()
    if path is None:
        pytest.skip("no headless Chromium: neither chromium nor chromium-browser is on PATH "
                    "(`make browser` installs Debian's chromium where it can)")
    return path


class Browser:
    """Chromium with one page, spoken to over the DevTools pipe (fd 3 in, fd 4 out, NUL-separated JSON)."""

    def __init__(self, binary: str, profile: str):
        # the shell moves our pipes onto fds 3 and 4, where --remote-debugging-pipe expects them
        self.proc = subprocess.Popen(
            ["sh", "-c", 'exec "$0" "$@" 3<&0 4>&1 0</dev/null 1>&2', binary, *FLAGS, f"--user-data-dir={profile}"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.events: list[dict] = []
        self._buf, self._id = b"", 0
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable", session=True)

    def call(self, method: str, session: bool = False, **params) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params}
        if session:
            msg["sessionId"] = self.session
        self.proc.stdin.write(json.dumps(msg).encode() + b"\0")
        self.proc.stdin.flush()
        while True:
            reply = self._receive()
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def _receive(self, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buf:
            ready, _, _ = select.select([self.proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            chunk = os.read(self.proc.stdout.fileno(), 1 << 16) if ready else b""
            if not chunk:
                raise TimeoutError("Chromium stopped answering on the DevTools pipe")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\0", 1)
        return json.loads(line)

    def viewport(self, width: int, height: int) -> None:
        """The window a person reads the page in (CSS pixels, scale 1)."""
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=width, height=height,
                  deviceScaleFactor=1, mobile=False)

    def open(self, path: Path) -> None:
        self.events.clear()
        self.call("Page.navigate", session=True, url=path.resolve().as_uri())
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            self.events.append(self._receive())

    def console_errors(self) -> list[str]:
        errors = []
        for e in self.events:
            method, p = e.get("method"), e.get("params", {})
            if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                errors.append(" ".join(str(a.get("value")) for a in p.get("args", [])))
            elif method == "Runtime.exceptionThrown":
                errors.append(p.get("exceptionDetails", {}).get("text", "exception"))
            elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                errors.append(p["entry"].get("text", ""))
        return errors

    def evaluate(self, expression: str):
        return self.call("Runtime.evaluate", session=True, expression=expression, returnByValue=True)["result"]["value"]

    def screenshot(self, clip: dict | None = None) -> bytes:
        params = {"format": "png", "captureBeyondViewport": True}
        if clip:
            params["clip"] = {**clip, "scale": 1}
        return base64.b64decode(self.call("Page.captureScreenshot", session=True, **params)["data"])

    def close(self) -> None:
        try:
            self.call("Browser.close")
            self.proc.wait(timeout=20)
        except Exception:  # noqa: BLE001 - a browser that will not close is killed
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def browser(chromium, tmp_path):
    b = Browser(chromium, tempfile.mkdtemp(prefix="profile-", dir=tmp_path))
    yield b
    b.close()


def pixels(png: bytes):
    from PIL import Image
    return Image.open(io.BytesIO(png)).convert("RGB")


def coloured_pixels(img) -> int:
    """Pixels of a saturated colour (the arms' lines and markers), not white, grey or black text."""
    import numpy as np
    rgb = np.asarray(img, dtype=np.int16)
    return int(((rgb.max(axis=2) - rgb.min(axis=2)) > 80).sum())


def check_page(browser: Browser, page: Path, shots: Path, min_charts: int) -> list[dict]:
    browser.open(page)
    assert browser.console_errors() == []
    full = pixels(browser.screenshot())
    full.save(shots / f"{page.stem}.png")
    assert len(full.getcolors(1 << 20) or range(1 << 20)) > 50, "the screenshot is blank"
    charts = json.loads(browser.evaluate(CHARTS_JS))
    assert len(charts) >= min_charts
    for c in charts:
        assert c["w"] > 200 and c["h"] > 100 and c["drawn"] > 5, c
        img = pixels(browser.screenshot({"x": c["x"], "y": c["y"], "width": c["w"], "height": c["h"]}))
        img.save(shots / f"{page.stem}-{c['name']}.png")
        assert coloured_pixels(img) > 40, f"chart {c['name']} shows no coloured line or marker"
    return charts


def test_report_opens_from_disk_with_no_console_error_and_visible_charts(browser, tmp_path):
    files = write_report(CAMPAIGN, tmp_path / "report")
    charts = check_page(browser, files.html, tmp_path, min_charts=8)
    assert {c["name"] for c in charts} == {"step_time", "tokens_per_s", "val_bpb_time", "val_bpb_step", "train_loss",
                                           "difference", "host_memory", "parity_loss_diff"}
    assert (tmp_path / "report.png").stat().st_size > 50_000


FIRST_SCREEN = (1400, 900)
LAYOUT_JS = """JSON.stringify((() => {
  const box = s => { const r = document.querySelector(s).getBoundingClientRect();
                     return {top: r.top + scrollY, bottom: r.bottom + scrollY}; };
  return {verdict: box('#verdict'), items: document.querySelectorAll('#verdict dt').length,
          metrics: box('#metrics table'), speed_row: box('#throughput tr:nth-child(2)'),
          quality_row: box('#quality tr:last-child'), first_item: document.querySelector('#verdict dt').id,
          page_width: document.documentElement.scrollWidth, body_width: document.body.scrollWidth,
          window_width: document.documentElement.clientWidth};
})())"""


@pytest.mark.parametrize("parity_campaign", [False, True], ids=["speed", "parity"])
def test_first_screen_answers_faster_and_same_model(browser, tmp_path, parity_campaign):
    # at 1400x900 the verdict block and every row of the ratio tables are on the first screen, the page body
    # never scrolls sideways, and a parity campaign leads with "Same model?"
    src = CAMPAIGN
    if parity_campaign:
        src = tmp_path / "parity-campaign"
        shutil.copytree(CAMPAIGN, src)
        campaign = Campaign.load(src)
        campaign.preset = "tiny-parity"
        campaign.save(src)
    files = write_report(src, tmp_path / "report")
    browser.viewport(*FIRST_SCREEN)
    browser.open(files.html)
    layout = json.loads(browser.evaluate(LAYOUT_JS))
    first = pixels(browser.screenshot({"x": 0, "y": 0, "width": FIRST_SCREEN[0], "height": FIRST_SCREEN[1]}))
    first.save(tmp_path / "first-screen.png")
    assert layout["verdict"]["bottom"] <= FIRST_SCREEN[1] and layout["items"] >= 5, layout
    assert layout["metrics"]["top"] < FIRST_SCREEN[1] and layout["quality_row"]["bottom"] <= FIRST_SCREEN[1], layout
    assert layout["page_width"] <= layout["window_width"] and layout["body_width"] <= layout["window_width"], layout
    assert layout["first_item"] == ("verdict-same_model" if parity_campaign else "verdict-speed")


def test_site_index_opens_with_visible_trend_charts(browser, tmp_path):
    write_report(CAMPAIGN, tmp_path / "reports" / "handmade")
    later = tmp_path / "later"                     # a second campaign of the preset: a trend has two points
    shutil.copytree(CAMPAIGN, later)
    campaign = Campaign.load(later)
    campaign.campaign_id, campaign.created_utc = "20260711-120000-tiny-later", "2026-07-11T12:00:00Z"
    campaign.save(later)
    write_report(later, tmp_path / "reports" / "later")
    check_page(browser, build_index(tmp_path / "reports"), tmp_path, min_charts=3)
