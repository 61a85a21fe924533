"""The offline promise, enforced (issue 14, item 5): result files whose figures carry URLs (a layout
image, an `image` trace, a link in a hover text, a map) give a report and a leaderboard whose every
page, opened in headless Chromium, requests nothing but file: and data: URLs. The browser's own
network events (DevTools `Network.requestWillBeSent`) are the witness, and a control page that hands
the same figure to Plotly unfiltered shows that they do see such a fetch."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmark.reporting.figure_filter import safe_figure
from tests.test_leaderboard import planted_predictions
from tests.test_leaderboard_browser import CHROMIUM, Chromium, Page

BEACON = "http://127.0.0.1:9/beacon.png"
HOSTILE = {
    "data": [
        {"type": "bar", "x": ["a", "b"], "y": [0.4, 0.6], "name": "bars",
         "hovertemplate": f"<a href='{BEACON}'>x</a> %{{y}}", "marker": {"color": "#369"}},
        {"type": "image", "source": BEACON},
        {"type": "scattermapbox", "lat": [0], "lon": [0]},
    ],
    "layout": {
        "title": {"text": "plain title"},
        "images": [{"source": BEACON, "xref": "paper", "yref": "paper", "x": 0, "y": 1, "sizex": 1, "sizey": 1}],
        "template": {"layout": {"images": [{"source": BEACON + "?t", "xref": "paper", "yref": "paper",
                                            "x": 0, "y": 1, "sizex": 1, "sizey": 1}]}},
        "xaxis": {"title": {"text": "url(http://127.0.0.1:9/font.woff)"}},
        "font": {"family": f"x, url({BEACON})"},
        "height": 300,
    },
}


def test_the_filter_keeps_the_chart_and_drops_every_fetch():
    safe = safe_figure(HOSTILE)
    assert [t["type"] for t in safe["data"]] == ["bar"]
    assert safe["data"][0]["y"] == [0.4, 0.6] and safe["data"][0]["marker"] == {"color": "#369"}
    assert "images" not in safe["layout"] and "template" not in safe["layout"]
    assert safe["layout"]["title"] == {"text": "plain title"} and safe["layout"]["height"] == 300
    text = json.dumps(safe)
    assert "127.0.0.1" not in text and "url(" not in text and "href" not in text


def hostile_run(tmp: Path) -> Path:
    """A real run (planted predictions on synth images) whose result file then gains hostile figures."""
    from benchmark import api
    from benchmark.data.dataset import resolve_dataset
    from benchmark.reporting.report import write_report

    data = tmp / "synth"
    api.synth(data, n_patients=30, image_size=64, seed=4)
    planted_predictions(resolve_dataset(str(data)).table, 1.0, 0).to_csv(tmp / "hostile.csv", index=False)
    run = api.run(api.RunRequest(predictions=tmp / "hostile.csv", data=str(data), out=tmp / "runs", bootstrap=20,
                                 suites=("subtype", "calibration"), progress=False)).run_dir
    result = json.loads((run / "result.json").read_text())
    for body in result["suites"].values():
        body.setdefault("figures", {})["beacon"] = HOSTILE
    (run / "result.json").write_text(json.dumps(result))
    write_report(run, result)
    return run


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.fail("Chromium is not installed (Debian: apt-get install -y chromium); this test does not skip.")
    b = Chromium(CHROMIUM)
    yield b
    b.close()


def not_local(urls: list[str]) -> list[str]:
    return [u for u in urls if not u.startswith(("file:", "data:")) and u != "about:blank"]


def test_every_page_requests_only_local_files(browser, tmp_path):
    from benchmark import api

    run = hostile_run(tmp_path)
    site = api.leaderboard([run], tmp_path / "site", bootstrap=50).site_dir
    pages = [run / "report.html", *sorted(site.rglob("*.html"))]
    assert len(pages) >= 3  # the report, the index, the entry page

    # The witness works: Plotly handed the hostile figure as it is asks for the beacon.
    plotly = next(site.rglob("plotly.min.js"))
    control = tmp_path / "control.html"
    control.write_text(f"<!doctype html><script src='{plotly.as_uri()}'></script><div id=f></div><script>"
                       f"Plotly.newPlot('f',{json.dumps(HOSTILE['data'][:1])},{json.dumps(HOSTILE['layout'])});"
                       "</script>")
    page = Page(browser)
    page.goto(control.as_uri())
    page.pump(1.0)
    assert any(u.startswith(BEACON) for u in page.requested_urls()), page.requested_urls()

    page = Page(browser)
    for path in pages:
        page.goto(path.as_uri())
        page.eval("document.querySelectorAll('details').forEach(d => d.open = true)")  # lazy figures too
        page.pump(0.5)
        assert "127.0.0.1" not in page.eval("document.documentElement.outerHTML"), path.name
        if path.name == "report.html":  # the filtered bar chart is drawn: the filter cut fetches, not charts
            assert page.eval("document.querySelectorAll('g.trace.bars').length") >= 1
    urls = page.requested_urls()  # every request of every page, as the browser saw them
    assert len(urls) >= len(pages) and not_local(urls) == [], not_local(urls)
