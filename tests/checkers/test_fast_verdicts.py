"""The fast path's answers taken from the paired events give the entry the operations give.

check_linearizable first asks the unique-values check of every key straight from
the paired events (no Operation built); when every key is valid that is the
entry, else the general path runs with those answers. Here both are compared with
the general path alone, on valid and invalid histories, every register model
setting, values that need freezing, ops a model refuses and random small histories.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from checkers import linearizable
from checkers.generate import linearizable_history
from checkers.history import Op
from checkers.linearizable import check_linearizable
from checkers.models import UnsupportedOp, get_model
from tests.checkers.brute import random_history


def _entry(ops: list[Op], model: Any) -> object:
    try:
        entry = check_linearizable(ops, model=model, time_limit_s=60, processes=1)
    except UnsupportedOp as exc:
        return ("unsupported", str(exc))
    entry.pop("seconds")
    if isinstance(entry.get("counterexample"), dict):
        entry["counterexample"].pop("shrink_seconds", None)
    return entry


def _both(ops: list[Op], model: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[object, object]:
    fast = _entry(ops, model)
    with monkeypatch.context() as patch:
        patch.setattr(linearizable, "_fast_verdicts", lambda model, events: None)
        general = _entry(ops, model)
    return fast, general


def _stale(ops: list[Op], at: float) -> list[Op]:
    """One ok read from ``at`` of the way on returns the value its key held five writes before."""
    ops = list(ops)
    written: dict[Any, list[Any]] = {}
    for position, op in enumerate(ops):
        if (
            op.type == "ok"
            and op.f == "read"
            and position > len(ops) * at
            and len(written.get(op.key, ())) > 5
        ):
            ops[position] = Op(*[getattr(op, name) for name in Op.__match_args__[:6]], written[op.key][-6])
            return ops
        if op.type == "ok" and op.f == "write":
            written.setdefault(op.key, []).append(op.value)
        elif op.type == "ok" and op.f == "cas":
            written.setdefault(op.key, []).append(op.value[1])
    raise AssertionError("no read to make stale")


MODELS = [
    "cas-register",
    get_model("cas-register", nil_reads_unknown=True),
    get_model("cas-register", initial=0),
]


@pytest.mark.parametrize("seed", range(6))
def test_generated_histories_valid_and_invalid(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(seed)
    ops = linearizable_history(
        rng,
        op_count=rng.randint(50, 600),
        keys=rng.randint(1, 5),
        processes=rng.randint(1, 8),
        info_fraction=0.2,
        cas_fraction=rng.choice([0.0, 0.5]),
    )
    for history in (ops, _stale(ops, 0.5)):
        for model in MODELS:
            fast, general = _both(history, model, monkeypatch)
            assert fast == general, (seed, model)
    no_cas = [op for op in ops if op.f != "cas"]
    assert _both(no_cas, "register", monkeypatch)[0] == _both(no_cas, "register", monkeypatch)[1]


def test_nemesis_ops_failures_unhashable_values_and_refused_ops(monkeypatch: pytest.MonkeyPatch) -> None:
    ops = linearizable_history(random.Random(7), op_count=300, keys=3, processes=4, info_fraction=0.1)
    t = ops[-1].time_ns
    extra = [
        Op(0, t + 1, "nemesis", "info", "start-partition", None, None),
        Op(0, t + 2, 50, "invoke", "write", 1, 10_001),
        Op(0, t + 3, 50, "fail", "write", 1, 10_001),
        Op(0, t + 4, "nemesis", "info", "start-partition", None, {"targets": ["n1"]}),
    ]
    with_extra = ops + extra
    unhashable = [
        *with_extra,
        Op(0, t + 5, 51, "invoke", "write", 2, {"a": 1}),
        Op(0, t + 6, 51, "ok", "write", 2, {"a": 1}),
    ]
    bad_cas = [*with_extra, Op(0, t + 5, 52, "invoke", "cas", 2, 5), Op(0, t + 6, 52, "ok", "cas", 2, 5)]
    unknown_f = [*with_extra, Op(0, t + 5, 53, "invoke", "add", 2, 5)]
    empty: list[Op] = []
    for history in (with_extra, unhashable, bad_cas, unknown_f, empty):
        history = [Op(i, *[getattr(op, n) for n in Op.__match_args__[1:]]) for i, op in enumerate(history)]
        fast, general = _both(history, "cas-register", monkeypatch)
        assert fast == general
    assert isinstance(_both(bad_cas, "cas-register", monkeypatch)[0], tuple)  # refused, as before


@pytest.mark.parametrize("model_name", ["cas-register", "register"])
def test_random_small_histories(model_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    fs = ("read", "write", "cas") if model_name == "cas-register" else ("read", "write")
    decided = 0
    for seed in range(300):
        rng = random.Random(seed)
        events = random_history(
            rng, ops_max=rng.randint(1, 8), processes=3, values=rng.choice([3, 50]), fs=fs
        )
        fast, general = _both(list(events), model_name, monkeypatch)
        assert fast == general, seed
        decided += isinstance(fast, dict) and fast["methods"] == ["unique-values"]
    assert decided > 20  # the events' answers decided many of them alone
