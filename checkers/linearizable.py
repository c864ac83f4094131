"""The ``linearizable`` checker: one model instance per key, keys checked in parallel, under a budget.

Linearizability is compositional (Herlihy & Wing's locality; "P-compositional"
in Horn & Kroening's terms): a history of independent keys is linearizable iff
each key's sub-history is. So the history is split per key and each key is
checked on its own. Each key first tries the O(n log n) unique-values check
for registers, with or without cas (:mod:`checkers.fastpath`), in this
process; the keys it cannot decide (or finds invalid, to be explained) go to
the search (:mod:`checkers.search`), in worker processes when there is enough
of it to pay for them.

Every key is checked to the end (or to the budget) rather than stopping at
the first failure, so the reported failure is deterministic: the key whose
first unlinearizable op completed earliest in the history. Only that key's
counterexample is reported (:mod:`checkers.counterexample` shrinks it). In
worker processes it is shrunk by the worker that found the violation, as
soon as it does; a key whose stuck op completes later than one already
shrunk is left to the main process, which shrinks it only if it is reported.

Budgets: one deadline for the whole check, and a memory budget split between
the workers (it caps each search's memo). Running out gives
``valid: "unknown"`` with the key and how far the search got, never a crash
and never a hang.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable, Sequence
from itertools import compress
from operator import attrgetter, is_not

from checkers.budget import INFINITY, Budget
from checkers.fastpath import unique_register_check, unique_register_rows_check
from checkers.history import Op, Operation, PairedEvent, pair, pair_events
from checkers.models import Model, UnsupportedOp, get_model
from checkers.record import record, replace

TYPE_CHECKING = False  # typing is for type checkers only: importing it slows every `ratchet check`
if TYPE_CHECKING:
    from typing import Any

    from checkers.fastpath import Row
    from checkers.search import SearchResult

Progress = Callable[[str], None]  # takes one line of progress, e.g. "key=0 steps=2048 ..."

PARALLEL_OPS_MIN = 20_000  # below this a worker pool costs more than it saves
COUNTEREXAMPLE_TIME_S = 10.0
KEYS_LISTED_MAX = 100


@record
class KeyOutcome:
    """What one key's check found (picklable: it comes back from a worker).

    ``failure``: the failure entry (:func:`_failure`) when the worker that
    found the violation also explained it, else None.
    """

    key: Any
    valid: bool | str
    method: str
    op_count: int
    result: SearchResult | None
    seconds: float
    failure: dict[str, Any] | None = None


def _deep_freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted(((_deep_freeze(k), _deep_freeze(v)) for k, v in value.items()), key=repr))
    if isinstance(value, list | tuple):
        return tuple(_deep_freeze(v) for v in value)
    if isinstance(value, set | frozenset):
        return frozenset(_deep_freeze(v) for v in value)
    return value


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


_PLAIN_TYPES = frozenset({int, str, type(None), bool, float})


def hashable_values(operations: Sequence[Operation]) -> list[Operation]:
    """Ops whose values (maps, say) cannot be hashed get frozen copies: the search memoizes on states."""
    out = list(operations)
    plain = _PLAIN_TYPES
    for i, op in enumerate(out):
        if type(op.value_in) in plain and type(op.value_out) in plain and type(op.key) in plain:
            continue  # the common case, without a hash per value
        if not (_hashable(op.value_in) and _hashable(op.value_out) and _hashable(op.key)):
            out[i] = replace(
                op,
                key=_deep_freeze(op.key),
                value_in=_deep_freeze(op.value_in),
                value_out=_deep_freeze(op.value_out),
            )
    return out


_get_f = attrgetter("f")


def split_by_key(operations: Sequence[Operation]) -> dict[Any, list[Operation]]:
    by_key: dict[Any, list[Operation]] = {}
    for op in operations:
        by_key.setdefault(op.key, []).append(op)
    return by_key


def ensure_supported(model: Model, operations: Sequence[Operation]) -> None:
    """UnsupportedOp for the first op the model does not know or whose values it refuses.

    The passes over every op are in C (a map and a compress over the ``f``
    column); only the ops ``model.op_problem_fs`` names reach ``op_problem``.
    """
    fs = list(map(_get_f, operations))
    unknown = sorted(set(fs) - model.fs)
    if unknown:
        raise UnsupportedOp(
            f"the history has op(s) {unknown} that model {model.name!r} does not know "
            f"(it knows {sorted(model.fs)})"
            + ("; did you mean --model cas-register?" if unknown == ["cas"] else "")
        )
    op_problem = getattr(model, "op_problem", None)
    if op_problem is not None:  # values of the wrong shape: bad input, never a crash in the search
        checked = getattr(model, "op_problem_fs", None)
        candidates = operations if checked is None else compress(operations, map(checked.__contains__, fs))
        for op in candidates:
            problem = op_problem(op.f, op.value_in, op.value_out, op.outcome == "ok")
            if problem:
                raise UnsupportedOp(
                    f"op index {op.invoke_index} (process {op.process!r}, {op.f}): {problem} "
                    f"(model {model.name!r})"
                )


_UNTRIED = "untried"  # check_key's fast path has not been tried on the key yet


@record
class _FastVerdicts:
    """The fast path's answer per key (in the keys' order), and the counts the entry reports."""

    keys_fast: dict[Any, bool | None]
    op_counts: dict[Any, int]
    op_count: int
    open_ended_op_count: int


def _operations(
    model: Model, ops: Sequence[Op], events: list[PairedEvent], keys: set[Any] | None
) -> tuple[list[Operation], bool]:
    """The operations the search judges (of ``keys`` only, when given), and whether any of
    their values had to be made hashable. Raises UnsupportedOp for an op the model refuses."""
    operations = pair(ops, events=events, keys=keys)
    ensure_supported(model, operations)
    if getattr(model, "nil_reads_unknown", False):
        # A nil read that matches any state constrains nothing: leave it out.
        operations = [op for op in operations if not (op.f == "read" and op.value_out is None)]
    hashable = hashable_values(operations)
    return hashable, any(map(is_not, operations, hashable))


def _fast_verdicts(model: Model, events: Sequence[PairedEvent]) -> _FastVerdicts | None:
    """Every key's fast-path answer, straight from the paired events: no Operation is built.

    A history of unique values (the common one) is decided by these alone, and
    building its operations was a fifth of its check. None where the general
    path must come first: a model other than the registers, an op the model
    refuses (ensure_supported names it), an unhashable key. The keys, their
    ops and the counts are those :func:`check_linearizable` derives from
    :func:`~checkers.history.pair` (``fail`` left out, then nil reads when they
    match anything), in the same order.
    """
    if model.name not in ("register", "cas-register"):
        return None
    nil_any = bool(getattr(model, "nil_reads_unknown", False))
    problem_fs = getattr(model, "op_problem_fs", None)
    op_problem = getattr(model, "op_problem", None)
    by_key: dict[Any, list[Row]] = {}
    fs: set[str] = set()
    op_count = open_ended = 0
    try:
        for call, invoke, ret, completion in events:
            ok = False
            if completion is not None:
                if completion.type == "fail":
                    continue
                ok = completion.type == "ok"
            f = invoke.f
            fs.add(f)
            value_in = None if f == "read" else invoke.value
            value_out = completion.value if ok else None  # type: ignore[union-attr]
            if (
                op_problem is not None
                and (problem_fs is None or f in problem_fs)
                and op_problem(f, value_in, value_out, ok)
            ):
                return None
            if nil_any and f == "read" and value_out is None:
                continue
            op_count += 1
            if not ok:
                open_ended += 1
            row = (call, f, ok, value_in, value_out, call, ret if ok else None)
            rows = by_key.get(invoke.key)
            if rows is None:
                by_key[invoke.key] = [row]
            else:
                rows.append(row)
    except TypeError:  # an unhashable key
        return None
    if fs - model.fs:
        return None
    keys_fast = {key: unique_register_rows_check(model, rows) for key, rows in by_key.items()}
    op_counts = {key: len(rows) for key, rows in by_key.items()}
    return _FastVerdicts(keys_fast, op_counts, op_count, open_ended)


def check_key(
    model: Model,
    key: Any,
    operations: Sequence[Operation],
    budget: Budget,
    progress: Progress | None = None,
    fast: bool | str | None = _UNTRIED,
) -> KeyOutcome:
    """One key: the fast path when it applies, else (or to explain a failure) the search.

    A long search reports progress every few seconds to ``progress``, or to the
    ``checkers.linearizable`` logger when there is none. ``fast``: the fast
    path's answer when the caller already has it.
    """
    started = time.monotonic()
    if fast == _UNTRIED:
        fast = unique_register_check(model, operations)
    if fast is True:
        return KeyOutcome(key, True, "unique-values", len(operations), None, time.monotonic() - started)

    from checkers.search import search  # only what the fast path cannot decide pays for importing it

    def report(steps: int, frontier: int) -> None:
        line = f"key={key!r} steps={steps} linearizable_through_event={frontier}"
        if progress is not None:
            progress(line)
        else:
            import logging  # here: a check that never searches long never needs it

            logging.getLogger(__name__).info("%s", line)

    result = search(model, operations, budget, progress=report)
    method = "search"
    valid: bool | str = result.valid
    if fast is False and result.valid is True:
        valid, method = "unknown", "disagreement"  # a checker bug: never round it to a verdict
    elif fast is False and result.valid == "unknown":
        valid, method = False, "unique-values"  # proven by the fast path; the search only explains
    return KeyOutcome(key, valid, method, len(operations), result, time.monotonic() - started)


@record
class _Explaining:
    """What a worker needs to explain the violation it found (see :func:`_explain_here`)."""

    earliest: Any  # a shared multiprocessing.Value: the earliest stuck completion explained so far
    deadline_s: float
    counterexample_time_s: float


_FORKED_WORK: (
    tuple[
        Model,
        list[tuple[Any, list[Operation]]],
        list[bool | str | None],
        Budget,
        Progress | None,
        _Explaining | None,
    ]
    | None
) = None


def _check_forked(index: int) -> KeyOutcome:
    """Worker entry: the work was inherited through fork, so nothing large is pickled."""
    assert _FORKED_WORK is not None
    model, keys, fast, budget, progress, explaining = _FORKED_WORK
    key, operations = keys[index]
    outcome = check_key(model, key, operations, budget, progress, fast[index])
    if explaining is not None and outcome.valid is False:
        outcome = _explain_here(model, outcome, operations, explaining)
    return outcome


def _explain_here(
    model: Model, outcome: KeyOutcome, operations: list[Operation], explaining: _Explaining
) -> KeyOutcome:
    """The failure entry, explained in the worker that found the violation, when it may be the one reported.

    Explaining re-runs the search over the key's history up to the stuck op: in
    the worker it runs beside the other keys' checks, on the key's operations
    the worker already has, instead of after them all in the main process. Only
    the key whose stuck op completes earliest is reported, so a worker explains
    only when its stuck op completes earlier than every one explained so far
    (a shared minimum); the reported key always passes. What it computes is
    what the main process would (:func:`_failure`, same inputs and budget).
    """
    result = outcome.result
    if result is None or result.stuck_op is None or result.valid is not False:
        return outcome  # nothing costly to explain: the main process does it
    stuck = next(op for op in operations if op.id == result.stuck_op)
    if stuck.complete_index is None:
        return outcome
    with explaining.earliest.get_lock():
        if stuck.complete_index >= explaining.earliest.value:
            return outcome  # another key failed earlier: this one will not be reported
        explaining.earliest.value = stuck.complete_index
    ce_time_s = _explain_time_s(explaining.counterexample_time_s, explaining.deadline_s)
    return replace(outcome, failure=_failure(model, outcome, operations, ce_time_s))


def _explain_time_s(counterexample_time_s: float, deadline_s: float) -> float:
    """The explanation shares the check's budget: never past the deadline by more than a second."""
    return min(counterexample_time_s, max(1.0, deadline_s - time.monotonic()))


