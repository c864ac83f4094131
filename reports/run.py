"""Read one stored run (contracts §6) into the plain records a report is built from.

A report is most needed when a run went wrong, and then its files may be
partial: no results.json (the controller died before checking), a history
that does not parse, nodes without event logs. Each missing or broken part
becomes a warning shown at the top of the report, never an exception that
leaves the person with no report at all.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from checkers.history import HistoryFormatError, Op, read_history


@dataclass(frozen=True, slots=True)
class Run:
    """Everything read from one run directory."""

    directory: Path
    test: dict[str, Any]
    results: dict[str, Any]
    ops: list[Op]
    warnings: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        """``valid``, ``anomaly`` or ``unknown`` (contracts §5: false > unknown > true)."""
        return verdict_of(self.results.get("valid", "unknown"))


def verdict_of(valid: Any) -> str:
    if valid is True:
        return "valid"
    if valid is False:
        return "anomaly"
    return "unknown"


def load_run(run_dir: Path) -> Run:
    """Read test.json, results.json and history.jsonl, turning each problem into a warning."""
    warnings: list[str] = []
    test = _read_json_object(run_dir / "test.json", warnings)
    results = _read_json_object(run_dir / "results.json", warnings)
    if not results:
        results = {"valid": "unknown", "checkers": {}}
    ops: list[Op] = []
    history = run_dir / "history.jsonl"
    if history.is_file():
        try:
            ops = read_history(history, "jsonl")
        except HistoryFormatError as exc:
            warnings.append(f"history.jsonl could not be read, so the timeline and plots are empty: {exc}")
    else:
        warnings.append("history.jsonl is missing, so the timeline and plots are empty")
    return Run(run_dir, test, results, ops, warnings)


def _read_json_object(path: Path, warnings: list[str]) -> dict[str, Any]:
    if not path.is_file():
        warnings.append(f"{path.name} is missing")
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        warnings.append(f"{path.name} is not valid JSON: {exc}")
        return {}
    if not isinstance(value, dict):
        warnings.append(f"{path.name} holds a {type(value).__name__}, not a JSON object")
        return {}
    return value


# test.json is the harness's (contracts §6 names the file, not every field), so the
# report reads the few fields it shows under the names the harness may use.


def scenario_name(test: dict[str, Any], run_dir: Path) -> str:
    for name in ("scenario", "name"):
        value = test.get(name)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, dict) and isinstance(value.get("name"), str):
            return str(value["name"])
    return run_dir.parent.name or "unknown"


def seed_of(test: dict[str, Any]) -> Any:
    seed = test.get("seed")
    if seed is None and isinstance(test.get("scenario"), dict):
        seed = test["scenario"].get("seed")
    return seed


def reproduce_command(test: dict[str, Any]) -> str | None:
    """The exact command that reproduces the run, as recorded by the harness."""
    for name in ("reproduce", "reproduce_command", "command_line", "command", "argv"):
        value = test.get(name)
        if isinstance(value, str) and value.strip():
            return value
        if isinstance(value, list) and value and all(isinstance(part, str) for part in value):
            return shlex.join(value)
    return None


def node_names(test: dict[str, Any], run_dir: Path) -> list[str]:
    for holder in (test, test.get("cluster") if isinstance(test.get("cluster"), dict) else {}):
        value = holder.get("nodes") if isinstance(holder, dict) else None
        if isinstance(value, list):
            return [str(item.get("name", item)) if isinstance(item, dict) else str(item) for item in value]
        if isinstance(value, int) and not isinstance(value, bool):
            return [f"n{i + 1}" for i in range(value)]
    nodes = run_dir / "nodes"
    return sorted(p.name for p in nodes.iterdir() if p.is_dir()) if nodes.is_dir() else []


def duration_s(ops: list[Op], test: dict[str, Any]) -> float | None:
    if ops:
        return (max(op.time_ns for op in ops) - min(op.time_ns for op in ops)) / 1e9
    for name in ("duration_s", "time_limit_s", "time_limit"):
        value = test.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None
