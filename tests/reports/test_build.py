"""report.html, report.json and index.html written from hand-made run directories."""

from __future__ import annotations

import json
import re
import shlex
from html import escape
from pathlib import Path

from checkers.history import Op, read_history
from checkers.record import replace
from reports.build import write_run_report
from reports.index import write_index
from tests.reports.handmade import partition_history, write_run

ANOMALY_RESULTS = {
    "valid": False,
    "checkers": {
        "linearizable": {
            "valid": False,
            "key": "a",
            "first_unlinearizable": {"index": 17},
            "counterexample": {
                "ops": [13, 16],
                "explanation": "read by p2 returned 4 but the register held 2",
            },
        },
        "stats": {"valid": True},
    },
    "teardown_errors": ["heal partition: nft exited 1"],
}
TEST = {
    "scenario": "partition-majority",
    "seed": 7,
    "nodes": ["n1", "n2", "n3"],
    "command": ["ratchet", "run", "scenarios/partition-majority.toml", "--seed", "7"],
}


def _timeline_data(html: str) -> dict:
    match = re.search(r'<script type="application/json" id="timeline-data">(.*?)</script>', html, re.S)
    assert match is not None
    return json.loads(match.group(1))


def test_report_of_a_failing_run_has_every_section(tmp_path: Path) -> None:
    run = write_run(
        tmp_path / "store" / "partition-majority" / "20261122T030000",
        partition_history(),
        results=ANOMALY_RESULTS,
        test=TEST,
        node_logs={"n1": ["hello from n1"]},
        node_events={
            "n1": [
                {"mono_ns": 7_040_000_000, "wall_ns": 1, "replica": 0, "kind": "became_primary", "view": 3}
            ]
        },
    )
    path = write_run_report(run)
    assert path == run / "report.html"
    html = path.read_text(encoding="utf-8")
    assert 'class="banner anomaly"' in html
    reason = re.search(r'<p class="reason">(.*?)</p>', html, re.S)
    assert reason is not None  # the one-line reason: what, which key, which node answered, when, faults
    assert reason.group(1) == (
        "linearizable: key a: read a → 4 (p2, ok) answered by n2 at 0.09 s into the run, with no fault "
        "active: read by p2 returned 4 but the register held 2"
    )
    assert "ratchet run scenarios/partition-majority.toml --seed 7" in html  # reproduce command
    for section in ("timeline", "anomaly", "checkers", "performance", "availability", "nodes"):
        assert f'<section id="{section}"' in html or f'<section id="{section}" class' in html
    assert "heal partition: nft exited 1" in html  # teardown error beside the verdict
    assert 'href="nodes/n1/node.log"' in html and "hello from n1" in html
    assert "https://" not in html and "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    data = _timeline_data(html)
    assert data["count"] == 10 and data["anomaly_indices"] == [13, 16]
    assert data["faults"][0]["kind"] == "partition" and data["markers"][0]["label"] == "r0 primary of v3"
    for name in ("latency-raw.png", "latency-quantiles.png", "throughput.png"):
        assert (run / name).read_bytes().startswith(b"\x89PNG")
    assert html.count("data:image/png;base64,") == 3
    summary = json.loads((run / "report.json").read_text())
    assert summary["verdict"] == "anomaly" and summary["op_count"] == 8 and summary["faults"] == ["partition"]


def test_missing_results_and_test_give_an_unknown_report_with_warnings(tmp_path: Path) -> None:
    run = write_run(tmp_path / "s" / "x" / "20261122T030000", partition_history(), results=None, test=None)
    html = write_run_report(run).read_text(encoding="utf-8")
    assert 'class="banner unknown"' in html
    assert "results.json is missing" in html and "test.json is missing" in html
    assert "test.json does not record the command line" in html


def test_results_fields_of_the_wrong_type_are_ignored_with_a_warning(tmp_path: Path) -> None:
    results = {
        "valid": False,
        "checkers": {"linearizable": 5},
        "teardown": "x",
        "teardown_errors": True,
        "node_exits": {},
    }
    run = write_run(tmp_path / "s" / "x" / "20261122T030000", partition_history(), results=results, test=TEST)
    html = write_run_report(run).read_text(encoding="utf-8")
    for name, kind in (("teardown", "str"), ("teardown_errors", "bool"), ("node_exits", "dict")):
        assert f"results.json: {name} should be a list, not {kind}; ignored" in html
    assert "a checkers entry is not an object" in html


def test_unreadable_history_still_gives_a_report(tmp_path: Path) -> None:
    run = write_run(
        tmp_path / "s" / "x" / "20261122T030000", [], results={"valid": True, "checkers": {}}, test=TEST
    )
    (run / "history.jsonl").write_text(
        '{"index": 0, "time_ns": 1, "process": 0, "type": "invoke", "f": "read"}\n{"ind', encoding="utf-8"
    )
    html = write_run_report(run).read_text(encoding="utf-8")
    assert "the last line of history.jsonl is torn (5 bytes" in html  # what a crash leaves: said, not fatal
    assert _timeline_data(html)["count"] == 1  # the op that parses is still drawn


