"""The performance plots, drawn with matplotlib (Agg) when the report is built.

The numbers come from ``checkers.perf`` (the same data the checkers judge);
this module only draws them, every plot with the run's fault windows shaded,
so a latency spike can be read against the partition that caused it. Each
plot is a PNG written beside report.html and embedded in it as base64, so the
report is one file and the PNGs can still be linked or attached on their own.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator

OUTCOME_COLOURS = {"ok": "#3f9b68", "fail": "#d1495b", "info": "#e99d19"}
F_MARKERS = {"read": ".", "write": "^", "cas": "s", "append": "D"}
FAULT_COLOURS = {
    "partition": "#d1495b",
    "loss": "#e99d19",
    "pause": "#4285f4",
    "kill": "#3c3c3c",
    "clock": "#009688",
    "disk": "#7b5ea7",
    "corrupt": "#9c27b0",
}
QUANTILE_STYLES = {
    "p50": ("#1967d2", "-"),
    "p95": ("#e99d19", "-"),
    "p99": ("#d1495b", "-"),
    "max": ("#555555", ":"),
}
WIDTH_IN, HEIGHT_IN, DPI = 11.0, 3.4, 100
# Fixed margins instead of tight_layout (which measures every tick label, half the drawing time):
# room for the y label on the left, the title on top, the x label below and the legend on the right.
MARGINS = {"left": 0.065, "right": 0.865, "top": 0.90, "bottom": 0.15}


@dataclass(frozen=True, slots=True)
class Window:
    """A shaded fault window, seconds since the first op."""

    kind: str
    start_s: float
    end_s: float
    label: str


@dataclass(frozen=True, slots=True)
class LatencyPoint:
    time_s: float
    latency_ms: float
    outcome: str
    f: str


def literal(text: str) -> str:
    """Text matplotlib shows as written: ``$`` would start mathtext (and a lone one raises), and a
    leading ``_`` hides a legend entry; both can come from the history's f or a fault kind."""
    text = text.replace("$", r"\$")
    return " " + text if text.startswith("_") else text


def _figure() -> tuple[Figure, Axes]:
    # A bare Figure on the Agg canvas: no pyplot (its import and global figure registry cost more
    # than the drawing), nothing to close.
    fig = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(**MARGINS)
    ax = fig.subplots()
    ax.grid(True, color="#e3e6ea", linewidth=0.6)
    ax.set_axisbelow(True)
    ax.set_xlabel("time since first op (s)")
    return fig, ax


def _shade(ax: Axes, windows: Sequence[Window]) -> None:
    seen: set[str] = set()
    for window in windows:
        colour = FAULT_COLOURS.get(window.kind, "#888888")
        label = None if window.kind in seen else literal(f"{window.kind} fault")
        seen.add(window.kind)
        ax.axvspan(window.start_s, window.end_s, color=colour, alpha=0.10, linewidth=0, label=label)


def _log_y(ax: Axes) -> None:
    """Log scale with plain numbers (0.5, 2, 100) instead of powers of ten."""
    ax.set_yscale("log")
    plain = FuncFormatter(lambda value, _position: f"{value:g}")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda value, _position: ""))


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def _empty(ax: Axes, what: str) -> None:
    ax.text(
        0.5,
        0.5,
        f"no {what} in this history",
        transform=ax.transAxes,
        ha="center",
        va="center",
        color="#5f6b7a",
    )


def latency_scatter(points: Sequence[LatencyPoint], windows: Sequence[Window]) -> bytes:
    """Every completed op at its invocation time: colour by outcome, marker by f, log latency."""
    fig, ax = _figure()
    _shade(ax, windows)
    groups: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
    for point in points:
        xs, ys = groups.setdefault((point.outcome, point.f), ([], []))
        xs.append(point.time_s)
        ys.append(max(point.latency_ms, 1e-3))
    for (outcome, f), (xs, ys) in sorted(groups.items()):
        ax.plot(
            xs,
            ys,
            linestyle="none",
            marker=F_MARKERS.get(f, "o"),
            markersize=2.2 if f == "read" else 1.8,
            color=OUTCOME_COLOURS.get(outcome, "#888888"),
            alpha=0.6,
            label=literal(f"{f} {outcome}"),
            rasterized=True,
        )
    if points:
        _log_y(ax)
    else:
        _empty(ax, "completed ops")
    ax.set_ylabel("latency (ms)")
    ax.set_title("Latency of every op, by outcome and function")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, markerscale=3, frameon=False)
    return _png(fig)


def quantiles_plot(series: Mapping[str, Sequence[tuple[float, float]]], windows: Sequence[Window]) -> bytes:
    """Latency quantiles per time bucket (p50/p95/p99/max), log scale."""
    fig, ax = _figure()
    _shade(ax, windows)
    drawn = False
    for name, points in series.items():
        if not points:
            continue
        colour, style = QUANTILE_STYLES.get(name, ("#888888", "-"))
        ax.plot(
            [p[0] for p in points],
            [max(p[1], 1e-3) for p in points],
            style,
            color=colour,
            linewidth=1.3,
            label=name,
            drawstyle="steps-post",
        )
        drawn = True
    if drawn:
        _log_y(ax)
    else:
        _empty(ax, "ok ops")
    ax.set_ylabel("latency (ms)")
    ax.set_title("Latency quantiles over time (ok ops)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    return _png(fig)


def throughput_plot(series: Mapping[str, Sequence[tuple[float, float]]], windows: Sequence[Window]) -> bytes:
    """Completions per second per time bucket, one line per outcome."""
    fig, ax = _figure()
    _shade(ax, windows)
    drawn = False
    for name, points in series.items():
        if not points:
            continue
        ax.plot(
            [p[0] for p in points],
            [p[1] for p in points],
            color=OUTCOME_COLOURS.get(name, "#555555"),
            linewidth=1.3,
            label=name,
            drawstyle="steps-post",
        )
        drawn = True
    if not drawn:
        _empty(ax, "completed ops")
    ax.set_ylim(bottom=0)
    ax.set_ylabel("ops / s")
    ax.set_title("Throughput over time, by outcome")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    return _png(fig)


NODE_COLOURS = (
    "#1967d2",
    "#d1495b",
    "#3f9b68",
    "#e99d19",
    "#7b5ea7",
    "#009688",
    "#5f6b7a",
    "#9c27b0",
    "#795548",
)


def clock_offset_plot(
    series: Mapping[str, Sequence[tuple[float, float]]], windows: Sequence[Window]
) -> bytes:
    """Each node's clock offset from real time (ms, symmetric log scale: 4 ms and 4 minutes both show)."""
    fig, ax = _figure()
    _shade(ax, windows)
    for index, (node, points) in enumerate(sorted(series.items())):
        ax.plot(
            [p[0] for p in points],
            [p[1] for p in points],
            color=NODE_COLOURS[index % len(NODE_COLOURS)],
            linewidth=1.3,
            label=literal(node),
        )
    ax.set_yscale("symlog", linthresh=10.0)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _position: f"{value:g}"))
    ax.axhline(0.0, color="#5f6b7a", linewidth=0.6)
    ax.set_ylabel("clock offset (ms)")
    ax.set_title("Clock offset of each node from real time")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    return _png(fig)
