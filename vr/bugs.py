"""Planted bugs: named, known-wrong behaviours the harness must be able to find.

Each bug is off by default and switched on only by naming it (``--bug NAME`` on a
node, ``--bug NAME`` in the simulator). Each is one small guarded branch at the
place it acts (``if "name" in self.bugs:``), so reading the branch shows exactly
what is wrong. The catalog numbers are the entries of docs/vr.md §4.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Bug:
    name: str
    description: str  # one line: what the replica does wrong
    exposed_by: str  # the fault (and anomaly) that shows it
    catalog: int  # docs/vr.md §4 entry; 0 for a bug outside that catalog


BUGS: dict[str, Bug] = {
    bug.name: bug
    for bug in (
        Bug(
            "ack-before-fsync",
            "backups send PrepareOk, and the primary counts its own copy, before the prepare is durable",
            "power-loss crash (unsynced writes dropped) of f+1 replicas -> lost acknowledged write (L)",
            8,
        ),
        Bug(
            "stale-view-votes",
            "start-view-change / do-view-change votes are not reset on a view transition, so votes "
            "for an older view count toward a newer one",
            "flapping partitions and repeated view-change timeouts -> view without a real quorum (L, V)",
            3,
        ),
        Bug(
            "dvc-highest-op",
            "the new primary picks the do-view-change log with the highest op instead of the highest "
            "(log_view, op)",
            "isolate the primary while clients write to it, heal, second view change -> "
            "committed ops overwritten (L, V)",
            5,
        ),
        Bug(
            "truncate-on-checksum-mismatch",
            "journal recovery treats any checksum mismatch as a torn tail and truncates the log there",
            "corrupt a committed WAL slot + restart + partition the other acker -> lost committed op (L, V)",
            9,
        ),
        Bug(
            "duplicate-prepare-no-checksum",
            "a backup re-acks a prepare for an op it already holds without comparing checksums",
            "partition the old primary, view change, then duplicated/replayed prepares -> "
            "phantom copy counted (L, V)",
            1,
        ),
        Bug(
            "no-client-table",
            "the primary does not deduplicate retried requests (no client table check)",
            "lost replies or a crashed primary make clients retry -> request executed twice (D)",
            13,
        ),
        Bug(
            "read-from-backup",
            "a backup answers a read request locally from its own (possibly stale) state",
            "partition a backup or delay its log -> stale read (S)",
            11,
        ),
        Bug(
            "diverge-backup",
            "the highest-numbered backup of the view applies each committed write (and append) with a "
            "different value (a state-machine slip on one replica only)",
            "none needed: its state silently differs from the others' at the same op; clients see it "
            "only if it becomes primary -> replicas diverge (convergence checker)",
            0,
        ),
        Bug(
            "lease-read-wall-clock",
            "the primary answers reads locally while a lease measured on the wall clock has not expired",
            "clock skew or pause of a deposed primary -> stale read (S)",
            12,
        ),
    )
}


def parse_bugs(names: Iterable[str]) -> frozenset[str]:
    """Validate bug names; ValueError with a did-you-mean for an unknown one."""
    chosen: set[str] = set()
    for name in names:
        if name not in BUGS:
            close = difflib.get_close_matches(name, list(BUGS), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"unknown planted bug {name!r}.{hint} Known bugs: {', '.join(sorted(BUGS))} "
                "(python -m vr.node --list-bugs describes each)."
            )
        chosen.add(name)
    return frozenset(chosen)


def describe() -> str:
    """The text ``python -m vr.node --list-bugs`` prints: name, what is wrong, what exposes it."""
    lines = []
    for bug in BUGS.values():
        where = f"docs/vr.md bug #{bug.catalog}" if bug.catalog else "outside the catalog of docs/vr.md"
        lines.append(f"{bug.name}  ({where})")
        lines.append(f"    wrong:      {bug.description}")
        lines.append(f"    exposed by: {bug.exposed_by}")
    return "\n".join(lines)
