"""report.html, report.json and index.html written from hand-made run directories."""

from __future__ import annotations

import json
import re
from pathlib import Path

from checkers.history import Op
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
    assert "linearizable: read by p2 returned 4 but the register held 2" in html  # the one-line reason
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


def test_unreadable_history_still_gives_a_report(tmp_path: Path) -> None:
    run = write_run(
        tmp_path / "s" / "x" / "20261122T030000", [], results={"valid": True, "checkers": {}}, test=TEST
    )
    (run / "history.jsonl").write_text(
        '{"index": 0, "time_ns": 1, "process": 0, "type": "invoke", "f": "read"}\n{"ind', encoding="utf-8"
    )
    html = write_run_report(run).read_text(encoding="utf-8")
    assert "does not pass the checkers&#39; reader" in html and "skips 1 line(s)" in html
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


def test_report_of_a_real_run_places_node_events_and_logs(tmp_path: Path) -> None:
    from tests.reports.synth import real_failing_run

    run = real_failing_run(tmp_path / "store")
    html = write_run_report(run.run_dir).read_text(encoding="utf-8")
    data = _timeline_data(html)
    assert data["count"] > 2900
    assert len(data["faults"]) == 5 and all(f["kind"] == "partition" for f in data["faults"])
    kinds = {m["kind"] for m in data["markers"]}
    assert {"view_change_started", "became_primary", "prefix"} <= kinds  # from the nodes' events.jsonl
    assert all(-10e9 <= m["t"] <= data["end_ns"] + 10e9 for m in data["markers"])
    assert (
        html.count('<div class="hot">') > 0
    )  # node-log lines near the anomaly, placed by the nodes' own clocks
    assert "Planted bug" in html and "read-from-backup" in html
    assert 'href="nodes/n1/output.log"' in html  # every other file of a node is linked too
    assert "ratchet run --bug read-from-backup" in html
