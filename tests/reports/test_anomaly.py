"""The anomaly section: a checker's evidence resolved against the history, and degraded gracefully."""

from __future__ import annotations

from checkers.history import Op
from checkers.linearizable import check_linearizable
from reports.anomaly import BarIndex, anomalies, anomaly_of, counterexample_svg, op_row, undecided
from tests.reports.handmade import partition_history


def _stale_read_history() -> list[Op]:
    """partition_history with p2's read (85-90 ms) returning 1, though write 4 completed at 70 ms."""
    history = partition_history()
    history[17] = Op(17, history[17].time_ns, 2, "ok", "read", "a", 1, None, "n2")
    return history


def test_the_checkers_own_evidence_is_resolved_to_the_history() -> None:
    history = _stale_read_history()
    entry = check_linearizable(history, model="cas-register")
    assert entry["valid"] is False
    found = anomaly_of("linearizable", entry, BarIndex(history))
    assert found.key_text == "a"
    assert found.first is not None and found.first.link_index == 16 and found.first.text == "read a → 1"
    assert 13 in found.history_indices and 16 in found.history_indices  # write 4 and the stale read
    assert [row.link_index for row in found.ops] == sorted(found.history_indices)
    assert any("returned 1" in line for line in found.story)
    assert found.orders and all(order.ok is False for order in found.orders)
    assert any(step.startswith("stuck: read a → 1 by p2") for order in found.orders for step in order.steps)
    assert found.svg is not None and 'data-history-index="16"' in found.svg
    assert found.through_event is not None and found.prefix  # the longest linearizable prefix, in words


def _index() -> BarIndex:
    return BarIndex(partition_history())


def test_full_evidence_is_resolved_to_ops_orders_and_words() -> None:
    entry = {
        "valid": False,
        "key": "a",
        "first_unlinearizable": {"index": 17, "process": 2, "type": "ok", "f": "read", "value": 4},
        "counterexample": {
            "ops": [{"index": 13}, 16, {"invoke_index": 0}],
            "explanation": "after write 4 by p1 [ok], read by p2 returned 4 ...",
            "longest_prefix": [0, 5],
            "orders": [{"order": [0, 13, 16], "ok": False, "states": ["1", "4", "read 4: fine"]}],
            "model": "cas-register",
        },
    }
    found = anomaly_of("linearizable", entry, _index())
    assert found.key_text == "a"
    assert found.story == ["after write 4 by p1 [ok], read by p2 returned 4 ..."]  # no order explained itself
    assert found.first is not None and found.first.link_index == 16 and found.first.text == "read a → 4"
    assert [row.link_index for row in found.ops] == [0, 13, 16]  # sorted by start
    assert found.ops[1].text == "write a 4" and found.ops[1].outcome == "ok"
    assert found.prefix == ["write a 1 by p0 [ok] (op 0)", "read a → 1 by p0 [ok] (op 4)"]  # 5 completes op 4
    (order,) = found.orders
    assert order.ok is False
    assert (
        order.text
        == "write a 1 by p0 [ok] (op 0) → write a 4 by p1 [ok] (op 13) → read a → 4 by p2 [ok] (op 16)"
    )
    assert order.steps == [
        "1. write a 1 by p0 [ok] (op 0) → state 1",
        "2. write a 4 by p1 [ok] (op 13) → state 4",
        "3. read a → 4 by p2 [ok] (op 16) → state read 4: fine",
    ]
    assert '"model": "cas-register"' in found.rest
    assert found.history_indices == [0, 13, 16]
    assert found.svg is not None and 'data-history-index="13"' in found.svg


def test_missing_fields_degrade_to_what_is_there() -> None:
    found = anomaly_of("linearizable", {"valid": False}, _index())
    assert (found.story, found.first, found.ops, found.prefix, found.orders, found.svg) == (
        [],
        None,
        [],
        [],
        [],
        None,
    )
    weird = anomaly_of("linearizable", {"valid": False, "counterexample": "a string", "key": None}, _index())
    assert weird.ops == [] and weird.key is None


def test_other_checkers_show_their_own_evidence() -> None:
    results = {
        "valid": False,
        "checkers": {
            "stats": {"valid": False, "reason": "cas never succeeded"},
            "linearizable": {"valid": False, "key": "a"},
            "perf": {"valid": True},
        },
    }
    found = anomalies(results, _index())
    assert [a.checker for a in found] == ["linearizable", "stats"]
    assert found[1].story == ["cas never succeeded"]


def test_svg_escapes_history_text() -> None:
    index = _index()
    bar = index.find(13)
    assert bar is not None
    row = op_row(bar, index, "<script>alert(1)</script>")
    svg = str(counterexample_svg([row]))
    assert "<script>" not in svg and "&lt;script&gt;alert(1)&lt;/script&gt;" in svg


def test_an_undecided_checker_says_why_and_where_it_stopped() -> None:
    results = {
        "valid": "unknown",
        "checkers": {
            "linearizable": {
                "valid": "unknown",
                "reason": "time limit 1 s reached",
                "unknown_keys": [
                    {
                        "key": "a",
                        "reason": "time limit",
                        "op_count": 9,
                        "linearizable_prefix_ops": 4,
                        "stuck_at": {"id": 5, "invoke_index": 16, "complete_index": 17},
                    }
                ],
            }
        },
    }
    (u,) = undecided(results, _index())
    assert u.checker == "linearizable" and u.reason == "time limit 1 s reached"
    (key,) = u.keys
    assert key["prefix_ops"] == 4 and key["stuck"].link_index == 16
