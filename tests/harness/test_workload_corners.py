"""The workloads walk through every corner of the state machine on purpose, reproducibly."""

from __future__ import annotations

from collections import Counter

from checkers.coverage import coverage
from checkers.history import Op
from core import generator as gen
from core.scenario import WorkloadSpec
from workloads import append, register


def invocations(workload: object, *, seed: int) -> list[dict]:
    history = gen.simulate(gen.clients(gen.limit(400, workload)), seed=seed, concurrency=4)
    return [op for op in history if op["type"] == "invoke"]


def test_register_corners_are_issued_with_unique_values_and_fresh_keys() -> None:
    spec = WorkloadSpec(keys=3, rate_hz=0)
    ops = invocations(register.generator(spec, corner_rate=0.3), seed=4)
    assert ops == invocations(register.generator(spec, corner_rate=0.3), seed=4)
    fresh = [op for op in ops if op["key"] not in range(3)]
    kinds = Counter(
        "read" if op["f"] == "read"
        else "cas-null" if op["f"] == "cas" and op["value"][0] is None
        else "large" if isinstance(op["value"], str)
        else op["f"]
        for op in fresh
    )  # fmt: skip
    assert kinds["read"] and kinds["cas-null"] and kinds["write"] and kinds["large"]
    assert all(len(op["value"]) == register.LARGE_VALUE_BYTES for op in fresh if isinstance(op["value"], str))
    # Every fresh key is used once: a corner never lands on a key another op uses.
    assert len({op["key"] for op in fresh}) == len(fresh)
    written = [op["value"] for op in ops if op["f"] == "write"] + [
        op["value"][1] for op in ops if op["f"] == "cas"
    ]
    assert len(written) == len(set(written))
    # cas from a value never written, and cas from null on a written key, on the slot keys
    slot_cas = [op["value"] for op in ops if op["f"] == "cas" and op["key"] in range(3)]
    assert any(old is None for old, _ in slot_cas)
    assert any(old is not None and old not in written for old, _ in slot_cas)


def test_without_corners_the_register_workload_stays_on_its_keys() -> None:
    ops = invocations(
        register.generator(WorkloadSpec(keys=3, rate_hz=0), corner_rate=0.0, ops_per_key=1000), seed=4
    )
    assert {op["key"] for op in ops} <= {0, 1, 2}


def test_append_corners() -> None:
    ops = invocations(
        append.generator(WorkloadSpec(name="append", keys=3, rate_hz=0), corner_rate=0.3), seed=2
    )
    fresh = [op for op in ops if op["key"] not in range(3)]
    assert {op["f"] for op in fresh} == {"read", "append"}
    assert any(isinstance(op["value"], str) for op in fresh)
    values = [op["value"] for op in ops if op["f"] == "append"]
    assert len(values) == len(set(values))


def test_a_simulated_register_run_reaches_every_class_the_checker_knows() -> None:
    """The simulator answers every op ok with its own value; the classes reachable that way all show."""
    history = gen.simulate(
        gen.clients(gen.limit(600, register.generator(WorkloadSpec(keys=3, rate_hz=0), corner_rate=0.3))),
        seed=1,
        concurrency=3,
    )
    ops = [
        Op(i, op.get("time_ns", i), op["process"], op["type"], op["f"], op["key"], op["value"])
        for i, op in enumerate(history)
    ]
    classes = coverage(ops)["classes"]
    # The generator's simulation completes every op ok and echoes the invocation's value,
    # so only the classes that need no real state show here; the real runs show the rest.
    assert classes["write-new-key"] and classes["cas-null-missing"] and classes["large-value"]
