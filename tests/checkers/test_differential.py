"""The search agrees with brute force on thousands of small random histories."""

from __future__ import annotations

import random

import pytest

from checkers.models import get_model
from checkers.search import search
from tests.checkers.brute import brute_force_linearizable, operations_of, random_history


def _describe(events) -> str:
    return "\n".join(f"  {e.index}: p{e.process} {e.type} {e.f} {e.value!r}" for e in events)


@pytest.mark.parametrize("model_name", ["cas-register", "register"])
def test_search_matches_brute_force(model_name: str) -> None:
    model = get_model(model_name)
    fs = ("read", "write", "cas") if model_name == "cas-register" else ("read", "write")
    verdicts = {True: 0, False: 0}
    for seed in range(1500):
        rng = random.Random(seed)
        events = random_history(rng, ops_max=rng.randint(1, 8), processes=3, values=3, fs=fs)
        operations = operations_of(events)
        expected = brute_force_linearizable(model, operations)
        got = search(model, operations)
        assert got.valid == expected, (
            f"seed {seed}: search says {got.valid}, brute force {expected}\n{_describe(events)}"
        )
        if got.valid is True:
            _assert_witness(model, operations, got.order)
        verdicts[expected] += 1
    assert verdicts[True] > 100
    assert verdicts[False] > 100


def _assert_witness(model, operations, order) -> None:
    """A valid verdict's order respects real time, the model, and holds every ok op."""
    by_id = {o.id: o for o in operations}
    placed = [by_id[i] for i in order]
    assert {o.id for o in operations if o.outcome == "ok"} <= set(order)
    state = model.init()
    for position, op in enumerate(placed):
        for later in placed[position + 1 :]:
            assert not (later.ret is not None and later.ret < op.call), "real-time order broken"
        known = op.outcome == "ok"
        state = model.step(state, op.f, op.value_in, op.value_out if known else None, known)
        assert repr(state) != "ILLEGAL"


def test_set_and_counter_models_match_brute_force() -> None:
    for name in ("set", "counter"):
        model = get_model(name)
        for seed in range(400):
            rng = random.Random(10_000 + seed)
            events = random_history(rng, ops_max=rng.randint(1, 7), processes=3, values=3, fs=("read", "add"))
            events = [_adapt(e, name, rng) for e in events]
            operations = operations_of(events)
            expected = brute_force_linearizable(model, operations)
            assert search(model, operations).valid == expected, f"{name} seed {seed}\n{_describe(events)}"


def _adapt(event, model_name: str, rng: random.Random):
    """Reads of a set/counter return a set/total instead of a register value."""
    from checkers.record import replace

    if event.f != "read" or event.type != "ok":
        return event
    if model_name == "set":
        return replace(event, value=tuple(sorted(rng.sample(range(3), rng.randint(0, 3)))))
    return replace(event, value=rng.randint(0, 4))


def test_search_matches_the_unique_values_check_on_larger_histories() -> None:
    """Beyond brute force's reach (up to 200 ops, 8 processes, 30% open-ended), the search
    must agree with the exact O(n log n) check for unique-valued registers."""
    from checkers.fastpath import unique_register_check
    from checkers.generate import linearizable_history
    from checkers.history import Op, pair

    model = get_model("cas-register")
    verdicts = {True: 0, False: 0}
    for seed in range(200):
        rng = random.Random(seed)
        ops = linearizable_history(
            rng,
            op_count=rng.randint(20, 200),
            keys=1,
            processes=rng.randint(2, 8),
            info_fraction=rng.choice([0.0, 0.1, 0.3]),
        )
        written = [o.value for o in ops if o.f == "write" and o.type == "invoke"]
        perturbed = [
            Op(o.index, o.time_ns, o.process, o.type, o.f, o.key, rng.choice(written))
            if o.f == "read" and o.type == "ok" and written and rng.random() < 0.03
            else o
            for o in ops
        ]
        operations = pair(perturbed)
        exact = unique_register_check(model, operations)
        got = search(model, operations).valid
        assert got == exact, f"seed {seed}: search {got}, unique-values check {exact}"
        verdicts[got] += 1
    assert verdicts[True] > 30
    assert verdicts[False] > 30
