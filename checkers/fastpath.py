"""A polynomial check for (cas-)registers whose written values are all unique.

When every write and every cas writes a different value (none of them the
initial one), each read names the one op whose value it saw, and each cas
names the one op it must directly follow among the ops that change the state:
the value it expects exists only from that op until the next change. So the
state changes fall into fixed *chains*: a write (or the initial value, a
virtual write before everything), then the cas that expects its value, then
the cas that expects that one's, and so on, each value followed by the reads
that returned it. A chain is one run of the linearization: once its first op
took effect, nothing from another chain can come before its last.

That reduces linearizability to an interval question, as for plain registers
with unique values (Gibbons & Korach, "Testing shared memories", SIAM J.
Comput. 1997, whose clusters are the chains without a cas). For a chain, let
``lo`` be the earliest return and ``hi`` the latest call among its ops. If
``lo < hi`` the chain runs over all of ``[lo, hi]``: a *forward zone*;
otherwise all its ops fit at one instant anywhere inside ``[hi, lo]``: a
*backward zone*. The history is linearizable iff

- every read and every cas expects a value some op wrote (or the initial one),
- no two cas expect the same value, and every cas is reached from a write,
- each chain fits in its own order (earliest placement, op by op),
- no two forward zones overlap, and no backward zone lies inside a forward one.

Each condition is necessary; together they build a linearization (a forward
chain placed inside its zone, clamped there from any placement that fits it;
a backward one at an instant of its zone outside every forward zone). Sorting
the zones makes it O(n log n), which is what lets a 1M-op history be checked
in seconds.

Open-ended ops whose value nobody relies on are dropped (they may never have
happened; with none of its value seen, dropping one leaves any linearization
legal); one whose value an op that happened relies on did happen, and its
interval runs to the end. Anything outside this shape (a repeated value, an
unhashable or NaN value, another model) returns None and the caller falls
back to the search.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence

from checkers.history import Operation
from checkers.models.base import Model

TYPE_CHECKING = False  # typing is for type checkers only: importing it slows every `ratchet check`
if TYPE_CHECKING:
    from typing import Any

END = 1 << 62
_VIRTUAL = -1  # the initial value's virtual write: called and returned before every event


class _NotUnique(Exception):
    """The history is outside the premise: the search must decide."""


def unique_register_check(model: Model, operations: Sequence[Operation]) -> bool | None:
    """True/False when the fast path applies, None when the search must decide."""
    if model.name not in ("register", "cas-register"):
        return None
    try:
        return _check(model, operations)
    except (_NotUnique, TypeError):  # TypeError: an unhashable value
        return None


def _plain(value: Any) -> Any:
    """The value, unless equality on it is not what a dict lookup does (NaN)."""
    if type(value) is float and value != value:
        raise _NotUnique
    return value


def _check(model: Model, operations: Sequence[Operation]) -> bool:
    initial = _plain(model.init())
    nil_any = bool(getattr(model, "nil_reads_unknown", False))
    allow_cas = model.name == "cas-register"
    producer: dict[Any, Operation] = {}  # written value -> the op that wrote it
    readers: dict[Any, list[Operation]] = {}  # value -> ok reads that returned it
    ok_cas: list[Operation] = []
    info_cas: dict[Any, Operation] = {}  # produced value -> open-ended cas
    for op in operations:
        f = op.f
        if f == "read":
            if op.outcome != "ok":
                continue  # an open-ended read constrains nothing
            value = op.value_out
            if value is None and nil_any:
                continue  # a nil read matches any state
            readers.setdefault(_plain(value), []).append(op)
            continue
        if f == "write":
            value = op.value_in
        elif f == "cas" and allow_cas:
            value = op.value_in[1]
            if op.outcome == "ok":
                ok_cas.append(op)
            else:
                info_cas[value] = op
        else:
            raise _NotUnique
        if _plain(value) == initial or value in producer:
            raise _NotUnique
        producer[value] = op

    # Which ops took effect: every ok op, and each open-ended one whose value is relied on.
    relied: list[Any] = list(readers)
    relied.extend(op.value_in[0] for op in ok_cas)
    happened: set[int] = {op.id for op in operations if op.outcome == "ok"}
    while relied:
        value = relied.pop()
        if value == initial:
            continue
        op = producer.get(value)
        if op is None:
            return False  # a read or cas relied on a value nobody wrote
        if op.id in happened:
            continue
        happened.add(op.id)
        if op.f == "cas":
            relied.append(op.value_in[0])

    # Each value's successor: the one cas (that happened) expecting it.
    successor: dict[Any, Operation] = {}
    cas_count = 0
    for op in itertools.chain(ok_cas, info_cas.values()):
        if op.id not in happened:
            continue
        cas_count += 1
        expected = _plain(op.value_in[0])
        if expected in successor:
            return False  # two cas found the same value: only one can come right after it
        successor[expected] = op

    heads: list[tuple[Any, int, int]] = [(initial, _VIRTUAL, _VIRTUAL)]
    for value, op in producer.items():
        if op.f == "write" and op.id in happened:
            heads.append((value, op.call, END if op.ret is None else op.ret))
    zones: list[tuple[int, int]] = []
    chained = 0
    for value, call, ret in heads:
        # Earliest placement along the chain: each op after the last one placed.
        at = call
        lo, hi = ret, call
        while True:
            for read in readers.get(value, ()):
                if read.ret < at:  # type: ignore[operator]
                    return False  # returned before the value it read could be there
                if read.call > hi:
                    hi = read.call
                if read.ret < lo:  # type: ignore[operator]
                    lo = read.ret  # type: ignore[assignment]
            reads = readers.get(value)
            if reads:
                at = max(at, max(read.call for read in reads))
            nxt = successor.get(value)
            if nxt is None:
                break
            chained += 1
            nxt_ret = END if nxt.ret is None else nxt.ret
            if nxt_ret < at:
                return False  # the cas returned before the value it expects could be there
            at = max(at, nxt.call)
            hi = max(hi, nxt.call)
            lo = min(lo, nxt_ret)
            value = nxt.value_in[1]
        zones.append((lo, hi))
    if chained != cas_count:
        return False  # a cycle of cas, each expecting the next one's value: none can go first
    forward = sorted(zone for zone in zones if zone[0] < zone[1])
    for (_, end_a), (start_b, _) in itertools.pairwise(forward):
        if start_b < end_a:
            return False  # two chains each had to run over the same stretch
    starts = [start for start, _ in forward]
    for lo, hi in zones:
        if lo >= hi:  # backward zone [hi, lo]
            i = bisect.bisect_left(starts, hi) - 1
            if i >= 0 and forward[i][0] < hi and lo < forward[i][1]:
                return False  # this chain had to run inside another's zone
    return True
