"""Is one key's history linearizable? A Wing & Gong search, as Lowe refined it, with memoization.

The search (Wing & Gong 1993; Lowe 2017, "Testing for linearizability")
builds a linearization one op at a time. At any point the candidates are the
ops invoked before the earliest return among the ops not yet placed (placing
anything else would put it after an op that returned before it was called).
It tries a candidate against the model, recurses, and backtracks when no
candidate fits. The memo of (linearized set, model state) pairs already
explored is what makes it practical: two paths that placed the same ops and
reached the same state have the same future, so the second is cut. The set is
kept as a 128-bit Zobrist hash (exact bit masks while there are at most 128
ops), so a memo entry costs the same at 10 ops and at 100,000.

Open-ended (``info``) ops are where histories from real faults get hard: they
may take effect at any point after their call, or never, so each one doubles
what a naive search explores. Four things keep them cheap here:

1. An open-ended op that produces nothing (a read) is dropped.
2. One that produces only values nobody observes after its call (a write of
   a value no later read returns and no later cas expects) is dropped:
   placing it could only get in the way. Repeated to a fixpoint.
3. Each remaining one is *alive* only until the last return of an op that
   could observe what it produces; after that it is never a candidate.
4. Alive open-ended ops with the same function and input are
   interchangeable, so only the earliest-called unplaced one of each kind is
   tried; and one that would leave the state unchanged is never tried.

Success is every ``ok`` op placed; open-ended ops left over never happened.
When the search fails, the return it could never get past (the furthest any
branch reached) names the first op that cannot be linearized.
"""

from __future__ import annotations

import bisect
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from checkers.history import Operation
from checkers.models.base import ILLEGAL, Model

INFINITY = 1 << 62
MEMO_ENTRY_BYTES = 160  # measured: a (int, state) tuple in a set, for small states
CHECK_EVERY_STEPS = 2048
PROGRESS_EVERY_S = 2.0


@dataclass(frozen=True, slots=True)
class Budget:
    """Limits for one search: wall time and memo size (from a memory budget)."""

    deadline_s: float = INFINITY  # time.monotonic() deadline
    memory_mb: float = 1024.0

    @property
    def memo_entries_max(self) -> int:
        return int(self.memory_mb * 1024 * 1024 / MEMO_ENTRY_BYTES)


@dataclass(frozen=True, slots=True)
class SearchResult:
    """The outcome for one key.

    ``order``: a witness linearization (op ids) when valid. ``stuck_op``: the op
    whose return no branch got past (the first that cannot be linearized), when
    invalid or unknown. ``frontier``: the event position of that return; every
    event before it is linearizable. ``reason`` says why a result is unknown.
    """

    valid: bool | Literal["unknown"]
    order: tuple[int, ...] = ()
    stuck_op: int | None = None
    frontier: int = 0
    steps: int = 0
    memo_entries: int = 0
    reason: str | None = None
    dropped_info_ops: int = 0
    info_ops: int = 0


@dataclass(slots=True)
class _Prepared:
    ok_ops: list[Operation]
    info_ops: list[Operation]  # kept, sorted by call
    info_expire: list[int]  # per info op: last position anything could observe it
    dropped: int = 0
    alive: list[tuple[int, ...]] = field(default_factory=list)


def _observers_of(model: Model, ops: Sequence[Operation]) -> dict[Any, list[Operation]]:
    by_value: dict[Any, list[Operation]] = {}
    for op in ops:
        for value in model.observes(op.f, op.value_in, op.value_out):
            try:
                by_value.setdefault(value, []).append(op)
            except TypeError:  # unhashable value: cannot index it; it simply observes nothing
                continue
    return by_value


