"""The leaderboard in real headless Chromium (Debian's `chromium`), driven over the DevTools protocol
on --remote-debugging-pipe: no server, no network, no browser download. The index of a three-run
leaderboard renders and sorts, an entry page's plotly figures render with no JavaScript error, and
a model named `<img src=x onerror=alert(1)>` shows as text and runs nothing.

Screenshots go to $CXRBENCH_SCREENSHOT_DIR when it is set (the README's come from
`CXRBENCH_SCREENSHOT_DIR=docs pytest tests/test_leaderboard_browser.py`).
"""
from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from tests.test_leaderboard import CARD_XSS, XSS, three_runs


class Chromium:
    """Headless Chromium driven over fds 3 (commands in) and 4 (replies and events out)."""

    def __init__(self, exe: str, *, timeout: float = 30.0):
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="cxrbench-chromium-")
        to_child, self._out = os.pipe()
        self._in, from_child = os.pipe()

        def wire() -> None:  # in the child: the pipe ends become fds 3 and 4, which Chromium expects
            a, b = os.dup(to_child), os.dup(from_child)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-extensions", f"--user-data-dir={self.profile}", "--remote-debugging-pipe", "about:blank"],
            preexec_fn=wire,  # noqa: PLW1509 (the test starts no threads)
            close_fds=False, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_child)
        os.close(from_child)
        self._buf = b""
        self._id = 0
        self.events: list[dict[str, Any]] = []

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            ready, _, _ = select.select([self._in], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError("no reply from Chromium")
            chunk = os.read(self._in, 1 << 20)
            if not chunk:
                raise EOFError("Chromium closed the debugging pipe")
            self._buf += chunk
        msg, _, self._buf = self._buf.partition(b"\0")
        return json.loads(msg)

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict[str, Any]:
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._out, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def pump(self, seconds: float) -> None:
        """Collect events for a while (dialogs, exceptions) without sending anything."""
        deadline = time.monotonic() + seconds
        try:
            while True:
                self.events.append(self._read(deadline))
        except TimeoutError:
            pass

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (OSError, EOFError, TimeoutError, RuntimeError):  # already gone
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._in, self._out):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)


class Page:
    def __init__(self, browser: Chromium, width: int = 1280, height: int = 900):
        self.b = browser
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")
        self._handled = 0
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})

    def call(self, method: str, params: dict | None = None) -> dict[str, Any]:
        return self.b.send(method, params, self.session)

    def mine(self, method: str) -> list[dict[str, Any]]:
        return [e["params"] for e in self.b.events if e.get("method") == method and e.get("sessionId") == self.session]

    def dialogs(self) -> list[dict[str, Any]]:
        return self.mine("Page.javascriptDialogOpening")

    def pump(self, seconds: float) -> None:
        """Let the page run; any alert/confirm is recorded and dismissed so the page cannot hang."""
        self.b.pump(seconds)
        while self._handled < len(self.dialogs()):
            self._handled += 1
            self.call("Page.handleJavaScriptDialog", {"accept": True})

    def goto(self, url: str) -> None:
        seen = len(self.mine("Page.loadEventFired"))
        self.call("Page.navigate", {"url": url})
        deadline = time.monotonic() + self.b.timeout
        while len(self.mine("Page.loadEventFired")) == seen:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not load")
            self.pump(0.05)
        self.pump(0.3)  # handlers that run just after load (an onerror, a timer) get their chance

    def eval(self, expression: str) -> Any:
        res = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in res:
            raise RuntimeError(f"{expression}: {res['exceptionDetails']}")
        return res["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 20.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = self.eval(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout}s for {expression}")
            self.pump(0.1)

    def errors(self) -> list[str]:
        """Uncaught exceptions, console.error calls and browser log errors (e.g. a failed load)."""
        out = [e["exceptionDetails"].get("exception", {}).get("description") or e["exceptionDetails"].get("text", "")
               for e in self.mine("Runtime.exceptionThrown")]
        out += [" ".join(str(a.get("value", a.get("description", ""))) for a in e.get("args", []))
                for e in self.mine("Runtime.consoleAPICalled") if e.get("type") == "error"]
        out += [e["entry"].get("text", "") for e in self.mine("Log.entryAdded") if e["entry"].get("level") == "error"]
        return out

    def requested_urls(self) -> list[str]:
        return [e["request"]["url"] for e in self.mine("Network.requestWillBeSent")]

    def screenshot(self, path: Path, *, max_height: int = 1800) -> Path:
        size = self.call("Page.getLayoutMetrics")["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": min(size["width"], 1600), "height": min(size["height"], max_height),
                "scale": 1}
        shot = self.call("Page.captureScreenshot", {"format": "png", "clip": clip, "captureBeyondViewport": True})
        data = shot["data"]
        path.write_bytes(base64.b64decode(data))
        return path


# --- the tests ------------------------------------------------------------------------------------

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.fail("Chromium is not installed; install it (Debian: apt-get install -y chromium, as .ci/run "
                    "does). This test must run in a real browser and does not skip.")
    b = Chromium(CHROMIUM)
    yield b
    b.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    from benchmark import api

    tmp = tmp_path_factory.mktemp("browser")
    runs = three_runs(tmp)
    outcome = api.leaderboard(list(runs.values()), tmp / "site", bootstrap=100)
    data = json.loads((outcome.site_dir / "leaderboard.json").read_text())
    entries = {e["model"]: e for e in data["datasets"][0]["entries"]}
    assert len(data["datasets"]) == 1 and len(entries) == 3
    return outcome.site_dir, entries


