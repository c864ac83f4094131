"""Shape the checkers' performance and availability data for the report.

``checkers.perf`` and ``checkers.availability`` compute the numbers (the same
ones results.json carries); this module picks a time bucket for the run's
length, moves every time to "since the first op", labels the fault windows
and turns the availability result into table rows. Nothing here recomputes
what the checkers already compute.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from checkers.availability import availability
from checkers.history import HistoryFormatError, Op
from checkers.perf import (
    FaultWindow,
    fault_windows,
    latency_points,
    quantiles_over_time,
    throughput_over_time,
)
from reports import plots
from reports.anomaly import compact

BUCKETS_TARGET = 150
BUCKET_STEPS_NS = tuple(m * 10**e for e in range(7, 12) for m in (1, 2, 5))  # 10 ms .. 500 s
PLOT_FILES = (
    ("latency-raw.png", "Latency of every op, by outcome and function"),
    ("latency-quantiles.png", "Latency quantiles over time"),
    ("throughput.png", "Throughput over time"),
)


@dataclass(frozen=True, slots=True)
class Perf:
    """Everything the report shows about performance and faults, times relative to the first op."""

    t0_ns: int
    bucket_ns: int
    windows: list[FaultWindow]
    timeline_faults: list[dict[str, Any]]
    fault_summary: str
    fault_kinds: list[str]
    latency: list[plots.LatencyPoint]
    quantiles: dict[str, list[tuple[float, float]]]
    throughput: dict[str, list[tuple[float, float]]]
    availability_rows: list[dict[str, Any]]
    availability_note: str
    never_recovered: list[str]
    warnings: list[str] = field(default_factory=list)


def bucket_for(span_ns: int) -> int:
    """The smallest round bucket that cuts the run into at most ~150 buckets."""
    for step in BUCKET_STEPS_NS:
        if span_ns / step <= BUCKETS_TARGET:
            return step
    return BUCKET_STEPS_NS[-1]


def window_label(window: FaultWindow) -> str:
    """``partition majority · n1``: the kind, the shape the nemesis named (if any), and the targets.

    Without targets, the grudge (who drops whom) is shown instead, shortened.
    """
    value = window.value if isinstance(window.value, dict) else {}
    shape = value.get("shape") if isinstance(value.get("shape"), str) else None
    parts = [window.kind] + ([compact(shape, 30)] if shape else [])
    grudge = value.get("grudge")
    if window.targets:
        detail = ", ".join(compact(t, 20) for t in window.targets[:6])
    elif isinstance(grudge, dict) and grudge:
        detail = "; ".join(f"{compact(k, 20)} ✕ {_names(v)}" for k, v in list(grudge.items())[:4])
    else:
        detail = ""
    return " ".join(parts) + (f" · {detail}" if detail else "")


def _names(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ",".join(compact(v, 20) for v in value[:6])
    return compact(value, 40)


def _seconds(ns: int, t0_ns: int) -> float:
    return (ns - t0_ns) / 1e9


def _timeline_faults(windows: Sequence[FaultWindow], *, t0_ns: int, end_ns: int) -> list[dict[str, Any]]:
    return [
        {
            "kind": w.kind,
            "start": w.start_ns - t0_ns,
            "end": (w.stop_ns if w.stop_ns is not None else end_ns) - t0_ns,
            "healed": w.stop_ns is not None,
            "label": window_label(w),
        }
        for w in windows
    ]


def _ms(ns: int | None) -> str:
    if ns is None:
        return "—"
    return f"{ns / 1e6:.1f} ms" if ns < 10_000_000_000 else f"{ns / 1e9:.1f} s"


def _recovery_text(recovery: dict[str, Any] | None, healed: bool) -> tuple[str, bool]:
    """The table cell for time-to-recover, and whether some key never recovered."""
    if not healed:
        return "never healed: the fault was still in force when the history ended", True
    if recovery is None:
        return "—", False
    by_key: dict[Any, int] = recovery.get("recover_ns_by_key") or {}
    never = recovery.get("never_recovered_keys") or []
    parts = []
    if by_key:
        worst = max(by_key.items(), key=lambda item: item[1])
        parts.append(f"max {_ms(worst[1])} (key {compact(worst[0], 30)}) over {len(by_key)} key(s)")
    if never:
        parts.append(
            f"NEVER RECOVERED on {len(never)} key(s): " + ", ".join(compact(k, 30) for k in never[:8])
        )
    if not parts:
        parts.append("no write attempted after the heal")
    return "; ".join(parts), bool(never)


def _never_text(window: dict[str, Any], *, start_ns: int, stop_ns: int, end_ns: int) -> str:
    """Which fault, and how long the history ran on after its heal: a key with no ok write in the
    last two seconds of a run is not the same news as one with none in the last two minutes."""
    where = f"the {window['kind']} fault at {start_ns / 1e9:.2f} s"
    if window.get("stop_ns") is None:
        return f"{where} (never healed)"
    recovery = window.get("recovery") or {}
    keys = recovery.get("never_recovered_keys") or []
    more = max(0, int(recovery.get("never_recovered_count") or len(keys)) - len(keys[:8]))
    listed = ", ".join(compact(k, 30) for k in keys[:8]) + (f" and {more} more" if more else "")
    return (
        f"{where} (healed at {stop_ns / 1e9:.2f} s; no ok write on key(s) {listed} "
        f"in the {(end_ns - stop_ns) / 1e9:.2f} s the history ran on)"
    )


def _availability_rows(
    ops: Sequence[Op], t0_ns: int, windows: Sequence[FaultWindow]
) -> tuple[list[dict[str, Any]], list[str]]:
    result = availability(ops)
    labels = {(w.kind, w.start_ns): window_label(w) for w in windows}
    rows: list[dict[str, Any]] = []
    never: list[str] = []
    end_ns = max((op.time_ns for op in ops), default=t0_ns)
    for window in result.get("windows", []):
        healed = window.get("stop_ns") is not None
        text, bad = _recovery_text(window.get("recovery"), healed)
        fraction = window.get("ok_fraction")
        start_ns = window["start_ns"] - t0_ns
        stop_ns = (window["stop_ns"] if healed else end_ns) - t0_ns
        rows.append(
            {
                "kind": window["kind"],
                "label": labels.get((window["kind"], window["start_ns"]), window["kind"]),
                "targets": ", ".join(compact(t, 20) for t in window.get("targets", [])) or "—",
                "start": f"{start_ns / 1e9:.2f} s",
                "end": f"{stop_ns / 1e9:.2f} s" if healed else "never healed",
                "start_ns": start_ns,
                "end_ns": stop_ns,
                "ops": f"{window.get('total', 0):,}",
                "ok_fraction": f"{fraction:.1%}" if isinstance(fraction, float) else "no ops",
                "recovery": text,
                "never": bad,
            }
        )
        if bad:
            never.append(_never_text(window, start_ns=start_ns, stop_ns=stop_ns, end_ns=end_ns - t0_ns))
    return rows, never


def prepare(ops: Sequence[Op], *, t0_ns: int) -> Perf:
    """Compute (through the checkers) and shape every performance and availability figure."""
    end_ns = max((op.time_ns for op in ops), default=t0_ns)
    bucket_ns = bucket_for(end_ns - t0_ns)
    windows = fault_windows(ops)
    kinds = sorted({w.kind for w in windows})
    counts = {kind: sum(1 for w in windows if w.kind == kind) for kind in kinds}
    summary = ", ".join(f"{kind} ×{count}" for kind, count in counts.items()) or "none"
    latency = [
        plots.LatencyPoint(_seconds(p.invoke_ns, t0_ns), p.latency_ns / 1e6, p.type, p.f)
        for p in latency_points(ops)
    ]
    quantile_rows = quantiles_over_time(ops, bucket_ns=bucket_ns)
    quantiles = {
        name: [(_seconds(row["t_ns"], t0_ns), row[f"{name}_ms"]) for row in quantile_rows]
        for name in ("p50", "p95", "p99", "max")
    }
    throughput_rows = throughput_over_time(ops, bucket_ns=bucket_ns)
    throughput = {
        outcome: [(_seconds(row["t_ns"], t0_ns), row[outcome] * 1e9 / bucket_ns) for row in throughput_rows]
        for outcome in ("ok", "fail", "info")
    }
    rows, never = _availability_rows(ops, t0_ns, windows)
    note = "No fault windows in this history." if not rows else ""
    return Perf(
        t0_ns=t0_ns,
        bucket_ns=bucket_ns,
        windows=windows,
        timeline_faults=_timeline_faults(windows, t0_ns=t0_ns, end_ns=end_ns),
        fault_summary=summary,
        fault_kinds=kinds,
        latency=latency,
        quantiles=quantiles,
        throughput=throughput,
        availability_rows=rows,
        availability_note=note,
        never_recovered=never,
    )


def shaded_windows(perf: Perf, *, end_ns: int) -> list[plots.Window]:
    """The fault windows as plots shade them (a window still open ends at ``end_ns``)."""
    end_s = _seconds(end_ns, perf.t0_ns)
    return [
        plots.Window(
            w.kind,
            _seconds(w.start_ns, perf.t0_ns),
            _seconds(w.stop_ns, perf.t0_ns) if w.stop_ns is not None else end_s,
            window_label(w),
        )
        for w in perf.windows
    ]


def write_plots(perf: Perf, run_dir: Path) -> list[dict[str, str]]:
    """Draw the three plots, write each PNG beside the report, return them for embedding."""
    if not perf.latency:
        return []
    end_s = max((point.time_s for point in perf.latency), default=0.0)
    shaded = [
        plots.Window(
            w.kind,
            _seconds(w.start_ns, perf.t0_ns),
            _seconds(w.stop_ns, perf.t0_ns) if w.stop_ns is not None else end_s,
            window_label(w),
        )
        for w in perf.windows
    ]
    images = (
        plots.latency_scatter(perf.latency, shaded),
        plots.quantiles_plot(perf.quantiles, shaded),
        plots.throughput_plot(perf.throughput, shaded),
    )
    written = []
    for (name, title), png in zip(PLOT_FILES, images, strict=True):
        (run_dir / name).write_bytes(png)
        written.append({"file": name, "title": title, "base64": base64.b64encode(png).decode("ascii")})
    return written


def prepare_or_explain(ops: Sequence[Op], *, t0_ns: int) -> Perf:
    """``prepare``, or an empty Perf with the reason when the checkers reject the history's pairing."""
    try:
        return prepare(ops, t0_ns=t0_ns)
    except HistoryFormatError as exc:
        return Perf(
            t0_ns=t0_ns,
            bucket_ns=bucket_for(0),
            windows=[],
            timeline_faults=[],
            fault_summary="unknown",
            fault_kinds=[],
            latency=[],
            quantiles={},
            throughput={},
            availability_rows=[],
            availability_note="Not computed: the checkers cannot pair this history's ops.",
            never_recovered=[],
            warnings=[f"performance, faults and availability are not shown: {exc}"],
        )
