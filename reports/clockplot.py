"""Each node's clock offset over the run, from the clock nemesis's own records in the history.

A run with clock faults records, on the completion of every ``start-clock`` and
``stop-clock``, the offset and rate it set per node (contracts §8). From those this module
rebuilds each node's offset as a function of time (a bump is a step, a skewed clock a ramp
of slope ``rate - 1``, a frozen one a ramp of slope -1, a strobe a square wave of its
period for its duration, a reset a step back to 0) and draws them under the timeline, with
the run's fault windows shaded, so a stale read can be read against the clock that made it.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from checkers.history import Op
from reports import plots

FILE_NAME = "clock-offsets.png"
TITLE = "Clock offset of each node (from the clock nemesis's records)"

Series = dict[str, list[tuple[float, float]]]  # node -> (seconds since the first op, offset ms)


def _value(op: Op) -> Mapping[str, Any] | None:
    value = op.value
    return value if isinstance(value, Mapping) and op.process == "nemesis" and op.type == "info" else None


def clock_series(ops: Sequence[Op], *, t0_ns: int, end_ns: int) -> Series:
    """Every node's offset (ms) at the points where it changes, and along ramps and strobes."""
    series: Series = {}
    # node -> (since_s, offset_ms, rate): the setting in force, to extend a ramp until the next change
    current: dict[str, tuple[float, float, float]] = {}
    end_s = (end_ns - t0_ns) / 1e9

    def offset_at(node: str, t_s: float) -> float:
        since_s, offset_ms, rate = current.get(node, (0.0, 0.0, 1.0))
        return offset_ms + (rate - 1.0) * (t_s - since_s) * 1000

    def set_offset(node: str, t_s: float, offset_ms: float, rate: float) -> None:
        points = series.setdefault(node, [(0.0, 0.0)])
        points.append((t_s, offset_at(node, t_s)))  # where the previous setting had got to
        points.append((t_s, offset_ms))
        current[node] = (t_s, offset_ms, rate)

    for op in ops:
        value = _value(op)
        if value is None or op.f not in ("start-clock", "stop-clock") or "offsets_ms" not in value:
            continue
        t_s = (op.time_ns - t0_ns) / 1e9
        rates = value.get("rates") or {}
        for node, offset_ms in sorted(value["offsets_ms"].items()):
            rate = float(rates.get(node, 1.0))
            set_offset(node, t_s, float(offset_ms), rate)
        if value.get("mode") == "strobe" and value.get("period_ms"):
            period_s = float(value["period_ms"]) / 1000
            stop_s = min(t_s + float(value.get("duration_ms", 0)) / 1000, end_s)
            flips = int((stop_s - t_s) / period_s)
            for node, low_ms in sorted(value["offsets_ms"].items()):
                points = series[node]
                for k in range(1, flips + 1):
                    at = t_s + k * period_s
                    high = k % 2 == 1
                    points.append((at, float(low_ms) + (0 if high else float(value["delta_ms"]))))
                    points.append((at, float(low_ms) + (float(value["delta_ms"]) if high else 0)))
                if flips % 2 == 1:
                    points.append((stop_s, float(low_ms) + float(value["delta_ms"])))
                    points.append((stop_s, float(low_ms)))
    for node, points in series.items():
        points.append((end_s, offset_at(node, end_s)))
    return series


def write(
    ops: Sequence[Op], *, t0_ns: int, end_ns: int, windows: Sequence[plots.Window], run_dir: Path
) -> dict[str, str] | None:
    """Draw the plot when the history has clock faults; write it beside the report; None otherwise."""
    series = clock_series(ops, t0_ns=t0_ns, end_ns=end_ns)
    if not series:
        return None
    png = plots.clock_offset_plot(series, windows)
    (run_dir / FILE_NAME).write_bytes(png)
    return {"file": FILE_NAME, "title": TITLE, "base64": base64.b64encode(png).decode("ascii")}
