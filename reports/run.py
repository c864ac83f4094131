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


DID_NOT_FINISH = (
    "the run did not finish: it wrote no results.json (its controller was killed, or the machine "
    "stopped, before the run could record its end)"
)
CHECKING_FAILED = "checking failed"


def run_completed(results: dict[str, Any]) -> bool:
    """Did the run get to its end (contracts §5: ``completed``)?

    Older results.json files have no ``completed``: a run that did not complete
    always gave a ``reason``, and a checker failure is the only reason a
    completed run gives.
    """
    if "completed" in results:
        return results["completed"] is True
    reason = results.get("reason")
    return not reason or str(reason).startswith(CHECKING_FAILED)


def unfinished_reason(results: dict[str, Any]) -> str | None:
    """Why a run that did not complete has no verdict, in one line (None when it completed)."""
    if run_completed(results):
        return None
    reason = str(results.get("reason") or "the run did not complete")
    seen = results.get("history_valid")
    if seen is False:
        return f"{reason}; the part of the history it recorded already holds an anomaly (see below)"
    if seen is True:
        return f"{reason}; the part of the history it recorded is consistent, which says nothing of the rest"
    return reason


def crashed_nodes(results: dict[str, Any]) -> str | None:
    """``a node crashed: n2 (exit code 1)``: nodes that ended on their own during the run."""
    exits = results.get("node_exits")
    if not isinstance(exits, list) or not exits:
        return None
    named = [
        f"{e.get('node', '?')} (exit code {e.get('exit_code', '?')})" for e in exits if isinstance(e, dict)
    ]
    if not named:
        return None
    return ("a node crashed: " if len(named) == 1 else "nodes crashed: ") + ", ".join(named)


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
        results = {"valid": "unknown", "checkers": {}, "completed": False, "reason": DID_NOT_FINISH}
    results = _typed_results(results, warnings)
    ops: list[Op] = []
    history = run_dir / "history.jsonl"
    if history.is_file():
        try:
            ops = read_history(history, "jsonl")
            torn = torn_tail_bytes(history)
            if torn:
                warnings.append(
                    f"the last line of history.jsonl is torn ({torn:,} bytes with no newline at the end: "
                    "a crashed writer or a full disk leaves this); it is left out and every line before "
                    "it is shown and checked"
                )
        except HistoryFormatError as exc:
            ops, skipped = read_leniently(history)
            warnings.append(
                f"history.jsonl does not pass the checkers' reader ({exc}); the report shows the "
                f"{len(ops):,} op(s) that parse"
                + (f" and skips {skipped:,} line(s) that do not" if skipped else "")
            )
        except (OSError, UnicodeDecodeError) as exc:
            warnings.append(f"history.jsonl could not be read, so the timeline and plots are empty: {exc}")
    else:
        warnings.append("history.jsonl is missing, so the timeline and plots are empty")
    return Run(run_dir, test, results, ops, warnings)


# results.json fields the report reads, and the type each must have (contracts §5).
RESULTS_FIELD_TYPES: dict[str, type] = {
    "checkers": dict,
    "teardown": list,
    "teardown_errors": list,
    "node_exits": list,
}


def _typed_results(results: dict[str, Any], warnings: list[str]) -> dict[str, Any]:
    """A results.json field of the wrong type is dropped with a warning, so the rest still renders."""
    typed = dict(results)
    for name, kind in RESULTS_FIELD_TYPES.items():
        if name in typed and not isinstance(typed[name], kind):
            warnings.append(
                f"results.json: {name} should be a {kind.__name__}, not {type(typed[name]).__name__}; ignored"
            )
            typed[name] = kind()
    if not all(isinstance(v, dict) for v in typed.get("checkers", {}).values()):
        warnings.append("results.json: a checkers entry is not an object; those entries are ignored")
        typed["checkers"] = {k: v for k, v in typed["checkers"].items() if isinstance(v, dict)}
    return typed


def torn_tail_bytes(path: Path) -> int:
    """How many bytes follow the last newline of ``path`` (a line its writer never finished); 0 if none."""
    with path.open("rb") as handle:
        size = handle.seek(0, 2)
        start = max(0, size - 65536)
        handle.seek(start)
        tail = handle.read()
    cut = tail.rfind(b"\n")
    rest = tail[cut + 1 :] if cut >= 0 else tail
    return len(rest) if rest.strip() else 0


def read_leniently(path: Path) -> tuple[list[Op], int]:
    """Every line that is a valid op on its own, and how many lines were skipped.

    For the report only: a history the checkers reject (a torn last line from
    a killed controller, a completion with no invocation) is still worth
    drawing, because the drawing is how a person sees what is wrong with it.
    """
    ops: list[Op] = []
    skipped = 0
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                ops.append(Op.from_json(json.loads(line)))
            except (ValueError, HistoryFormatError):
                skipped += 1
    return ops, skipped


