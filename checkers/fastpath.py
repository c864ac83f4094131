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

from checkers.history import Operation, PairedEvent
from checkers.models.base import Model

TYPE_CHECKING = False  # typing is for type checkers only: importing it slows every `ratchet check`
if TYPE_CHECKING:
    from typing import Any

    # What the check needs of one operation: (identity, f, ok, value_in, value_out, call, ret).
    # ``ok`` is whether it completed ok; an open-ended one has value_out and ret None.
    Row = tuple[int, str, bool, Any, Any, int, int | None]

END = 1 << 62
_VIRTUAL = -1  # the initial value's virtual write: called and returned before every event


class _NotUnique(Exception):
    """The history is outside the premise: the search must decide."""


def unique_register_check(model: Model, operations: Sequence[Operation]) -> bool | None:
    """True/False when the fast path applies, None when the search must decide."""
    if model.name not in ("register", "cas-register"):
        return None
    return unique_register_rows_check(
        model,
        [(op.id, op.f, op.outcome == "ok", op.value_in, op.value_out, op.call, op.ret) for op in operations],
    )


def unique_register_rows_check(model: Model, rows: Sequence[Row]) -> bool | None:
    """:func:`unique_register_check` of the operations these rows stand for (see :func:`event_row`)."""
    if model.name not in ("register", "cas-register"):
        return None
    try:
        return _check(model, rows)
    except (_NotUnique, TypeError):  # TypeError: an unhashable value
        return None


def event_row(event: PairedEvent) -> Row:
    """The row of a paired invocation and completion (not a ``fail``): the fields
    :func:`~checkers.history.pair` gives its operation, its call position as identity."""
    call, invoke, ret, completion = event
    f = invoke.f
    if completion is not None and completion.type == "ok":
        return (call, f, True, None if f == "read" else invoke.value, completion.value, call, ret)
    return (call, f, False, None if f == "read" else invoke.value, None, call, None)


def _plain(value: Any) -> Any:
    """The value, unless equality on it is not what a dict lookup does (NaN)."""
    if type(value) is float and value != value:
        raise _NotUnique
    return value


def _check(model: Model, rows: Sequence[Row]) -> bool:
    initial = _plain(model.init())
    nil_any = bool(getattr(model, "nil_reads_unknown", False))
    allow_cas = model.name == "cas-register"
    producer: dict[Any, Row] = {}  # written value -> the op that wrote it
    readers: dict[Any, list[Row]] = {}  # value -> ok reads that returned it
    ok_cas: list[Row] = []
    info_cas: dict[Any, Row] = {}  # produced value -> open-ended cas
    happened: set[int] = set()  # identities of the writes and cas that took effect (reads: not needed)
    # (one pass over every op of a long history: _plain inlined, no list made per lookup)
    for row in rows:
        f = row[1]
        if f == "read":
            if not row[2]:
                continue  # an open-ended read constrains nothing
            value = row[4]
            if value is None and nil_any:
                continue  # a nil read matches any state
            if type(value) is float and value != value:
                raise _NotUnique  # NaN
            seen = readers.get(value)
            if seen is None:
                readers[value] = [row]
            else:
                seen.append(row)
            continue
        if f == "write":
            value = row[3]
            if row[2]:
                happened.add(row[0])
        elif f == "cas" and allow_cas:
            value = row[3][1]
            if row[2]:
                ok_cas.append(row)
                happened.add(row[0])
            else:
                info_cas[value] = row
        else:
            raise _NotUnique
        if (type(value) is float and value != value) or value == initial or value in producer:
            raise _NotUnique
        producer[value] = row

    # Which ops took effect: every ok op, and each open-ended one whose value is relied on.
    relied: list[Any] = list(readers)
    relied.extend(row[3][0] for row in ok_cas)
    while relied:
        value = relied.pop()
        if value == initial:
            continue
        row = producer.get(value)
        if row is None:
            return False  # a read or cas relied on a value nobody wrote
        if row[0] in happened:
            continue
        happened.add(row[0])
        if row[1] == "cas":
            relied.append(row[3][0])

    # Each value's successor: the one cas (that happened) expecting it.
    successor: dict[Any, Row] = {}
    cas_count = 0
    for row in itertools.chain(ok_cas, info_cas.values()):
        if row[0] not in happened:
            continue
        cas_count += 1
        expected = _plain(row[3][0])
        if expected in successor:
            return False  # two cas found the same value: only one can come right after it
        successor[expected] = row

    heads: list[tuple[Any, int, int]] = [(initial, _VIRTUAL, _VIRTUAL)]
    for value, row in producer.items():
        if row[1] == "write" and row[0] in happened:
            heads.append((value, row[5], END if row[6] is None else row[6]))
    zones: list[tuple[int, int]] = []
    chained = 0
    for value, call, ret in heads:
        # Earliest placement along the chain: each op after the last one placed.
        at = call
        lo, hi = ret, call
        while True:
            reads = readers.get(value)
            if reads is not None:
                latest = at  # the latest call among these reads (and ``at``)
                for read in reads:
                    read_call, read_ret = read[5], read[6]
                    if read_ret < at:  # type: ignore[operator]
                        return False  # returned before the value it read could be there
                    if read_call > latest:
                        latest = read_call
                    if read_ret < lo:  # type: ignore[operator]
                        lo = read_ret  # type: ignore[assignment]
                at = latest
                if latest > hi:
                    hi = latest
            nxt = successor.get(value)
            if nxt is None:
                break
            chained += 1
            nxt_call = nxt[5]
            nxt_ret = END if nxt[6] is None else nxt[6]
            if nxt_ret < at:
                return False  # the cas returned before the value it expects could be there
            at = max(at, nxt_call)
            hi = max(hi, nxt_call)
            lo = min(lo, nxt_ret)
            value = nxt[3][1]
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
