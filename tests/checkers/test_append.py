"""The list-append checker: a history that must pass, and near twins that must fail for one reason each.

Each failing twin differs from the passing history in one op, so a test fails
only if that one anomaly is missed (or a correct history is flagged).
"""

from __future__ import annotations

from typing import Any

from checkers.append import check_append
from checkers.history import Op


def history(*events: tuple[int, str, str, Any, Any]) -> list[Op]:
    """(process, type, f, key, value) events in real-time order, indexed and timed 1 ms apart."""
    return [
        Op(index=i, time_ns=i * 1_000_000, process=p, type=t, f=f, key=k, value=v)
        for i, (p, t, f, k, v) in enumerate(events)
    ]


def good() -> list[tuple[int, str, str, Any, Any]]:
    return [
        (0, "invoke", "append", 1, 10),
        (1, "invoke", "read", 1, None),
        (0, "ok", "append", 1, 10),
        (1, "ok", "read", 1, ()),  # concurrent with the append: may miss it
        (0, "invoke", "append", 1, 11),
        (0, "ok", "append", 1, 11),
        (2, "invoke", "append", 1, 12),
        (2, "info", "append", 1, 12),  # unknown: may or may not be there
        (1, "invoke", "read", 1, None),
        (1, "ok", "read", 1, (10, 11)),
        (3, "invoke", "append", 1, 13),
        (3, "fail", "append", 1, 13),  # definitely not applied
        (1, "invoke", "read", 1, None),
        (1, "ok", "read", 1, (10, 11, 12)),
        (4, "invoke", "append", 2, 20),
        (4, "ok", "append", 2, 20),
        (1, "invoke", "read", 2, None),
        (1, "ok", "read", 2, (20,)),
        ("nemesis", "info", "start-kill", None, None),
    ]


def with_change(index: int, new: tuple[int, str, str, Any, Any]) -> list[Op]:
    events = good()
    events[index] = new
    return history(*events)


def test_a_correct_history_passes() -> None:
    result = check_append(history(*good()))
    assert result["valid"] is True, result
    assert result["key_count"] == 2
    assert result["anomaly_counts"] == {}
    assert "key" not in result


def failing_kind(ops: list[Op]) -> tuple[str, Any, dict[str, Any]]:
    result = check_append(ops)
    assert result["valid"] is False
    first = result["first_anomaly"]
    return first["kind"], result["key"], first["op"]


def test_a_value_appended_twice_is_a_duplicate() -> None:
    kind, key, op = failing_kind(with_change(13, (1, "ok", "read", 1, (10, 11, 11))))
    assert (kind, key, op["f"], op["value_out"]) == ("duplicate", 1, "read", (10, 11, 11))


def test_a_failed_append_that_shows_up_is_a_phantom() -> None:
    kind, key, _ = failing_kind(with_change(13, (1, "ok", "read", 1, (10, 11, 13))))
    assert (kind, key) == ("phantom", 1)


def test_reads_that_fork_are_divergent() -> None:
    kind, _, _ = failing_kind(with_change(13, (1, "ok", "read", 1, (10, 12, 11))))
    assert kind == "divergent"  # (10, 11) then (10, 12, 11): neither extends the other
    # The same read also lists 12 before 11, whose append was acknowledged before 12's began.
    result = check_append(with_change(13, (1, "ok", "read", 1, (10, 12, 11))))
    assert result["anomaly_counts"] == {"divergent": 1, "append-order": 1}


def test_a_read_that_goes_back_in_time_is_stale() -> None:
    kind, key, op = failing_kind(with_change(13, (1, "ok", "read", 1, (10,))))
    # (10,) after a completed read of (10, 11): stale; and 11's acknowledged append is missing.
    assert (kind, key) == ("stale-read", 1)
    result = check_append(with_change(13, (1, "ok", "read", 1, (10,))))
    assert set(result["anomaly_counts"]) == {"stale-read", "lost-append"}
    assert op["invoke_index"] == 12


def test_an_acknowledged_append_missing_from_a_later_read_is_lost() -> None:
    kind, key, op = failing_kind(with_change(17, (1, "ok", "read", 2, ())))
    assert (kind, key, op["complete_index"]) == ("lost-append", 2, 17)


def test_a_read_that_sees_an_append_from_its_future() -> None:
    events = good()
    events[3] = (1, "ok", "read", 1, (10, 20))  # 20 is key 2's, appended later: a phantom on key 1
    kind, _, _ = failing_kind(history(*events))
    assert kind == "phantom"
    future = [
        (1, "invoke", "read", 3, None),
        (1, "ok", "read", 3, (30,)),
        (0, "invoke", "append", 3, 30),
        (0, "ok", "append", 3, 30),
    ]
    kind, key, _ = failing_kind(history(*future))
    assert (kind, key) == ("future-read", 3)


def test_a_read_of_something_that_is_not_a_list_is_reported() -> None:
    kind, _, _ = failing_kind(with_change(13, (1, "ok", "read", 1, 7)))
    assert kind == "phantom"
