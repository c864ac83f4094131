"""The anomaly section: a checker's evidence resolved against the history, and degraded gracefully."""

from __future__ import annotations

from reports.anomaly import BarIndex, anomalies, anomaly_of, counterexample_svg, op_row
from tests.reports.handmade import partition_history


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
    assert found.story == ["after write 4 by p1 [ok], read by p2 returned 4 ..."]
    assert found.first is not None and found.first.link_index == 16 and found.first.text == "read a → 4"
    assert [row.link_index for row in found.ops] == [0, 13, 16]  # sorted by start
    assert found.ops[1].text == "write a 4" and found.ops[1].outcome == "ok"
    assert found.prefix == ["p0 write a 1 [ok] (op 0)", "p0 read a → 1 [ok] (op 4)"]  # 5 completes op 4
    (order,) = found.orders
    assert order.ok is False
    assert order.text == "p0 write a 1 [ok] (op 0) → p1 write a 4 [ok] (op 13) → p2 read a → 4 [ok] (op 16)"
    assert order.steps == ["1", "4", "read 4: fine"]
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
