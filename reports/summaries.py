"""One line per checker for the report's checkers table, read from its results.json entry.

The full entry is one click away; the line says what a person looks for first
(how many ops, which key failed, latency by function, how much got done). An
entry without the expected fields gets its ``reason``/``error`` text, or
nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _linearizable(entry: dict[str, Any]) -> str:
    parts = []
    if _number(entry.get("op_count")):
        parts.append(f"{entry['op_count']:,} ops over {entry.get('key_count', '?')} key(s)")
    if entry.get("model"):
        parts.append(f"model {entry['model']}")
    if _number(entry.get("open_ended_op_count")):
        parts.append(f"{entry['open_ended_op_count']:,} open-ended (info)")
    if entry.get("valid") is False and entry.get("key") is not None:
        parts.append(f"not linearizable on key {entry['key']!r}")
    if _number(entry.get("seconds")):
        parts.append(f"checked in {entry['seconds']:.2f} s")
    return "; ".join(parts)


def _stats(entry: dict[str, Any]) -> str:
    totals = entry.get("totals")
    parts = []
    if isinstance(totals, dict):
        parts.append(
            ", ".join(f"{totals[k]:,} {k}" for k in ("ok", "fail", "info") if _number(totals.get(k)))
        )
    never = entry.get("never_succeeded")
    if isinstance(never, list) and never:
        parts.append("never succeeded: " + ", ".join(str(f) for f in never))
    return "; ".join(p for p in parts if p)


def _perf(entry: dict[str, Any]) -> str:
    by_f = entry.get("latency_ok_by_f")
    if not isinstance(by_f, dict):
        return ""
    return "; ".join(
        f"{f} p50 {row['p50_ms']:.1f} ms, p99 {row['p99_ms']:.1f} ms"
        for f, row in by_f.items()
        if isinstance(row, dict) and _number(row.get("p50_ms")) and _number(row.get("p99_ms"))
    )


def _availability(entry: dict[str, Any]) -> str:
    parts = []
    overall = entry.get("overall")
    if isinstance(overall, dict) and _number(overall.get("ok_fraction")):
        parts.append(f"{overall['ok_fraction']:.1%} of {overall.get('total', 0):,} ops ok")
    windows = entry.get("windows")
    if isinstance(windows, list):
        parts.append(f"{len(windows)} fault window(s)")
    never = entry.get("never_recovered")
    if isinstance(never, dict) and never:
        parts.append(f"never recovered after {len(never)} of them")
    return "; ".join(parts)


SUMMARIES: dict[str, Callable[[dict[str, Any]], str]] = {
    "linearizable": _linearizable,
    "stats": _stats,
    "perf": _perf,
    "availability": _availability,
}


def summary(name: str, entry: Any) -> str:
    """The checker's one line: its own fields first, then any reason or error it gave."""
    if not isinstance(entry, dict):
        return ""
    text = SUMMARIES[name](entry) if name in SUMMARIES else ""
    reason = next((str(entry[k]) for k in ("summary", "reason", "error", "message") if entry.get(k)), "")
    return "; ".join(p for p in (text, reason) if p)[:400]
