"""A polynomial check for read/write registers whose written values are all unique.

When every write writes a different value, each read names the one write it
saw, and linearizability reduces to an interval question (Gibbons & Korach,
"Testing shared memories", SIAM J. Comput. 1997). Group each write with the
reads that returned its value (a *cluster*; reads of the initial value go
with a virtual write before everything). For a cluster, let ``lo`` be the
earliest return and ``hi`` the latest call among its ops. If ``lo < hi`` the
cluster's value must be in the register over all of ``[lo, hi]``: a *forward
zone*. Otherwise the cluster fits anywhere inside ``[hi, lo]``: a *backward
zone*. The history is linearizable iff every read starts before... no read
returns before its write is called, no two forward zones overlap, and no
backward zone lies inside a forward zone. Sorting zones makes it O(n log n),
which is what lets a 1M-op history be checked in seconds.

Open-ended writes nobody read are dropped (they may never have happened); an
open-ended write someone read did happen, and its interval runs to the end.
Anything outside this shape (a cas, a repeated value, an unhashable value)
returns None and the caller falls back to the search.
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


def unique_register_check(model: Model, operations: Sequence[Operation]) -> bool | None:
    """True/False when the fast path applies, None when the search must decide."""
    if model.name not in ("register", "cas-register"):
        return None
    initial = model.init()
    writes: dict[Any, Operation] = {}
    reads: list[Operation] = []
    try:
        for op in operations:
            if op.f == "write":
                if op.value_in in writes or op.value_in == initial:
                    return None
                writes[op.value_in] = op
            elif op.f == "read":
                if op.outcome == "ok":
                    reads.append(op)
            else:
                return None
    except TypeError:  # an unhashable value
        return None
    # cluster value -> [lo (earliest return), hi (latest call)]
    clusters: dict[Any, list[int]] = {}
    virtual = (-1, -1)
    for read in reads:
        value = read.value_out
        assert read.ret is not None
        if value == initial:
            call, ret = virtual
        else:
            write = writes.get(value)
            if write is None:
                return False  # read a value nobody wrote
            if read.ret < write.call:
                return False  # returned before the write was even called
            call, ret = write.call, END if write.ret is None else write.ret
        bounds = clusters.get(value)
        if bounds is None:
            bounds = clusters[value] = [ret, call]
        bounds[0] = min(bounds[0], read.ret)
        bounds[1] = max(bounds[1], read.call)
    for value, write in writes.items():
        if value not in clusters and write.ret is not None:
            clusters[value] = [write.ret, write.call]  # a write nobody read: its own backward zone
    forward = sorted((lo, hi) for lo, hi in clusters.values() if lo < hi)
    for (_, end_a), (start_b, _) in itertools.pairwise(forward):
        if start_b < end_a:
            return False  # two values each had to be in the register at once
    starts = [start for start, _ in forward]
    for lo, hi in clusters.values():
        if lo >= hi:  # backward zone [hi, lo]
            i = bisect.bisect_left(starts, hi) - 1
            if i >= 0 and forward[i][0] < hi and lo < forward[i][1]:
                return False  # this value had to be written and read inside another's zone
    return True
