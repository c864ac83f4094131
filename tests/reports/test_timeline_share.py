"""Zoomed out, a timeline pixel column shows the share of each outcome, not the worst one.

A run whose ops are 89% ok used to look like a red wall, because every pixel holding
one failure among dozens of ok ops was painted red. Now each column stacks the
outcomes by share (a lone failure still gets a pixel) and expected cas-mismatch
failures are drawn in a muted red. Checked by counting the canvas's pixels of each
colour in a real headless Chromium.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from checkers.history import Op
from reports.build import write_run_report
from tests.reports.handmade import write_run
from tests.reports.test_browser import _open, browser  # noqa: F401  (the fixture)

OK_RGB, FAIL_RGB, MUTED_RGB = (63, 155, 104), (209, 73, 91), (231, 185, 191)


def mostly_ok_history(count: int = 12_000) -> list[Op]:
    """One client, an op every ms: 89% ok, 10% cas-mismatch, 1% other failures (evenly spread)."""
    ops: list[Op] = []
    for i in range(count):
        start_ns = i * 1_000_000
        if i % 100 == 0:
            f, kind, error, value = "write", "fail", "not-sent", i
        elif i % 10 == 5:
            f, kind, error, value = "cas", "fail", "cas-mismatch", [i - 1, i]
        else:
            f, kind, error, value = "write", "ok", None, i
        ops.append(Op(len(ops), start_ns, 0, "invoke", f, "k", value))
        ops.append(
            Op(len(ops), start_ns + 400_000, 0, kind, f, "k", value, error, "n1" if kind == "ok" else None)
        )
    return ops


def colour_counts(page: Any) -> dict[str, int]:
    return page.evaluate(
        """(colours) => {
        const c = document.getElementById('timeline-canvas');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        const found = {};
        for (const name in colours) { found[name] = 0; }
        for (let i = 0; i < d.length; i += 4) {
            for (const name in colours) {
                const [r, g, b] = colours[name];
                if (d[i] === r && d[i+1] === g && d[i+2] === b && d[i+3] === 255) { found[name]++; }
            }
        }
        return found;
    }""",
        {"ok": OK_RGB, "fail": FAIL_RGB, "muted": MUTED_RGB},
    )


def test_zoomed_out_columns_show_shares_and_expected_failures_are_muted(browser: Any, tmp_path: Path) -> None:  # noqa: F811
    run = write_run(
        tmp_path / "store" / "no-faults" / "20261204T170000",
        mostly_ok_history(),
        results={"valid": True, "checkers": {"linearizable": {"valid": True}}},
        test={"scenario": "no-faults", "seed": 1, "nodes": ["n1", "n2", "n3"]},
    )
    page, problems = _open(browser, write_run_report(run))
    counts = page.evaluate("window.ratchetTimeline.categoryCounts()")
    assert counts == {"ok": 10_680, "fail": 120, "expected_fail": 1_200, "info": 0, "open": 0}
    pixels = colour_counts(page)
    assert pixels["ok"] > 4 * (pixels["fail"] + pixels["muted"]), pixels  # mostly green, not a red wall
    assert pixels["muted"] > pixels["fail"] > 0, pixels  # the rare real failures still show
    assert page.evaluate("window.ratchetTimeline.drawnOps") < 24_000 / 4  # equal columns drawn once
    assert not problems, problems


def test_large_values_are_cut_in_the_page_but_not_in_the_history() -> None:
    from reports.timeline import shown_value, timeline_columns

    big = "12:" + "x" * 16_000
    ops = [Op(0, 0, 0, "invoke", "write", "k", big), Op(1, 5, 0, "ok", "write", "k", big, None, "n1")]
    columns = timeline_columns(ops)
    assert columns["ops"]["vi"] == ["12:" + "x" * 45 + "… (16003 bytes)"]
    assert shown_value([1, big])[1].endswith("(16003 bytes)") and shown_value([1, 2]) == [1, 2]
    assert shown_value("short") == "short" and ops[0].value == big
