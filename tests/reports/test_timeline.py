"""The timeline's data: bars paired from a hand-made history, packed into columns with known values."""

from __future__ import annotations

from reports.timeline import OUTCOME_CODES, lane_order, pair_bars, timeline_columns
from tests.reports.handmade import MS, op, partition_history


def test_bars_pair_invocations_with_their_process_completions() -> None:
    bars = pair_bars(partition_history())
    by_invoke = {bar.invoke.index: bar for bar in bars}
    # every invocation is one bar, fail ops included (the checkers drop them; the timeline shows them)
    assert sorted(by_invoke) == [0, 1, 4, 6, 8, 10, 11, 13, 16, 18]
    assert by_invoke[1].outcome == "fail"
    assert by_invoke[10].outcome == "info"
    assert by_invoke[10].completion is not None and by_invoke[10].completion.index == 15
    assert by_invoke[18].outcome == "open"
    assert by_invoke[18].completion is None


def test_nemesis_invocation_and_completion_pair_by_f() -> None:
    bars = [bar for bar in pair_bars(partition_history()) if bar.process == "nemesis"]
    assert [(bar.invoke.index, bar.completion.index if bar.completion else None) for bar in bars] == [
        (6, 7),
        (11, 12),
    ]


def test_lane_order_puts_nemesis_first_then_processes_ascending() -> None:
    assert lane_order([3, "nemesis", 0, 10, 2, 0]) == ["nemesis", 0, 2, 3, 10]


def test_columns_hold_relative_times_outcomes_and_tables() -> None:
    columns = timeline_columns(partition_history())
    assert columns["t0_ns"] == 7_000_000_000
    assert columns["end_ns"] == 95 * MS
    # p2 began (85 ms) after p0's last op ended (info at 80 ms): it continues p0's lane
    assert columns["lanes"] == ["nemesis", "p0 +1", "p1"]
    assert columns["lane_processes"] == [["nemesis"], ["0", "2"], ["1"]]
    assert columns["count"] == 10
    ops = columns["ops"]
    assert all(len(values) == 10 for values in ops.values())
    # sorted by (lane, start): within every lane, starts and ends increase
    for lane in range(3):
        rows = [i for i in range(10) if ops["lane"][i] == lane]
        starts = [ops["s"][i] for i in rows]
        assert starts == sorted(starts)
    row = ops["ii"].index(13)  # p1 write 4, invoked at 65 ms, ok at 70 ms
    assert (ops["s"][row], ops["e"][row]) == (65 * MS, 70 * MS)
    assert ops["o"][row] == OUTCOME_CODES["ok"]
    assert columns["fs"][ops["f"][row]] == "write"
    assert columns["keys"][ops["k"][row]] == "a"
    assert ops["vi"][row] == 4 and ops["ci"][row] == 14
    assert columns["nodes"][ops["n"][row]] == "n2"
    never = ops["ii"].index(18)  # never completed: drawn to the end of the history
    assert ops["e"][never] == 95 * MS and ops["o"][never] == OUTCOME_CODES["open"] and ops["ci"][never] == -1
    failed = ops["ii"].index(8)
    assert columns["errors"][ops["er"][failed]] == "not-primary"


def test_overlapping_processes_get_their_own_lanes() -> None:
    history = [
        op(0, 0, 5, "invoke", "read", "k"),
        op(1, 1, 6, "invoke", "read", "k"),
        op(2, 2, 5, "info", "read", "k"),
        op(3, 3, 7, "invoke", "read", "k"),  # p7 starts while p6 is busy, after p5 retired
        op(4, 4, 6, "ok", "read", "k", 1),
        op(5, 4, 8, "invoke", "read", "k"),  # p8 starts when p6's op ends at the same instant: not free yet
    ]
    columns = timeline_columns(history)
    assert columns["lane_processes"] == [["5", "7"], ["6"], ["8"]]
    assert columns["processes"][columns["ops"]["p"][columns["ops"]["ii"].index(3)]] == 7


def test_read_value_comes_from_the_completion() -> None:
    columns = timeline_columns(partition_history())
    row = columns["ops"]["ii"].index(16)
    assert columns["ops"]["vi"][row] is None
    assert columns["ops"]["vc"][row] == 4


def test_empty_history_gives_empty_columns() -> None:
    columns = timeline_columns([])
    assert columns["count"] == 0 and columns["lanes"] == [] and columns["ops"]["s"] == []


def test_completion_without_invocation_is_kept_as_a_point() -> None:
    bars = pair_bars([op(0, 1, 4, "ok", "read", "k", 1)])
    assert len(bars) == 1 and bars[0].invoke is bars[0].completion


def test_an_invocations_own_node_is_kept_apart_from_the_answering_node() -> None:
    history = [
        op(0, 0, 0, "invoke", "read", "a"),  # the harness's invocations name no node
        op(1, 2, 0, "ok", "read", "a", 1, node="n3"),
        op(2, 3, 1, "invoke", "write", "a", 2, node="n1"),  # one that does, answered elsewhere
        op(3, 5, 1, "ok", "write", "a", 2, node="n2"),
        op(4, 6, 2, "invoke", "read", "a", node="n2"),  # never completed: only its own node
    ]
    columns = timeline_columns(history)
    ops, nodes = columns["ops"], columns["nodes"]
    row = {ii: position for position, ii in enumerate(ops["ii"])}
    assert [nodes[ops["n"][row[i]]] for i in (0, 2, 4)] == ["n3", "n2", "n2"]  # the bar's node
    invoke_nodes = {int(position): nodes[code] for position, code in columns["invoke_nodes"].items()}
    assert invoke_nodes == {row[2]: "n1", row[4]: "n2"}  # the invocation at 0 named none
