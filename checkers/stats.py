"""Counts of ops by function and outcome: the first thing to read about a run.

A function that never succeeded (every write failed, say) usually means the
workload or the cluster was broken rather than that the system is unsafe, so
it is flagged, not judged: the entry stays valid and names the functions.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from checkers.history import Op

TYPE_CHECKING = False  # typing is for type checkers only: importing it slows every `ratchet check`
if TYPE_CHECKING:
    from typing import Any


def stats(ops: Sequence[Op]) -> dict[str, Any]:
    """``{"valid": True, "by_f": {f: {invoke, ok, fail, info}}, "never_succeeded": [f, ...]}``."""
    by_f: dict[str, dict[str, int]] = defaultdict(lambda: {"invoke": 0, "ok": 0, "fail": 0, "info": 0})
    nemesis: dict[str, int] = defaultdict(int)
    for op in ops:
        if type(op.process) is not int:  # nemesis (inlined: a hot loop)
            nemesis[op.f] += 1
        else:
            by_f[op.f][op.type] += 1
    never = sorted(f for f, counts in by_f.items() if counts["invoke"] and not counts["ok"])
    totals = {t: sum(c[t] for c in by_f.values()) for t in ("invoke", "ok", "fail", "info")}
    return {
        "valid": True,
        "by_f": {f: dict(counts) for f, counts in sorted(by_f.items())},
        "totals": totals,
        "nemesis_ops": dict(sorted(nemesis.items())),
        "never_succeeded": never,
    }
