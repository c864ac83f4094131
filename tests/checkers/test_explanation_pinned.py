"""An invalid history's explanation is the same wherever it is computed.

A big history's keys are checked in worker processes, and the worker that finds
a violation explains it there; a small one (or ``processes=1``) is checked and
explained in this process. Both must report the same key, the same first
unlinearizable op and the same counterexample, and those are pinned here as
the checker gave them before the explanation moved into the workers.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from checkers import linearizable
from checkers.generate import linearizable_history
from checkers.history import Op
from checkers.linearizable import PARALLEL_OPS_MIN, check_linearizable


def _stale_reads(ops: list[Op], keys: list[tuple[int, float]], lag: int = 20) -> list[Op]:
    """One ok read per key (the first after ``start`` of the history) returns the value ``lag`` writes old."""
    ops = list(ops)
    for key, start in keys:
        written: list[Any] = []
        for position in range(int(len(ops) * start), len(ops)):
            op = ops[position]
            if op.key != key:
                continue
            if op.type == "ok" and op.f == "read" and len(written) > lag and written[-lag - 1] != op.value:
                stale = written[-lag - 1]
                ops[position] = Op(
                    op.index, op.time_ns, op.process, op.type, op.f, op.key, stale, op.error, op.node
                )
                break
            if op.type == "ok" and op.f == "write":
                written.append(op.value)
            elif op.type == "ok" and op.f == "cas":
                written.append(op.value[1])
    return ops


def _without_timings(entry: dict[str, Any]) -> dict[str, Any]:
    entry = dict(entry)
    entry.pop("seconds")
    entry["counterexample"] = {k: v for k, v in entry["counterexample"].items() if k != "shrink_seconds"}
    return entry


def test_three_failing_keys_explained_in_workers_as_in_one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    ops = linearizable_history(
        random.Random(16),
        op_count=PARALLEL_OPS_MIN + 4_000,
        keys=6,
        processes=10,
        info_fraction=0.05,
        cas_fraction=0.5,
    )
    # Keys 4, 2 and 1 fail; key 1's stuck read completes first, though the workers meet it last.
    invalid = _stale_reads(ops, [(4, 0.6), (1, 0.3), (2, 0.8)])
    # The fast path decides the valid keys here; the three it proves invalid are searched (and
    # explained) in workers once they are enough ops for a pool: made so here.
    with monkeypatch.context() as patch:
        patch.setattr(linearizable, "PARALLEL_OPS_MIN", 1_000)
        pooled = _without_timings(check_linearizable(invalid, processes=2))
    alone = _without_timings(check_linearizable(invalid, processes=1))
    assert pooled == alone

    assert pooled["valid"] is False
    assert pooled["key"] == 1
    assert pooled["failed_keys"] == [4, 2, 1]
    assert pooled["linearizable_through_event"] == 15156
    first = pooled["first_unlinearizable"]
    assert (first["id"], first["f"], first["value_out"], first["invoke_index"], first["complete_index"]) == (
        7093,
        "read",
        3686,
        15139,
        15156,
    )
    counterexample = pooled["counterexample"]
    assert [op["id"] for op in counterexample["ops"]] == [6784, 6815, 6817, 7093]
    assert counterexample["minimal"] is True
    assert counterexample["explanation"] == (
        "read by p357 returned 3686 (history index 15139->15156) cannot be linearized: no order of these "
        "4 operations that real time allows is legal, and where it is tried the state is one of: 3688."
    )
    assert [order["order"] for order in counterexample["orders"]] == [[6784, 6815, 6817], [6784, 6817]]
    assert counterexample["orders"][0]["explanation"] == (
        "after write 3673 by p335 [ok], then cas 3673->3686 by p337 [ok], then write 3688 by p327 [ok], "
        "read by p357 returned 3686, but the register held 3688"
    )
