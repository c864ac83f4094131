"""Hostile keys, values, errors, node names, log lines and scenario names render as text, never as markup."""

from __future__ import annotations

import json
import re
from pathlib import Path

from checkers.history import Op
from reports.build import write_run_report
from reports.index import write_index
from tests.reports.handmade import MS, T0_NS, write_run

HOSTILE = "<script>alert(1)</script>"
CLOSER = "</script><img src=x onerror=alert(2)>"


def _hostile_history() -> list[Op]:
    t = lambda ms: T0_NS + ms * MS  # noqa: E731
    return [
        Op(0, t(0), 0, "invoke", "write", HOSTILE, CLOSER),
        Op(1, t(2), 0, "ok", "write", HOSTILE, CLOSER, None, HOSTILE),
        Op(2, t(3), 1, "invoke", "cas", HOSTILE, [CLOSER, "&amp;<b>"]),
        Op(3, t(4), 1, "fail", "cas", HOSTILE, [CLOSER, "&amp;<b>"], HOSTILE, None),
        Op(
            4,
            t(5),
            "nemesis",
            "info",
            "start-partition",
            None,
            {"targets": [HOSTILE], "grudge": {HOSTILE: [CLOSER]}},
        ),
        Op(5, t(6), "nemesis", "info", "start-partition", None, {"targets": [HOSTILE]}),
        Op(6, t(7), 2, "invoke", "read", HOSTILE, None),
        Op(7, t(9), 2, "ok", "read", HOSTILE, HOSTILE),
        Op(8, t(10), 3, "invoke", "$\\bogus{x$", HOSTILE, 1),  # mathtext in a plot label would raise
        Op(9, t(11), 3, "ok", "$\\bogus{x$", HOSTILE, 1),
        Op(10, t(12), "nemesis", "info", "start-_$x$", None, None),
        Op(11, t(13), "nemesis", "info", "start-_$x$", None, None),
    ]


def test_hostile_values_never_appear_unescaped(tmp_path: Path) -> None:
    results = {
        "valid": False,
        "checkers": {
            "linearizable": {
                "valid": False,
                "key": HOSTILE,
                "first_unlinearizable": {"index": 7},
                "counterexample": {
                    "ops": [1, 7],
                    "explanation": f"read returned {HOSTILE}",
                    "orders": [{"order": [0, 6], "ok": False, "states": [CLOSER]}],
                    HOSTILE: CLOSER,
                },
            }
        },
        "teardown_errors": [HOSTILE],
    }
    test = {"scenario": HOSTILE, "seed": CLOSER, "nodes": [HOSTILE], "command": ["ratchet", "run", HOSTILE]}
    store = tmp_path / "store"
    run = write_run(
        store / "hostile" / "20261122T030000",
        _hostile_history(),
        results=results,
        test=test,
        node_logs={"n1": [f"ts=x {HOSTILE}", CLOSER]},
    )
    html = write_run_report(run).read_text(encoding="utf-8")
    index = write_index(store).read_text(encoding="utf-8")
    for page in (html, index):
        assert "<script>alert(1)" not in page
        assert "<img src=x" not in page
        assert "<b>" not in page
        # only our own script elements: the data island, the timeline and the copy button (index: two)
        assert len(re.findall(r"<script[ >]", page)) == (3 if page is html else 2)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # shown, as text
    assert html.count("data:image/png;base64,") == 3  # the plots survived an f and a fault kind with $
    # the embedded JSON survives the escaping and decodes back to the hostile strings
    data = json.loads(re.search(r'id="timeline-data">(.*?)</script>', html, re.S).group(1))
    assert data["keys"] == [HOSTILE]
    assert CLOSER in data["ops"]["vi"]
    assert data["nodes"] == [HOSTILE] and data["errors"] == [HOSTILE]
    assert data["faults"][0]["label"].startswith("partition · <script>alert(1)")
