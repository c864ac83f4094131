"""Operation x state classes are read from outcomes, not from what the workload asked for."""

from __future__ import annotations

from typing import Any

from checkers.coverage import LARGE_VALUE_BYTES, REGISTER_CLASSES, coverage
from checkers.history import Op


def history(*steps: tuple[str, Any, Any, str, Any, str | None]) -> list[Op]:
    """(f, key, invoke value, completion type, completion value, error), one process after another."""
    ops = []
    for process, (f, key, value, kind, out, error) in enumerate(steps):
        ops.append(Op(len(ops), len(ops), process, "invoke", f, key, value))
        ops.append(Op(len(ops), len(ops), process, kind, f, key, out, error))
    return ops


def test_register_classes_follow_the_outcomes() -> None:
    big = "7:" + "x" * LARGE_VALUE_BYTES
    ops = history(
        ("read", "a", None, "ok", None, None),  # read-missing
        ("cas", "a", [None, 1], "ok", [None, 1], None),  # cas-null-missing
        ("cas", "a", [None, 2], "fail", [None, 2], "cas-mismatch"),  # cas-null-present
        ("cas", "a", [9, 3], "fail", [9, 3], "cas-mismatch"),  # cas-mismatch
        ("cas", "a", [1, 4], "ok", [1, 4], None),  # cas-ok
        ("write", "a", 5, "ok", 5, None),  # write-overwrite
        ("write", "b", 6, "ok", 6, None),  # write-new-key
        ("write", "c", big, "ok", big, None),  # write-new-key + large-value
        ("read", "c", None, "ok", big, None),  # read-present + large-read
        ("write", "d", 8, "info", 8, "timeout"),  # unknown outcome: no class
        ("read", "e", None, "fail", None, "not-sent"),  # refused: no class
    )
    result = coverage(ops)
    assert result["classes"] == {
        "read-missing": 1,
        "read-present": 1,
        "write-new-key": 2,
        "write-overwrite": 1,
        "cas-ok": 1,
        "cas-null-missing": 1,
        "cas-null-present": 1,
        "cas-mismatch": 1,
        "large-value": 1,
        "large-read": 1,
    }
    assert result["missing"] == []
    assert set(result["expected"]) == set(REGISTER_CLASSES)


def test_a_plain_history_lists_the_classes_it_never_reached() -> None:
    ops = history(("write", "a", 1, "ok", 1, None), ("read", "a", None, "ok", 1, None))
    missing = coverage(ops)["missing"]
    assert "read-missing" in missing and "cas-mismatch" in missing and "large-value" in missing
    assert "write-new-key" not in missing and "read-present" not in missing


def test_append_classes() -> None:
    big = "3:" + "y" * LARGE_VALUE_BYTES
    ops = history(
        ("read", "k", None, "ok", None, None),
        ("append", "k", 1, "ok", 1, None),
        ("append", "k", 2, "ok", 2, None),
        ("read", "k", None, "ok", [1, 2], None),
        ("append", "m", big, "ok", big, None),
        ("read", "m", None, "ok", (big,), None),  # read_history freezes lists into tuples
        ("read", "n", None, "ok", (), None),
    )
    result = coverage(ops, model="list-append")
    assert result["classes"] == {
        "read-missing": 2,
        "read-present": 2,
        "append-new-key": 2,
        "append-existing": 1,
        "large-value": 1,
        "large-read": 1,
    }