def _read_json_object(path: Path, warnings: list[str]) -> dict[str, Any]:
    if not path.is_file():
        warnings.append(f"{path.name} is missing")
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:  # deep nesting: RecursionError
        warnings.append(f"{path.name} is not valid JSON: {exc}")
        return {}
    if not isinstance(value, dict):
        warnings.append(f"{path.name} holds a {type(value).__name__}, not a JSON object")
        return {}
    return value


# test.json is the harness's: {"test": <the resolved scenario>, "seed", "command_line",
# "cluster": {"nodes": {name: address}}, ...}. The report reads the few fields it shows
# there first, then at the top level (older or hand-written files), and shows "unknown"
# rather than failing when a field is absent.


def _sections(test: dict[str, Any]) -> list[dict[str, Any]]:
    inner = test.get("test")
    return [inner, test] if isinstance(inner, dict) else [test]


def scenario_name(test: dict[str, Any], run_dir: Path) -> str:
    for section in _sections(test):
        for name in ("scenario", "name"):
            value = section.get(name)
            if isinstance(value, str) and value:
                return value
            if isinstance(value, dict) and isinstance(value.get("name"), str):
                return str(value["name"])
    return run_dir.parent.name or "unknown"


def seed_of(test: dict[str, Any]) -> Any:
    for section in _sections(test):
        if section.get("seed") is not None:
            return section["seed"]
    return None


def planted_bug(test: dict[str, Any]) -> str | None:
    for section in _sections(test):
        bug = section.get("bug")
        if isinstance(bug, str) and bug:
            return bug
    return None


def fault_kinds_configured(test: dict[str, Any]) -> list[str]:
    for section in _sections(test):
        nemesis = section.get("nemesis")
        if isinstance(nemesis, dict) and isinstance(nemesis.get("faults"), list):
            return [str(f) for f in nemesis["faults"]]
        if isinstance(nemesis, list):
            return [str(f) for f in nemesis]
    return []


_LAUNCHERS = ("ratchet", "cli.py", "__main__.py")


def reproduce_command(test: dict[str, Any]) -> str | None:
    """The command line that started the run, as the person would type it again.

    The harness records ``[python, argv[0], *args]``; when argv[0] is the
    ``ratchet`` launcher that becomes ``ratchet <args>``.
    """
    for name in ("reproduce", "reproduce_command", "command_line", "command", "argv"):
        value = test.get(name)
        if isinstance(value, str) and value.strip():
            return value
        if isinstance(value, list) and value and all(isinstance(part, str) for part in value):
            for position, part in enumerate(value[:3]):
                if Path(part).name in _LAUNCHERS:
                    return shlex.join(["ratchet", *value[position + 1 :]])
            return shlex.join(value)
    return None


def replay_command(test: dict[str, Any], run_dir: Path) -> str | None:
    """``ratchet run --replay <store>/<scenario>/<stamp>``: the same scenario and seed, from the store."""
    store_dir = next((s["store_dir"] for s in _sections(test) if isinstance(s.get("store_dir"), str)), None)
    if store_dir is None:
        return None
    return shlex.join(
        ["ratchet", "run", "--replay", f"{store_dir.rstrip('/')}/{run_dir.parent.name}/{run_dir.name}"]
    )


def node_names(test: dict[str, Any], run_dir: Path) -> list[str]:
    holders: list[Any] = [test.get("cluster"), *_sections(test)]
    for holder in holders:
        value = holder.get("nodes") if isinstance(holder, dict) else None
        if isinstance(value, dict) and value:
            return [str(name) for name in value]
        if isinstance(value, list):
            return [str(item.get("name", item)) if isinstance(item, dict) else str(item) for item in value]
    nodes = run_dir / "nodes"
    if nodes.is_dir():
        return sorted(p.name for p in nodes.iterdir() if p.is_dir())
    for section in _sections(test):
        count = section.get("nodes")
        if isinstance(count, int) and not isinstance(count, bool):
            return [f"n{i + 1}" for i in range(count)]
    return []


def duration_s(ops: list[Op], test: dict[str, Any]) -> float | None:
    if ops:
        return (max(op.time_ns for op in ops) - min(op.time_ns for op in ops)) / 1e9
    for section in _sections(test):
        for name in ("duration_s", "time_limit_s", "time_limit"):
            value = section.get(name)
            if isinstance(value, int | float) and not isinstance(value, bool):
                return float(value)
    return None