def _run_all(
    model: Model,
    keyed: list[tuple[Any, list[Operation]]],
    *,
    deadline_s: float,
    memory_mb: float,
    processes: int,
    progress: Progress | None = None,
    meanwhile: Callable[[], object] | None = None,
    counterexample_time_s: float | None = None,
    keys_fast: dict[Any, bool | None] | None = None,
) -> list[KeyOutcome]:
    """Every key's outcome, in ``keyed``'s order (``keys_fast``: the fast path's answers
    already known, by key).

    Every key's fast path runs here first; the keys it leaves to the search
    (or proves invalid, to be explained) are searched in forked workers when
    they are many ops. The fast path is O(n log n): sharing it out is not worth
    a pool, whose forked workers copy every page of operations they touch
    (1M ops, 2 cores under load: about 1 CPU-s more than the fast path itself
    saves by running on both). With ``counterexample_time_s``, a worker that
    finds a violation also explains it (:func:`_explain_here`).
    """
    fast: list[bool | str | None] = [_UNTRIED] * len(keyed)
    outcomes: dict[int, KeyOutcome] = {}
    for i, (key, operations) in enumerate(keyed):
        started = time.monotonic()
        if keys_fast is not None and key in keys_fast:
            fast[i] = keys_fast[key]
        else:
            fast[i] = unique_register_check(model, operations)
        if fast[i] is True:
            seconds = time.monotonic() - started
            outcomes[i] = KeyOutcome(key, True, "unique-values", len(operations), None, seconds)
    rest = [i for i in range(len(keyed)) if i not in outcomes]
    found = _run_keys(
        model,
        keyed,
        rest,
        fast,
        deadline_s=deadline_s,
        memory_mb=memory_mb,
        processes=processes,
        progress=progress,
        meanwhile=meanwhile,
        counterexample_time_s=counterexample_time_s,
    )
    outcomes.update(zip(rest, found, strict=True))
    return [outcomes[i] for i in range(len(keyed))]


