"""A brute-force linearizability oracle for tiny histories, written independently of the search.

It tries every order of the ok ops plus every subset of the open-ended ops,
keeping only orders that respect real time (an op that returned before
another was called comes first) and that the model accepts step by step.
Exponential on purpose: it is the reference the clever search is compared to.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from checkers.history import Op, Operation, pair
from checkers.models.base import ILLEGAL, Model


def brute_force_linearizable(model: Model, operations: Sequence[Operation]) -> bool:
    ops = list(operations)
    ok = [o for o in ops if o.outcome == "ok"]
    must_before = {o.id: [p.id for p in ok if p.ret is not None and p.ret < o.call] for o in ops}
    by_id = {o.id: o for o in ops}

    def extend(state: object, placed: frozenset[int]) -> bool:
        if all(o.id in placed for o in ok):
            return True
        for o in ops:
            if o.id in placed or any(p not in placed for p in must_before[o.id]):
                continue
            known = o.outcome == "ok"
            new = model.step(state, o.f, o.value_in, o.value_out if known else None, known)
            if new is ILLEGAL:
                continue
            if extend(new, placed | {o.id}):
                return True
        return False

    del by_id
    return extend(model.init(), frozenset())


def random_history(
    rng: random.Random,
    *,
    ops_max: int = 8,
    processes: int = 3,
    values: int = 3,
    fs: Sequence[str] = ("read", "write", "cas"),
) -> list[Op]:
    """A random interleaving: each process invokes then completes ok/info/fail; reads return random values."""
    events: list[Op] = []
    outstanding: dict[int, Op] = {}
    started = 0
    next_process = processes

    def emit(process: int, type_: str, f: str, value: object) -> Op:
        op = Op(len(events), len(events) * 10, process, type_, f, None, value)
        events.append(op)
        return op

    active = list(range(processes))
    while started < ops_max or outstanding:
        process = rng.choice(active)
        if process in outstanding:
            inv = outstanding.pop(process)
            roll = rng.random()
            if roll < 0.12:
                emit(process, "info", inv.f, inv.value)
                active[active.index(process)] = next_process  # Jepsen gives a crashed process a new id
                next_process += 1
            elif roll < 0.2 and inv.f != "read":
                emit(process, "fail", inv.f, inv.value)
            else:
                value = rng.choice([None, *range(values)]) if inv.f == "read" else inv.value
                emit(process, "ok", inv.f, value)
        elif started < ops_max:
            f = rng.choice(list(fs))
            if f == "read":
                value: object = None
            elif f == "cas":
                value = (rng.randrange(values), rng.randrange(values))
            else:
                value = rng.randrange(values)
            outstanding[process] = emit(process, "invoke", f, value)
            started += 1
    return events


def operations_of(events: Sequence[Op]) -> list[Operation]:
    return pair(events)
