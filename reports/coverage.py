"""The report's list of operation x state classes the run exercised (results.json ``coverage``).

A run that never read a missing key or never met a cas mismatch tested less than
its length suggests; the classes it never reached are shown first, marked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ClassRow:
    name: str
    meaning: str
    count: int


def rows(results: dict[str, Any]) -> list[ClassRow]:
    """Missing classes first, then the rest in the checker's order; empty when there is no coverage."""
    entry = results.get("coverage")
    if not isinstance(entry, dict) or not isinstance(entry.get("classes"), dict):
        return []
    expected = entry.get("expected") if isinstance(entry.get("expected"), dict) else {}
    found = [
        ClassRow(str(name), str(expected.get(name, "")), int(count) if isinstance(count, int) else 0)
        for name, count in entry["classes"].items()
    ]
    return [r for r in found if r.count == 0] + [r for r in found if r.count > 0]
