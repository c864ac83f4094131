"""Turn "not linearizable" into a small history a person can read, and say why in words.

Porcupine draws the failure and Knossos prints the last configurations; both
leave the reader to find the few ops that matter among hundreds. Here the
failing history is shrunk to a *minimal counterexample*:

1. Cut it at the return of the first op that cannot be linearized: ops called
   later cannot matter, and ops still running at that point become
   open-ended (they may or may not have happened yet).
2. Narrow the window: drop ops that finished long before the failing op was
   called, doubling the window until the rest is still not linearizable.
3. Delta-debug (Zeller's ddmin): remove chunks, then single ops, while the
   rest stays not linearizable, until no single op can go.

A removal must keep every value a remaining op observes *explained*: a read
of 3 needs an op that writes 3 (or 3 being the initial value). Without this
rule every stale read would shrink to a lone "read 3" with no write, which is
minimal but tells nobody anything. So an op is removed together with the
observers it alone explained (an op never explains itself, and a read with
no possible writer anywhere in the history is exempt: that *is* the anomaly).
Explained statically is not always enough: take away "write 4" and a "read 3"
may still have a cas 4->3 beside it, but no 4 left early enough for that cas
to happen before the read returned. The search then gets stuck at that read,
an op the real history shows is fine: the removal manufactured the failure.
So a removal also takes with it, one at a time, every op where the search
gets stuck that is not the op being explained (:func:`remove`).

The counterexample always holds the first op that cannot be linearized and
fails at that op. It is minimal in the literal sense, checked by the tests on
every invalid corpus file: removing any one of its ops (with what that
removal leaves unexplained, as above) leaves a linearizable history.

Then every order of the counterexample's ops that real time allows is
replayed against the model, and each dead end is written out: "after write 3
by p1 [ok], read by p4 returned 5, but the register held 3".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from checkers.budget import Budget
from checkers.history import Operation
from checkers.models.base import ILLEGAL, Model, show
from checkers.record import record, replace
from checkers.search import search

ORDERS_SHOWN_MAX = 12
ORDER_NODES_MAX = 20_000


def _earliest_producers(model: Model, ops: Sequence[Operation]) -> dict[Any, list[tuple[int, int]]] | None:
    """Value -> the two earliest (call, id) of ops producing it; None when a model cannot tell.

    Two, because an op never explains itself (a cas 0->0 does not explain its own 0).
    """
    earliest: dict[Any, list[tuple[int, int]]] = {}
    for op in ops:
        values = model.produces(op.f, op.value_in)
        if values is None:
            return None
        for value in values:
            try:
                firsts = earliest.setdefault(value, [])
            except TypeError:
                return None
            firsts.append((op.call, op.id))
            firsts.sort()
            del firsts[2:]
    return earliest


def _unexplained(
    model: Model,
    ops: Sequence[Operation],
    earliest: dict[Any, list[tuple[int, int]]],
    initial_ok: frozenset[int] | None = None,
) -> set[int]:
    """Ids of ops observing a value that no *other* op could have produced in time.

    An ok op needs a producer called before it returned. An open-ended op (a
    cas that may have happened) needs one at all: if nothing can produce its
    expected value it can never take effect, so it explains nothing either.
    The initial value explains itself, but only for the ops in ``initial_ok``
    when that is given (see :func:`initial_only`).
    """
    initial = model.init()
    missing: set[int] = set()
    for op in ops:
        known = op.outcome == "ok"
        deadline = op.ret if known and op.ret is not None else 1 << 62
        for value in model.observes(op.f, op.value_in, op.value_out if known else None):
            if not known and op.f == "read":
                continue
            if value == initial and (initial_ok is None or op.id in initial_ok):
                continue
            try:
                firsts = earliest.get(value, [])
            except TypeError:
                continue
            if not any(call < deadline and other != op.id for call, other in firsts):
                missing.add(op.id)
    return missing


def _explained(
    model: Model,
    ops: Sequence[Operation],
    keep: int,
    exempt: frozenset[int] = frozenset(),
    initial_ok: frozenset[int] | None = None,
) -> list[Operation] | None:
    """Drop observers no remaining op could have produced a value for (cascading); None if ``keep`` would go.

    An observation is explained by an op producing that value that was called
    before the observer returned. ``exempt`` ops were unexplained in the whole
    history: their observation is the anomaly itself.
    """
    current = list(ops)
    while True:
        earliest = _earliest_producers(model, current)
        if earliest is None:
            return current
        drop = _unexplained(model, current, earliest, initial_ok) - exempt
        if not drop:
            return current
        if keep in drop:
            return None
        current = [op for op in current if op.id not in drop]


def unexplainable(model: Model, ops: Sequence[Operation]) -> frozenset[int]:
    """Ids of observers that no op in ``ops`` can explain (exempt from the rule above)."""
    earliest = _earliest_producers(model, ops)
    return frozenset() if earliest is None else frozenset(_unexplained(model, ops, earliest))


def initial_only(model: Model, ops: Sequence[Operation]) -> frozenset[int]:
    """Observers of the initial value that nothing else in ``ops`` could have explained.

    Only these may lean on the initial value in a counterexample. A read of the
    initial value that, in the history, came after a write of that value keeps
    a writer: otherwise "read 0 after write 4" would pass for a counterexample
    when the history in fact wrote 0 again in between.
    """
    initial = model.init()
    earliest = _earliest_producers(model, ops)
    if earliest is None:
        return frozenset(op.id for op in ops)
    everyone = _unexplained(model, ops, earliest, frozenset())
    allowed: set[int] = set()
    for op in ops:
        if op.id not in everyone:
            continue
        known = op.outcome == "ok"
        observed = model.observes(op.f, op.value_in, op.value_out if known else None)
        if any(value == initial for value in observed):
            allowed.add(op.id)
    return frozenset(allowed)


@record
class Settled:
    """How :func:`settle` ended: the search's verdict, where it got stuck, and how many searches it took."""

    valid: bool | str
    stuck_op: int | None
    checks: int


