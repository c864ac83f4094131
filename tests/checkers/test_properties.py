"""Property tests: linearizable-by-construction histories pass; one planted anomaly fails, explained."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checkers.counterexample import remove
from checkers.generate import linearizable_history
from checkers.history import Op, pair
from checkers.linearizable import check_linearizable
from checkers.models import get_model
from checkers.search import search
from tests.checkers.brute import brute_force_linearizable

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _history(seed: int, op_count: int, processes: int, keys: int, cas: float) -> list[Op]:
    return linearizable_history(
        random.Random(seed),
        op_count=op_count,
        keys=keys,
        processes=processes,
        info_fraction=0.2,
        cas_fraction=cas,
    )


history_args = st.tuples(
    st.integers(0, 2**32),
    st.integers(1, 40),
    st.integers(1, 6),
    st.integers(1, 3),
    st.sampled_from([0.0, 0.5, 1.0]),
)


@SETTINGS
@given(history_args)
def test_linearizable_by_construction_is_valid(args: tuple[int, int, int, int, float]) -> None:
    ops = _history(*args)
    result = check_linearizable(ops, model="cas-register", time_limit_s=30)
    assert result["valid"] is True, result


@SETTINGS
@given(st.integers(0, 2**32), st.integers(1, 9), st.integers(1, 4))
def test_small_constructed_histories_agree_with_brute_force(seed: int, op_count: int, processes: int) -> None:
    ops = _history(seed, op_count, processes, 1, 0.5)
    operations = pair(ops)
    assert brute_force_linearizable(get_model("cas-register"), operations)


def _append(ops: list[Op], process: int, f: str, key: int, value_in: object, value_out: object) -> Op:
    """A sequential invoke/ok pair after everything else; returns the completion."""
    t = (ops[-1].time_ns if ops else 0) + 1_000
    ops.append(Op(len(ops), t, process, "invoke", f, key, None if f == "read" else value_in))
    done = Op(len(ops), t + 500, process, "ok", f, key, value_out)
    ops.append(done)
    return done


def _plant(ops: list[Op], kind: str) -> int:
    """Plant one anomaly on key 0 after the history; return the planted op's invoke index."""
    p = 10_000
    _append(ops, p, "write", 0, "A", "A")
    if kind == "stale-read":
        _append(ops, p + 1, "write", 0, "B", "B")
        planted = _append(ops, p + 2, "read", 0, None, "A")
    elif kind == "lost-write":
        planted = _append(ops, p + 1, "write", 0, "B", "B")
        _append(ops, p + 2, "read", 0, None, "A")
    else:  # double cas: two cas ops both succeed from the same value
        _append(ops, p + 1, "cas", 0, ("A", "C"), ("A", "C"))
        planted = _append(ops, p + 2, "cas", 0, ("A", "D"), ("A", "D"))
    return planted.index - 1


@SETTINGS
@given(history_args, st.sampled_from(["stale-read", "lost-write", "double-cas"]))
def test_one_planted_anomaly_is_found_and_the_counterexample_holds_it(
    args: tuple[int, int, int, int, float], kind: str
) -> None:
    ops = _history(*args)
    planted_invoke = _plant(ops, kind)
    result = check_linearizable(ops, model="cas-register", time_limit_s=30)
    assert result["valid"] is False
    ce = result["counterexample"]
    assert planted_invoke in {op["invoke_index"] for op in ce["ops"]}, ce
    assert ce["minimal"] is True
    assert ce["orders"], "a counterexample comes with the orders tried"
    _assert_minimal(ops, ce, result["first_unlinearizable"]["id"])


def _assert_minimal(ops: list[Op], ce: dict, stuck_id: int) -> None:
    """Removing any one op (with what that leaves unexplained) makes the counterexample linearizable."""
    model = get_model("cas-register")
    key = ce["ops"][0]["key"]
    by_id = {op.id: op for op in pair(ops) if op.key == key}
    members = [by_id[o["id"]] for o in ce["ops"]]
    members = [
        m
        if m.outcome == o["outcome"]
        else by_id[m.id].__class__(**{**_fields(m), "outcome": "info", "ret": None, "value_out": None})
        for m, o in zip(members, ce["ops"], strict=True)
    ]
    assert search(model, members).valid is False
    for removed in members:
        rest, settled = remove(model, members, removed.id, stuck_id)
        assert settled.valid is True, f"still not linearizable without op {removed.id}: {rest}"


def _fields(op: object) -> dict:
    return {name: getattr(op, name) for name in op.__slots__}  # type: ignore[attr-defined]