def prepare(model: Model, operations: Sequence[Operation]) -> _Prepared:
    """Split ok from open-ended ops and drop/limit the open-ended ones (points 1-3 above)."""
    ok_ops = [op for op in operations if op.outcome == "ok"]
    candidates: list[Operation] = []
    dropped = 0
    for op in operations:
        if op.outcome != "info":
            continue
        produced = model.produces(op.f, op.value_in)
        if produced is not None and not tuple(produced):
            dropped += 1  # an open-ended read changes nothing
            continue
        candidates.append(op)
    expire: dict[int, int] = {}
    while True:  # fixpoint: dropping one open-ended op can orphan another
        observers = _observers_of(model, ok_ops + candidates)
        expire = {}
        for op in candidates:
            produced = model.produces(op.f, op.value_in)
            if produced is None:
                expire[op.id] = INFINITY
                continue
            last = -1
            for value in produced:
                try:
                    watchers = observers.get(value, ())
                except TypeError:
                    last = INFINITY
                    continue
                for watcher in watchers:
                    if watcher.id == op.id:
                        continue
                    end = INFINITY if watcher.ret is None else watcher.ret
                    if end > op.call:
                        last = max(last, end)
            if last >= 0:
                expire[op.id] = last
        kept = [op for op in candidates if op.id in expire]
        if len(kept) == len(candidates):
            break
        dropped += len(candidates) - len(kept)
        candidates = kept
    candidates.sort(key=lambda op: op.call)
    return _Prepared(ok_ops, candidates, [expire[op.id] for op in candidates], dropped)


def _alive_table(prepared: _Prepared, return_positions: list[int]) -> list[tuple[int, ...]]:
    """For each ok return (in position order), the open-ended ops alive there (point 3)."""
    table: list[list[int]] = [[] for _ in return_positions]
    for j, op in enumerate(prepared.info_ops):
        first = bisect.bisect_right(return_positions, op.call)
        last = bisect.bisect_right(return_positions, prepared.info_expire[j])
        for r in range(first, min(last + 1, len(return_positions))):
            table[r].append(j)
    return [tuple(row) for row in table]


def _zobrist(count: int) -> list[int]:
    if count <= 128:
        return [1 << i for i in range(count)]
    rng = random.Random(0x5EED_C4EC)  # fixed: the same history always searches the same way
    return [rng.getrandbits(128) for _ in range(count)]


