"""Build ``store/index.html``: every stored run, newest first, filterable by scenario and verdict.

The index is refreshed after every run, so it must stay cheap with thousands
of runs: it reads each run's small ``report.json`` summary (written beside
report.html) and falls back to test.json and results.json for runs that have
no report yet. It never re-reads histories.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reports.build import REPORT_NAME, SUMMARY_NAME, environment, script_json, template_text, write_atomically
from reports.run import (
    DID_NOT_FINISH,
    fault_kinds_configured,
    scenario_name,
    seed_of,
    unfinished_reason,
    verdict_of,
)

INDEX_NAME = "index.html"
RUN_MARKERS = ("test.json", "results.json", "history.jsonl")
_STAMP = re.compile(r"^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})")


@dataclass(frozen=True, slots=True)
class RunRow:
    path: str  # relative to the store, with forward slashes
    stamp: str
    when: str
    scenario: str
    verdict: str
    seed: str
    duration: str
    faults: str
    ops: str
    reason: str
    has_report: bool


def find_runs(store_dir: Path) -> list[Path]:
    """Run directories: ``<scenario>/<timestamp>/`` holding any of the run files; symlinks skipped."""
    runs: list[Path] = []
    if not store_dir.is_dir():
        return runs
    for scenario in store_dir.iterdir():
        if scenario.is_symlink() or not scenario.is_dir():
            continue
        for run in scenario.iterdir():
            if not run.is_symlink() and run.is_dir() and any((run / name).is_file() for name in RUN_MARKERS):
                runs.append(run)
    return runs


def _json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _when(stamp: str) -> str:
    match = _STAMP.match(stamp)
    if not match:
        return stamp
    y, mo, d, h, mi, s = match.groups()
    return f"{y}-{mo}-{d} {h}:{mi}:{s}"


def run_row(store_dir: Path, run: Path) -> RunRow:
    """One index row, from the report summary when there is one."""
    summary = _json(run / SUMMARY_NAME)
    test = _json(run / "test.json")
    results = _json(run / "results.json")
    verdict = summary.get("verdict") or verdict_of(results.get("valid", "unknown"))
    duration = summary.get("duration_s")
    faults = summary.get("faults")
    if faults is None:
        faults = fault_kinds_configured(test)
    ops = summary.get("op_count")
    seed = summary.get("seed", seed_of(test))
    return RunRow(
        path=run.relative_to(store_dir).as_posix(),
        stamp=run.name,
        when=_when(run.name),
        scenario=str(summary.get("scenario") or scenario_name(test, run)),
        verdict=str(verdict),
        seed="" if seed is None else str(seed),
        duration=f"{duration:.1f} s" if isinstance(duration, int | float) else "",
        faults=", ".join(str(f) for f in faults) if faults else "none",
        ops=f"{ops:,}" if isinstance(ops, int) else "",
        reason=str(summary.get("reason") or _reason_without_report(run, results))[:200],
        has_report=(run / REPORT_NAME).is_file(),
    )


def _reason_without_report(run: Path, results: dict[str, Any]) -> str:
    """Why a run that has no report.json ended as it did: from results.json, or "did not finish"."""
    if not (run / "results.json").is_file():
        return DID_NOT_FINISH
    return unfinished_reason(results) or str(results.get("reason") or "")


def write_index(store_dir: Path) -> Path:
    """Write ``store_dir/index.html`` listing every run, newest first; return its path."""
    store_dir = Path(store_dir)
    rows = [run_row(store_dir, run) for run in find_runs(store_dir)]
    rows.sort(key=lambda row: (row.stamp, row.scenario), reverse=True)
    counts = {
        verdict: sum(1 for row in rows if row.verdict == verdict)
        for verdict in ("valid", "anomaly", "unknown")
    }
    data = [{"scenario": row.scenario, "verdict": row.verdict} for row in rows]
    html = (
        environment()
        .get_template("index.html.j2")
        .render(
            css=template_text("report.css"),
            rows=rows,
            counts=counts,
            scenarios=sorted({row.scenario for row in rows}),
            data_json=script_json(data),
            has_campaigns=(store_dir / "campaigns" / INDEX_NAME).is_file(),
        )
    )
    path = store_dir / INDEX_NAME
    write_atomically(path, html)
    return path
