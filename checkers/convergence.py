"""Convergence: replicas that executed the same ops must agree on those ops and on their state.

A register history sees a replica only through the replies it sends, so a backup
whose state silently differs stays invisible until it becomes primary and
serves the affected key. Ratchet owns the system under test and asks every node
directly (``convergence.json``, written by the run at quiet points and after the
final heal; contracts §5):

- **Prefix.** At every op two nodes both executed, the prepare checksums agree
  (each checksum chains to its parent, so one equal checksum vouches for the
  whole prefix below it).
- **State.** Nodes that report a state hash at the same op (their state now, or
  a probe taken when a chosen op executed) agree on it: the key-value store and
  the client table, hashed apart.

A finding names the replicas in the minority (the diverged ones), the op, and,
when the nodes sent per-key hashes, which keys differ (with their values when
the nodes sent those too). Nothing to compare (fewer than two nodes answered at
any common op) is ``unknown``, never ``true``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FILE_NAME = "convergence.json"
KEYS_SHOWN_MAX = 20
VALUE_JSON_MAX = 120  # a longer value is kept as its head and size (workloads write 16 KiB values)
SHORTENED_SUFFIX = " bytes of JSON)"


@dataclass(frozen=True, slots=True)
class StateSeen:
    node: str
    op: int
    kv: str
    clients: str
    key_hashes: dict[str, str] | None
    values: dict[str, Any] | None


@dataclass(slots=True)
class Divergence:
    """Nodes that disagree at one op: ``agree`` (the largest group) against ``diverged``."""

    kind: str  # "prefix" | "state"
    op: int
    agree: list[str]
    diverged: list[str]
    part: str = ""  # state: "kv", "clients" or "kv and clients"
    keys: list[dict[str, Any]] = field(default_factory=list)
    keys_total: int | None = None  # None: the nodes sent no per-key hashes
    checksums: dict[str, str] = field(default_factory=dict)  # prefix: node -> checksum at op

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "kind": self.kind,
            "op": self.op,
            "agree": self.agree,
            "diverged": self.diverged,
        }
        if self.kind == "state":
            data |= {"part": self.part, "keys": self.keys, "keys_total": self.keys_total}
        else:
            data["checksums"] = self.checksums
        return data

    def sentence(self) -> str:
        who = ", ".join(self.diverged)
        against = ", ".join(self.agree)
        if self.kind == "prefix":
            return f"{who} executed a different op {self.op} than {against} (prepare checksums differ)"
        if "kv" not in self.part:
            what = "the client tables differ (replies remembered for at-most-once)"
        elif self.keys_total is None:
            what = "the key-value states differ"
        else:
            shown = "; ".join(_key_words(k) for k in self.keys[:3])
            more = f" (+{self.keys_total - 3} more)" if self.keys_total > 3 else ""
            what = f"{self.keys_total} key(s) differ: {shown}{more}"
        if self.part == "clients and kv":
            what += "; the client tables differ too"
        return f"{who} diverged from {against} at op {self.op}: {what}"


def _key_words(entry: dict[str, Any]) -> str:
    values = entry.get("values")
    if not values:
        return repr(entry["key"])
    return f"{entry['key']!r} " + ", ".join(f"{n}={json.dumps(v)}" for n, v in values.items())


def short_value(value: Any) -> Any:
    """``value`` itself, or (when its JSON is long) a string with its head and its size."""
    text = json.dumps(value, sort_keys=True, default=str)
    if len(text) <= VALUE_JSON_MAX:
        return value
    return f"{text[: VALUE_JSON_MAX // 2]}… ({len(text)}{SHORTENED_SUFFIX}"


def is_shortened(value: Any) -> bool:
    """A value :func:`short_value` cut: already text to show as it is."""
    return isinstance(value, str) and value.endswith(SHORTENED_SUFFIX)


def _reports(snapshot: dict[str, Any]) -> dict[str, dict[str, Any]]:
    nodes = snapshot.get("nodes", {})
    return {n: r for n, r in nodes.items() if isinstance(r, dict)} if isinstance(nodes, dict) else {}


def _split(groups: dict[Any, list[str]]) -> tuple[list[str], list[str]]:
    """The largest group agrees (ties: the one holding the first node by name); the rest diverged."""
    ordered = sorted(groups.values(), key=lambda names: (-len(names), sorted(names)[0]))
    return sorted(ordered[0]), sorted(n for names in ordered[1:] for n in names)


def prefix_divergences(snapshot: dict[str, Any]) -> list[Divergence]:
    """The lowest op where two nodes' executed prepares differ (at most one finding per snapshot)."""
    by_op: dict[int, dict[str, str]] = {}
    for node, report in _reports(snapshot).items():
        for item in report.get("prefix", []):
            if isinstance(item, list) and len(item) == 2:
                by_op.setdefault(int(item[0]), {})[node] = str(item[1])
    for op in sorted(by_op):
        seen = by_op[op]
        groups: dict[str, list[str]] = {}
        for node, checksum in seen.items():
            groups.setdefault(checksum, []).append(node)
        if len(groups) > 1:
            agree, diverged = _split(groups)
            return [Divergence("prefix", op, agree, diverged, checksums=dict(sorted(seen.items())))]
    return []


