"""What the nodes said: their event markers on the timeline and their logs around the anomaly.

Each node writes ``nodes/<node>/events.jsonl`` with both its monotonic and its
wall clock (contracts §3) and ``nodes/<node>/node.log``. The history's
``time_ns`` is the controller's monotonic clock, which is the nodes' monotonic
clock too when they run on the same machine and no clock fault rewrote it. So
an event is placed by ``mono_ns`` when that lands inside the run, and
otherwise by ``wall_ns`` against the run's wall-clock start when test.json
records one; an event that fits neither is listed in the node's section but
not drawn, rather than drawn at a made-up time.
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Any

MARKER_KINDS = (
    "view_change_started",
    "view_change_completed",
    "became_primary",
    "recovered_from_disk",
    "state_transfer",
    "storage_fault",
)
# An event this far outside the history's span is from another clock (or another run).
_SLACK_NS = 10 * 1_000_000_000
EXCERPT_LINES_MAX = 400
CONTEXT_NS_MIN = 100_000_000
CONTEXT_NS_MAX = 2_000_000_000


def context_ns_for(span_ns: int) -> int:
    """How near the anomaly a log line must be to be highlighted: 5% of the run, 0.1 s to 2 s."""
    return max(CONTEXT_NS_MIN, min(CONTEXT_NS_MAX, span_ns // 20))


@dataclass(frozen=True, slots=True)
class NodeFiles:
    """One node's directory in the store."""

    name: str
    directory: Path
    events: list[dict[str, Any]]
    events_bad_lines: int
    log_path: Path | None


@dataclass(frozen=True, slots=True)
class LogExcerpt:
    """Lines of a node log to show, with the ones near the anomaly marked."""

    lines: list[tuple[int, str, bool]]  # (line number from 1, text, highlighted)
    total_lines: int
    note: str
    highlighted_count: int = 0
    skipped: list[str] = field(default_factory=list)


def load_nodes(run_dir: Path) -> list[NodeFiles]:
    """Every ``nodes/<node>/`` directory, sorted by name, with its parsed events."""
    root = run_dir / "nodes"
    if not root.is_dir():
        return []
    nodes: list[NodeFiles] = []
    for directory in sorted(p for p in root.iterdir() if p.is_dir()):
        events, bad = _read_events(directory / "events.jsonl")
        log = directory / "node.log"
        nodes.append(NodeFiles(directory.name, directory, events, bad, log if log.is_file() else None))
    return nodes


def _read_events(path: Path) -> tuple[list[dict[str, Any]], int]:
    if not path.is_file():
        return [], 0
    events: list[dict[str, Any]] = []
    bad = 0
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                bad += 1  # a node killed mid-write leaves a torn last line
                continue
            if isinstance(record, dict):
                events.append(record)
            else:
                bad += 1
    return events, bad


@dataclass(frozen=True, slots=True)
class Clock:
    """How to turn a node's event times into the history's time base."""

    t0_ns: int
    end_ns: int
    wall_minus_mono_ns: int | None  # from test.json, when it records both clocks at start

    def place(self, event: dict[str, Any]) -> int | None:
        """The event's time relative to the history's first op, or None if it cannot be placed."""
        mono = event.get("mono_ns")
        if isinstance(mono, int) and self._inside(mono - self.t0_ns):
            return mono - self.t0_ns
        wall = event.get("wall_ns")
        if isinstance(wall, int) and self.wall_minus_mono_ns is not None:
            relative = wall - self.wall_minus_mono_ns - self.t0_ns
            if self._inside(relative):
                return relative
        return None

    def _inside(self, relative_ns: int) -> bool:
        return -_SLACK_NS <= relative_ns <= self.end_ns + _SLACK_NS


def clock_from_test(test: dict[str, Any], *, t0_ns: int, end_ns: int) -> Clock:
    """Read the run's paired clock readings from test.json, under any of the names the harness may use."""
    mono = _first_int(test, ("start_mono_ns", "started_mono_ns", "mono_ns_start"))
    wall = _first_int(test, ("start_wall_ns", "started_wall_ns", "wall_ns_start"))
    offset = wall - mono if mono is not None and wall is not None else None
    return Clock(t0_ns=t0_ns, end_ns=end_ns, wall_minus_mono_ns=offset)