def settle(
    model: Model,
    ops: Sequence[Operation],
    stuck_id: int,
    exempt: frozenset[int],
    initial_ok: frozenset[int] | None,
    budget: Budget | None = None,
) -> tuple[list[Operation], Settled]:
    """Drop from ``ops`` what a removal left unexplained, until it is linearizable or fails at ``stuck_id``.

    First the observers no remaining op can explain (:func:`_explained`), then,
    one at a time, each op other than ``stuck_id`` where the search gets stuck:
    in the real history that op was fine, so its failure is one the removal
    manufactured, and it goes with the removal. If ``stuck_id`` itself is left
    unexplained it goes too, and the rest settles the same way.
    """
    current = list(ops)
    keep = stuck_id
    checks = 0
    while True:
        explained = _explained(model, current, keep, exempt, initial_ok)
        if explained is None:
            keep = -1
            explained = _explained(model, current, keep, exempt, initial_ok) or []
        current = explained
        checks += 1
        result = search(model, current, budget)
        done = result.valid is not False or result.stuck_op is None or result.stuck_op == keep
        if done or result.stuck_op not in {op.id for op in current}:
            return current, Settled(result.valid, result.stuck_op, checks)
        current = [op for op in current if op.id != result.stuck_op]


def remove(
    model: Model, ops: Sequence[Operation], removed_id: int, stuck_id: int
) -> tuple[list[Operation], Settled]:
    """``ops`` without op ``removed_id`` and what that removal leaves unexplained (see :func:`settle`).

    The minimality the tests check: for every op of a counterexample, this is
    linearizable.
    """
    exempt = unexplainable(model, ops)
    initial_ok = initial_only(model, ops)
    rest = [op for op in ops if op.id != removed_id]
    return settle(model, rest, stuck_id, exempt, initial_ok)


def _cut(operations: Sequence[Operation], stuck: Operation) -> list[Operation]:
    """Ops called before the stuck op returned; those still running then become open-ended."""
    assert stuck.ret is not None
    cut = stuck.ret
    out: list[Operation] = []
    for op in operations:
        if op.call > cut:
            continue
        if op.ret is not None and op.ret > cut:
            op = replace(op, outcome="info", ret=None, value_out=None)
        out.append(op)
    return out


