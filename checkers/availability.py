"""Availability from a history: how much got done during each fault, and how fast it came back.

Two questions a person asks after a fault: did the system keep answering while
the fault was in force (the fraction of client ops that completed ``ok`` in
the window), and once healed, how long until each key accepted a write again
(time-to-recover: from the window's stop to the first ``ok`` write, cas or
append on that key completing at or after it). A key written to after the
heal that never gets an ``ok`` write again is called out: in a healed cluster
that is a liveness failure, and ``require_recovery=True`` makes it invalid.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from checkers.history import Op
from checkers.perf import FaultWindow, fault_windows

WRITE_FS = frozenset({"write", "cas", "append", "add"})


def _outcomes(completions: Sequence[Op], start_ns: int, stop_ns: int | None) -> dict[str, Any]:
    counts = {"ok": 0, "fail": 0, "info": 0}
    for op in completions:
        if op.time_ns >= start_ns and (stop_ns is None or op.time_ns < stop_ns):
            counts[op.type] += 1
    total = sum(counts.values())
    return {**counts, "total": total, "ok_fraction": counts["ok"] / total if total else None}


def _recovery(window: FaultWindow, completions: Sequence[Op], invokes: Sequence[Op]) -> dict[str, Any]:
    """Per key: ns from the heal to the first ok write completing at or after it."""
    assert window.stop_ns is not None
    heal_ns = window.stop_ns
    attempted: set[Any] = {op.key for op in invokes if op.f in WRITE_FS and op.time_ns >= heal_ns}
    first_ok: dict[Any, int] = {}
    for op in completions:
        if op.type == "ok" and op.f in WRITE_FS and op.time_ns >= heal_ns and op.key not in first_ok:
            first_ok[op.key] = op.time_ns - heal_ns
    never = sorted((k for k in attempted if k not in first_ok), key=repr)
    values = list(first_ok.values())
    return {
        "heal_ns": heal_ns,
        "recover_ns_by_key": {repr(k) if not isinstance(k, str | int) else k: v for k, v in first_ok.items()},
        "recover_ns_max": max(values) if values else None,
        "never_recovered_keys": never,
    }


def availability(ops: Sequence[Op], *, require_recovery: bool = False) -> dict[str, Any]:
    """Per fault window: outcomes of client completions in it and time-to-recover per key."""
    completions = [op for op in ops if not op.is_nemesis and op.type != "invoke"]
    invokes = [op for op in ops if not op.is_nemesis and op.type == "invoke"]
    windows_out: list[dict[str, Any]] = []
    never_all: dict[str, list[Any]] = defaultdict(list)
    for number, window in enumerate(fault_windows(ops)):
        entry: dict[str, Any] = {
            "kind": window.kind,
            "start_ns": window.start_ns,
            "stop_ns": window.stop_ns,
            "targets": list(window.targets),
            **_outcomes(completions, window.start_ns, window.stop_ns),
        }
        if window.stop_ns is not None:
            recovery = _recovery(window, completions, invokes)
            entry["recovery"] = recovery
            for key in recovery["never_recovered_keys"]:
                never_all[f"{window.kind}#{number}"].append(key)
        windows_out.append(entry)
    overall = _outcomes(completions, min((op.time_ns for op in completions), default=0), None)
    valid = not (require_recovery and never_all)
    result: dict[str, Any] = {"valid": valid, "overall": overall, "windows": windows_out}
    if never_all:
        result["never_recovered"] = dict(never_all)
    return result
