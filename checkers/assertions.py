"""Assertions: a node that tripped its own invariant check is a finding, whatever clients saw.

An assertion in the system under test is the checker of last resort: the
replica itself saw a state its design rules out (TigerBeetle's stance). The
history may still look linearizable (the node died before answering anything
wrong, or the others carried on), so without this checker such a run would read
"valid" with a crashed node in a footnote.

The run writes ``assertions.json`` after its nodes stop (the system adapter reads
each node's log: :mod:`systems.vr.crashes` for VR): ``{"nodes": [names looked
at], "failures": [{node, message, where, mono_ns, log_line}, ...]}``, with
``mono_ns`` on the node's monotonic clock, which is the history's on one machine;
a time far outside the history (a remote host's clock) is shown as unknown. A kill by the
nemesis, a clean stop or a fail-stop on a disk error is not an assertion and
never appears there. Each failure becomes one sentence: which node, when, under
which faults, the assertion's message and where it fired.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from checkers.history import Op
from checkers.perf import FaultWindow, fault_windows

FILE_NAME = "assertions.json"
PLACE_SLACK_NS = 10 * 1_000_000_000  # a time this far outside the history is on another machine's clock


def _label(window: FaultWindow) -> str:
    """``messages flap · n2``: the fault's kind, its mode or shape, and its targets."""
    value = window.value if isinstance(window.value, dict) else {}
    shape = next((value[k] for k in ("mode", "shape") if isinstance(value.get(k), str)), None)
    targets = ", ".join(str(t) for t in window.targets[:6])
    return " ".join([window.kind] + ([shape] if shape else [])) + (f" · {targets}" if targets else "")


def faults_at(windows: Sequence[FaultWindow], at_ns: int) -> list[str]:
    """Labels of the fault windows in force at ``at_ns`` (history clock)."""
    return [_label(w) for w in windows if w.start_ns <= at_ns and (w.stop_ns is None or w.stop_ns >= at_ns)]


def sentence(failure: dict[str, Any]) -> str:
    """One failure in words: node, time, faults, message, place (fields the adapter lacked are left out)."""
    node = failure.get("node", "a node")
    when = failure.get("at_s")
    if isinstance(when, int | float):
        when_text = f" at {when:.2f} s into the run" if when >= 0 else " before the first op"
    else:
        when_text = " (time unknown)"
    faults = failure.get("faults")
    if faults is None:
        under = ""
    else:
        under = ", under " + "; ".join(faults) if faults else ", with no fault active"
    message = str(failure.get("message") or "").splitlines()
    said = f"AssertionError {message[0]}" if message and message[0] else "AssertionError"
    where = f" at {failure['where']}" if failure.get("where") else ""
    log = failure.get("log")
    line = failure.get("log_line")
    source = f" ({log} line {line})" if log and line else ""
    return f"{node} failed a replica assertion{when_text}{under}: {said}{where}{source}"


def check_assertions(data: Any, ops: Sequence[Op]) -> dict[str, Any]:
    """The checker's entry (results.json ``checkers.assertions``) for an ``assertions.json`` document."""
    if not isinstance(data, dict) or "failures" not in data:
        error = data.get("error") if isinstance(data, dict) else None
        return {
            "valid": "unknown",
            "summary": f"the node logs were not read: {error or 'no failures list'}",
            "failures": [],
        }
    failures_in = data["failures"]
    nodes = data.get("nodes", [])
    windows = fault_windows(ops)
    t0 = min((op.time_ns for op in ops), default=None)
    end = max((op.time_ns for op in ops), default=None)
    failures: list[dict[str, Any]] = []
    for raw in failures_in if isinstance(failures_in, list) else []:
        if not isinstance(raw, dict):
            continue
        failure = dict(raw)
        node = failure.get("node")
        if isinstance(node, str) and "log" not in failure:
            failure["log"] = f"nodes/{node}/node.log"
        mono = failure.get("mono_ns")
        if (
            isinstance(mono, int)
            and not isinstance(mono, bool)
            and t0 is not None
            and end is not None
            and t0 - PLACE_SLACK_NS <= mono <= end + PLACE_SLACK_NS  # else another host's clock
        ):
            failure["at_s"] = round((mono - t0) / 1e9, 3)
            failure["faults"] = faults_at(windows, mono)
        failure["sentence"] = sentence(failure)
        failures.append(failure)
    failures.sort(key=lambda f: (f.get("mono_ns") is None, f.get("mono_ns") or 0))
    if failures:
        more = f" (+{len(failures) - 1} more)" if len(failures) > 1 else ""
        summary = failures[0]["sentence"] + more
    else:
        count = len(nodes) if isinstance(nodes, list) else 0
        summary = f"no node failed an assertion ({count} node logs read)"
    return {"valid": not failures, "summary": summary, "failures": failures}


def check_run_dir(run_dir: Path, ops: Sequence[Op]) -> dict[str, Any] | None:
    """The checker's verdict for a stored run; None when the run did not look (no assertions.json)."""
    path = run_dir / FILE_NAME
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        return {"valid": "unknown", "summary": f"{FILE_NAME} is unreadable: {exc}", "failures": []}
    return check_assertions(data, ops)