def states_seen(snapshot: dict[str, Any]) -> dict[int, dict[str, StateSeen]]:
    """op -> node -> its state hashes at that op (its state now, and every probe it took)."""
    found: dict[int, dict[str, StateSeen]] = {}
    for node, report in _reports(snapshot).items():
        candidates = [report.get("state")]
        probes = report.get("probes")
        if isinstance(probes, dict):
            candidates += list(probes.values())
        for item in candidates:
            if not isinstance(item, dict) or "kv" not in item or "op" not in item:
                continue
            seen = StateSeen(
                node,
                int(item["op"]),
                str(item["kv"]),
                str(item.get("clients", "")),
                item.get("key_hashes") if isinstance(item.get("key_hashes"), dict) else None,
                item.get("values") if isinstance(item.get("values"), dict) else None,
            )
            previous = found.setdefault(seen.op, {}).get(node)
            if previous is None or (previous.key_hashes is None and seen.key_hashes is not None):
                found[seen.op][node] = seen
    return found


def state_divergences(snapshot: dict[str, Any]) -> list[Divergence]:
    findings = []
    for op, seen in sorted(states_seen(snapshot).items()):
        groups: dict[tuple[str, str], list[str]] = {}
        for node, state in seen.items():
            groups.setdefault((state.kv, state.clients), []).append(node)
        if len(groups) < 2:
            continue
        agree, diverged = _split(groups)
        reference = seen[agree[0]]
        parts = set()
        for node in diverged:
            parts |= {"kv"} if seen[node].kv != reference.kv else set()
            parts |= {"clients"} if seen[node].clients != reference.clients else set()
        finding = Divergence("state", op, agree, diverged, part=" and ".join(sorted(parts)))
        if "kv" in parts:
            _name_keys(finding, seen)
        findings.append(finding)
    return findings


def _name_keys(finding: Divergence, seen: dict[str, StateSeen]) -> None:
    nodes = finding.agree + finding.diverged
    if any(seen[n].key_hashes is None for n in nodes):
        return
    hashes = {n: seen[n].key_hashes or {} for n in nodes}
    every_key = set().union(*(h.keys() for h in hashes.values()))
    differing = sorted(k for k in every_key if len({hashes[n].get(k) for n in nodes}) > 1)
    finding.keys_total = len(differing)
    for key in differing[:KEYS_SHOWN_MAX]:
        entry: dict[str, Any] = {"key": key, "hashes": {n: hashes[n].get(key) for n in nodes}}
        values = {
            n: short_value(seen[n].values[key])
            for n in nodes
            if seen[n].values and key in (seen[n].values or {})
        }
        if len(values) == len(nodes):
            entry["values"] = values
        finding.keys.append(entry)


def compared(snapshot: dict[str, Any]) -> dict[str, Any]:
    """What this snapshot could compare: ops seen by two or more nodes."""
    state_ops = [op for op, seen in states_seen(snapshot).items() if len(seen) >= 2]
    prefix_ops: dict[int, int] = {}
    for report in _reports(snapshot).values():
        for item in report.get("prefix", []):
            if isinstance(item, list) and len(item) == 2:
                prefix_ops[int(item[0])] = prefix_ops.get(int(item[0]), 0) + 1
    shared = [op for op, count in prefix_ops.items() if count >= 2]
    return {
        "nodes": len(_reports(snapshot)),
        "state_ops": sorted(state_ops),
        "prefix_ops": len(shared),
        "prefix_op_max": max(shared, default=None),
    }


def check_convergence(data: dict[str, Any]) -> dict[str, Any]:
    """The checker's entry (results.json ``checkers.convergence``) for a ``convergence.json`` document."""
    snapshots = data.get("snapshots", []) if isinstance(data, dict) else []
    findings: list[dict[str, Any]] = []
    coverage = []
    for snapshot in snapshots if isinstance(snapshots, list) else []:
        if not isinstance(snapshot, dict):
            continue
        found = prefix_divergences(snapshot) + state_divergences(snapshot)
        label = str(snapshot.get("label", ""))
        coverage.append({"label": label, **compared(snapshot), "unanswered": _unanswered(snapshot)})
        for finding in found:
            findings.append(
                {
                    **finding.to_json(),
                    "snapshot": label,
                    "time_ns": snapshot.get("time_ns"),
                    "sentence": finding.sentence(),
                }
            )
    anything = any(c["state_ops"] or c["prefix_ops"] for c in coverage)
    valid: bool | str = False if findings else (True if anything else "unknown")
    if findings:
        summary = findings[0]["sentence"] + (f" (+{len(findings) - 1} more)" if len(findings) > 1 else "")
    elif anything:
        states = sum(len(c["state_ops"]) for c in coverage)
        summary = f"replicas agree: {states} state comparison(s) at common ops in {len(coverage)} snapshot(s)"
    else:
        summary = "no two nodes reported at a common op: nothing to compare"
    return {"valid": valid, "summary": summary, "findings": findings, "snapshots": coverage}


def _unanswered(snapshot: dict[str, Any]) -> dict[str, str]:
    nodes = snapshot.get("nodes", {})
    return {n: str(r) for n, r in nodes.items() if not isinstance(r, dict)} if isinstance(nodes, dict) else {}


def check_run_dir(run_dir: Path) -> dict[str, Any] | None:
    """The checker's verdict for a stored run, or None when the run has no convergence reports."""
    path = run_dir / FILE_NAME
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return {
            "valid": "unknown",
            "summary": f"{FILE_NAME} is unreadable: {exc}",
            "findings": [],
            "snapshots": [],
        }
    return check_convergence(data)


def differing_ops(snapshot: dict[str, Any]) -> Iterable[int]:
    """Ops at which the nodes' state hashes differ (the collector then asks for per-key hashes)."""
    return [f.op for f in state_divergences(snapshot)]
