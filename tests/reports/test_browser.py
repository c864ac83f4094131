"""Real headless Chromium opens reports from disk: no console errors, the timeline draws, clicks show records.

Debian's chromium (/usr/bin/chromium) driven by Playwright for Python; the
browser Playwright would download is never used. Skipped, with the reason,
when either is missing. Screenshots land in the test's tmp dir.
"""

from __future__ import annotations

import itertools
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reports.build import write_run_report
from tests.reports import synth

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if shutil.which(CHROMIUM) is None:
        pytest.skip(f"{CHROMIUM} is missing: `apt-get install -y chromium` (Debian's package)")
    playwright_api = pytest.importorskip(
        "playwright.sync_api", reason="`pip install playwright` (never `playwright install`)"
    )
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000)
        try:
            yield chromium
        finally:
            chromium.close()


def _wait_for(page: Any, expression: str, *, timeout_s: float = 30.0) -> None:
    """Poll ``expression`` with page.evaluate (the report's CSP forbids the eval wait_for_function uses)."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(f"() => Boolean({expression})"):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {expression}")
        page.wait_for_timeout(50)


def _open(browser: Any, report: Path) -> tuple[Any, list[str]]:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on(
        "request",
        lambda request: (
            problems.append(f"network: {request.url}")
            if not request.url.startswith(("file:", "data:"))
            else None
        ),
    )
    page.goto(report.as_uri())
    _wait_for(page, "window.ratchetTimeline && window.ratchetTimeline.draws > 0")
    return page, problems


def _canvas_painted_pixels(page: Any) -> int:
    """Pixels of the timeline canvas that are neither white nor transparent."""
    return page.evaluate("""() => {
        const c = document.getElementById('timeline-canvas');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4) { if (d[i+3] > 0 && (d[i] < 250 || d[i+1] < 250 || d[i+2] < 250)) n++; }
        return n;
    }""")


def _click_op(page: Any, history_index: int) -> str:
    point = page.evaluate(f"window.ratchetTimeline.barCenter({history_index})")
    assert point is not None
    if not 0 <= point["y"] <= page.viewport_size["height"]:  # a tall timeline: bring the bar into view
        page.evaluate(f"window.scrollBy(0, {point['y']} - 300)")
        point = page.evaluate(f"window.ratchetTimeline.barCenter({history_index})")
    page.mouse.click(point["x"], point["y"])
    _wait_for(page, f"window.ratchetTimeline.selectedHistoryIndex() === {history_index}")
    return page.text_content("#timeline-record")


def _fault_shading(page: Any, t_ns: float) -> list[int]:
    """The RGB of the timeline canvas at time ``t_ns`` in the top row of the marker strip (the
    shaded fault bands cover it; op bars do not), as timeline.js places it: gutter 74 px, axis 20 px."""
    return page.evaluate(
        """(t) => {
        const c = document.getElementById('timeline-canvas');
        const v = window.ratchetTimeline.view();
        const ratio = window.devicePixelRatio || 1;
        const plotW = c.clientWidth - 74 - 8;
        const x = Math.round((74 + (t - v.a) / (v.b - v.a) * plotW) * ratio);
        const y = Math.round((20 + 1) * ratio);
        return Array.from(c.getContext('2d').getImageData(x, y, 1, 1).data.slice(0, 3));
    }""",
        t_ns,
    )


def test_failing_run_report_opens_draws_and_explains(browser: Any, tmp_path: Path) -> None:
    run = synth.real_failing_run(tmp_path / "store")  # a real run that failed, as the harness stored it
    linearizable = run.results["checkers"]["linearizable"]
    counterexample = linearizable["counterexample"]["ops"]
    stale_read = linearizable["first_unlinearizable"]
    report = write_run_report(run.run_dir)
    page, problems = _open(browser, report)

    # the verdict banner: anomaly, and the exact command that reproduces it
    assert page.text_content("#verdict h1") == "Anomaly found"
    assert page.get_attribute("#verdict", "class") == "banner anomaly"
    reproduce = page.text_content("#reproduce")
    assert reproduce.startswith("ratchet run scenarios/rolling-kill.toml")
    assert "--bug read-from-backup" in reproduce and "--seed 3" in reproduce

    # the timeline draws, with the kill windows shaded where the history's nemesis ops put them
    assert page.evaluate("window.ratchetTimeline.drawnOps") > 100
    assert _canvas_painted_pixels(page) > 10_000
    data = json.loads(page.text_content("#timeline-data"))
    kills = [f for f in data["faults"] if f["kind"] == "rolling-kill"]
    assert len(kills) >= 2
    gaps = [(a["end"] + b["start"]) / 2 for a, b in itertools.pairwise(kills) if b["start"] > a["end"]]
    assert gaps
    for fault in kills:
        r, g, b = _fault_shading(page, (fault["start"] + fault["end"]) / 2)
        assert max(r, g, b) < 250, f"{fault['label']} is not shaded"
    assert all(_fault_shading(page, t) == [255, 255, 255] for t in gaps)  # between the kills: not shaded
    box = page.locator("#timeline-canvas").bounding_box()
    view = page.evaluate("window.ratchetTimeline.view()")
    first = kills[0]
    x = 74 + ((first["start"] + first["end"]) / 2 - view["a"]) / (view["b"] - view["a"]) * (box["width"] - 82)
    page.mouse.move(box["x"] + x, box["y"] + 20 + 9)  # hover the band's label strip
    assert first["label"] in page.text_content("#timeline-tooltip")

    # the anomaly section lists every op of the counterexample, each linked to the timeline
    assert page.is_visible("#anomaly .story")
    links = page.locator("#anomaly table a[data-history-index]")
    linked = {int(links.nth(i).get_attribute("data-history-index")) for i in range(links.count())}
    assert {op["invoke_index"] for op in counterexample} <= linked
    page.locator(f'#anomaly table a[data-history-index="{stale_read["invoke_index"]}"]').first.click()
    _wait_for(page, f"window.ratchetTimeline.selectedHistoryIndex() === {stale_read['invoke_index']}")

    # zoom onto the anomaly, then click the stale read in the timeline: its record, as stored
    page.click("#tl-reset")
    page.click("#tl-anomaly")
    page.wait_for_timeout(100)
    record = _click_op(page, stale_read["invoke_index"])
    completion = run.history[stale_read["complete_index"]]
    assert completion["type"] == "ok" and completion["f"] == "read"
    assert completion["value"] == stale_read["value_out"]  # the stale value the checker named
    shown = [json.loads(line) for line in record.splitlines() if line.startswith("{")]
    assert shown == [run.history[stale_read["invoke_index"]], completion]  # both lines, as stored
    page.screenshot(path=str(tmp_path / "failing-run.png"), full_page=True)
    page.hover("#timeline-canvas", position={"x": 300, "y": 60})
    assert problems == []


def test_100k_op_report_stays_responsive(browser: Any, tmp_path: Path) -> None:
    run = synth.write_run(
        tmp_path / "store" / "synthetic-partition" / "20261122T040000", op_count=100_000, seed=5
    )
    report = write_run_report(run.run_dir)
    page, problems = _open(browser, report)
    total = page.evaluate("window.ratchetTimeline.totalOps")
    assert total >= 100_000
    drawn_whole = page.evaluate("window.ratchetTimeline.drawnOps")
    print(f"100k ops: whole-run draw {page.evaluate('window.ratchetTimeline.lastDrawMs'):.1f} ms")
    assert 0 < drawn_whole < total  # bars sharing a pixel are drawn once
    # zoom in around the middle with the wheel: fewer bars, and the view really narrowed
    box = page.locator("#timeline-canvas").bounding_box()
    before = page.evaluate("window.ratchetTimeline.view()")
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + 80)
    for _ in range(12):
        page.mouse.wheel(0, -400)
    page.wait_for_timeout(200)
    after = page.evaluate("window.ratchetTimeline.view()")
    assert after["b"] - after["a"] < (before["b"] - before["a"]) / 100
    drawn_zoomed = page.evaluate("window.ratchetTimeline.drawnOps")
    print(f"100k ops: zoomed draw {page.evaluate('window.ratchetTimeline.lastDrawMs'):.1f} ms")
    assert 0 < drawn_zoomed < drawn_whole
    page.focus("#timeline-canvas")
    page.keyboard.press("0")  # keyboard: back to the whole run
    _wait_for(page, f"window.ratchetTimeline.drawnOps === {drawn_whole}")
    page.keyboard.press("ArrowRight")
    assert page.evaluate("window.ratchetTimeline.view()")["a"] > before["a"]
    page.click("#tl-reset")
    _wait_for(page, f"window.ratchetTimeline.drawnOps === {drawn_whole}")
    page.click("#tl-anomaly")  # zoomed out, a pixel holds dozens of ops: zoom onto the anomaly first
    record = _click_op(page, run.anomaly_indices[2])
    assert '"type": "invoke"' in record
    page.screenshot(path=str(tmp_path / "100k-ops.png"))
    assert problems == []


def test_index_filters_runs_in_the_page(browser: Any, tmp_path: Path) -> None:
    from reports.index import write_index

    store = tmp_path / "store"
    failing = synth.real_failing_run(store)
    write_run_report(failing.run_dir)
    passing = synth.write_run(
        store / "synthetic-partition" / "20261120T000000", op_count=500, seed=2, anomaly=False
    )
    write_run_report(passing.run_dir)
    page = browser.new_page(viewport={"width": 1300, "height": 700})
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.goto(write_index(store).as_uri())
    assert page.text_content("#filter-count") == "showing 2 of 2"
    page.select_option("#filter-verdict", "anomaly")
    assert page.text_content("#filter-count") == "showing 1 of 2"
    assert page.locator("#runs tbody tr:not([hidden])").count() == 1
    page.select_option("#filter-verdict", "")
    page.select_option("#filter-scenario", "synthetic-partition")
    assert page.text_content("#filter-count") == "showing 1 of 2"
    page.screenshot(path=str(tmp_path / "index.png"))
    assert page.locator(".served-only:not([hidden])").count() == 0  # zip links only under `ratchet serve`
    assert problems == []


def test_hostile_values_stay_text_in_the_browser(browser: Any, tmp_path: Path) -> None:
    from tests.reports.handmade import write_run
    from tests.reports.test_escaping import HOSTILE, _hostile_history

    results = {
        "valid": False,
        "checkers": {
            "linearizable": {
                "valid": False,
                "key": HOSTILE,
                "first_unlinearizable": {"index": 7},
                "counterexample": {"ops": [1, 7], "explanation": f"read returned {HOSTILE}"},
            }
        },
    }
    run = write_run(
        tmp_path / "store" / "hostile" / "20261122T030000",
        _hostile_history(),
        results=results,
        test={"scenario": HOSTILE},
        node_logs={"n1": [HOSTILE]},
    )
    report = write_run_report(run)
    dialogs: list[str] = []
    page, problems = _open(browser, report)
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.click("#tl-anomaly")
    record = _click_op(page, 6)  # the read (6 -> 7) whose key and value are both the hostile string
    assert HOSTILE in record  # shown as text, character for character
    box = page.locator("#timeline-canvas").bounding_box()
    page.mouse.move(box["x"] + 20, box["y"] + 60)  # the lane labels' tooltip
    assert page.locator("script").count() == 3  # nothing the data carried became a script element
    assert page.locator("#anomaly img, #nodes img, #timeline img").count() == 0
    page.wait_for_timeout(200)
    assert dialogs == [] and problems == []
