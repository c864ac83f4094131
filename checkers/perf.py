"""Performance data from a history: latencies, quantiles and throughput over time, fault windows.

Data only: the reports draw the plots. Everything is computed from the ops'
recorded ``time_ns`` (the harness's monotonic clock), so the numbers line up
with the nemesis's fault windows drawn on the same axis. Bucket start times
``t_ns`` are on that same clock, aligned to multiples of ``bucket_ns``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence

from checkers.history import Op, PairedEvent, pair_events
from checkers.record import record

TYPE_CHECKING = False  # typing is for type checkers only: importing it slows every `ratchet check`
if TYPE_CHECKING:
    from typing import Any

FAULT_KINDS = ("partition", "loss", "pause", "kill", "clock", "disk", "corrupt")


@record
class FaultWindow:
    """A fault in force: from a ``start-<kind>`` completion to the next ``stop-<kind>`` completion.

    ``stop_ns`` is None when the fault was never stopped in the history.
    ``targets`` come from the start's ``value["targets"]``; ``value`` is that
    whole value (grudge, fraction, ...).
    """

    kind: str
    start_ns: int
    stop_ns: int | None
    targets: tuple[Any, ...]
    value: Any


@record(init=False)
class LatencyPoint:
    """One completed client op: when it was invoked and how long it took.

    Built through the slots' own descriptors, as :class:`~checkers.history.Op`
    is: one per completed op, a million in a long history.
    """

    invoke_ns: int
    latency_ns: int
    f: str
    type: str
    process: int | str
    key: Any

    def __init__(
        self, invoke_ns: int, latency_ns: int, f: str, type: str, process: int | str, key: Any
    ) -> None:
        _lp_invoke_ns(self, invoke_ns)
        _lp_latency_ns(self, latency_ns)
        _lp_f(self, f)
        _lp_type(self, type)
        _lp_process(self, process)
        _lp_key(self, key)


_lp_invoke_ns, _lp_latency_ns, _lp_f, _lp_type, _lp_process, _lp_key = (
    LatencyPoint.__dict__[name].__set__ for name in LatencyPoint.__match_args__
)


def _nemesis_pairs(ops: Iterable[Op]) -> list[tuple[Op, Op]]:
    """(invocation, completion) of each nemesis op (both records are ``info``), by completion.

    Pairs are consecutive records with the same ``f``: the first is the
    invocation, the next with that ``f`` its completion. An invocation with no
    completion (the run was cut short) counts as its own completion.
    """
    open_by_f: dict[str, Op] = {}
    pairs: list[tuple[Op, Op]] = []
    for op in ops:
        if type(op.process) is int:  # a client op (inlined: a hot loop)
            continue
        if op.type == "invoke":
            open_by_f[op.f] = op
            continue
        invocation = open_by_f.pop(op.f, None)
        if invocation is not None:
            pairs.append((invocation, op))
        else:
            open_by_f[op.f] = op
    pairs.extend((op, op) for op in open_by_f.values())
    pairs.sort(key=lambda pair: pair[1].index)
    return pairs


def _kind(f: str) -> tuple[str, str] | None:
    """('start'|'stop', kind) for a nemesis f, or None. Bare start/stop (Jepsen) is kind 'nemesis'."""
    for action in ("start", "stop"):
        if f == action:
            return action, "nemesis"
        if f.startswith(action + "-"):
            return action, f[len(action) + 1 :]
    return None


def _targets(value: Any) -> tuple[Any, ...]:
    if isinstance(value, dict):
        targets = value.get("targets")
        if isinstance(targets, list | tuple):
            return tuple(targets)
    return ()


def fault_windows(ops: Sequence[Op]) -> list[FaultWindow]:
    """Fault windows from nemesis ops (contracts §4), in start order.

    A window opens when its start op is *invoked*: the fault takes hold while
    that op runs (a rolling kill kills its first node at once, then waits), so
    an op in between already ran under it. Targets come from the completion.
    """
    started: dict[str, tuple[Op, Op]] = {}
    windows: list[FaultWindow] = []
    for invocation, op in _nemesis_pairs(ops):
        parsed = _kind(op.f)
        if parsed is None:
            continue
        action, kind = parsed
        if action == "start":
            if kind not in started:
                started[kind] = (invocation, op)
            continue
        start = started.pop(kind, None)
        if start is not None:
            begun, done = start
            windows.append(FaultWindow(kind, begun.time_ns, op.time_ns, _targets(done.value), done.value))
    for kind, (begun, done) in started.items():
        windows.append(FaultWindow(kind, begun.time_ns, None, _targets(done.value), done.value))
    windows.sort(key=lambda w: (w.start_ns, w.kind))
    return windows


def latency_points(ops: Sequence[Op], *, events: list[PairedEvent] | None = None) -> list[LatencyPoint]:
    """Every client op that completed (ok, fail or info), by invocation time."""
    points: list[LatencyPoint] = []
    for _, invoke, _, completion in pair_events(ops) if events is None else events:
        if completion is None:
            continue
        points.append(
            LatencyPoint(
                invoke.time_ns,
                completion.time_ns - invoke.time_ns,
                invoke.f,
                completion.type,
                invoke.process,
                invoke.key,
            )
        )
    return points


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank quantile of already sorted values (0 <= q <= 1)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q * len(sorted_values)))
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


def _bucket(t_ns: int, bucket_ns: int) -> int:
    return (t_ns // bucket_ns) * bucket_ns


def quantiles_over_time(ops: Sequence[Op], *, bucket_ns: int) -> list[dict[str, Any]]:
    """Latency quantiles of ``ok`` ops per bucket of invocation time.

    Failed and indeterminate ops are left out: their latency is a timeout, not
    the system's response time (throughput_over_time counts them).
    """
    return _quantile_rows(latency_points(ops), bucket_ns=bucket_ns)


def _quantile_rows(points: Sequence[LatencyPoint], *, bucket_ns: int) -> list[dict[str, Any]]:
    if bucket_ns <= 0:
        raise ValueError(f"bucket_ns must be positive, got {bucket_ns}")
    buckets: dict[int, list[int]] = defaultdict(list)
    for point in points:
        if point.type == "ok":
            buckets[(point.invoke_ns // bucket_ns) * bucket_ns].append(point.latency_ns)
    return _bucket_rows(buckets)


def _bucket_rows(buckets: dict[int, list[int]]) -> list[dict[str, Any]]:
    """Quantile rows of ok latencies per bucket start (the lists are sorted in place)."""
    rows: list[dict[str, Any]] = []
    for t_ns in sorted(buckets):
        values = buckets[t_ns]
        values.sort()
        rows.append(
            {
                "t_ns": t_ns,
                "p50_ms": quantile(values, 0.5) / 1e6,
                "p95_ms": quantile(values, 0.95) / 1e6,
                "p99_ms": quantile(values, 0.99) / 1e6,
                "max_ms": values[-1] / 1e6,
                "count": len(values),
            }
        )
    return rows


def throughput_over_time(ops: Sequence[Op], *, bucket_ns: int) -> list[dict[str, Any]]:
    """Completions per bucket of completion time, by outcome; empty buckets between are zeros."""
    if bucket_ns <= 0:
        raise ValueError(f"bucket_ns must be positive, got {bucket_ns}")
    counts: dict[int, dict[str, int]] = defaultdict(lambda: {"ok": 0, "fail": 0, "info": 0})
    for op in ops:
        if type(op.process) is not int or op.type == "invoke":
            continue
        counts[_bucket(op.time_ns, bucket_ns)][op.type] += 1
    if not counts:
        return []
    first, last = min(counts), max(counts)
    return [
        {"t_ns": t_ns, **counts.get(t_ns, {"ok": 0, "fail": 0, "info": 0})}
        for t_ns in range(first, last + bucket_ns, bucket_ns)
    ]


def perf(
    ops: Sequence[Op], *, bucket_ns: int = 1_000_000_000, events: list[PairedEvent] | None = None
) -> dict[str, Any]:
    """The perf checker's entry in results.json: overall latency quantiles by f, plus the series.

    Always valid: perf is evidence, not a verdict. ``events``: ``pair_events(ops)`` if at hand.
    """
    if bucket_ns <= 0:
        raise ValueError(f"bucket_ns must be positive, got {bucket_ns}")
    # The ok latencies by f and by bucket of invocation time, in one pass with no
    # record per op (this runs over every op of a 1M-op history).
    by_f: dict[str, list[int]] = defaultdict(list)
    buckets: dict[int, list[int]] = defaultdict(list)
    for _, invoke, _, completion in pair_events(ops) if events is None else events:
        if completion is None or completion.type != "ok":
            continue
        start_ns = invoke.time_ns
        latency_ns = completion.time_ns - start_ns
        by_f[invoke.f].append(latency_ns)
        buckets[(start_ns // bucket_ns) * bucket_ns].append(latency_ns)
    latency: dict[str, dict[str, float | int]] = {}
    for f, values in sorted(by_f.items()):
        values.sort()
        latency[f] = {
            "count": len(values),
            "p50_ms": quantile(values, 0.5) / 1e6,
            "p95_ms": quantile(values, 0.95) / 1e6,
            "p99_ms": quantile(values, 0.99) / 1e6,
            "max_ms": values[-1] / 1e6,
        }
    return {
        "valid": True,
        "latency_ok_by_f": latency,
        "bucket_ns": bucket_ns,
        "quantiles": _bucket_rows(buckets),
        "throughput": throughput_over_time(ops, bucket_ns=bucket_ns),
        "fault_windows": [
            {"kind": w.kind, "start_ns": w.start_ns, "stop_ns": w.stop_ns, "targets": list(w.targets)}
            for w in fault_windows(ops)
        ],
    }
