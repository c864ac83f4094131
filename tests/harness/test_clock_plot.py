"""The clock-offset plot: offsets rebuilt from the clock nemesis's records, drawn under the timeline."""

from __future__ import annotations

from pathlib import Path

import pytest

from checkers.history import Op
from reports.build import write_run_report
from reports.clockplot import FILE_NAME, clock_series
from tests.reports.handmade import write_run

S = 1_000_000_000


def nemesis(index: int, t_s: float, f: str, value: dict | None) -> Op:
    return Op(index=index, time_ns=int(t_s * S), process="nemesis", type="info", f=f, value=value)


def history() -> list[Op]:
    ops = [
        Op(index=0, time_ns=0, process=0, type="invoke", f="write", key=1, value=1),
        Op(index=1, time_ns=S // 100, process=0, type="ok", f="write", key=1, value=1),
        nemesis(2, 1.0, "start-clock", None),
        nemesis(
            3,
            1.0,
            "start-clock",
            {"targets": ["n1"], "mode": "bump", "offsets_ms": {"n1": -500.0}, "rates": {"n1": 1.0}},
        ),
        nemesis(4, 2.0, "stop-clock", None),
        nemesis(
            5,
            2.0,
            "stop-clock",
            {"targets": ["n1"], "reset": ["n1"], "offsets_ms": {"n1": 0.0}, "rates": {"n1": 1.0}},
        ),
        nemesis(6, 3.0, "start-clock", None),
        nemesis(
            7,
            3.0,
            "start-clock",
            {"targets": ["n2"], "mode": "skew", "offsets_ms": {"n2": 0.0}, "rates": {"n2": 1.5}},
        ),
        nemesis(8, 5.0, "stop-clock", None),
        nemesis(
            9,
            5.0,
            "stop-clock",
            {"targets": ["n2"], "reset": ["n2"], "offsets_ms": {"n2": 0.0}, "rates": {"n2": 1.0}},
        ),
        nemesis(10, 6.0, "start-clock", None),
        nemesis(
            11,
            6.0,
            "start-clock",
            {
                "targets": ["n3"],
                "mode": "strobe",
                "offsets_ms": {"n3": 0.0},
                "rates": {"n3": 1.0},
                "delta_ms": 200,
                "period_ms": 250,
                "duration_ms": 1000,
            },
        ),
        nemesis(12, 8.0, "stop-clock", None),
        nemesis(
            13,
            8.0,
            "stop-clock",
            {"targets": ["n3"], "offsets_ms": {"n3": 0.0}, "rates": {"n3": 1.0}, "flips": 4},
        ),
        Op(index=14, time_ns=9 * S, process=0, type="invoke", f="read", key=1),
        Op(index=15, time_ns=9 * S + 1, process=0, type="ok", f="read", key=1, value=1),
    ]
    return ops


def at(points: list[tuple[float, float]], t_s: float) -> float:
    """The offset just after t_s (the last point at or before it)."""
    return [y for x, y in points if x <= t_s][-1]


def test_bumps_step_skews_ramp_strobes_square_and_resets_return_to_zero() -> None:
    series = clock_series(history(), t0_ns=0, end_ns=9 * S)
    assert set(series) == {"n1", "n2", "n3"}
    assert at(series["n1"], 1.5) == -500.0 and at(series["n1"], 2.5) == 0.0
    ramp = series["n2"]
    assert next(y for x, y in ramp if x == 5.0) == pytest.approx(1000.0)  # 2 s at x1.5 gained 1 s
    assert at(ramp, 5.5) == 0.0
    strobe = series["n3"]
    assert [y for x, y in strobe if 6.0 < x <= 7.0] == [0.0, 200.0, 200.0, 0.0, 0.0, 200.0, 200.0, 0.0]
    assert at(strobe, 8.5) == 0.0


def test_the_report_draws_the_plot_under_the_timeline(tmp_path: Path) -> None:
    run = write_run(
        tmp_path / "run", history(), results={"valid": True, "checkers": {}}, test={"name": "clock-strobe"}
    )
    html = write_run_report(run).read_text()
    assert (run / FILE_NAME).stat().st_size > 1000
    timeline, anomaly = html.index('id="timeline"'), html.index('id="anomaly"')
    assert timeline < html.index('class="clock-offsets"') < anomaly


def test_a_history_without_clock_faults_has_no_clock_plot(tmp_path: Path) -> None:
    ops = [op for op in history() if not op.f.endswith("-clock")]
    run = write_run(tmp_path / "run", ops, results={"valid": True, "checkers": {}}, test={"name": "x"})
    html = write_run_report(run).read_text()
    assert not (run / FILE_NAME).exists()
    assert 'class="clock-offsets"' not in html
