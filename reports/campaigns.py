"""``store/campaigns/index.html``: every campaign across nights, so a regression shows as a jump.

For each campaign name: its executions newest first (counts and exit code);
the newest execution's matrix (one row per entry, one cell per seed, coloured
by verdict, linked to the run's report); and per entry, the trend over
executions of ops/s, latency p99, availability and time to recover, drawn as
small inline SVG lines (no script, no fetch). An entry whose outcome flips
between pass and fail across executions on the same build (same ``build``
digest of the system under test) is marked flaky: on a build that did not
change, only timing can have changed.

It reads only ``campaign.json`` files, never histories, so it stays cheap.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reports.build import environment, template_text, write_atomically

INDEX_NAME = "index.html"
TREND_FIGURES = (
    ("ops_per_s", "ops/s"),
    ("latency_ms_p99", "p99 ms"),
    ("availability", "availability"),
    ("recover_s_max", "recover s"),
)
SPARK_W, SPARK_H = 120, 28


@dataclass(slots=True)
class Execution:
    path: str  # relative to store/campaigns
    document: dict[str, Any]

    @property
    def started_at(self) -> str:
        return str(self.document.get("started_at", ""))


@dataclass(slots=True)
class Entry:
    """One campaign entry (scenario + bug + overrides) across executions."""

    label: str
    cells: dict[int, dict[str, Any]] = field(default_factory=dict)  # seed -> newest record
    never_reached: set[str] | None = None  # classes no seed of the newest execution reached
    trends: dict[str, list[float]] = field(default_factory=dict)
    outcomes_by_build: dict[str, set[str]] = field(default_factory=dict)

    @property
    def flaky(self) -> bool:
        return any({"pass", "fail"} <= outcomes for outcomes in self.outcomes_by_build.values())


def entry_label(record: dict[str, Any]) -> str:
    """The cell id without its seed: the same entry on every night whatever the seeds were."""
    cell_id = str(record.get("id", ""))
    suffix = f"-s{record.get('seed')}"
    return cell_id[: -len(suffix)] if cell_id.endswith(suffix) else cell_id


def find_executions(campaigns_dir: Path) -> dict[str, list[Execution]]:
    by_name: dict[str, list[Execution]] = {}
    for path in sorted(campaigns_dir.glob("*/*/campaign.json")):
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError):
            continue
        if not isinstance(document, dict) or not isinstance(document.get("runs"), list):
            continue
        rel = path.parent.relative_to(campaigns_dir).as_posix()
        by_name.setdefault(str(document.get("campaign", path.parent.parent.name)), []).append(
            Execution(rel, document)
        )
    for executions in by_name.values():
        executions.sort(key=lambda e: e.started_at, reverse=True)
    return by_name


def spark(values: list[float]) -> str:
    """Points of an SVG polyline for values oldest -> newest (empty: fewer than two points)."""
    if len(values) < 2:
        return ""
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    step = SPARK_W / (len(values) - 1)
    return " ".join(
        f"{i * step:.1f},{SPARK_H - 2 - (v - lo) / span * (SPARK_H - 4):.1f}" for i, v in enumerate(values)
    )


def entries_of(executions: list[Execution]) -> list[Entry]:
    entries: dict[str, Entry] = {}
    for execution in reversed(executions):  # oldest first, so the newest record of a cell wins
        build = str(execution.document.get("build", ""))
        per_entry: dict[str, dict[str, list[float]]] = {}
        for record in execution.document["runs"]:
            if not isinstance(record, dict):
                continue
            label = entry_label(record)
            entry = entries.setdefault(label, Entry(label))
            if record.get("verdict") != "not-run":
                entry.cells[int(record.get("seed", 0))] = {**record, "campaign_path": execution.path}
                entry.outcomes_by_build.setdefault(build, set()).add(str(record.get("outcome")))
            figures = per_entry.setdefault(label, {})
            for key, _ in TREND_FIGURES:
                value = record.get(key)
                if isinstance(value, int | float):
                    figures.setdefault(key, []).append(float(value))
        for label in {entry_label(r) for r in execution.document["runs"] if isinstance(r, dict)}:
            missing = [
                set(r["coverage_missing"])
                for r in execution.document["runs"]
                if isinstance(r, dict)
                and entry_label(r) == label
                and isinstance(r.get("coverage_missing"), list)
            ]
            entries[label].never_reached = set.intersection(*missing) if missing else None
        for label, figures in per_entry.items():
            for key, values in figures.items():
                entries[label].trends.setdefault(key, []).append(sum(values) / len(values))
    return sorted(entries.values(), key=lambda e: e.label)


def write_campaigns_index(store_dir: Path) -> Path | None:
    """Write ``store/campaigns/index.html`` (None: no campaign has run in this store)."""
    campaigns_dir = Path(store_dir) / "campaigns"
    by_name = find_executions(campaigns_dir) if campaigns_dir.is_dir() else {}
    if not by_name:
        return None
    campaigns = []
    for name, executions in sorted(by_name.items()):
        entries = entries_of(executions)
        seeds = sorted({seed for entry in entries for seed in entry.cells})
        campaigns.append(
            {
                "name": name,
                "executions": executions,
                "entries": entries,
                "seeds": seeds,
                "flaky": [e.label for e in entries if e.flaky],
                "sparks": {
                    e.label: {key: spark(e.trends.get(key, [])) for key, _ in TREND_FIGURES} for e in entries
                },
                "last": {
                    e.label: {key: (e.trends.get(key) or [None])[-1] for key, _ in TREND_FIGURES}
                    for e in entries
                },
            }
        )
    html = (
        environment()
        .get_template("campaigns.html.j2")
        .render(
            css=template_text("report.css"),
            campaigns=campaigns,
            figures=TREND_FIGURES,
            spark_w=SPARK_W,
            spark_h=SPARK_H,
            report_link=_report_link,
        )
    )
    path = campaigns_dir / INDEX_NAME
    write_atomically(path, html)
    return path


def _report_link(record: dict[str, Any]) -> str | None:
    """Link from store/campaigns/index.html to a run's report (or its directory)."""
    base = record.get("campaign_path")
    target = record.get("report") or record.get("run_dir")
    if not base or not target:
        return None
    return os.path.normpath(f"{base}/{target}").replace(os.sep, "/")