def _run_keys(
    model: Model,
    keyed: list[tuple[Any, list[Operation]]],
    indices: list[int],
    fast: list[bool | str | None],
    *,
    deadline_s: float,
    memory_mb: float,
    processes: int,
    progress: Progress | None,
    meanwhile: Callable[[], object] | None,
    counterexample_time_s: float | None,
) -> list[KeyOutcome]:
    """The outcomes of the keys at ``indices`` of ``keyed``, in that order (``fast``: the fast
    path's answer per key, or _UNTRIED): in forked workers when they are many ops."""
    global _FORKED_WORK
    total_ops = sum(len(keyed[i][1]) for i in indices)
    workers = min(processes, len(indices))
    small = workers <= 1 or total_ops < PARALLEL_OPS_MIN
    if not small:  # only a history big enough to share out among processes needs these
        import multiprocessing
        import threading
    if (
        small
        or "fork" not in multiprocessing.get_all_start_methods()
        or threading.active_count() > 1  # forking a threaded process can deadlock the child on a held lock
    ):
        budget = Budget(deadline_s=deadline_s, memory_mb=memory_mb)
        outcomes = [check_key(model, *keyed[i], budget, progress, fast[i]) for i in indices]
        if meanwhile is not None:
            meanwhile()
        return outcomes
    context = multiprocessing.get_context("fork")
    explaining = (
        None
        if counterexample_time_s is None
        else _Explaining(context.Value("q", INFINITY), deadline_s, counterexample_time_s)
    )
    budget = Budget(deadline_s=deadline_s, memory_mb=memory_mb / workers)
    _FORKED_WORK = (model, keyed, fast, budget, progress, explaining)
    # Frozen objects are never scanned by the children's garbage collector, so the
    # pages the history lives on stay shared instead of being copied into each worker.
    gc.freeze()
    try:
        with context.Pool(workers) as pool:
            outcomes = pool.imap(_check_forked, indices, chunksize=1)
            if meanwhile is not None:
                meanwhile()  # this process's own share while the workers search
            return list(outcomes)
    finally:
        gc.unfreeze()
        _FORKED_WORK = None


