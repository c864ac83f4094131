"""The report's Convergence section: which replica diverged, at which op, which keys differ.

Reads the ``convergence`` checker's entry in results.json (contracts §5) and turns
each finding into rows a reader scans in one look: a key per row, a node per
column, the diverged replicas' cells marked. Also lists what each snapshot could
compare, so a ``valid`` that compared little is visible as such.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from checkers.convergence import is_shortened

VALUE_TEXT_MAX = 100


@dataclass(frozen=True, slots=True)
class KeyRow:
    key: str
    cells: list[tuple[str, bool]]  # (value or hash text, is a diverged replica's cell)


@dataclass(frozen=True, slots=True)
class Finding:
    sentence: str
    kind: str
    op: int
    snapshot: str
    diverged: list[str]
    agree: list[str]
    nodes: list[str]
    rows: list[KeyRow] = field(default_factory=list)
    keys_hidden: int = 0


@dataclass(frozen=True, slots=True)
class Section:
    verdict: str  # valid | anomaly | unknown
    summary: str
    findings: list[Finding]
    snapshots: list[dict[str, Any]]


def _text(value: Any) -> str:
    text = value if is_shortened(value) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= VALUE_TEXT_MAX else text[: VALUE_TEXT_MAX - 1] + "…"


def _finding(raw: dict[str, Any]) -> Finding:
    agree = [str(n) for n in raw.get("agree", [])]
    diverged = [str(n) for n in raw.get("diverged", [])]
    nodes = sorted(agree + diverged)
    rows = []
    if raw.get("kind") == "prefix":
        checksums = raw.get("checksums") or {}
        rows.append(KeyRow("prepare checksum", [(str(checksums.get(n, "")), n in diverged) for n in nodes]))
    for entry in raw.get("keys") or []:
        if not isinstance(entry, dict):
            continue
        values = entry.get("values")
        source = values if isinstance(values, dict) else entry.get("hashes") or {}
        shown = (lambda v: _text(v)) if isinstance(values, dict) else (lambda v: f"hash {v}")
        rows.append(KeyRow(str(entry.get("key")), [(shown(source.get(n)), n in diverged) for n in nodes]))
    total = raw.get("keys_total")
    hidden = int(total) - len(raw.get("keys") or []) if isinstance(total, int) else 0
    return Finding(
        sentence=str(raw.get("sentence", "")),
        kind=str(raw.get("kind", "")),
        op=int(raw.get("op", 0)),
        snapshot=str(raw.get("snapshot", "")),
        diverged=diverged,
        agree=agree,
        nodes=nodes,
        rows=rows,
        keys_hidden=max(0, hidden),
    )


def section(results: dict[str, Any]) -> Section | None:
    """None when the run has no convergence entry (an older run, or a system that cannot be asked)."""
    checkers = results.get("checkers")
    entry = checkers.get("convergence") if isinstance(checkers, dict) else None
    if not isinstance(entry, dict):
        return None
    valid = entry.get("valid")
    verdict = "valid" if valid is True else "anomaly" if valid is False else "unknown"
    findings = [_finding(f) for f in entry.get("findings") or [] if isinstance(f, dict)]
    snapshots = [s for s in entry.get("snapshots") or [] if isinstance(s, dict)]
    return Section(verdict, str(entry.get("summary", "")), findings, snapshots)
