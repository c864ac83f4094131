"""Catch-up: after every fault healed, every replica must execute what the others executed.

The convergence checker compares replicas only at ops they all executed, so a
replica stuck below an op it can never execute (it acknowledged a prepare it
never wrote, it lost a body nobody repairs) agrees with everyone at every op
it has, and a history read through the primary never shows it. The cluster then
runs one failure away from losing those ops or stopping (catalog letter U). The
run's last convergence snapshot is taken after the final heal, the recovery
wait and the final reads, with no client running, once every node executed the
same op or ``settle_s`` passed (``harness.convergence``): a healthy cluster
(every node normal, in one view) whose nodes still stand at different ops then
did not catch up in that time. Replicas of a correct build get there within a
second (repair or state sync), so ``settle_s`` (10 s) is a wide margin.

Verdict: ``false`` for such a lag, ``true`` when they settled. No entry when
there is nothing to judge: no final snapshot (the run stopped early, which
makes it ``unknown`` anyway), a cluster that was not healthy (the run's
``recovered`` note says so), or a run written before these fields existed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from checkers.convergence import FILE_NAME

FINAL_LABEL = "after the final heal"


def _commit_mins(snapshot: dict[str, Any]) -> dict[str, int]:
    nodes = snapshot.get("nodes")
    if not isinstance(nodes, dict):
        return {}
    return {
        str(n): r["commit_min"]
        for n, r in nodes.items()
        if isinstance(r, dict) and isinstance(r.get("commit_min"), int)
    }


def lag_sentence(commits: dict[str, int], settle_s: Any) -> str:
    """``n2 stayed at op 826 and n3 at op 895 while n1 executed op 926, 10 s after ...``."""
    top = max(commits.values())
    ahead = sorted(n for n, c in commits.items() if c == top)
    behind = sorted((n for n, c in commits.items() if c < top), key=lambda n: (commits[n], n))
    first, *rest = behind
    stayed = f"{first} stayed at op {commits[first]}" + "".join(f" and {n} at op {commits[n]}" for n in rest)
    seconds = f"{settle_s:g} s" if isinstance(settle_s, int | float) else "the settle time"
    return (
        f"{stayed} while {', '.join(ahead)} executed op {top}, {seconds} after the final heal and the "
        "final reads, no client running and every node normal in one view: a replica that does not "
        "catch up (liveness)"
    )


def check_catchup(data: Any) -> dict[str, Any] | None:
    """The checker's entry (results.json ``checkers.catch-up``), or None for a run that did not record it."""
    snapshots = data.get("snapshots") if isinstance(data, dict) else None
    if not isinstance(snapshots, list) or not snapshots or not isinstance(snapshots[-1], dict):
        return None
    final = snapshots[-1]
    if final.get("label") != FINAL_LABEL or "settle_s" not in final:
        return None
    commits = _commit_mins(final)
    settled = final.get("settled")
    if settled is True:
        op = max(commits.values(), default=None)
        return {"valid": True, "summary": f"every replica executed op {op} after the final heal"}
    if settled is None or final.get("healthy") is not True or len(set(commits.values())) < 2:
        return None  # stopped early, or not healthy: the run's own notes say so; nothing to judge here
    return {
        "valid": False,
        "summary": lag_sentence(commits, final.get("settle_s")),
        "commit_mins": commits,
        "time_ns": final.get("time_ns"),
    }


def check_run_dir(run_dir: Path) -> dict[str, Any] | None:
    """The checker's verdict for a stored run; None when its convergence.json has no settle record."""
    path = run_dir / FILE_NAME
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None  # the convergence checker reports the unreadable file
    return check_catchup(data)
