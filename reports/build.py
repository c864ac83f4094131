"""Build ``report.html`` for one stored run: the page a person opens when a run fails.

One self-contained file: CSS and JavaScript inlined, plots embedded as base64
PNGs (and also written beside it), the timeline's data embedded as one JSON
object. It opens from disk, from a CI artifact or through ``ratchet serve``,
with no network. Values from the history and the node logs reach the page
only through jinja2's autoescaping, escaped JSON, or the page script's
``textContent``, so a key like ``<script>`` is shown, never run.
"""

from __future__ import annotations

import json
import math
import os
import time
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from reports import anomaly as anomaly_view
from reports import clockplot, perfdata
from reports import convergence as convergence_view
from reports import coverage as coverage_view
from reports import nodes as node_view
from reports.run import (
    Run,
    crashed_nodes,
    duration_s,
    load_run,
    node_names,
    planted_bug,
    replay_command,
    reproduce_command,
    scenario_name,
    seed_of,
    unfinished_reason,
    verdict_of,
)
from reports.summaries import summary as checker_summary
from reports.timeline import pair_bars, timeline_columns

REPORT_NAME = "report.html"
SUMMARY_NAME = "report.json"
VERDICT_TITLES = {"valid": "Valid", "anomaly": "Anomaly found", "unknown": "Unknown"}


def write_atomically(path: Path, text: str) -> None:
    """Write beside, then rename: a reader (``ratchet serve``, a browser) never sees half a page."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def template_text(name: str) -> str:
    return resources.files("reports").joinpath("templates", name).read_text(encoding="utf-8")


def environment() -> jinja2.Environment:
    """Autoescaping on for every template: history values are hostile until shown otherwise."""
    return jinja2.Environment(
        loader=jinja2.FunctionLoader(template_text),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=False,
    )


def script_json(value: Any) -> str:
    """JSON safe inside a ``<script>`` element: no ``<``, ``>`` or ``&`` survive literally."""
    try:
        text = json.dumps(value, separators=(",", ":"), default=str, allow_nan=False)
    except ValueError:  # NaN or Infinity in a history value: JSON.parse would reject them
        text = json.dumps(_finite(value), separators=(",", ":"), default=str, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _finite(value: Any) -> Any:
    """The value with every non-finite float replaced by its name ("NaN", "Infinity")."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def _reason(run: Run, anomalies: list[anomaly_view.Anomaly]) -> str:
    """The banner's one line: why the run ended as it did, what broke, or why the verdict is what it is."""
    crashed = crashed_nodes(run.results)
    unfinished = unfinished_reason(run.results)
    if unfinished is not None:
        if anomalies:
            unfinished += f" ({anomaly_view.sentence(anomalies[0])})"
        return unfinished + (f"; {crashed}" if crashed else "")
    return _verdict_reason(run, anomalies) + (f"; {crashed}" if crashed else "")


def _verdict_reason(run: Run, anomalies: list[anomaly_view.Anomaly]) -> str:
    if anomalies:
        return anomaly_view.sentence(anomalies[0])
    checkers = run.results.get("checkers") if isinstance(run.results.get("checkers"), dict) else {}
    if run.verdict == "unknown":
        for name, entry in (checkers or {}).items():
            if isinstance(entry, dict) and entry.get("valid") not in (True, False):
                why = next(
                    (entry[k] for k in ("reason", "error", "message") if isinstance(entry.get(k), str)), None
                )
                return f"{name} could not decide" + (f": {why}" if why else "")
        if run.results.get("reason"):
            return str(run.results["reason"])
        return "no checker reached a verdict"
    if run.verdict == "valid":
        return f"all {len(checkers or {})} checkers passed"
    return "a checker reported the history invalid"


def _op_summary(columns: dict[str, Any]) -> str:
    counts = [0, 0, 0, 0]
    nemesis_lane = columns["lanes"].index("nemesis") if "nemesis" in columns["lanes"] else -1
    for lane, outcome in zip(columns["ops"]["lane"], columns["ops"]["o"], strict=True):
        if lane != nemesis_lane:
            counts[outcome] += 1
    total = sum(counts)
    return f"{total:,} ({counts[0]:,} ok, {counts[1]:,} fail, {counts[2] + counts[3]:,} info)"


def _checker_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    checkers = results.get("checkers")
    rows = []
    for name, entry in checkers.items() if isinstance(checkers, dict) else []:
        valid = entry.get("valid") if isinstance(entry, dict) else entry
        rows.append(
            {
                "name": name,
                "verdict": verdict_of(valid),
                "summary": checker_summary(name, entry),
                "evidence": json.dumps(entry, indent=2, default=str)[:200_000],
            }
        )
    return rows


def _node_sections(
    run: Run, clock: node_view.Clock, focus_ns: int | None, nodes: list[node_view.NodeFiles]
) -> list[dict[str, Any]]:
    sections = []
    for node in nodes:
        relative = node.directory.relative_to(run.directory).as_posix()
        lines: list[tuple[int, str, bool]] = []
        note = "no node.log"
        if node.log_path is not None:
            node_clock = node_view.clock_for_node(clock, node)
            piece = node_view.excerpt(node.log_path, clock=node_clock, focus_ns=focus_ns)
            lines, note = piece.lines, piece.note
        if node.events_bad_lines:
            note += f"; {node.events_bad_lines} unreadable event line(s) skipped"
        storage = node_view.storage_summary(node.events)
        if storage:
            note += f"; {storage}"
        has_events = (node.directory / "events.jsonl").is_file()
        others = sorted(
            p.name + ("/" if p.is_dir() else "")
            for p in node.directory.iterdir()
            if p.name not in ("node.log", "events.jsonl")
        )
        sections.append(
            {
                "name": node.name,
                "note": note,
                "lines": lines,
                "log": f"{relative}/node.log" if node.log_path is not None else None,
                "events": f"{relative}/events.jsonl" if has_events else None,
                "event_count": len(node.events),
                "others": [(name, f"{relative}/{name}") for name in others[:20]],
            }
        )
    return sections


