"""The unique-values check gives the full search's verdict, with and without cas, or steps aside."""

from __future__ import annotations

import random

import pytest

from checkers.fastpath import unique_register_check
from checkers.generate import linearizable_history
from checkers.history import Op, Operation, pair
from checkers.models import get_model
from checkers.search import search
from tests.checkers.brute import brute_force_linearizable


def unique_random_history(rng: random.Random, *, ops_max: int, processes: int, cas: bool) -> list[Op]:
    """A random interleaving whose writes and cas write fresh values; reads and cas expect any
    value written so far (or nil, or one never written), so both verdicts come up."""
    events: list[Op] = []
    outstanding: dict[int, Op] = {}
    active = list(range(processes))
    next_process = processes
    fresh = iter(range(1, 1_000))
    written: list[object] = [None]
    started = 0

    def emit(process: int, type_: str, f: str, value: object) -> Op:
        event = Op(len(events), len(events) * 10, process, type_, f, None, value)
        events.append(event)
        return event

    def seen() -> object:
        return rng.choice([*written, 999]) if rng.random() < 0.1 else rng.choice(written)

    while started < ops_max or outstanding:
        process = rng.choice(active)
        if process in outstanding:
            invoked = outstanding.pop(process)
            roll = rng.random()
            if roll < 0.15:
                emit(process, "info", invoked.f, invoked.value)
                active[active.index(process)] = next_process
                next_process += 1
            elif roll < 0.25 and invoked.f == "cas":
                emit(process, "fail", invoked.f, invoked.value)
            else:
                emit(process, "ok", invoked.f, seen() if invoked.f == "read" else invoked.value)
        elif started < ops_max:
            f = rng.choice(("read", "write", "cas") if cas else ("read", "write"))
            value: object = None
            if f != "read":
                value = next(fresh)
                written.append(value)
                if f == "cas":
                    value = (seen(), value)
            outstanding[process] = emit(process, "invoke", f, value)
            started += 1
    return events


@pytest.mark.parametrize("model_name", ["cas-register", "register"])
def test_unique_values_check_matches_brute_force(model_name: str) -> None:
    model = get_model(model_name)
    verdicts = {True: 0, False: 0}
    for seed in range(2000):
        rng = random.Random(seed)
        events = unique_random_history(
            rng, ops_max=rng.randint(1, 8), processes=3, cas=model_name == "cas-register"
        )
        operations = pair(events)
        expected = brute_force_linearizable(model, operations)
        got = unique_register_check(model, operations)
        assert got == expected, f"seed {seed}: unique-values check {got}, brute force {expected}\n{events}"
        verdicts[expected] += 1
    assert verdicts[True] > 200
    assert verdicts[False] > 200


def test_unique_values_check_matches_brute_force_with_knossos_reads() -> None:
    """Initial 0 and nil reads that match any state, as Knossos's models read them."""
    model = get_model("cas-register", initial=0, nil_reads_unknown=True)
    for seed in range(600):
        rng = random.Random(50_000 + seed)
        operations = pair(unique_random_history(rng, ops_max=rng.randint(1, 7), processes=3, cas=True))
        expected = brute_force_linearizable(model, operations)
        assert unique_register_check(model, operations) == expected, f"seed {seed}"


def _perturbed(rng: random.Random, ops: list[Op], rate: float) -> list[Op]:
    """Some reads return another written value; some cas expect another one."""
    written = [o.value if o.f == "write" else o.value[1] for o in ops if o.type == "invoke" and o.f != "read"]
    expected: dict[int, object] = {}
    out: list[Op] = []
    for o in ops:
        value = o.value
        if o.f == "read" and o.type == "ok" and written and rng.random() < rate:
            value = rng.choice(written)
        elif o.f == "cas" and o.type == "invoke" and written and rng.random() < rate:
            value = (rng.choice([None, *written]), o.value[1])
            expected[o.process] = value
        elif o.f == "cas" and o.type != "invoke" and o.process in expected:
            value = expected.pop(o.process)  # the completion carries the invocation's value
        out.append(Op(o.index, o.time_ns, o.process, o.type, o.f, o.key, value))
    return out


def test_unique_values_check_matches_the_search_on_larger_cas_histories() -> None:
    """Beyond brute force's reach (up to 300 ops, 30% open-ended, half of the changes cas),
    the full search and the unique-values check agree, valid and invalid."""
    model = get_model("cas-register")
    verdicts = {True: 0, False: 0}
    for seed in range(300):
        rng = random.Random(seed)
        ops = linearizable_history(
            rng,
            op_count=rng.randint(20, 300),
            keys=1,
            processes=rng.randint(2, 8),
            info_fraction=rng.choice([0.0, 0.1, 0.3]),
            cas_fraction=rng.choice([0.0, 0.5, 0.9]),
        )
        operations = pair(_perturbed(rng, ops, rng.choice([0.0, 0.01, 0.03])))
        exact = unique_register_check(model, operations)
        got = search(model, operations).valid
        assert exact is not None, f"seed {seed}: the unique-values check stepped aside"
        assert got == exact, f"seed {seed}: search {got}, unique-values check {exact}"
        verdicts[got] += 1
    assert verdicts[True] > 50
    assert verdicts[False] > 50


def _op(id_: int, f: str, value_in: object, value_out: object, call: int, ret: int | None) -> Operation:
    outcome = "ok" if ret is not None else "info"
    return Operation(id_, id_, f, 0, value_in, value_out, outcome, call, ret, call, ret, call, ret)


def test_outside_the_premise_the_search_decides() -> None:
    model = get_model("cas-register")
    repeated = [_op(0, "write", 1, 1, 0, 1), _op(1, "write", 1, 1, 2, 3)]
    initial_again = [_op(0, "cas", (None, 1), (None, 1), 0, 1), _op(1, "cas", (1, None), (1, None), 2, 3)]
    unhashable = [_op(0, "write", [1], [1], 0, 1)]
    nan = [_op(0, "write", float("nan"), float("nan"), 0, 1), _op(1, "read", None, float("nan"), 2, 3)]
    for operations in (repeated, initial_again, unhashable, nan):
        assert unique_register_check(model, operations) is None
    assert unique_register_check(get_model("counter"), [_op(0, "read", None, 0, 0, 1)]) is None


def test_a_cycle_of_cas_is_not_linearizable() -> None:
    """Each cas expects the other's value: neither can take effect first."""
    model = get_model("cas-register")
    operations = [_op(0, "cas", (1, 2), (1, 2), 0, 5), _op(1, "cas", (2, 1), (2, 1), 1, 6)]
    assert unique_register_check(model, operations) is False
    assert search(model, operations).valid is False
