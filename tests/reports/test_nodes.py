"""Node events on the timeline and node-log excerpts around the anomaly, on hand-made node files."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from reports.nodes import Clock, clock_for_node, excerpt, line_time_ns, load_nodes, markers
from tests.reports.handmade import MS, T0_NS

WALL_MINUS_MONO_NS = 1_700_000_000_000_000_000


def _event(kind: str, t_ms: float, **fields: object) -> dict[str, object]:
    mono = T0_NS + int(t_ms * MS)
    return {"mono_ns": mono, "wall_ns": mono + WALL_MINUS_MONO_NS, "replica": 1, "kind": kind, **fields}


def _stamp(t_ms: float) -> str:
    """Local wall time as Python logging's %(asctime)s writes it."""
    moment = datetime.fromtimestamp((T0_NS + int(t_ms * MS) + WALL_MINUS_MONO_NS) / 1e9)
    return moment.strftime("%Y-%m-%d %H:%M:%S,") + f"{moment.microsecond // 1000:03d}"


def _write_node(root: Path, name: str, events: list[dict[str, object]], log: list[str]) -> None:
    import json

    directory = root / "nodes" / name
    directory.mkdir(parents=True)
    (directory / "events.jsonl").write_text(
        "".join(json.dumps(e) + "\n" for e in events) + '{"torn', encoding="utf-8"
    )
    (directory / "node.log").write_text("".join(line + "\n" for line in log), encoding="utf-8")


def test_markers_are_placed_by_monotonic_time_and_labelled(tmp_path: Path) -> None:
    _write_node(
        tmp_path,
        "n2",
        [
            _event("view_change_started", 30, view=2),
            _event("became_primary", 40, view=2),
            _event("repaired_slot", 41, op=7),  # not a marker kind
            _event("became_primary", 900_000, view=3),  # hours away: another clock, not drawn
        ],
        [],
    )
    (node,) = load_nodes(tmp_path)
    assert node.events_bad_lines == 1  # the torn last line is counted, not fatal
    clock = Clock(t0_ns=T0_NS, end_ns=100 * MS, wall_minus_mono_ns=None)
    assert markers([node], clock) == [
        {
            "t": 30 * MS,
            "kind": "view_change_started",
            "node": "n2",
            "view": 2,
            "label": "r1 starts view change to v2",
        },
        {"t": 40 * MS, "kind": "became_primary", "node": "n2", "view": 2, "label": "r1 primary of v2"},
    ]


def test_wall_clock_falls_back_to_the_run_offset() -> None:
    clock = Clock(t0_ns=T0_NS, end_ns=100 * MS, wall_minus_mono_ns=WALL_MINUS_MONO_NS)
    event = {"mono_ns": 10**15, "wall_ns": T0_NS + 50 * MS + WALL_MINUS_MONO_NS}  # mono from a faked clock
    assert clock.place(event) == 50 * MS


def test_log_line_time_uses_the_nodes_own_clock_offset(tmp_path: Path) -> None:
    _write_node(tmp_path, "n1", [_event("checkpoint", 10)], [])
    (node,) = load_nodes(tmp_path)
    clock = clock_for_node(Clock(T0_NS, 100 * MS, None), node)
    assert clock.wall_minus_mono_ns == WALL_MINUS_MONO_NS
    assert line_time_ns(f"ts={_stamp(42)} level=INFO replica=1 view=2", clock) == 42 * MS
    assert line_time_ns(f"mono_ns={T0_NS + 7 * MS} something", clock) == 7 * MS
    assert line_time_ns("no time here", clock) is None


def test_excerpt_highlights_lines_near_the_anomaly(tmp_path: Path) -> None:
    log = [f"ts={_stamp(t)} level=INFO line at {t} ms" for t in range(0, 2000, 10)]  # 200 lines over 2 s
    _write_node(tmp_path, "n1", [_event("checkpoint", 0)], log)
    (node,) = load_nodes(tmp_path)
    assert node.log_path is not None
    clock = clock_for_node(Clock(T0_NS, 2000 * MS, None), node)
    piece = excerpt(node.log_path, clock=clock, focus_ns=1000 * MS)
    hot = [text for _n, text, is_hot in piece.lines if is_hot]
    # context is 5% of the 2 s run, at least 0.1 s: lines from 900 ms to 1100 ms
    assert hot[0].endswith("line at 900 ms") and hot[-1].endswith("line at 1100 ms")
    assert len(hot) == 21 == piece.highlighted_count
    assert piece.lines[0][0] == 91 - 20  # 20 lines of context before the first highlighted one (line 91)
    assert piece.total_lines == 200


def test_excerpt_without_times_is_the_tail(tmp_path: Path) -> None:
    _write_node(tmp_path, "n1", [], [f"plain line {i}" for i in range(1000)])
    (node,) = load_nodes(tmp_path)
    assert node.log_path is not None
    piece = excerpt(node.log_path, clock=Clock(T0_NS, 100 * MS, None), focus_ns=50 * MS)
    assert piece.lines[-1] == (1000, "plain line 999", False)
    assert len(piece.lines) == 400 and "last 400 lines" in piece.note