def test_history_the_checkers_cannot_pair_is_still_drawn(tmp_path: Path) -> None:
    orphan = [*partition_history(), Op(19, partition_history()[-1].time_ns + 1, 7, "ok", "read", "a", 1)]
    run = write_run(tmp_path / "s" / "x" / "20261122T030000", orphan, results=None, test=TEST)
    html = write_run_report(run).read_text(encoding="utf-8")
    assert "has no invocation before it" in html
    assert _timeline_data(html)["count"] == 11  # the orphan completion is drawn as a point
    assert "performance, faults and availability are not shown" in html


def test_index_lists_runs_newest_first_with_verdicts(tmp_path: Path) -> None:
    store = tmp_path / "store"
    old = write_run(
        store / "partition-majority" / "20261120T010000",
        partition_history(),
        results={"valid": True, "checkers": {}},
        test=TEST,
    )
    new = write_run(
        store / "kill" / "20261122T020000",
        partition_history(),
        results=ANOMALY_RESULTS,
        test={**TEST, "scenario": "kill"},
    )
    unreported = write_run(store / "pause" / "20261121T000000", partition_history(), results=None, test=None)
    write_run_report(old)
    write_run_report(new)
    (store / "latest").symlink_to(new.relative_to(store))
    html = write_index(store).read_text(encoding="utf-8")
    rows = re.findall(r'<tr class="run-(\w+)">', html)
    assert rows == ["anomaly", "unknown", "valid"]  # newest first: 22nd, 21st, 20th
    assert (
        html.index("2026-11-22 02:00:00")
        < html.index("2026-11-21 00:00:00")
        < html.index("2026-11-20 01:00:00")
    )
    assert 'href="kill/20261122T020000/report.html"' in html
    assert unreported.name in html
    data = json.loads(re.search(r'id="runs-data">(.*?)</script>', html, re.S).group(1))
    assert [d["verdict"] for d in data] == ["anomaly", "unknown", "valid"]
    assert "<option>partition-majority</option>" in html and "<option>kill</option>" in html


def test_a_cluster_the_run_found_unhealthy_is_called_never_recovered(tmp_path: Path) -> None:
    base = partition_history()
    t0 = base[0].time_ns
    early = [  # b was in use before the heal: only such keys count toward recovery
        Op(0, t0 - 2_000_000, 5, "invoke", "write", "b", 8),
        Op(1, t0 - 1_000_000, 5, "ok", "write", "b", 8, None, "n1"),
    ]
    history = [
        *early,
        *(replace(o, index=o.index + 2) for o in base[:13]),
        Op(15, base[12].time_ns + 5_000_000, 1, "invoke", "write", "b", 9),
        Op(16, base[12].time_ns + 40_000_000, 1, "info", "write", "b", 9),
    ]
    results = {"valid": True, "checkers": {}, "recovered": False}
    run = write_run(tmp_path / "s" / "x" / "20261122T030000", history, results=results, test=TEST)
    html = write_run_report(run).read_text(encoding="utf-8")
    assert "<strong>The cluster never recovered</strong> after the partition fault at 0.02 s" in html
    assert "no ok write on key(s) b in the" in html and "still unhealthy" in html


def _nemesis_windows(history: list[dict]) -> list[tuple[str, int, int, list[str]]]:
    """Fault windows read straight from a history (contracts §4): nemesis records come in pairs
    (invocation, completion); a window runs from a start-<kind> invocation to the next stop-<kind>
    completion of that kind, with the targets of the start's completion. Returns (kind, start ns,
    stop ns, targets)."""
    nemesis = [r for r in history if r["process"] == "nemesis"]
    invocations, completions = nemesis[0::2], nemesis[1::2]
    assert [r["f"] for r in invocations] == [r["f"] for r in completions]  # paired as documented
    open_: dict[str, tuple[dict, dict]] = {}
    windows = []
    for invocation, record in zip(invocations, completions, strict=True):
        action, kind = record["f"].split("-", 1)
        if action == "start":
            open_.setdefault(kind, (invocation, record))
        elif kind in open_:
            begun, started = open_.pop(kind)
            windows.append((kind, begun["time_ns"], record["time_ns"], started["value"]["targets"]))
    assert not open_  # every fault of this run was healed
    return windows