def save_screenshot(page: Page, tmp_path: Path, name: str, **kw: Any) -> None:
    path = page.screenshot(tmp_path / name, **kw)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    target = os.environ.get("CXRBENCH_SCREENSHOT_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(target) / name)


def local_only(urls: list[str]) -> list[str]:
    return [u for u in urls if not u.startswith(("file:", "data:", "blob:", "about:"))]


ROWS = "[...document.querySelectorAll('#board-0 tbody tr')].map(r => r.children[1].textContent)"


def click_header(page: Page, label: str) -> None:
    page.eval(f"[...document.querySelectorAll('#board-0 thead th')].find(th => th.textContent.trim()"
              f".startsWith({json.dumps(label)})).querySelector('button').click()")


def test_index_renders_and_sorting_reorders_rows(browser, site, tmp_path):
    site_dir, entries = site
    page = Page(browser, width=1500)
    page.goto((site_dir / "index.html").as_uri())
    ranked = page.eval(ROWS)
    by_map = sorted(entries.values(), key=lambda e: -e["rank_metric"]["value"])
    assert ranked == [e["model"] for e in by_map]  # the build's order: the ranking metric, descending
    save_screenshot(page, tmp_path, "leaderboard_index.png", max_height=760)

    click_header(page, "model")
    by_name = page.eval(ROWS)
    assert by_name == sorted(entries, key=str.lower) and by_name != ranked
    click_header(page, "model")
    assert page.eval(ROWS) == sorted(entries, key=str.lower, reverse=True)
    click_header(page, "map")
    assert page.eval(ROWS) == ranked
    click_header(page, "map")
    assert page.eval(ROWS) == ranked[::-1]
    assert page.eval("document.querySelector('#board-0 th[aria-sort]').textContent").startswith("map")
    assert page.errors() == [] and local_only(page.requested_urls()) == []


def test_entry_page_plots_render_without_javascript_errors(browser, site, tmp_path):
    site_dir, entries = site
    page = Page(browser)
    page.goto((site_dir / entries["alpha"]["page"]).as_uri())
    assert page.wait_for("document.body.dataset.plots !== undefined && document.body.dataset.plots") == "done"
    n_figures = page.eval("JSON.parse(document.getElementById('cxr-figures').textContent).length")
    assert n_figures >= 3  # confusion matrix, reliability diagram, per-site bars
    drawn = page.eval("[...document.querySelectorAll('div.plot')].filter(d => d.querySelector('svg.main-svg')"
                      " && d.querySelector('g.cartesianlayer')).length")
    assert drawn == n_figures
    assert page.eval("document.querySelectorAll('div.plot g.trace').length") >= n_figures
    assert page.errors() == [], page.errors()
    assert local_only(page.requested_urls()) == []
    save_screenshot(page, tmp_path, "leaderboard_entry.png", max_height=2200)


def test_html_in_a_model_name_is_text_and_runs_nothing(browser, site, tmp_path):
    site_dir, entries = site
    # The detector works: a page that does run the payload opens a dialog and is seen to.
    probe = tmp_path / "probe.html"
    probe.write_text(f"<!doctype html><body>{XSS}</body>")
    control = Page(browser)
    control.goto(probe.as_uri())
    control.pump(0.5)
    assert [d["message"] for d in control.dialogs()] == ["1"]

    page = Page(browser)
    for url in ((site_dir / "index.html").as_uri(), (site_dir / entries[XSS]["page"]).as_uri()):
        page.goto(url)
        page.pump(0.5)
        assert page.eval("document.body.innerText").count(XSS) >= 1
        assert page.eval("document.querySelectorAll('img').length") == 0
    assert page.eval("document.querySelector('h1').textContent").startswith(XSS)
    assert CARD_XSS in page.eval("[...document.querySelectorAll('pre')].map(p => p.textContent).join()")
    page.wait_for("document.body.dataset.plots")
    assert page.dialogs() == []
    assert page.errors() == [], page.errors()


# --- the run report -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def report_run(tmp_path_factory):
    from tests.test_report_summary import failing_run

    return failing_run(tmp_path_factory.mktemp("report-browser"))


def test_report_opens_on_the_verdict_panel_naming_the_failed_checks(browser, report_run, tmp_path):
    from benchmark import api

    failed = [r.check.metric for r in api.gate(report_run.run_dir, "default").failed]
    assert "shortcut.no_lung_retention" in failed
    page = Page(browser, width=1280, height=900)
    page.goto((report_run.run_dir / "report.html").as_uri())
    assert page.wait_for("document.body.dataset.plots") == "done"
    assert page.eval("document.body.firstElementChild.id") == "verdict"
    # Nothing above it, and all of it within the first screen.
    assert page.eval("document.elementFromPoint(300, 40).closest('#verdict') !== null")
    top, bottom = page.eval("(r => [r.top, r.bottom])(document.getElementById('verdict').getBoundingClientRect())")
    assert 0 <= top < 60 and bottom < 900
    assert page.eval("[...document.querySelectorAll('#verdict tr.check.fail code')].map(c => c.textContent)") == failed
    assert page.eval("document.querySelector('#verdict .overall').innerText").startswith(f"FAIL: {len(failed)} of 7")
    # The figure grid is drawn at once; a collapsed section draws its figures when opened.
    cells = page.eval("document.querySelectorAll('#figures .fig').length")
    assert cells >= 5 and page.eval("[...document.querySelectorAll('#figures .fig')]"
                                    ".filter(d => d.querySelector('svg.main-svg')).length") == cells
    assert page.eval("[...document.querySelectorAll('details')].every(d => !d.open)")
    save_screenshot(page, tmp_path, "report_verdict.png", max_height=1500)
    page.eval("document.getElementById('suite-calibration').open = true")
    page.wait_for("document.querySelector('#suite-calibration .fig svg.main-svg') !== null")
    assert page.errors() == [], page.errors()
    assert local_only(page.requested_urls()) == []