def _prefix_markers(run: Run, found: list[anomaly_view.Anomaly], t0_ns: int) -> list[dict[str, Any]]:
    """A timeline marker where the longest linearizable prefix ends (an event position in the history)."""
    marks = []
    for anomaly in found:
        position = anomaly.through_event
        if position is not None and 0 <= position < len(run.ops):
            marks.append(
                {
                    "t": run.ops[position].time_ns - t0_ns,
                    "kind": "prefix",
                    "node": None,
                    "view": None,
                    "label": f"{anomaly.checker}: linearizable up to here (event {position})",
                }
            )
    return marks


def _focus_ns(anomalies: list[anomaly_view.Anomaly]) -> int | None:
    """The anomaly's time, relative to the first op: where the node logs are worth reading."""
    for found in anomalies:
        if found.first is not None:
            return found.first.start_ns
        if found.ops:
            return found.ops[-1].start_ns
    return None


def _duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def write_run_report(run_dir: Path) -> Path:
    """Write ``run_dir/report.html`` (and the plot PNGs beside it); return the report's path."""
    started = time.perf_counter()
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    bars = pair_bars(run.ops)
    columns = timeline_columns(run.ops, bars)
    bar_index = anomaly_view.BarIndex(run.ops, bars)
    found = anomaly_view.anomalies(run.results, bar_index)
    perf = perfdata.prepare_or_explain(run.ops, t0_ns=columns["t0_ns"])
    nodes = node_view.load_nodes(run_dir)
    clock = node_view.clock_from_test(run.test, t0_ns=columns["t0_ns"], end_ns=columns["end_ns"])
    columns["faults"] = perf.timeline_faults
    columns["markers"] = node_view.markers(nodes, clock) + _prefix_markers(run, found, columns["t0_ns"])
    columns["anomaly_indices"] = sorted({i for a in found for i in a.history_indices})
    plots = perfdata.write_plots(perf, run_dir)
    end_ns = columns["t0_ns"] + columns["end_ns"]  # the timeline's end is relative to its t0
    clock_plot = clockplot.write(
        run.ops,
        t0_ns=columns["t0_ns"],
        end_ns=end_ns,
        windows=perfdata.shaded_windows(perf, end_ns=end_ns),
        run_dir=run_dir,
    )
    context = {
        "css": template_text("report.css"),
        "timeline_js": template_text("timeline.js"),
        "timeline_json": script_json(columns),
        "verdict": run.verdict,
        "verdict_title": VERDICT_TITLES[run.verdict],
        "reason": _reason(run, found),
        "scenario": scenario_name(run.test, run_dir),
        "seed": seed_of(run.test) if seed_of(run.test) is not None else "unknown",
        "duration": _duration_text(duration_s(run.ops, run.test)),
        "nodes": node_names(run.test, run_dir),
        "op_summary": _op_summary(columns),
        "fault_summary": perf.fault_summary,
        "reproduce": reproduce_command(run.test),
        "replay": replay_command(run.test, run_dir),
        "bug": planted_bug(run.test),
        "warnings": run.warnings + perf.warnings,
        "teardown_errors": [anomaly_view.compact(e, 500) for e in run.results.get("teardown_errors") or []],
        "anomalies": found,
        "undecided": anomaly_view.undecided(run.results, bar_index),
        "checkers": _checker_rows(run.results),
        "convergence": convergence_view.section(run.results),
        "coverage": coverage_view.rows(run.results),
        "plots": plots,
        "clock_plot": clock_plot,
        "plots_note": "This history has no completed ops to plot." if not plots else "",
        "availability": perf.availability_rows,
        "availability_note": perf.availability_note,
        "never_recovered": perf.never_recovered,
        "recovered": run.results.get("recovered"),  # the harness's own health check after the final heal
        "node_sections": _node_sections(run, clock, _focus_ns(found), nodes),
        "run_dir_name": f"{run_dir.parent.name}/{run_dir.name}",
    }
    context["build_s"] = f"{time.perf_counter() - started:.2f}"
    html = environment().get_template("report.html.j2").render(context)
    path = run_dir / REPORT_NAME
    write_atomically(path, html)
    _write_summary(run, columns, perf, context)
    return path


def _write_summary(run: Run, columns: dict[str, Any], perf: perfdata.Perf, context: dict[str, Any]) -> None:
    """A few numbers for the store index, so it need not re-read every history."""
    summary = {
        "verdict": run.verdict,
        "reason": context["reason"],
        "scenario": context["scenario"],
        "seed": seed_of(run.test),
        "duration_s": duration_s(run.ops, run.test),
        "op_count": sum(1 for lane in columns["ops"]["lane"] if columns["lanes"][lane] != "nemesis"),
        "faults": perf.fault_kinds,
        "nodes": context["nodes"],
    }
    write_atomically(run.directory / SUMMARY_NAME, json.dumps(summary, indent=2, default=str))