def clock_for_node(run_clock: Clock, node: NodeFiles) -> Clock:
    """The clock for one node's log: its own wall-minus-monotonic offset, read from its events.

    A node's log timestamps come from the node's wall clock, which a clock
    fault may have moved; its events carry both clocks as the node saw them,
    so their median difference converts that node's wall times, faked or not.
    """
    offsets = sorted(
        event["wall_ns"] - event["mono_ns"]
        for event in node.events
        if isinstance(event.get("wall_ns"), int) and isinstance(event.get("mono_ns"), int)
    )
    if not offsets:
        return run_clock
    return Clock(run_clock.t0_ns, run_clock.end_ns, offsets[len(offsets) // 2])


def _first_int(record: dict[str, Any], names: tuple[str, ...]) -> int | None:
    for name in names:
        value = record.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def markers(nodes: list[NodeFiles], clock: Clock) -> list[dict[str, Any]]:
    """Timeline markers: view changes and new primaries, as ``{t, kind, node, view, label}``."""
    found: list[dict[str, Any]] = []
    for node in nodes:
        for event in node.events:
            kind = event.get("kind")
            if kind not in MARKER_KINDS:
                continue
            at = clock.place(event)
            if at is None:
                continue
            view = event.get("view")
            replica = event.get("replica", node.name)
            label = {
                "view_change_started": f"r{replica} starts view change to v{view}",
                "view_change_completed": f"r{replica} completes view change, v{view}",
                "became_primary": f"r{replica} primary of v{view}",
                "recovered_from_disk": f"r{replica} recovered from disk (v{view}, op {event.get('op')})",
                "state_transfer": f"r{replica} state transfer (op {event.get('op')})",
                "storage_fault": f"r{replica} storage fault ({event.get('reason', event.get('error', _ops_text(event)))})",
            }[kind]
            found.append({"t": at, "kind": kind, "node": node.name, "view": view, "label": label})
    found.sort(key=lambda marker: marker["t"])
    return found


def _ops_text(event: dict[str, Any]) -> str:
    ops = event.get("ops")
    return f"faulty ops {', '.join(str(op) for op in ops[:8])}" if ops else "see events"


def storage_summary(events: list[dict[str, Any]]) -> str:
    """What the node's disk did to it and how it recovered: faulty slots found, slots repaired."""
    faulty_ops: list[Any] = []
    faulty = 0
    repaired: list[Any] = []
    for event in events:
        if event.get("kind") == "storage_fault":
            faulty += int(event.get("count", 1) or 1)
            faulty_ops.extend(event.get("ops") or [])
        elif event.get("kind") == "repaired_slot":
            repaired.append(event.get("op"))
    if not faulty and not repaired:
        return ""

    def listed(ops: list[Any]) -> str:
        ops = sorted(ops, key=lambda op: (not isinstance(op, int), op if isinstance(op, int) else 0))
        shown = ", ".join(str(op) for op in ops[:8])
        return f" (ops {shown}{', ...' if len(ops) > 8 else ''})" if ops else ""

    return (
        f"storage faults found: {faulty}{listed(faulty_ops)}; "
        f"slots repaired from peers: {len(repaired)}{listed(repaired)}"
    )


_ISO = re.compile(r"(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2})(?:[.,](\d{1,9}))?(Z|[+-]\d{2}:?\d{2})?")
_NS_FIELD = re.compile(r"\b(mono_ns|wall_ns)=(\d+)")


def line_time_ns(line: str, clock: Clock) -> int | None:
    """A log line's time relative to the history's first op, if the line carries one we can place."""
    match = _NS_FIELD.search(line)
    if match:
        value = int(match.group(2))
        return clock.place({match.group(1): value})
    match = _ISO.search(line[:60])
    if match and clock.wall_minus_mono_ns is not None:
        date, hms, fraction, zone = match.groups()
        # Python's logging writes local time without a zone (``ts=%(asctime)s``): a naive
        # datetime's timestamp() reads it as local time, as it was written.
        stamp = f"{date}T{hms}" + (zone.replace("Z", "+00:00") if zone else "")
        try:
            moment = datetime.fromisoformat(stamp)
        except ValueError:
            return None
        wall_ns = int(moment.timestamp()) * 1_000_000_000 + int(((fraction or "0") + "000000000")[:9])
        return clock.place({"wall_ns": wall_ns})
    return None


def excerpt(log_path: Path, *, clock: Clock, focus_ns: int | None) -> LogExcerpt:
    """The log lines near the focus time (``context_ns_for`` the run), highlighted, with lines around them.

    Without a focus time, or when no line carries a time we can place, the
    excerpt is the log's tail: the end is where a failed run's story usually
    is. The log is streamed twice (find, then cut), never held whole, so a
    long run's large log costs time, not memory.
    """
    context_ns = context_ns_for(clock.end_ns)
    near: list[int] = []  # positions (from 0) of lines within context_ns of the focus
    tail: deque[tuple[int, str]] = deque(maxlen=EXCERPT_LINES_MAX)
    total = 0
    for number, text in _numbered_lines(log_path):
        total = number
        tail.append((number, text))
        if focus_ns is not None:
            at = line_time_ns(text, clock)
            if at is not None and abs(at - focus_ns) <= context_ns:
                near.append(number - 1)
    if total == 0:
        return LogExcerpt([], 0, "the log is empty")
    if not near:
        why = "no focus time" if focus_ns is None else "no line carries a time near the anomaly"
        return LogExcerpt([(n, t, False) for n, t in tail], total, f"last {len(tail)} lines ({why})")
    first = max(0, near[0] - 20)
    last = min(total, max(near[-1] + 21, first + 1))
    if last - first > EXCERPT_LINES_MAX:
        centre = near[len(near) // 2]
        first = max(0, centre - EXCERPT_LINES_MAX // 2)
        last = min(total, first + EXCERPT_LINES_MAX)
    marked = set(near)
    shown = [
        (number, text, number - 1 in marked)
        for number, text in islice(_numbered_lines(log_path), first, last)
    ]
    count = sum(1 for _n, _t, hot in shown if hot)
    note = (
        f"lines {shown[0][0]}-{shown[-1][0]} of {total}; {count} within "
        f"{context_ns / 1e9:.1f} s of the anomaly highlighted"
    )
    return LogExcerpt(shown, total, note, highlighted_count=count)


def _numbered_lines(path: Path) -> Iterator[tuple[int, str]]:
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            yield number, line.rstrip("\n")
