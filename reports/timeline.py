"""The data behind the report's timeline: ops paired into bars, packed as columns.

A browser must stay responsive at 100,000 ops, so the page gets one compact
JSON object of parallel arrays (one entry per op bar) instead of 100,000
dictionaries: string-valued fields (f, key, error, node) are indices into small
tables, times are integer nanoseconds since the first op. The page rebuilds an
op's full record from these columns when a person clicks it.

Bars are grouped by lane and sorted by start inside a lane. The nemesis has
the first lane; each client process has a lane, except that a process that
starts after another one's last op ended may continue that lane. Jepsen's rule
retires a process whose op ended ``info`` and gives its thread a new process
id, so a run with many timeouts has hundreds of processes but only
``concurrency`` of them at a time: packing them keeps one lane per worker
thread, labelled with the processes it held, instead of a canvas hundreds of
lanes tall. Processes in a lane never overlap and each has at most one op
outstanding, so inside a lane starts and ends are increasing: the page finds
the visible bars of a lane by binary search, which is what makes drawing only
what is visible cheap.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from checkers.history import Op

OUTCOME_CODES = {"ok": 0, "fail": 1, "info": 2, "open": 3}
NEMESIS = "nemesis"
VALUE_TEXT_MAX = 256  # longer strings (the workloads' large values) are cut in the page, not in the history
VALUE_TEXT_HEAD = 48


def shown_value(value: Any) -> Any:
    """``value`` as the page shows it: a long string (also inside a list) cut to its head and size.

    The workloads write values of 16 KiB on purpose; embedding each whole would make a long
    run's report many megabytes. history.jsonl keeps them whole.
    """
    if isinstance(value, str) and len(value) > VALUE_TEXT_MAX:
        return f"{value[:VALUE_TEXT_HEAD]}… ({len(value.encode('utf-8', 'replace'))} bytes)"
    if isinstance(value, list | tuple) and any(isinstance(v, str) and len(v) > VALUE_TEXT_MAX for v in value):
        return [shown_value(v) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class Bar:
    """One op from invocation to completion (or to the end of the history if it never completed)."""

    process: Any
    invoke: Op
    completion: Op | None

    @property
    def outcome(self) -> str:
        return self.completion.type if self.completion is not None else "open"


def pair_bars(ops: Iterable[Op]) -> list[Bar]:
    """Pair each invocation with its process's next completion; nemesis info ops pair by f.

    A client process has one op outstanding (contracts §4), so its next
    non-invoke op completes the open one. The nemesis records an ``info``
    invocation and an ``info`` completion with the same ``f``. A completion
    with no open invocation is kept as a zero-length bar rather than dropped:
    the report shows what the history holds, even when it is odd.
    """
    open_by_process: dict[Any, Op] = {}
    open_nemesis: dict[Any, Op] = {}
    bars: list[Bar] = []
    for op in ops:
        if op.process == NEMESIS:
            started = open_nemesis.pop(op.f, None)
            if started is None:
                open_nemesis[op.f] = op
            else:
                bars.append(Bar(op.process, started, op))
            continue
        if op.type == "invoke":
            previous = open_by_process.pop(op.process, None)
            if previous is not None:
                bars.append(Bar(op.process, previous, None))
            open_by_process[op.process] = op
            continue
        started = open_by_process.pop(op.process, None)
        bars.append(Bar(op.process, started if started is not None else op, op))
    bars.extend(Bar(op.process, op, None) for op in open_by_process.values())
    bars.extend(Bar(op.process, op, None) for op in open_nemesis.values())
    return bars


def lane_order(processes: Iterable[Any]) -> list[Any]:
    """Nemesis first, then integer processes ascending, then anything else by its text."""
    unique = set(processes)
    ints = sorted(p for p in unique if isinstance(p, int) and not isinstance(p, bool))
    others = sorted((p for p in unique if p != NEMESIS and p not in ints), key=str)
    return ([NEMESIS] if NEMESIS in unique else []) + ints + others


def pack_lanes(bars: Sequence[Bar], *, end_ns: int) -> list[list[Any]]:
    """Processes grouped into lanes: the nemesis alone first, then client processes, a process
    joining the lowest lane whose last op ended before its first began (interval colouring,
    so the lane count is the most processes ever alive at once)."""
    span: dict[Any, list[int]] = {}
    for bar in bars:
        start = bar.invoke.time_ns
        end = bar.completion.time_ns if bar.completion is not None else end_ns
        first_last = span.setdefault(bar.process, [start, end])
        first_last[0] = min(first_last[0], start)
        first_last[1] = max(first_last[1], end)
    order = {process: rank for rank, process in enumerate(lane_order(span))}
    lanes: list[list[Any]] = [[NEMESIS]] if NEMESIS in span else []
    lane_end: list[int] = [0] * len(lanes)
    for process in sorted(span, key=lambda p: (span[p][0], order[p])):
        if process == NEMESIS:
            continue
        first, last = span[process]
        free = next((i for i in range(len(lanes)) if lanes[i][0] != NEMESIS and lane_end[i] < first), None)
        if free is None:
            lanes.append([process])
            lane_end.append(last)
        else:
            lanes[free].append(process)
            lane_end[free] = last
    return lanes


def lane_label(processes: Sequence[Any]) -> str:
    """``nemesis``, ``p3``, or ``p3 +4`` for a lane that held five processes in turn."""
    if processes[0] == NEMESIS:
        return NEMESIS
    more = f" +{len(processes) - 1}" if len(processes) > 1 else ""
    return f"p{processes[0]}{more}"


class _Table:
    """Interns values into a list; ``None`` maps to -1."""

    def __init__(self) -> None:
        self.values: list[Any] = []
        self._index: dict[tuple[type, Any], int] = {}

    def code(self, value: Any) -> int:
        if value is None:
            return -1
        identity: tuple[type, Any] = (type(value), value)  # 1, True and "1" are different keys
        try:
            found = self._index.get(identity)
        except TypeError:  # unhashable (a dict key from JSON): fall back to its text
            identity = (type(value), repr(value))
            found = self._index.get(identity)
        if found is None:
            found = len(self.values)
            self._index[identity] = found
            self.values.append(value)
        return found


def timeline_columns(ops: Sequence[Op], bars: list[Bar] | None = None) -> dict[str, Any]:
    """The timeline's embedded data: lanes, string tables, and one column per bar field.

    Returns a JSON-ready dict. ``t0_ns`` is the first op's time; every time in
    the columns is relative to it. ``end_ns`` is the last op's time, also the
    end drawn for bars that never completed.
    """
    t0_ns = min((op.time_ns for op in ops), default=0)
    end_ns = max((op.time_ns for op in ops), default=0) - t0_ns
    bars = list(pair_bars(ops) if bars is None else bars)  # pass bars in to pair only once per report
    lanes = pack_lanes(bars, end_ns=end_ns + t0_ns)
    lane_of = {process: i for i, processes in enumerate(lanes) for process in processes}
    bars.sort(key=lambda bar: (lane_of[bar.process], bar.invoke.time_ns, bar.invoke.index))
    f_table, key_table, error_table, node_table, process_table = (_Table() for _ in range(5))
    invokes = [bar.invoke for bar in bars]
    dones = [bar.completion for bar in bars]
    # one comprehension per column: this runs once per op, 100,000 times for a long run
    columns: dict[str, list[Any]] = {
        "lane": [lane_of[bar.process] for bar in bars],
        "p": [process_table.code(bar.process) for bar in bars],
        "s": [op.time_ns - t0_ns for op in invokes],
        "e": [end_ns if done is None else done.time_ns - t0_ns for done in dones],
        "o": [OUTCOME_CODES["open"] if done is None else OUTCOME_CODES.get(done.type, 2) for done in dones],
        "f": [f_table.code(op.f) for op in invokes],
        "k": [
            key_table.code(op.key if op.key is not None or done is None else done.key)
            for op, done in zip(invokes, dones, strict=True)
        ],
        "vi": [shown_value(op.value) for op in invokes],
        "vc": [None if done is None else shown_value(done.value) for done in dones],
        "er": [error_table.code(None if done is None else done.error) for done in dones],
        "n": [node_table.code(_node(bar)) for bar in bars],
        "ii": [op.index for op in invokes],
        "ci": [-1 if done is None else done.index for done in dones],
    }
    return {
        "t0_ns": t0_ns,
        "end_ns": end_ns,
        "lanes": [lane_label(processes) for processes in lanes],
        "lane_processes": [[str(process) for process in processes] for processes in lanes],
        "processes": process_table.values,
        "fs": f_table.values,
        "keys": key_table.values,
        "errors": error_table.values,
        "nodes": node_table.values,
        "ops": columns,
        # The node an invocation itself names (the harness records none; the completion names the
        # node that answered), by bar position, so an op's record shows each line as stored.
        "invoke_nodes": {
            str(position): node_table.code(op.node)
            for position, op in enumerate(invokes)
            if op.node is not None
        },
        "count": len(bars),
    }


def _node(bar: Bar) -> Any:
    if bar.completion is not None and bar.completion.node is not None:
        return bar.completion.node
    return bar.invoke.node
