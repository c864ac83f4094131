"""One record per campaign run, read from the files the run wrote; and the campaign's exit code.

A record holds what a nightly reader needs without opening the run: verdict,
reason, the anomaly in one sentence, op counts, availability, time to
recover, throughput and latency (for plots across nights), the run directory
and the command that reproduces it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from core.errors import EXIT_ANOMALY, EXIT_UNKNOWN, EXIT_VALID

VERDICTS = ("valid", "anomaly", "unknown", "not-run")
# What a run's outcome means for the campaign: pass (as expected), fail (a bug found where none was
# expected, or a planted bug missed), error (the run could not say), skipped (not started).
OUTCOMES = ("pass", "fail", "error", "skipped")


@dataclass(frozen=True, slots=True)
class RunRecord:
    id: str
    index: int
    scenario: str
    seed: int
    bug: str | None
    expect: str
    verdict: str
    outcome: str
    exit_code: int | None
    reason: str
    anomaly: str
    ops: int
    ok: int
    fail: int
    info: int
    availability: float | None
    recover_s_max: float | None
    ops_per_s: float | None
    latency_ms_p99: float | None
    coverage_missing: list[str] | None  # operation x state classes the run never reached (None: not measured)
    duration_s: float
    run_dir: str | None  # relative to the campaign directory
    report: str | None  # relative to the campaign directory
    reproduce: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(data: dict[str, Any]) -> RunRecord:
        return RunRecord(**{name: data.get(name) for name in RunRecord.__dataclass_fields__})  # type: ignore[arg-type]


def _json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def verdict_from(valid: Any, exit_code: int | None) -> str:
    if valid is True and exit_code == EXIT_VALID:
        return "valid"
    if valid is False:
        return "anomaly"
    return "unknown"


def outcome_of(verdict: str, expect: str) -> str:
    if verdict == "not-run":
        return "skipped"
    if verdict == "unknown":
        return "error"
    return "pass" if verdict == expect else "fail"


def _run_dir(store: Path) -> Path | None:
    """The run directory a child wrote in its own store (``latest`` points at it)."""
    latest = store / "latest"
    if latest.is_symlink() or latest.is_dir():
        target = latest.resolve()
        if target.is_dir():
            return target
    runs = [p.parent for p in store.glob("*/*/test.json")]
    return max(runs, key=lambda p: p.name) if runs else None


def _anomaly_sentence(run_dir: Path, results: dict[str, Any]) -> str:
    summary = _json(run_dir / "report.json")
    for key in ("anomaly_sentence", "anomaly", "headline"):
        value = summary.get(key)
        if isinstance(value, str) and value:
            return value
    if isinstance(results.get("anomaly"), str):
        return str(results["anomaly"])
    for name, checker in sorted(results.get("checkers", {}).items()):
        if isinstance(checker, dict) and checker.get("valid") is False:
            text = checker.get("summary") or checker.get("explanation") or ""
            return f"{name} found an anomaly" + (f": {text}" if text else "")
    return ""


def _figures(results: dict[str, Any], elapsed_s: float | None) -> dict[str, Any]:
    checkers = results.get("checkers", {}) if isinstance(results.get("checkers"), dict) else {}
    totals = checkers.get("stats", {}).get("totals", {}) if isinstance(checkers.get("stats"), dict) else {}
    ok, fail, info = (int(totals.get(k, 0) or 0) for k in ("ok", "fail", "info"))
    availability = None
    recover_s_max = None
    avail = checkers.get("availability", {})
    if isinstance(avail, dict):
        fraction = avail.get("overall", {}).get("ok_fraction")
        availability = round(float(fraction), 4) if isinstance(fraction, int | float) else None
        recoveries = [
            w.get("recovery", {}).get("recover_ns_max")
            for w in avail.get("windows", [])
            if isinstance(w, dict) and isinstance(w.get("recovery"), dict)
        ]
        known = [r for r in recoveries if isinstance(r, int | float)]
        recover_s_max = round(max(known) / 1e9, 3) if known else None
    p99s = [
        v.get("p99_ms")
        for v in checkers.get("perf", {}).get("latency_ok_by_f", {}).values()
        if isinstance(v, dict) and isinstance(v.get("p99_ms"), int | float)
    ]
    ops_per_s = round(ok / elapsed_s, 1) if elapsed_s and elapsed_s > 0 else None
    coverage = results.get("coverage")
    missing = coverage.get("missing") if isinstance(coverage, dict) else None
    return {
        "coverage_missing": [str(m) for m in missing] if isinstance(missing, list) else None,
        "ok": ok,
        "fail": fail,
        "info": info,
        "ops": ok + fail + info,
        "availability": availability,
        "recover_s_max": recover_s_max,
        "ops_per_s": ops_per_s,
        "latency_ms_p99": round(max(p99s), 3) if p99s else None,
    }


def record_from_run_dir(
    cell: Any, *, store: Path, campaign_dir: Path, exit_code: int | None, duration_s: float
) -> RunRecord:
    run_dir = _run_dir(store)
    results = _json(run_dir / "results.json") if run_dir else {}
    test = _json(run_dir / "test.json") if run_dir else {}
    time_limit_s = test.get("test", {}).get("time_limit_s") if isinstance(test.get("test"), dict) else None
    valid = results.get("valid", "unknown")
    verdict = verdict_from(valid, exit_code)
    if run_dir is None:
        reason = f"the run left no run directory (exit code {exit_code}; see output.log)"
    elif not results:
        reason = "the run did not finish (no results.json)"
    else:
        reason = str(results.get("reason") or "")
        if verdict == "unknown" and not reason:
            reason = f"exit code {exit_code}"
    figures = _figures(results, time_limit_s if isinstance(time_limit_s, int | float) else None)
    rel = os.path.relpath(run_dir, campaign_dir) if run_dir else None
    report = run_dir / "report.html" if run_dir else None
    reproduce = (
        f"ratchet run --replay {run_dir}" if run_dir else "ratchet " + " ".join(cell.run_argv(store=store))
    )
    return RunRecord(
        **_cell_fields(cell),
        verdict=verdict,
        outcome=outcome_of(verdict, cell.run.expect),
        exit_code=exit_code,
        reason=reason,
        anomaly=_anomaly_sentence(run_dir, results) if run_dir and verdict == "anomaly" else "",
        duration_s=round(duration_s, 3),
        run_dir=rel,
        report=os.path.relpath(report, campaign_dir) if report and report.is_file() else None,
        reproduce=reproduce,
        **figures,
    )


def skipped_record(cell: Any, *, why: str) -> RunRecord:
    return RunRecord(
        **_cell_fields(cell),
        verdict="not-run",
        outcome="skipped",
        exit_code=None,
        reason=why,
        anomaly="",
        duration_s=0.0,
        run_dir=None,
        report=None,
        reproduce="ratchet " + " ".join(cell.run_argv(store=Path("store"))),
        **_figures({}, None),
    )


def _cell_fields(cell: Any) -> dict[str, Any]:
    """What a record says of the cell itself, run or not."""
    return {
        "id": cell.id,
        "index": cell.index,
        "scenario": cell.run.scenario,
        "seed": cell.seed,
        "bug": cell.run.bug,
        "expect": cell.run.expect,
    }


def campaign_exit_code(records: list[RunRecord], *, interrupted: bool) -> int:
    """The worst of the runs: 1 (a run failed its expectation) > 2 (unknown, or stopped early) > 0.

    Runs a time budget left unstarted are reported as skipped but do not change the code: the
    budget is the user's own choice of how much to run.
    """
    outcomes = {r.outcome for r in records}
    if "fail" in outcomes:
        return EXIT_ANOMALY
    if "error" in outcomes or interrupted:
        return EXIT_UNKNOWN
    return EXIT_VALID
