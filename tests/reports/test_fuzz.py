"""Any history the reader accepts gives a report: no crash, no unescaped markup, valid embedded JSON."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checkers.history import Op
from reports.build import write_run_report
from reports.timeline import pair_bars
from tests.reports.handmade import write_run

TEXT = st.text(alphabet=st.sampled_from(list("ab<>&'\"/$\\_{} \u2028é")), max_size=8)
SCALAR = st.one_of(
    st.none(), st.integers(-5, 5), st.floats(allow_nan=True, allow_infinity=True), TEXT, st.booleans()
)
VALUE = st.recursive(
    SCALAR, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=2), max_leaves=6
)


@st.composite
def histories(draw: st.DrawFn) -> list[Op]:
    count = draw(st.integers(0, 30))
    ops = []
    time_ns = 10**12
    for index in range(count):
        time_ns += draw(st.integers(0, 50_000_000))
        process = draw(st.one_of(st.integers(0, 4), st.just("nemesis")))
        kind = draw(st.sampled_from(("invoke", "ok", "fail", "info")))
        if process == "nemesis":
            kind = "info"
            f = draw(
                st.sampled_from(("start-partition", "stop-partition", "start-kill", "stop-kill", "start-$x$"))
            )
        else:
            f = draw(st.one_of(st.sampled_from(("read", "write", "cas")), TEXT.filter(bool)))
        ops.append(
            Op(
                index,
                time_ns,
                process,
                kind,
                f,
                draw(VALUE),
                draw(VALUE),
                draw(st.none() | TEXT),
                draw(st.none() | TEXT),
            )
        )
    return ops


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=histories(), valid=st.sampled_from([True, False, "unknown"]))
def test_any_history_renders(history: list[Op], valid: object) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        results = {
            "valid": valid,
            "checkers": {
                "linearizable": {"valid": valid, "key": "<b>", "counterexample": {"ops": [0, 1, {"id": 3}]}}
            },
        }
        run = write_run(Path(scratch) / "s" / "x" / "20261122T030000", history, results=results, test={})
        html = write_run_report(run).read_text(encoding="utf-8")
    assert "<b>" not in html
    assert len(re.findall(r"<script[ >]", html)) == 3
    data = json.loads(re.search(r'id="timeline-data">(.*?)</script>', html, re.S).group(1))
    assert "could not be read" not in html  # every op was read (leniently if need be): every bar is drawn
    assert data["count"] == len(pair_bars(history))
    assert len(data["ops"]["s"]) == data["count"]
    assert all(a <= b for a, b in zip(data["ops"]["s"], data["ops"]["e"], strict=True))
