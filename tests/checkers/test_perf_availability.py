"""Perf and availability data: fault windows, latencies, buckets, time-to-recover."""

from __future__ import annotations

from checkers.availability import availability
from checkers.history import Op
from checkers.perf import fault_windows, latency_points, perf, quantiles_over_time, throughput_over_time

MS = 1_000_000


class _Builder:
    def __init__(self) -> None:
        self.ops: list[Op] = []

    def add(self, t_ms: float, process: int | str, type_: str, f: str, key=None, value=None) -> None:
        self.ops.append(Op(len(self.ops), int(t_ms * MS), process, type_, f, key, value))


def _history() -> list[Op]:
    b = _Builder()
    b.add(0, 0, "invoke", "write", 1, 10)
    b.add(5, 0, "ok", "write", 1, 10)
    b.add(10, "nemesis", "info", "start-partition", value={"targets": ["n1"]})
    b.add(12, "nemesis", "info", "start-partition", value={"targets": ["n1"], "grudge": {}})
    b.add(20, 1, "invoke", "write", 1, 11)
    b.add(25, 2, "invoke", "write", 2, 20)
    b.add(30, 2, "fail", "write", 2, 20)
    b.add(60, 1, "info", "write", 1, 11)
    b.add(100, "nemesis", "info", "stop-partition")
    b.add(101, "nemesis", "info", "stop-partition", value={"teardown": False})
    b.add(110, 3, "invoke", "write", 1, 12)
    b.add(140, 3, "ok", "write", 1, 12)
    b.add(150, 4, "invoke", "write", 2, 21)
    b.add(160, 4, "fail", "write", 2, 21)
    b.add(170, "nemesis", "info", "start-kill", value={"targets": ["n2"]})
    b.add(171, "nemesis", "info", "start-kill", value={"targets": ["n2"]})
    return b.ops


def test_fault_windows_run_from_start_invocation_to_stop_completion() -> None:
    windows = fault_windows(_history())
    assert [(w.kind, w.start_ns, w.stop_ns, w.targets) for w in windows] == [
        ("partition", 10 * MS, 101 * MS, ("n1",)),
        ("kill", 170 * MS, None, ("n2",)),
    ]


def test_latency_points_cover_every_completed_client_op() -> None:
    points = latency_points(_history())
    assert [(p.f, p.type, p.latency_ns // MS) for p in points] == [
        ("write", "ok", 5),
        ("write", "info", 40),
        ("write", "fail", 5),
        ("write", "ok", 30),
        ("write", "fail", 10),
    ]


def test_quantiles_and_throughput_buckets() -> None:
    rows = quantiles_over_time(_history(), bucket_ns=100 * MS)
    assert [(r["t_ns"], r["count"], r["max_ms"]) for r in rows] == [(0, 1, 5.0), (100 * MS, 1, 30.0)]
    through = throughput_over_time(_history(), bucket_ns=50 * MS)
    assert through == [
        {"t_ns": 0, "ok": 1, "fail": 1, "info": 0},
        {"t_ns": 50 * MS, "ok": 0, "fail": 0, "info": 1},
        {"t_ns": 100 * MS, "ok": 1, "fail": 0, "info": 0},
        {"t_ns": 150 * MS, "ok": 0, "fail": 1, "info": 0},
    ]
    assert perf(_history())["latency_ok_by_f"]["write"]["count"] == 2


def test_availability_fraction_and_time_to_recover() -> None:
    result = availability(_history())
    partition = result["windows"][0]
    assert (partition["ok"], partition["fail"], partition["info"]) == (0, 1, 1)
    assert partition["ok_fraction"] == 0.0
    recovery = partition["recovery"]
    assert recovery["recover_ns_by_key"] == {1: 39 * MS}
    assert recovery["never_recovered_keys"] == [2]  # written after the heal, never ok again
    assert result["valid"] is True
    assert availability(_history(), require_recovery=True)["valid"] is False
    assert result["windows"][1]["stop_ns"] is None


def test_time_to_recover_counts_only_keys_in_use_before_the_heal() -> None:
    """A 90 ms partition must not read as 2 s because a key was first written 2 s later."""
    b = _Builder()
    b.add(0, 0, "invoke", "write", "old", 1)
    b.add(5, 0, "ok", "write", "old", 1)
    b.add(10, "nemesis", "info", "start-partition")
    b.add(12, "nemesis", "info", "start-partition", value={"targets": ["n1"]})
    b.add(99, "nemesis", "info", "stop-partition")
    b.add(100, "nemesis", "info", "stop-partition", value={"targets": ["n1"]})
    b.add(110, 1, "invoke", "write", "old", 2)
    b.add(130, 1, "ok", "write", "old", 2)
    b.add(2000, 2, "invoke", "write", "new", 3)  # first used long after the heal
    b.add(2100, 2, "ok", "write", "new", 3)
    b.add(2200, 3, "invoke", "write", "newer", 4)  # first used after the heal, never ok
    b.add(2300, 3, "info", "write", "newer", 4)
    (window,) = availability(b.ops)["windows"]
    recovery = window["recovery"]
    assert recovery["recover_ns_by_key"] == {"old": 30 * MS}
    assert recovery["recover_ns_max"] == 30 * MS
    assert recovery["never_recovered_keys"] == []
    assert recovery["keys_new_after_heal"] == 2


def test_perf_one_pass_matches_the_latency_points_it_summarizes() -> None:
    """perf() folds latencies without a record per op: the same numbers as from latency_points()."""
    import random

    from checkers.generate import linearizable_history
    from checkers.perf import quantile

    ops = linearizable_history(
        random.Random(9), op_count=3_000, keys=4, processes=6, info_fraction=0.1, cas_fraction=0.5
    )
    for bucket_ns in (3_000_000, 100_000_000, 1_000_000_000):  # span ~1 s: up to ~300 buckets
        entry = perf(ops, bucket_ns=bucket_ns)
        assert entry["quantiles"] == quantiles_over_time(ops, bucket_ns=bucket_ns)
        by_f: dict[str, list[int]] = {}
        for point in latency_points(ops):
            if point.type == "ok":
                by_f.setdefault(point.f, []).append(point.latency_ns)
        assert sorted(entry["latency_ok_by_f"]) == sorted(by_f)
        for f, values in by_f.items():
            values.sort()
            assert entry["latency_ok_by_f"][f]["count"] == len(values)
            assert entry["latency_ok_by_f"][f]["p99_ms"] == quantile(values, 0.99) / 1e6
            assert entry["latency_ok_by_f"][f]["max_ms"] == values[-1] / 1e6
