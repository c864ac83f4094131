"""Verdicts compose false > unknown > true; many keys are checked in worker processes."""

from __future__ import annotations

import random

import pytest

from checkers.compose import check_history, combine_validity
from checkers.generate import linearizable_history
from checkers.history import Op
from checkers.linearizable import PARALLEL_OPS_MIN, check_linearizable


def test_combine_validity_orders_false_over_unknown_over_true() -> None:
    assert combine_validity([True, True]) is True
    assert combine_validity([True, "unknown"]) == "unknown"
    assert combine_validity(["unknown", False, True]) is False
    assert combine_validity([]) is True


def test_the_failing_key_among_many_is_named() -> None:
    ops = linearizable_history(random.Random(11), op_count=PARALLEL_OPS_MIN + 5_000, keys=8, cas_fraction=0.3)
    assert check_linearizable(ops, processes=2)["valid"] is True
    # A stale read on key 5 after everything: write A, write B, then read A.
    t = ops[-1].time_ns
    extra = [
        (900, "invoke", "write", "A"),
        (900, "ok", "write", "A"),
        (901, "invoke", "write", "B"),
        (901, "ok", "write", "B"),
        (902, "invoke", "read", None),
        (902, "ok", "read", "A"),
    ]
    for i, (process, type_, f, value) in enumerate(extra):
        ops.append(Op(len(ops), t + 1000 * (i + 1), process, type_, f, 5, value))
    result = check_linearizable(ops, processes=2)
    assert result["valid"] is False
    assert result["key"] == 5
    assert result["failed_keys"] == [5]
    assert len(result["counterexample"]["ops"]) == 3


def test_check_history_composes_every_checker() -> None:
    ops = linearizable_history(random.Random(3), op_count=200, keys=2)
    results = check_history(ops)
    assert results["valid"] is True
    assert set(results["checkers"]) == {"linearizable", "stats", "perf", "availability"}
    assert all(entry["valid"] is True for entry in results["checkers"].values())


def test_the_other_checkers_run_once_while_the_workers_search_and_give_what_they_give_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """check_history runs stats, perf and availability while the search's workers run (or after a
    search in this process): once, with the same results either way, in the same order."""
    import os

    from checkers import linearizable

    # Every key left to the search (the fast path would decide these unique values here).
    monkeypatch.setattr(linearizable, "unique_register_check", lambda model, operations: None)
    monkeypatch.setattr(linearizable, "unique_register_rows_check", lambda model, rows: None)
    ops = linearizable_history(random.Random(12), op_count=PARALLEL_OPS_MIN + 2_000, keys=4, cas_fraction=0.3)
    calls: list[int] = []
    for processes in (2, 1):
        entry = check_linearizable(ops, processes=processes, meanwhile=lambda: calls.append(os.getpid()))
        assert entry["valid"] is True
        assert entry["methods"] == ["search"]
    assert calls == [os.getpid(), os.getpid()]  # once per check, in this process

    pooled = check_history(ops)
    with monkeypatch.context() as patch:
        patch.setattr(linearizable, "PARALLEL_OPS_MIN", 1 << 62)  # every key searched here, the others after
        alone = check_history(ops)
    assert (
        list(pooled["checkers"])
        == list(alone["checkers"])
        == ["linearizable", "stats", "perf", "availability"]
    )
    for name in ("stats", "perf", "availability"):
        assert pooled["checkers"][name] == alone["checkers"][name]
    assert pooled["valid"] is alone["valid"] is True
