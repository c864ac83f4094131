"""Fault windows, recovery and quantiles as the report shows them, on histories with known answers."""

from __future__ import annotations

import pytest

from checkers.record import replace
from reports.perfdata import bucket_for, prepare, window_label
from tests.reports.handmade import MS, T0_NS, op, partition_history


def test_fault_window_runs_from_start_invocation_to_stop_completion_relative_to_first_op() -> None:
    perf = prepare(partition_history(), t0_ns=T0_NS)
    assert perf.timeline_faults == [
        {
            "kind": "partition",
            "start": 18 * MS,
            "end": 60 * MS,
            "healed": True,
            "label": "partition · n1",
        }
    ]
    assert perf.fault_summary == "partition ×1"
    assert perf.fault_kinds == ["partition"]


def test_availability_row_has_ok_fraction_and_time_to_recover() -> None:
    perf = prepare(partition_history(), t0_ns=T0_NS)
    (row,) = perf.availability_rows
    assert row["kind"] == "partition"
    assert row["targets"] == "n1"
    assert (row["start_ns"], row["end_ns"]) == (18 * MS, 60 * MS)
    assert row["ops"] == "1"  # only p1's failed write 3 completed inside the window
    assert row["ok_fraction"] == "0.0%"
    assert row["recovery"] == "max 10.0 ms (key a) over 1 key(s)"  # heal at 60 ms, write 4 ok at 70 ms
    assert row["never"] is False
    assert perf.never_recovered == []


def test_a_key_that_never_recovers_is_called_out() -> None:
    early = [op(0, -2, 5, "invoke", "write", "b", 8), op(1, -1, 5, "ok", "write", "b", 8, node="n1")]
    history = [
        *early,  # b was in use before the heal: only such keys count toward recovery
        *(replace(o, index=o.index + 2) for o in partition_history()[:13]),
        op(15, 65, 1, "invoke", "write", "b", 9),
        op(16, 99, 1, "info", "write", "b", 9),
    ]
    perf = prepare(history, t0_ns=T0_NS - 2 * MS)
    (row,) = perf.availability_rows
    assert "NEVER RECOVERED on 1 key(s): b" in row["recovery"]
    assert row["never"] is True
    assert perf.never_recovered == [
        "the partition fault at 0.02 s (healed at 0.06 s; no ok write on key(s) b in the 0.04 s the history ran on)"
    ]


def test_a_fault_never_healed_is_called_out() -> None:
    history = partition_history()[:11]  # cut before the stop-partition
    perf = prepare(history, t0_ns=T0_NS)
    (fault,) = perf.timeline_faults
    assert fault["healed"] is False and fault["end"] == 30 * MS  # drawn to the end of the history
    (row,) = perf.availability_rows
    assert row["end"] == "never healed" and row["never"] is True
    assert row["recovery"].startswith("never healed")


def test_quantiles_are_in_ms_at_seconds_since_first_op() -> None:
    # ok latencies 1..100 ms, all invoked in the first 10 ms bucket
    history = []
    for i in range(100):
        history.append(op(2 * i, i * 0.05, i, "invoke", "read", "k"))
        history.append(op(2 * i + 1, i * 0.05 + (i + 1), i, "ok", "read", "k", 0))
    perf = prepare(history, t0_ns=T0_NS)
    assert perf.bucket_ns == 10 * MS  # a 104.95 ms run: the smallest bucket, 10 ms
    first = {name: points[0] for name, points in perf.quantiles.items()}
    assert first["p50"] == (0.0, pytest.approx(50.0))
    assert first["p95"] == (0.0, pytest.approx(95.0))
    assert first["p99"] == (0.0, pytest.approx(99.0))
    assert first["max"] == (0.0, pytest.approx(100.0))
    assert len(perf.latency) == 100 and perf.latency[9].latency_ms == pytest.approx(10.0)


def test_throughput_is_per_second() -> None:
    history = [op(0, 0, 0, "invoke", "read", "k"), op(1, 5, 0, "ok", "read", "k", 0)]
    perf = prepare(history, t0_ns=T0_NS)
    assert perf.throughput["ok"] == [(0.0, pytest.approx(100.0))]  # one op in a 10 ms bucket


@pytest.mark.parametrize(
    ("span_ns", "bucket_ns"),
    [
        (0, 10 * MS),
        (1_500 * MS, 10 * MS),
        (3_000 * MS, 20 * MS),
        (60_000 * MS, 500 * MS),
        (3_600_000 * MS, 50_000 * MS),
    ],
)
def test_bucket_cuts_the_run_into_at_most_150_round_buckets(span_ns: int, bucket_ns: int) -> None:
    assert bucket_for(span_ns) == bucket_ns


def test_label_without_grudge_lists_targets() -> None:
    from checkers.perf import FaultWindow

    assert window_label(FaultWindow("kill", 0, 1, ("n2", "n3"), {"targets": ["n2", "n3"]})) == "kill · n2, n3"
    grudge = {"shape": "majority", "grudge": {"n1": ["n2", "n3"], "n2": ["n1"]}}
    assert (
        window_label(FaultWindow("partition", 0, 1, (), grudge)) == "partition majority · n1 ✕ n2,n3; n2 ✕ n1"
    )
    real = {"targets": ["n1"], "shape": "majority", "grudge": {"n1": ["n2", "n3"]}}
    assert window_label(FaultWindow("partition", 0, 1, ("n1",), real)) == "partition majority · n1"
    assert window_label(FaultWindow("clock", 0, None, (), None)) == "clock"