class _Shrinker:
    def __init__(
        self,
        model: Model,
        stuck_id: int,
        deadline_s: float,
        memory_mb: float,
        exempt: frozenset[int],
        initial_ok: frozenset[int],
    ) -> None:
        self.exempt = exempt
        self.initial_ok = initial_ok
        self.model = model
        self.stuck_id = stuck_id
        self.deadline_s = deadline_s
        self.memory_mb = memory_mb
        self.checks = 0

    def out_of_time(self) -> bool:
        return time.monotonic() > self.deadline_s

    def still_fails(self, ops: Sequence[Operation]) -> list[Operation] | None:
        """What :func:`settle` leaves of ``ops`` if it still fails *at the stuck op*; else None."""
        budget = Budget(deadline_s=min(self.deadline_s, time.monotonic() + 2.0), memory_mb=self.memory_mb)
        rest, result = settle(self.model, ops, self.stuck_id, self.exempt, self.initial_ok, budget)
        self.checks += result.checks
        stuck_here = result.valid is False and result.stuck_op == self.stuck_id
        return rest if stuck_here else None

    def window(self, ops: list[Operation], stuck: Operation) -> list[Operation]:
        """Smallest doubling window of ops finishing after ``stuck.call - width`` that still fails."""
        width = 8
        while not self.out_of_time():
            start = stuck.call - width
            candidate = [op for op in ops if op.ret is None or op.ret >= start]
            if len(candidate) >= len(ops):
                return ops
            failing = self.still_fails(candidate)
            if failing is not None:
                return failing
            width *= 2
        return ops

    def ddmin(self, ops: list[Operation]) -> tuple[list[Operation], bool]:
        """Remove chunks, then single ops, while it still fails. Returns (ops, finished)."""
        chunks = 2
        while len(ops) > 1:
            if self.out_of_time():
                return ops, False
            removable = [op for op in ops if op.id != self.stuck_id]
            size = max(1, len(removable) // chunks)
            progressed = False
            for start in range(0, len(removable), size):
                if self.out_of_time():
                    return ops, False
                drop = {op.id for op in removable[start : start + size]}
                failing = self.still_fails([op for op in ops if op.id not in drop])
                if failing is not None:
                    ops = failing
                    chunks = max(chunks - 1, 2)
                    progressed = True
                    break
            if not progressed:
                if size == 1:
                    return ops, True
                chunks = min(chunks * 2, len(removable))
        return ops, True


def minimize(
    model: Model,
    operations: Sequence[Operation],
    stuck_id: int,
    *,
    time_limit_s: float = 10.0,
    memory_mb: float = 512.0,
) -> tuple[list[Operation], bool]:
    """A smallest not-linearizable sub-history holding the stuck op; (ops, proven minimal)."""
    by_id = {op.id: op for op in operations}
    stuck = by_id[stuck_id]
    cut = _cut(operations, stuck)
    shrinker = _Shrinker(
        model,
        stuck_id,
        time.monotonic() + time_limit_s,
        memory_mb,
        unexplainable(model, cut),
        initial_only(model, cut),
    )
    start = shrinker.still_fails(cut)
    if start is None:
        return cut, False  # should not happen: the search failed on the prefix
    narrowed = shrinker.window(start, stuck)
    return shrinker.ddmin(narrowed)


def _who(op: Operation) -> str:
    return f"p{op.process}"


def _label(model: Model, op: Operation) -> str:
    """ "write 3 by p1 [ok]", "read by p4 returned 5" (a read's outcome shows in its value)."""
    known = op.outcome == "ok"
    text = model.describe_op(op.f, op.value_in, op.value_out, known, _who(op))
    return text if op.f == "read" and known else f"{text} [{op.outcome}]"


def candidate_orders(model: Model, ops: Sequence[Operation]) -> list[dict[str, Any]]:
    """Every maximal legal order real time allows, each ending where it got stuck.

    Open-ended ops may be placed or left out. An order is a dead end when no
    op that real time allows next is legal; the op reported is the allowed ok
    op with the earliest return (the one nothing can wait past).
    """
    ok_ids = {op.id for op in ops if op.outcome == "ok"}
    before = {op.id: {p.id for p in ops if p.ret is not None and p.ret < op.call} for op in ops}
    dead_ends: list[dict[str, Any]] = []
    nodes = 0

    def visit(order: list[Operation], states: list[Any], placed: set[int]) -> None:
        nonlocal nodes
        nodes += 1
        if nodes > ORDER_NODES_MAX or len(dead_ends) >= ORDERS_SHOWN_MAX * 4:
            return
        state = states[-1]
        allowed = [op for op in ops if op.id not in placed and before[op.id] <= placed]
        ok_extended = False
        blocked: list[Operation] = []
        for op in allowed:
            known = op.outcome == "ok"
            new_state = model.step(state, op.f, op.value_in, op.value_out if known else None, known)
            if new_state is ILLEGAL:
                if known:
                    blocked.append(op)
                continue
            ok_extended = ok_extended or known
            visit([*order, op], [*states, new_state], placed | {op.id})
        if not ok_extended and not ok_ids <= placed:
            pending = [op for op in ops if op.id in ok_ids and op.id not in placed]
            culprit = min(blocked or pending, key=lambda o: o.ret if o.ret is not None else 1 << 62)
            dead_ends.append(_dead_end(model, order, states, culprit, blocked))

    visit([], [model.init()], set())
    dead_ends.sort(key=lambda d: -len(d["order"]))
    seen: set[str] = set()
    unique = []
    for dead_end in dead_ends:
        if dead_end["explanation"] not in seen:
            seen.add(dead_end["explanation"])
            unique.append(dead_end)
    return unique[:ORDERS_SHOWN_MAX]


def _dead_end(
    model: Model, order: list[Operation], states: list[Any], culprit: Operation, blocked: list[Operation]
) -> dict[str, Any]:
    state = states[-1]
    if order:
        history = ", then ".join(_label(model, op) for op in order)
        prefix = f"after {history}, "
    else:
        prefix = "at the start, "
    if culprit in blocked:
        text = f"{prefix}{_label(model, culprit)}, but {model.describe_state(state)}"
    else:
        text = (
            f"{prefix}{_label(model, culprit)} must come next (it returned before the rest were called), "
            f"but nothing legal leads to it while {model.describe_state(state)}"
        )
    return {
        "order": [op.id for op in order],
        "states": [show(s) for s in states[1:]],
        "fails_at": culprit.id,
        "state_at_failure": show(state),
        "explanation": text,
    }


def op_json(op: Operation) -> dict[str, Any]:
    return {
        "id": op.id,
        "process": op.process,
        "f": op.f,
        "key": op.key,
        "value_in": op.value_in,
        "value_out": op.value_out,
        "outcome": op.outcome,
        "invoke_index": op.invoke_index,
        "complete_index": op.complete_index,
        "call_ns": op.call_ns,
        "return_ns": op.return_ns,
    }


def counterexample(
    model: Model,
    operations: Sequence[Operation],
    stuck_id: int,
    *,
    time_limit_s: float = 10.0,
    memory_mb: float = 512.0,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """The ``counterexample`` entry of results.json (contracts §5)."""
    started = clock()
    deadline_s = time.monotonic() + time_limit_s
    ops, minimal = minimize(model, operations, stuck_id, time_limit_s=time_limit_s * 0.8, memory_mb=memory_mb)
    ops = sorted(ops, key=lambda op: op.call)
    own = search(model, ops, Budget(deadline_s=max(deadline_s, time.monotonic() + 0.2)))
    own_stuck = own.stuck_op if own.stuck_op is not None else stuck_id
    stuck = next((op for op in ops if op.id == own_stuck), ops[-1])
    orders = candidate_orders(model, ops)
    states_before = sorted(
        {d["state_at_failure"] for d in orders if d["fails_at"] == stuck.id}
        or {d["state_at_failure"] for d in orders}
    )
    summary = (
        f"{_label(model, stuck)} (history index {stuck.invoke_index}->{stuck.complete_index}) cannot be "
        f"linearized: no order of these {len(ops)} operations that real time allows is legal, and where it "
        f"is tried the state is one of: {', '.join(states_before) or 'none'}."
    )
    return {
        "ops": [op_json(op) for op in ops],
        "minimal": minimal,
        "orders": orders,
        "explanation": summary,
        "shrink_seconds": round(clock() - started, 3),
    }
