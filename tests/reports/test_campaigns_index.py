"""store/campaigns/index.html: campaigns across nights, their matrix, trends and flaky entries."""

from __future__ import annotations

import json
import re
from pathlib import Path

from reports.campaigns import entry_label, spark, write_campaigns_index


def record(
    cell: str, seed: int, *, verdict: str, outcome: str, ops_per_s: float, build_run: str = ""
) -> dict:
    return {
        "id": f"{cell}-s{seed}",
        "seed": seed,
        "scenario": cell.split("-")[0],
        "verdict": verdict,
        "outcome": outcome,
        "anomaly": "a read of key <b>3</b> saw a stale value" if verdict == "anomaly" else "",
        "reason": "",
        "ops_per_s": ops_per_s,
        "latency_ms_p99": 20.0,
        "availability": 0.9,
        "recover_s_max": 1.5,
        "coverage_missing": ["large-read", "cas-null-present"] if seed == 1 else ["large-read"],
        "run_dir": f"runs/{cell}-s{seed}/kill/20261201T000000",
        "report": f"runs/{cell}-s{seed}/kill/20261201T000000/report.html",
    }


def write_execution(store: Path, stamp: str, runs: list[dict], *, build: str) -> None:
    directory = store / "campaigns" / "nightly" / stamp
    directory.mkdir(parents=True)
    document = {
        "format": 1,
        "campaign": "nightly",
        "started_at": stamp,
        "build": build,
        "shards": [[1, 1]],
        "counts": {"pass": 1, "fail": 0, "error": 0, "skipped": 0},
        "exit_code": 0,
        "runs": runs,
    }
    (directory / "campaign.json").write_text(json.dumps(document))


def test_the_campaigns_page_shows_matrix_trends_and_flaky_entries(tmp_path: Path) -> None:
    write_execution(
        tmp_path,
        "20261201T020000",
        [
            record("kill", 1, verdict="valid", outcome="pass", ops_per_s=100),
            record("pause", 1, verdict="valid", outcome="pass", ops_per_s=90),
        ],
        build="b1",
    )
    write_execution(
        tmp_path,
        "20261202T020000",
        [
            record("kill", 1, verdict="anomaly", outcome="fail", ops_per_s=50),
            record("pause", 1, verdict="valid", outcome="pass", ops_per_s=95),
        ],
        build="b1",
    )
    write_execution(
        tmp_path,
        "20261203T020000",
        [
            record("kill", 2, verdict="valid", outcome="pass", ops_per_s=120),
            record("pause", 2, verdict="anomaly", outcome="fail", ops_per_s=80),
        ],
        build="b2",
    )
    path = write_campaigns_index(tmp_path)
    assert path == tmp_path / "campaigns" / "index.html"
    html = path.read_text()
    assert (
        html.count('title="pass and fail on the same build"') == 1
    )  # kill flipped on b1; pause changed build
    assert re.search(r"<td>kill <span class=\"flaky\"", html)
    assert "&lt;b&gt;3&lt;/b&gt;" in html and "<b>3</b>" not in html  # values are escaped
    assert 'href="nightly/20261203T020000/runs/kill-s2/kill/20261201T000000/report.html"' in html
    assert html.count("<polyline") == 8  # two entries x four figures, three executions each
    assert "120.0" in html  # the newest ops/s of kill
    assert html.index("20261203T020000") < html.index("20261201T020000")  # newest execution first
    assert html.count(">large-read<") == 2  # the newest execution (seed 2) reached all but large-read


def test_no_campaigns_no_page(tmp_path: Path) -> None:
    assert write_campaigns_index(tmp_path) is None


def test_helpers() -> None:
    assert (
        entry_label({"id": "rolling-kill_read-from-backup-s12", "seed": 12})
        == "rolling-kill_read-from-backup"
    )
    assert spark([1.0]) == ""
    points = spark([1.0, 3.0, 2.0]).split()
    assert len(points) == 3 and points[0].startswith("0.0,") and points[-1].startswith("120.0,")