def _key_json(key: Any) -> Any:
    return list(key) if isinstance(key, tuple) else key


def _combine(values: Sequence[bool | str]) -> bool | str:
    if any(v is False for v in values):
        return False
    if any(v is not True for v in values):
        return "unknown"
    return True


def check_linearizable(
    ops: Sequence[Op],
    *,
    model: str | Model = "cas-register",
    time_limit_s: float | None = None,
    memory_mb: float = 1024.0,
    processes: int | None = None,
    counterexample_time_s: float = COUNTEREXAMPLE_TIME_S,
    events: list[PairedEvent] | None = None,
    progress: Progress | None = None,
    meanwhile: Callable[[], object] | None = None,
) -> dict[str, Any]:
    """The ``linearizable`` entry of results.json (contracts §5).

    ``progress`` takes a long search's progress lines (default: the logger).

    ``meanwhile`` (the caller's other checkers) is called once: while worker
    processes search, when they do, so the two cores share that work too; else
    after the search. Its time is not counted in ``seconds``.

    ``events`` is ``pair_events(ops)`` when the caller already has it (it is the
    costly pass over a long history, and the perf checker needs it too).
    """
    started = time.monotonic()
    the_model = get_model(model) if isinstance(model, str) else model
    if events is None:
        events = pair_events(ops)
    meanwhile_s = 0.0

    def timed_meanwhile() -> None:
        nonlocal meanwhile_s
        assert meanwhile is not None
        begun = time.monotonic()
        meanwhile()
        meanwhile_s = time.monotonic() - begun

    verdicts = _fast_verdicts(the_model, events)
    if verdicts is not None and all(fast is True for fast in verdicts.keys_fast.values()):
        if meanwhile is not None:
            timed_meanwhile()
        return {
            "valid": True,
            "model": the_model.name,
            "initial": getattr(the_model, "initial", None),
            "nil_reads": "unknown" if getattr(the_model, "nil_reads_unknown", False) else "empty",
            "key_count": len(verdicts.keys_fast),
            "op_count": verdicts.op_count,
            "open_ended_op_count": verdicts.open_ended_op_count,
            "methods": ["unique-values"] if verdicts.keys_fast else [],
            "seconds": round(time.monotonic() - started - meanwhile_s, 3),
        }
    # The operations of the keys the fast path left undecided (or proved invalid): ids as in
    # the whole pairing. Values that must be made hashable first: every key's, judged afresh.
    undecided = (
        None if verdicts is None else {k for k, fast in verdicts.keys_fast.items() if fast is not True}
    )
    operations, frozen = _operations(the_model, ops, events, undecided)
    if frozen and verdicts is not None:
        verdicts = None
        operations, _ = _operations(the_model, ops, events, None)
    keyed = list(split_by_key(operations).items())
    deadline_s = INFINITY if time_limit_s is None else started + time_limit_s

    outcomes = _run_all(
        the_model,
        keyed,
        deadline_s=deadline_s,
        memory_mb=memory_mb,
        processes=processes or os.cpu_count() or 1,
        progress=progress,
        meanwhile=None if meanwhile is None else timed_meanwhile,
        counterexample_time_s=counterexample_time_s,
        keys_fast=None if verdicts is None else verdicts.keys_fast,
    )
    op_count = len(operations)
    open_ended_op_count = sum(1 for op in operations if op.outcome == "info")
    if verdicts is not None:  # every key, in order: the ones decided valid from the events too
        searched = {outcome.key: outcome for outcome in outcomes}
        outcomes = [
            searched[key]
            if key in searched
            else KeyOutcome(key, True, "unique-values", verdicts.op_counts[key], None, 0.0)
            for key in verdicts.keys_fast
        ]
        op_count, open_ended_op_count = verdicts.op_count, verdicts.open_ended_op_count
    valid = _combine([o.valid for o in outcomes])
    entry: dict[str, Any] = {
        "valid": valid,
        "model": the_model.name,
        "initial": getattr(the_model, "initial", None),
        "nil_reads": "unknown" if getattr(the_model, "nil_reads_unknown", False) else "empty",
        "key_count": len(outcomes),
        "op_count": op_count,
        "open_ended_op_count": open_ended_op_count,
        "methods": sorted({o.method for o in outcomes}),
        "seconds": 0.0,
    }
    failed = [o for o in outcomes if o.valid is False]
    unknown = [o for o in outcomes if o.valid not in (True, False)]
    ops_by_key = dict(keyed)
    by_id = {o.key: {op.id: op for op in ops_by_key[o.key]} for o in failed + unknown}
    if failed:
        first = min(failed, key=lambda o: _stuck_complete_index(o, by_id))
        if first.failure is not None:  # explained by the worker that found it
            entry.update(first.failure)
        else:
            ce_time_s = _explain_time_s(counterexample_time_s, deadline_s)
            entry.update(_failure(the_model, first, ops_by_key[first.key], ce_time_s))
        entry["failed_keys"] = [_key_json(o.key) for o in failed][:KEYS_LISTED_MAX]
    if unknown:
        entry["unknown_keys"] = [_unknown_json(o, by_id) for o in unknown][:KEYS_LISTED_MAX]
        if not failed:
            entry["key"] = _key_json(unknown[0].key)
            entry["reason"] = unknown[0].result.reason if unknown[0].result else unknown[0].method
    entry["seconds"] = round(time.monotonic() - started - meanwhile_s, 3)
    return entry


