"""The checkers table's one-line summaries, from the checkers' real entries and from odd ones."""

from __future__ import annotations

from checkers.compose import check_history
from reports.summaries import summary
from tests.reports.handmade import partition_history


def test_summaries_of_the_real_checkers() -> None:
    checkers = check_history(partition_history())["checkers"]
    assert summary("linearizable", checkers["linearizable"]).startswith(
        "6 ops over 1 key(s); model cas-register; 2 open-ended (info)"
    )
    assert summary("stats", checkers["stats"]).startswith("4 ok, 2 fail, 1 info")
    assert summary("perf", checkers["perf"]) == "read p50 2.0 ms, p99 5.0 ms; write p50 5.0 ms, p99 5.0 ms"
    assert summary("availability", checkers["availability"]) == "57.1% of 7 ops ok; 1 fault window(s)"


def test_odd_entries_fall_back_to_their_reason() -> None:
    assert summary("linearizable", {"valid": "unknown", "reason": "time limit"}) == "time limit"
    assert summary("perf", {"latency_ok_by_f": {"read": {"p50_ms": "x"}}}) == ""
    assert summary("bank", {"valid": False, "error": "balance went negative"}) == "balance went negative"
    assert summary("stats", "not a dict") == ""
