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
what a naive search explores. Five things keep them cheap here (and a
sixth helps everywhere):

1. An open-ended op that produces nothing (a read) is dropped.
2. One that produces only values nobody observes after its call (a write of
   a value no later read returns and no later cas expects) is dropped:
   placing it could only get in the way. Repeated to a fixpoint.
3. Each remaining one is *alive* only until the last return of an op that
   could observe what it produces; after that it is never a candidate.
4. Alive open-ended ops with the same function and input are
   interchangeable, so only the earliest-called unplaced one of each kind is
   tried; and one that would leave the state unchanged is never tried.
5. Right after an open-ended op, only an op that needs its effect may come
   (the model's ``needs_before``): for a register, a read or cas of the value
   it wrote. Any linearization can be rearranged to have this shape (a write
   right after it erases it, so it can be dropped), which cuts the branching
   that open-ended ops cause.
6. A legal ok op that never changes the state (a read of the current value)
   is placed at once, with no alternatives tried: it could be moved to this
   point in any linearization (everything it must follow is placed, and it
   changes no state wherever it goes), so trying others first only repeats
   work. Not so for a write of the value already there: later, it would
   change the state.

Success is every ``ok`` op placed; open-ended ops left over never happened.
When the search fails, the return it could never get past (the furthest any
branch reached) names the first op that cannot be linearized.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Sequence

from checkers.budget import INFINITY, Budget
from checkers.history import Operation
from checkers.models.base import ILLEGAL, Model
from checkers.models.cas_register import CasRegister
from checkers.models.register import Register
from checkers.record import record

TYPE_CHECKING = False  # typing is for type checkers only: importing it slows every `ratchet check`
if TYPE_CHECKING:
    from typing import Any, Literal

# Op kinds whose step the search inlines for the register models (GENERIC: call model.step).
READ, WRITE, CAS, GENERIC = 0, 1, 2, 3
_INLINED_KINDS: dict[type, dict[str, int]] = {
    Register: {"read": READ, "write": WRITE},
    CasRegister: {"read": READ, "write": WRITE, "cas": CAS},
}
CHECK_EVERY_STEPS = 2048
PROGRESS_EVERY_S = 2.0


@record
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


@record(frozen=False)
class _Prepared:
    ok_ops: list[Operation]
    info_ops: list[Operation]  # kept, sorted by call
    info_expire: list[int]  # per info op: the last position anything could still use it
    dropped: int = 0


EXPIRE_ROUNDS_MAX = 64
ALIVE_BLOCK_RETURNS = 64


def _last_ok_returns(model: Model, ok_ops: Sequence[Operation]) -> dict[Any, int]:
    """Per observed value: the latest return of an ok op observing it (what an open-ended op may serve)."""
    last_ok_ret: dict[Any, int] = {}
    kinds = _INLINED_KINDS.get(type(model))
    if kinds is not None:  # the register models observe a read's output and a cas's expected value
        observed = [
            (op.value_out if op.f == "read" else op.value_in[0], op.ret)
            for op in ok_ops
            if op.f == "read" or op.f == "cas"
        ]
        if all(type(value) in _PLAIN_TYPES for value, _ in observed):
            for value, ret in observed:  # returns rise along ok_ops? not always: keep the max
                if ret > last_ok_ret.get(value, -1):
                    last_ok_ret[value] = ret
            return last_ok_ret
        last_ok_ret.clear()
    for op in ok_ops:
        assert op.ret is not None
        for value in model.observes(op.f, op.value_in, op.value_out):
            try:
                if op.ret > last_ok_ret.get(value, -1):
                    last_ok_ret[value] = op.ret
            except TypeError:
                continue
    return last_ok_ret


_PLAIN_TYPES = frozenset({int, str, type(None), bool})


def _expiries(
    model: Model,
    ok_ops: Sequence[Operation],
    candidates: Sequence[Operation],
    last_ok_ret: dict[Any, int] | None = None,
) -> dict[int, int]:
    """Per open-ended op id: the last position where placing it could still help (absent: never).

    What an open-ended op produces helps only an op that observes it: an ok op
    before that op's return, or another open-ended op while *that* one can still
    help (so the rule is applied until nothing changes). Per produced value
    only the latest ok return and the two latest open-ended expiries matter, so
    a round costs O(ops), even when thousands of ops share a value.
    ``last_ok_ret`` is :func:`_last_ok_returns` of ``ok_ops`` when already at hand.
    """
    if last_ok_ret is None:
        last_ok_ret = _last_ok_returns(model, ok_ops)
    info_observers: dict[Any, list[Operation]] = {}
    for op in candidates:
        for value in model.observes(op.f, op.value_in, None):
            try:
                info_observers.setdefault(value, []).append(op)
            except TypeError:
                continue
    produced: dict[int, tuple[Any, ...] | None] = {}
    for op in candidates:
        values = model.produces(op.f, op.value_in)
        produced[op.id] = None if values is None else tuple(values)
    expire: dict[int, int] = {}
    for _ in range(EXPIRE_ROUNDS_MAX):
        top: dict[Any, list[tuple[int, int]]] = {}
        for value, watchers in info_observers.items():
            known = sorted(((expire[w.id], w.id) for w in watchers if w.id in expire), reverse=True)
            top[value] = known[:2]
        changed = False
        for op in candidates:
            values = produced[op.id]
            best = INFINITY if values is None else -1
            for value in values or ():
                try:
                    ret = last_ok_ret.get(value, -1)
                    leaders = top.get(value, [])
                except TypeError:
                    best = INFINITY
                    break
                if ret > op.call:
                    best = max(best, ret)
                for until, other in leaders:
                    if other != op.id and until > op.call:
                        best = max(best, until)
                        break
            if best >= 0 and best > expire.get(op.id, -1):
                expire[op.id] = best
                changed = True
        if not changed:
            return expire
    return {op_id: INFINITY for op_id in expire}  # did not settle: keep everything alive


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
    last_ok_ret = _last_ok_returns(model, ok_ops)
    while True:  # dropping one open-ended op can orphan another
        expire = _expiries(model, ok_ops, candidates, last_ok_ret)
        kept = [op for op in candidates if op.id in expire]
        if len(kept) == len(candidates):
            break
        dropped += len(candidates) - len(kept)
        candidates = kept
    candidates.sort(key=lambda op: op.call)
    return _Prepared(ok_ops, candidates, [expire[op.id] for op in candidates], dropped)


@record(frozen=False)
class _Alive:
    """Which open-ended ops may be placed while a given return is the first pending one (point 3-4).

    Ops are grouped by signature (f, input); within a group, ops sorted by call
    expire no earlier than later ones (they have every later one's observers),
    so the first unused one is the only one worth trying. Groups are indexed by
    blocks of return ranks, so a lookup touches only groups alive near it.
    """

    groups: list[list[int]]  # signature -> info op indices, by call; used ones are always a prefix
    group_first_rank: list[int]
    group_last_rank: list[int]
    op_last_rank: list[int]
    blocks: list[list[int]]  # block of return ranks -> groups alive somewhere in it


def _alive_index(prepared: _Prepared, return_positions: list[int]) -> _Alive:
    n_ranks = len(return_positions)
    by_sig: dict[tuple[str, Any], list[int]] = {}
    for j, op in enumerate(prepared.info_ops):
        by_sig.setdefault((op.f, _hashable(op.value_in)), []).append(j)
    groups = list(by_sig.values())
    op_last_rank = [
        min(bisect.bisect_right(return_positions, expire), n_ranks - 1) for expire in prepared.info_expire
    ]
    for group in groups:  # make expiry non-increasing along each group (only ever later: still sound)
        latest = -1
        for j in reversed(group):
            latest = max(latest, op_last_rank[j])
            op_last_rank[j] = latest
    group_first = [bisect.bisect_right(return_positions, prepared.info_ops[g[0]].call) for g in groups]
    group_last = [max(op_last_rank[j] for j in g) for g in groups]
    blocks: list[list[int]] = [[] for _ in range(n_ranks // ALIVE_BLOCK_RETURNS + 1)]
    for g, (first, last) in enumerate(zip(group_first, group_last, strict=True)):
        if first > last:
            continue
        for b in range(first // ALIVE_BLOCK_RETURNS, last // ALIVE_BLOCK_RETURNS + 1):
            blocks[b].append(g)
    return _Alive(groups, group_first, group_last, op_last_rank, blocks)


def _zobrist(count: int) -> list[int]:
    if count <= 128:
        return [1 << i for i in range(count)]
    import random  # here: its import is a share of a small check's start-up

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
    of a long search. One long function on purpose: the loop below runs once per
    candidate tried (millions of times) and keeps all its state in locals,
    which is what makes it affordable in Python; the setup above it and the
    helpers around it stay small.
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

    return_positions: list[int] = sorted(op.ret for op in ok_ops)  # type: ignore[misc]
    alive = _alive_index(prepared, return_positions)
    groups, group_first, group_last, op_last_rank = (
        alive.groups,
        alive.group_first_rank,
        alive.group_last_rank,
        alive.op_last_rank,
    )
    blocks = alive.blocks
    ret_rank = {pos: r for r, pos in enumerate(return_positions)}

    zobrist = _zobrist(n_ok + n_info)
    step = model.step
    needs_before = getattr(model, "needs_before", None)
    # The ops as columns (no attribute lookups in the loop), and each op's kind for
    # the register models, whose step is inlined below (one call less per step).
    ok_f = [op.f for op in ok_ops]
    ok_in = [op.value_in for op in ok_ops]
    ok_out = [op.value_out for op in ok_ops]
    ok_ret = [op.ret for op in ok_ops]
    info_f = [op.f for op in info_ops]
    info_in = [op.value_in for op in info_ops]
    kinds = _INLINED_KINDS.get(type(model), {})
    ok_kind = [kinds.get(f, GENERIC) for f in ok_f]
    info_kind = [kinds.get(f, GENERIC) for f in info_f]
    nil_any = bool(getattr(model, "nil_reads_unknown", False))
    # Ops that never change the state (they produce nothing): reads.
    if kinds:
        pure = [kind == READ for kind in ok_kind]
    else:
        pure = [model.produces(op.f, op.value_in) == () for op in ok_ops]
    memo: set[tuple[int, Any]] = set()
    group_of = [0] * n_info
    for g, group in enumerate(groups):
        for j in group:
            group_of[j] = g
    group_used = [0] * len(groups)  # placed ops of each group: always its first ones
    info_call = [op.call for op in info_ops]
    # The stack of frames, as columns: candidates, next index, state before, op placed.
    fr_cands: list[list[int]] = []
    fr_index: list[int] = []
    fr_before: list[Any] = []
    fr_op: list[int] = []
    placed: list[int] = []
    state: Any = model.init()
    h = 0
    remaining = n_ok
    steps = 0
    best_frontier, stuck = -1, -1
    memo_max = budget.memo_entries_max
    next_progress_s = time.monotonic() + PROGRESS_EVERY_S

    def candidates(after_info: bool) -> list[int]:
        """Ok ops invoked before the first pending return, then alive open-ended ops.

        A legal ok op that never changes the state (a read of the current
        value) is the only candidate when there is one (point 6).
        """
        nonlocal best_frontier, stuck
        out: list[int] = []
        e = nxt[head]
        while not entry_is_ret[e]:
            i = entry_op[e]
            if pure[i] and not after_info:
                if ok_kind[i] == READ:
                    value = ok_out[i]
                    if value == state or (value is None and nil_any):
                        return [i]
                elif step(state, ok_f[i], ok_in[i], ok_out[i], True) is not ILLEGAL:
                    return [i]
            out.append(i)
            e = nxt[e]
        first_ret_op = entry_op[e]
        position = ok_ret[first_ret_op]
        if position > best_frontier:
            best_frontier, stuck = position, first_ret_op
        rank = ret_rank[position]
        block = blocks[rank // ALIVE_BLOCK_RETURNS]
        if not block:
            return out
        chosen: list[int] = []
        for g in block:
            if not group_first[g] <= rank <= group_last[g]:
                continue
            group = groups[g]
            used = group_used[g]
            if used < len(group):
                j = group[used]  # the earliest unplaced of its kind: the only one worth trying
                if info_call[j] < position and op_last_rank[j] >= rank:
                    chosen.append(j)
        if chosen:
            chosen.sort()  # earliest-called first: the order the search explores matters
            out.extend([n_ok + j for j in chosen])
        return out

    fr_cands.append(candidates(False))
    fr_index.append(0)
    fr_before.append(state)
    fr_op.append(-1)
    while True:
        cands = fr_cands[-1]
        index = fr_index[-1]
        if index >= len(cands):
            # Exhausted: undo the op that led here and resume the parent.
            fr_cands.pop()
            fr_index.pop()
            before = fr_before.pop()
            op_placed = fr_op.pop()
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
                group_used[group_of[op_placed - n_ok]] -= 1
            continue
        fr_index[-1] = index + 1
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
        after = fr_op[-1]
        if after >= n_ok and needs_before is not None:
            # Just placed an open-ended op: only an op that needs its effect may follow.
            nxt_op = ok_ops[op_id] if op_id < n_ok else info_ops[op_id - n_ok]
            if not needs_before(info_ops[after - n_ok], nxt_op):
                continue
        if op_id < n_ok:
            kind = ok_kind[op_id]
            if kind == WRITE:
                new_state = ok_in[op_id]
            elif kind == CAS:
                expected, new_state = ok_in[op_id]
                if state != expected:
                    continue
            elif kind == READ:
                value = ok_out[op_id]
                if not (value == state or (value is None and nil_any)):
                    continue
                new_state = state
            else:
                new_state = step(state, ok_f[op_id], ok_in[op_id], ok_out[op_id], True)
                if new_state is ILLEGAL:
                    continue
        else:
            j = op_id - n_ok
            kind = info_kind[j]
            if kind == WRITE:
                new_state = info_in[j]
            elif kind == CAS:
                expected, new_state = info_in[j]
                if state != expected:
                    continue
            elif kind == READ:
                continue  # an open-ended read leaves the state as it is (and is dropped before)
            else:
                new_state = step(state, info_f[j], info_in[j], None, False)
                if new_state is ILLEGAL:
                    continue
            if new_state == state:
                continue  # placing it changes nothing but uses it up
        new_h = h ^ zobrist[op_id]
        key = (new_h, new_state)
        if key in memo:
            continue
        memo.add(key)
        before = state
        state, h = new_state, new_h
        placed.append(op_id)
        if op_id < n_ok:
            e = call_entry[op_id]
            p, q = prv[e], nxt[e]
            nxt[p] = q
            if q != -1:
                prv[q] = p
            e = ret_entry[op_id]
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
            fr_cands.append(candidates(False))
        else:
            group_used[group_of[op_id - n_ok]] += 1
            fr_cands.append(candidates(True))
        fr_index.append(0)
        fr_before.append(before)
        fr_op.append(op_id)


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
