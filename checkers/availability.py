"""Availability from a history: how much got done during each fault, and how fast it came back.

Two questions a person asks after a fault: did the system keep answering while
the fault was in force (the fraction of client ops that completed ``ok`` in
the window), and once healed, how long until each key accepted a write again
(time-to-recover: from the window's stop to the first ``ok`` write, cas or
append on that key completing at or after it). Only keys in use before the heal
(a write invoked on them before it) count: a key first used later says when the
workload got to it, not how fast the cluster came back. A key written to after
the heal that never gets an ``ok`` write again is called out: in a healed
cluster that is a liveness failure, and ``require_recovery=True`` makes it invalid.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Sequence

from checkers.history import Op
from checkers.perf import fault_windows

TYPE_CHECKING = False  # typing is for type checkers only: importing it slows every `ratchet check`
if TYPE_CHECKING:
    from typing import Any

WRITE_FS = frozenset({"write", "cas", "append", "add"})


KEYS_LISTED_MAX = 64
KEYS_ALL_LISTED_MAX = 1000


def _key(key: Any) -> Any:
    """Keys as dict keys: an unhashable one (a map) by its repr."""
    try:
        hash(key)
    except TypeError:
        return repr(key)
    return key


class _Index:
    """Completion times by outcome, and ok-write / write-invoke times per key, sorted for bisecting.

    Built once, so each window costs O(keys * log n) rather than a pass over the history.
    The per-key write times only when a fault was healed (``writes``): nothing else asks
    for recovery, and a history with no faults (most checked from elsewhere) skips them.
    """

    def __init__(self, ops: Sequence[Op], *, writes: bool = True) -> None:
        self.times: dict[str, list[int]] = {"ok": [], "fail": [], "info": []}
        self.ok_writes: dict[Any, list[int]] = defaultdict(list)
        self.last_write_invoke: dict[Any, int] = {}
        self.first_write_invoke: dict[Any, int] = {}
        if not writes:
            times = self.times
            for op in ops:
                if type(op.process) is int and op.type != "invoke":  # client completions (a hot loop)
                    times[op.type].append(op.time_ns)
            for values in times.values():
                values.sort()
            return
        for op in ops:
            if type(op.process) is not int:  # nemesis (inlined: a hot loop)
                continue
            if op.type == "invoke":
                if op.f in WRITE_FS:
                    key = _key(op.key)
                    self.last_write_invoke[key] = max(op.time_ns, self.last_write_invoke.get(key, op.time_ns))
                    self.first_write_invoke[key] = min(
                        op.time_ns, self.first_write_invoke.get(key, op.time_ns)
                    )
                continue
            self.times[op.type].append(op.time_ns)
            if op.type == "ok" and op.f in WRITE_FS:
                self.ok_writes[_key(op.key)].append(op.time_ns)
        for values in (*self.times.values(), *self.ok_writes.values()):
            values.sort()

    def outcomes(self, start_ns: int, stop_ns: int | None) -> dict[str, Any]:
        counts = {}
        for outcome, times in self.times.items():
            lo = bisect.bisect_left(times, start_ns)
            hi = len(times) if stop_ns is None else bisect.bisect_left(times, stop_ns)
            counts[outcome] = hi - lo
        total = sum(counts.values())
        return {**counts, "total": total, "ok_fraction": counts["ok"] / total if total else None}

    def recovery(self, heal_ns: int) -> dict[str, Any]:
        """Per key in use before the heal: ns from the heal to the first ok write completing at or after it."""
        first_ok: dict[Any, int] = {}
        existed = {k for k, first in self.first_write_invoke.items() if first < heal_ns}
        for key, times in self.ok_writes.items():
            if key not in existed:
                continue
            i = bisect.bisect_left(times, heal_ns)
            if i < len(times):
                first_ok[key] = times[i] - heal_ns
        attempted = [k for k, last in self.last_write_invoke.items() if last >= heal_ns and k in existed]
        never = sorted((k for k in attempted if k not in first_ok), key=repr)
        values = sorted(first_ok.values())
        out: dict[str, Any] = {
            "heal_ns": heal_ns,
            "keys_recovered": len(values),
            "recover_ns_median": values[len(values) // 2] if values else None,
            "recover_ns_max": values[-1] if values else None,
            "never_recovered_keys": never[:KEYS_LISTED_MAX],
            "never_recovered_count": len(never),
            "keys_new_after_heal": len(self.first_write_invoke) - len(existed),  # not counted above
        }
        listed: list[tuple[Any, int]] = list(first_ok.items())
        if len(first_ok) > KEYS_ALL_LISTED_MAX:  # keep results.json small: the slowest keys tell the story
            listed = sorted(first_ok.items(), key=lambda item: -item[1])[:KEYS_LISTED_MAX]
        out["recover_ns_by_key"] = {k if isinstance(k, str | int) else repr(k): v for k, v in listed}
        return out


def availability(ops: Sequence[Op], *, require_recovery: bool = False) -> dict[str, Any]:
    """Per fault window: outcomes of client completions in it and time-to-recover per key."""
    windows = fault_windows(ops)
    index = _Index(ops, writes=any(window.stop_ns is not None for window in windows))
    windows_out: list[dict[str, Any]] = []
    never_all: dict[str, list[Any]] = {}
    for number, window in enumerate(windows):
        entry: dict[str, Any] = {
            "kind": window.kind,
            "start_ns": window.start_ns,
            "stop_ns": window.stop_ns,
            "targets": list(window.targets),
            **index.outcomes(window.start_ns, window.stop_ns),
        }
        if window.stop_ns is not None:
            recovery = index.recovery(window.stop_ns)
            entry["recovery"] = recovery
            if recovery["never_recovered_keys"]:
                never_all[f"{window.kind}#{number}"] = recovery["never_recovered_keys"]
        windows_out.append(entry)
    starts = [times[0] for times in index.times.values() if times]
    overall = index.outcomes(min(starts, default=0), None)
    valid = not (require_recovery and never_all)
    result: dict[str, Any] = {"valid": valid, "overall": overall, "windows": windows_out}
    if never_all:
        result["never_recovered"] = never_all
    return result