def test_report_of_a_real_failing_run_shows_its_faults_anomaly_and_logs(tmp_path: Path) -> None:
    from reports.nodes import MARKER_KINDS
    from tests.reports.synth import real_failing_run

    run = real_failing_run(tmp_path / "store")  # `ratchet run rolling-kill --bug read-from-backup --seed 3`
    linearizable = run.results["checkers"]["linearizable"]
    assert run.results["valid"] is False and linearizable["valid"] is False  # as the run judged it
    html = write_run_report(run.run_dir).read_text(encoding="utf-8")
    data = _timeline_data(html)

    assert 'class="banner anomaly"' in html
    first = linearizable["first_unlinearizable"]
    why = linearizable["counterexample"]["orders"][0]["explanation"]  # the checker's words
    assert f"read by p{first['process']} returned {first['value_out']}, but the register held" in why
    reason = re.search(r'<p class="reason">(.*?)</p>', html, re.S)
    assert reason is not None and reason.group(1).endswith(
        escape(why)
    )  # the banner's one line ends in the why
    bad = next(
        op for op in read_history(run.run_dir / "history.jsonl") if op.index == first["complete_index"]
    )
    assert bad.node and f"answered by {bad.node} at " in reason.group(1)  # names the node that answered
    assert " under " in reason.group(1) or "with no fault active" in reason.group(1)
    command = run.test["command_line"]
    assert command[2:6] == ["run", "scenarios/rolling-kill.toml", "--bug", "read-from-backup"]
    assert command[6:8] == ["--seed", "3"]
    assert shlex.join(["ratchet", *command[2:]]) in html  # the exact command that reproduces it
    assert "Planted bug" in html and "read-from-backup" in html

    invokes = [r for r in run.history if r["type"] == "invoke"]
    nemesis_pairs = sum(1 for r in run.history if r["process"] == "nemesis") // 2
    assert data["count"] == len(invokes) + nemesis_pairs  # one bar per client op and per nemesis op
    windows = _nemesis_windows(run.history)
    assert len(windows) >= 2 and {kind for kind, *_ in windows} == {"rolling-kill"}
    t0 = run.history[0]["time_ns"]
    assert [(f["kind"], f["start"], f["end"], f["healed"]) for f in data["faults"]] == [
        (kind, start - t0, stop - t0, True) for kind, start, stop, _targets in windows
    ]
    for fault, (_kind, _start, _stop, targets) in zip(data["faults"], windows, strict=True):
        assert fault["label"] == "rolling-kill · " + ", ".join(targets)  # who was killed

    counterexample = linearizable["counterexample"]["ops"]
    assert data["anomaly_indices"] == sorted(op["invoke_index"] for op in counterexample)
    anomaly = html[
        html.index('<section id="anomaly"') : html.index("</section>", html.index('<section id="anomaly"'))
    ]
    for op in counterexample:
        assert f'data-history-index="{op["invoke_index"]}"' in anomaly

    events = [
        json.loads(line)
        for node in sorted((run.run_dir / "nodes").iterdir())
        for line in (node / "events.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    for kind in ("view_change_started", "became_primary", "recovered_from_disk"):
        assert sum(1 for m in data["markers"] if m["kind"] == kind) == sum(
            1 for e in events if e["kind"] == kind
        )
    assert {m["kind"] for m in data["markers"]} <= {*MARKER_KINDS, "prefix"}
    prefix = [m for m in data["markers"] if m["kind"] == "prefix"]
    through = linearizable["linearizable_through_event"]
    assert [m["t"] for m in prefix] == [run.history[through]["time_ns"] - t0]
    # a key with no ok write after the last kill's heal, in a run whose own check found it healthy
    availability = run.results["checkers"]["availability"]
    assert run.results["recovered"] is True and list(availability["never_recovered"]) == ["rolling-kill#3"]
    last = availability["windows"][-1]
    after_s = (run.history[-1]["time_ns"] - last["stop_ns"]) / 1e9
    keys = ", ".join(str(k) for k in last["recovery"]["never_recovered_keys"])
    assert "<strong>Not seen to recover before the history ended</strong>" in html
    assert f"no ok write on key(s) {keys} in the {after_s:.2f} s the history ran on" in html
    assert "The cluster never recovered" not in html and "recovered: true" in html
    assert html.count('<div class="hot">') > 0  # node-log lines near the anomaly, by the nodes' clocks
    assert 'href="nodes/n1/output.log"' in html  # every other file of a node is linked too


def test_ratchet_report_rechecks_the_real_failing_run_to_the_same_verdict(tmp_path: Path) -> None:
    from harness.cli import main
    from tests.reports.synth import real_failing_run

    run = real_failing_run(tmp_path / "store")
    stored = run.results["checkers"]["linearizable"]
    assert main(["report", str(run.run_dir)]) == 1  # anomaly, as `ratchet run` exited
    rechecked = json.loads((run.run_dir / "results.json").read_text(encoding="utf-8"))
    again = rechecked["checkers"]["linearizable"]
    assert rechecked["valid"] is False and again["valid"] is False
    assert again["key"] == stored["key"]
    assert again["first_unlinearizable"]["id"] == stored["first_unlinearizable"]["id"]
    assert [op["id"] for op in again["counterexample"]["ops"]] == [
        op["id"] for op in stored["counterexample"]["ops"]
    ]
    assert 'class="banner anomaly"' in (run.run_dir / "report.html").read_text(encoding="utf-8")
