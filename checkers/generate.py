"""Histories that are linearizable by construction, for tests and benchmarks.

A small discrete-event simulation: each process invokes an op, the op takes
effect on its key's register at a random instant inside its window, and the
completion is recorded later. Because every effect happens at one instant
between invocation and completion, the history is linearizable by
construction; open-ended (``info``) ops take effect or not at random and the
process then continues under a new id, as Jepsen does. Every written value is
unique (what Ratchet's workloads guarantee). All randomness comes from the
``random.Random`` passed in.
"""

from __future__ import annotations

import heapq
import random
from typing import Any

from checkers.history import Op


def linearizable_history(
    rng: random.Random,
    *,
    op_count: int,
    keys: int = 8,
    processes: int = 10,
    info_fraction: float = 0.05,
    cas_fraction: float = 0.0,
    read_fraction: float = 0.5,
) -> list[Op]:
    """``op_count`` invocations of read/write/cas over ``keys`` cas-registers."""
    registers: dict[int, Any] = {}
    ops: list[Op] = []
    heap: list[tuple[int, int, int, int, str, int, Any, bool]] = []
    next_value = 1
    seq = 0
    started = 0
    process_ids = list(range(processes))
    next_process = processes

    def emit(time_ns: int, process: int, type_: str, f: str, key: int, value: Any) -> None:
        ops.append(Op(len(ops), time_ns, process, type_, f, key, value))

    def invoke(slot: int, now_ns: int) -> None:
        nonlocal next_value, seq, started
        started += 1
        key = rng.randrange(keys)
        roll = rng.random()
        value: Any
        if roll < read_fraction:
            f, value = "read", None
        elif roll < read_fraction + cas_fraction * (1 - read_fraction):
            f, value = "cas", (registers.get(key), next_value)
            next_value += 1
        else:
            f, value = "write", next_value
            next_value += 1
        process = process_ids[slot]
        t_invoke = now_ns + rng.randrange(1_000, 50_000)
        emit(t_invoke, process, "invoke", f, key, value)
        t_apply = t_invoke + rng.randrange(1_000, 2_000_000)
        seq += 1
        heapq.heappush(heap, (t_apply, seq, slot, process, f, key, value, True))

    for slot in range(processes):
        invoke(slot, 0)
    while heap:
        t_ns, _, slot, process, f, key, value, applying = heapq.heappop(heap)
        if applying:
            crashed = rng.random() < info_fraction
            takes_effect = not crashed or rng.random() < 0.5
            result: Any = value
            outcome = "ok"
            if f == "read":
                result = registers.get(key)
            elif f == "write":
                if takes_effect:
                    registers[key] = value
            elif registers.get(key) == value[0]:
                if takes_effect:
                    registers[key] = value[1]
            else:
                outcome = "fail"
            if crashed:
                outcome, result = "info", value if f != "read" else None
            seq += 1
            heapq.heappush(
                heap,
                (
                    t_ns + rng.randrange(1_000, 2_000_000),
                    seq,
                    slot,
                    process,
                    f,
                    key,
                    (outcome, result),
                    False,
                ),
            )
            continue
        outcome, result = value
        emit(t_ns, process, outcome, f, key, result)
        if outcome == "info":
            process_ids[slot] = next_process
            next_process += 1
        if started < op_count:
            invoke(slot, t_ns)
    # Invocations were emitted when scheduled; put every event in time order.
    ops.sort(key=lambda op: (op.time_ns, op.index))
    return [Op(i, op.time_ns, op.process, op.type, op.f, op.key, op.value) for i, op in enumerate(ops)]
