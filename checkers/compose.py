"""Run every checker on a history and fold their verdicts into one (contracts §5).

Composition is false > unknown > true: one checker finding an anomaly makes
the run invalid; one that could not decide makes it unknown unless another
found an anomaly; "unknown" is never rounded to true.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from checkers.availability import availability
from checkers.history import GcPaused, Op, pair_events
from checkers.linearizable import Progress, check_linearizable
from checkers.models import Model
from checkers.perf import perf
from checkers.stats import stats

TYPE_CHECKING = False  # typing is for type checkers only: importing it slows every `ratchet check`
if TYPE_CHECKING:
    from typing import Any

LIST_APPEND = "list-append"  # the append workload's model: judged by checkers.append


def combine_validity(values: Iterable[bool | str]) -> bool | str:
    """false > unknown > true (an empty list is true)."""
    seen = list(values)
    if any(v is False for v in seen):
        return False
    if any(v is not True for v in seen):
        return "unknown"
    return True


def check_history(
    ops: Sequence[Op],
    *,
    model: str | Model = "cas-register",
    time_limit_s: float | None = None,
    memory_mb: float = 2048.0,
    bucket_ns: int = 1_000_000_000,
    require_recovery: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """``{"valid": ..., "checkers": {<history checker>, "stats", "perf", "availability"}}``.

    The history checker is ``linearizable`` for a model, or ``append`` for
    ``model="list-append"``: an append history's anomalies (duplicates, lost or
    reordered appends) are found pairwise, with no search. ``progress`` takes a long
    search's progress lines (default: the ``checkers.linearizable`` logger).
    """
    with GcPaused():
        return _check_history(ops, model, time_limit_s, memory_mb, bucket_ns, require_recovery, progress)


def _check_history(
    ops: Sequence[Op],
    model: str | Model,
    time_limit_s: float | None,
    memory_mb: float,
    bucket_ns: int,
    require_recovery: bool,
    progress: Progress | None,
) -> dict[str, Any]:
    events = pair_events(ops)  # one pairing pass, shared
    checkers: dict[str, dict[str, Any]] = {}
    others: dict[str, dict[str, Any]] = {}

    def run_others() -> None:
        others["stats"] = stats(ops)
        others["perf"] = perf(ops, bucket_ns=bucket_ns, events=events)
        others["availability"] = availability(ops, require_recovery=require_recovery)

    if model == LIST_APPEND:
        from checkers.append import check_append  # imported for append histories only

        checkers["append"] = check_append(ops, events=events)
    else:  # the others run while the search's workers do, when it has some
        checkers["linearizable"] = check_linearizable(
            ops,
            model=model,
            time_limit_s=time_limit_s,
            memory_mb=memory_mb,
            events=events,
            progress=progress,
            meanwhile=run_others,
        )
    if not others:
        run_others()
    checkers |= others
    return {"valid": combine_validity(c["valid"] for c in checkers.values()), "checkers": checkers}