def search(
    model: Model,
    operations: Sequence[Operation],
    budget: Budget | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> SearchResult:
    """Search for a linearization of one key's operations.

    ``progress(steps, frontier)`` is called about every PROGRESS_EVERY_S seconds
    of a long search.
    """
    budget = budget or Budget()
    prepared = prepare(model, operations)
    ok_ops, info_ops = prepared.ok_ops, prepared.info_ops
    n_ok, n_info = len(ok_ops), len(info_ops)
    if n_ok == 0:
        return SearchResult(True, dropped_info_ops=prepared.dropped, info_ops=n_info)

    # Entries: ok calls and returns in event order, in a doubly linked list.
    events = sorted(
        [(op.call, 0, i) for i, op in enumerate(ok_ops)] + [(op.ret, 1, i) for i, op in enumerate(ok_ops)]
    )
    n_entries = len(events)
    entry_is_ret = [kind == 1 for _, kind, _ in events]
    entry_op = [i for _, _, i in events]
    call_entry = [0] * n_ok
    ret_entry = [0] * n_ok
    for e, (_, kind, i) in enumerate(events):
        if kind:
            ret_entry[i] = e
        else:
            call_entry[i] = e
    head = n_entries  # sentinel node
    nxt = [*range(1, n_entries), -1, 0]
    prv = [head, *range(0, n_entries - 1), -1]

    return_positions = sorted(op.ret for op in ok_ops)  # type: ignore[type-var]
    alive = _alive_table(prepared, return_positions)  # type: ignore[arg-type]
    ret_rank = {pos: r for r, pos in enumerate(return_positions)}
    info_sig = [(op.f, _hashable(op.value_in)) for op in info_ops]

    zobrist = _zobrist(n_ok + n_info)
    step = model.step
    memo: set[tuple[int, Any]] = set()
    info_used = [False] * n_info
    frames: list[tuple[list[int], int, Any, int]] = []  # (candidates, next index, state before, op placed)
    placed: list[int] = []
    state: Any = model.init()
    h = 0
    remaining = n_ok
    steps = 0
    best_frontier, stuck = -1, -1
    memo_max = budget.memo_entries_max
    next_progress_s = time.monotonic() + PROGRESS_EVERY_S

    def candidates() -> list[int]:
        """Ok ops invoked before the first pending return, then alive open-ended ops."""
        nonlocal best_frontier, stuck
        out: list[int] = []
        e = nxt[head]
        while not entry_is_ret[e]:
            out.append(entry_op[e])
            e = nxt[e]
        first_ret_op = entry_op[e]
        position = ok_ops[first_ret_op].ret
        assert position is not None
        if position > best_frontier:
            best_frontier, stuck = position, first_ret_op
        seen: set[tuple[str, Any]] = set()
        for j in alive[ret_rank[position]]:
            if info_used[j] or info_ops[j].call > position:
                continue
            sig = info_sig[j]
            if sig in seen:
                continue
            seen.add(sig)
            out.append(n_ok + j)
        return out

    frames.append((candidates(), 0, state, -1))
    while True:
        cands, index, _, _ = frames[-1]
        if index >= len(cands):
            # Exhausted: undo the op that led here and resume the parent.
            _, _, before, op_placed = frames.pop()
            if op_placed < 0:
                return _failed(prepared, ok_ops, stuck, best_frontier, steps, len(memo))
            state = before
            h ^= zobrist[op_placed]
            placed.pop()
            if op_placed < n_ok:
                c, r = call_entry[op_placed], ret_entry[op_placed]
                # re-link in reverse order of unlinking: return, then call
                p, q = prv[r], nxt[r]
                nxt[p] = r
                if q != -1:
                    prv[q] = r
                p, q = prv[c], nxt[c]
                nxt[p] = c
                if q != -1:
                    prv[q] = c
                remaining += 1
            else:
                info_used[op_placed - n_ok] = False
            continue
        frames[-1] = (cands, index + 1, frames[-1][2], frames[-1][3])
        op_id = cands[index]
        steps += 1
        if steps % CHECK_EVERY_STEPS == 0:
            now = time.monotonic()
            if progress is not None and now > next_progress_s:
                progress(steps, best_frontier)
                next_progress_s = now + PROGRESS_EVERY_S
            if now > budget.deadline_s:
                return _unknown(
                    prepared, ok_ops, stuck, best_frontier, steps, len(memo), "time limit reached"
                )
            if len(memo) > memo_max:
                return _unknown(
                    prepared, ok_ops, stuck, best_frontier, steps, len(memo), "memory limit reached"
                )
        if op_id < n_ok:
            op = ok_ops[op_id]
            new_state = step(state, op.f, op.value_in, op.value_out, True)
        else:
            op = info_ops[op_id - n_ok]
            new_state = step(state, op.f, op.value_in, None, False)
            if new_state is not ILLEGAL and new_state == state:
                continue  # placing it changes nothing but uses it up
        if new_state is ILLEGAL:
            continue
        new_h = h ^ zobrist[op_id]
        key = (new_h, new_state)
        if key in memo:
            continue
        memo.add(key)
        before = state
        state, h = new_state, new_h
        placed.append(op_id)
        if op_id < n_ok:
            c, r = call_entry[op_id], ret_entry[op_id]
            for e in (c, r):
                p, q = prv[e], nxt[e]
                nxt[p] = q
                if q != -1:
                    prv[q] = p
            remaining -= 1
            if remaining == 0:
                order = tuple(ok_ops[i].id if i < n_ok else info_ops[i - n_ok].id for i in placed)
                return SearchResult(
                    True,
                    order=order,
                    frontier=INFINITY,
                    steps=steps,
                    memo_entries=len(memo),
                    dropped_info_ops=prepared.dropped,
                    info_ops=n_info,
                )
        else:
            info_used[op_id - n_ok] = True
        frames.append((candidates(), 0, before, op_id))


def _hashable(value: Any) -> Any:
    try:
        hash(value)
        return value
    except TypeError:
        return repr(value)


def _failed(
    prepared: _Prepared, ok_ops: list[Operation], stuck: int, frontier: int, steps: int, memo: int
) -> SearchResult:
    return SearchResult(
        False,
        stuck_op=ok_ops[stuck].id if stuck >= 0 else None,
        frontier=frontier,
        steps=steps,
        memo_entries=memo,
        dropped_info_ops=prepared.dropped,
        info_ops=len(prepared.info_ops),
    )


def _unknown(
    prepared: _Prepared,
    ok_ops: list[Operation],
    stuck: int,
    frontier: int,
    steps: int,
    memo: int,
    reason: str,
) -> SearchResult:
    return SearchResult(
        "unknown",
        stuck_op=ok_ops[stuck].id if stuck >= 0 else None,
        frontier=frontier,
        steps=steps,
        memo_entries=memo,
        reason=reason,
        dropped_info_ops=prepared.dropped,
        info_ops=len(prepared.info_ops),
    )