def _stuck_complete_index(outcome: KeyOutcome, by_id: dict[Any, dict[int, Operation]]) -> int:
    result = outcome.result
    if result is None or result.stuck_op is None:
        return INFINITY
    op = by_id[outcome.key][result.stuck_op]
    return op.complete_index if op.complete_index is not None else INFINITY


def _failure(
    model: Model, outcome: KeyOutcome, operations: list[Operation], ce_time_s: float
) -> dict[str, Any]:
    from checkers.counterexample import counterexample, op_json  # a failure's evidence only

    result = outcome.result
    if result is None or result.stuck_op is None:
        return {"key": _key_json(outcome.key), "first_unlinearizable": None, "counterexample": None}
    stuck = next(op for op in operations if op.id == result.stuck_op)
    if result.valid is not False:
        # The fast path proved a violation but the search ran out of budget before
        # pinning it: the furthest op it reached is only the best lead.
        return {
            "key": _key_json(outcome.key),
            "first_unlinearizable": op_json(stuck),
            "first_unlinearizable_proven": False,
            "linearizable_through_event": result.frontier,
            "counterexample": None,
        }
    return {
        "key": _key_json(outcome.key),
        "first_unlinearizable": op_json(stuck),
        "linearizable_through_event": result.frontier,
        "counterexample": counterexample(model, operations, stuck.id, time_limit_s=ce_time_s),
    }


def _unknown_json(outcome: KeyOutcome, by_id: dict[Any, dict[int, Operation]]) -> dict[str, Any]:
    result = outcome.result
    out: dict[str, Any] = {
        "key": _key_json(outcome.key),
        "op_count": outcome.op_count,
        "method": outcome.method,
    }
    if result is not None:
        from checkers.counterexample import op_json

        out["reason"] = result.reason
        out["steps"] = result.steps
        out["linearizable_through_event"] = result.frontier
        ops = by_id[outcome.key]
        out["linearizable_prefix_ops"] = sum(
            1 for op in ops.values() if op.ret is not None and op.ret < result.frontier
        )
        if result.stuck_op is not None:
            out["stuck_at"] = op_json(ops[result.stuck_op])
    return out
