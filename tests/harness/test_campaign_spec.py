"""Campaign files -> matrix, shards and artifacts (no cluster: these are the arithmetic and the files)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from core.errors import BadInput
from harness.campaigns import artifacts
from harness.campaigns.records import RunRecord, campaign_exit_code, outcome_of, skipped_record
from harness.campaigns.shipped import load, shipped_names
from harness.campaigns.spec import build_campaign, parse_shard, read_campaign, shard

BUGS = ("read-from-backup", "no-client-table")
SCENARIOS = ("default", "kill", "pause", "rolling-kill")


def campaign_of(data: dict, **kwargs):
    return build_campaign(
        data, source="c.toml", digest="d", known_scenarios=SCENARIOS, known_bugs=BUGS, **kwargs
    )


def test_matrix_is_runs_times_seeds_in_file_order() -> None:
    campaign = campaign_of(
        {
            "seeds": 3,
            "seed_base": 10,
            "run": [{"scenario": "kill"}, {"scenario": "pause", "bug": "no-client-table"}],
        }
    )
    cells = campaign.matrix()
    assert [(c.run.scenario, c.seed) for c in cells] == [
        ("kill", 10),
        ("kill", 11),
        ("kill", 12),
        ("pause", 10),
        ("pause", 11),
        ("pause", 12),
    ]
    assert [c.index for c in cells] == list(range(6))
    assert len({c.id for c in cells}) == 6
    assert cells[3].run.expect == "anomaly"  # a planted bug is expected to be found
    assert cells[0].run.expect == "valid"


@pytest.mark.parametrize("size", [1, 2, 5, 13, 40])
@pytest.mark.parametrize("count", [1, 2, 3, 4, 7])
def test_shards_cover_every_cell_exactly_once(size: int, count: int) -> None:
    campaign = campaign_of({"seeds": size, "run": [{"scenario": "kill"}]})
    cells = campaign.matrix()
    ids = [c.id for i in range(1, count + 1) for c in shard(cells, i, count)]
    assert sorted(ids) == sorted(c.id for c in cells)
    assert len(ids) == len(set(ids))
    sizes = [len(shard(cells, i, count)) for i in range(1, count + 1)]
    assert max(sizes) - min(sizes) <= 1  # balanced


def test_a_shard_is_the_same_whatever_reads_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('seeds = 4\n[[run]]\nscenario = "kill"\n[[run]]\nscenario = "pause"\n')
    first = [c.id for c in shard(read_campaign(path, known_scenarios=SCENARIOS).matrix(), 2, 3)]
    second = [c.id for c in shard(read_campaign(path, known_scenarios=SCENARIOS).matrix(), 2, 3)]
    assert first == second == ["kill-s2", "pause-s1", "pause-s4"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1/1", (1, 1)), ("3/4", (3, 4)), (" 2 / 2 ", (2, 2))],
)
def test_parse_shard(text: str, expected: tuple[int, int]) -> None:
    assert parse_shard(text) == expected


@pytest.mark.parametrize("text", ["0/3", "4/3", "1/0", "x", "1/2/3", "-1/2", ""])
def test_parse_shard_refuses(text: str) -> None:
    with pytest.raises(BadInput):
        parse_shard(text)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "at least one"),
        ({"run": []}, "at least one"),
        ({"run": [{}]}, "scenario"),
        ({"run": [{"scenario": "kil"}]}, "did you mean 'kill'"),
        ({"run": [{"scenario": "kill", "bug": "nope"}]}, "bug"),
        ({"run": [{"scenario": "kill", "expect": "maybe"}]}, "expect"),
        ({"run": [{"scenario": "kill", "cluster": "docker"}]}, "cluster"),
        ({"run": [{"scenario": "kill", "time_limt": 3}]}, "did you mean 'time_limit'"),
        ({"run": [{"scenario": "kill", "time_limit": "3"}]}, "time_limit must be"),
        ({"run": [{"scenario": "kill", "nodes": True}]}, "nodes must be"),
        ({"seeds": 0, "run": [{"scenario": "kill"}]}, "seeds"),
        ({"seeds": "3", "run": [{"scenario": "kill"}]}, "seeds"),
        ({"seed_base": -1, "run": [{"scenario": "kill"}]}, "seed_base"),
        ({"name": "../x", "run": [{"scenario": "kill"}]}, "name"),
        ({"name": "/abs", "run": [{"scenario": "kill"}]}, "name"),
        ({"bogus": 1, "run": [{"scenario": "kill"}]}, "unknown key"),
        ({"defaults": {"nope": 1}, "run": [{"scenario": "kill"}]}, "unknown key"),
        ({"run": [{"scenario": "kill"}, {"scenario": "kill"}]}, "same run twice"),
    ],
)
def test_bad_campaigns_are_refused_before_anything_runs(data: dict, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        campaign_of(data)


def test_overrides_become_run_flags() -> None:
    campaign = campaign_of(
        {
            "defaults": {"time_limit": 15, "nemesis": ["partition", "kill"]},
            "run": [{"scenario": "kill", "time_limit": 9, "bug": "read-from-backup", "clients": "nodes"}],
        }
    )
    argv = campaign.matrix()[0].run_argv(store=Path("s"))
    assert argv[:7] == ["run", "kill", "--seed", "1", "--store", "s", "--no-progress"]
    joined = " ".join(argv)
    assert "--time-limit 9" in joined and "--nemesis partition,kill" in joined
    assert "--bug read-from-backup" in joined and "--clients nodes" in joined


def test_shipped_campaigns_are_valid() -> None:
    assert {"nightly", "smoke", "selftest"} <= set(shipped_names())
    for name in shipped_names():
        campaign = load(name)
        assert campaign.matrix()
    selftest = load("selftest")
    bugs = {r.bug for r in selftest.runs if r.bug}
    assert bugs >= {"read-from-backup", "no-client-table"}
    for run in selftest.runs:  # every planted-bug scenario also runs on the correct cluster
        if run.bug:
            assert any(
                other.bug is None
                and other.scenario == run.scenario
                and dict(other.overrides) == dict(run.overrides)
                for other in selftest.runs
            ), run


def record(cell, *, verdict: str, duration_s: float = 1.0) -> RunRecord:
    return RunRecord(
        id=cell.id,
        index=cell.index,
        scenario=cell.run.scenario,
        seed=cell.seed,
        bug=cell.run.bug,
        expect=cell.run.expect,
        verdict=verdict,
        outcome=outcome_of(verdict, cell.run.expect),
        exit_code={"valid": 0, "anomaly": 1, "unknown": 2}[verdict],
        reason="interrupted" if verdict == "unknown" else "",
        anomaly="a read of key 3 saw 1 after 2 was written" if verdict == "anomaly" else "",
        ops=10,
        ok=8,
        fail=1,
        info=1,
        availability=0.8,
        recover_s_max=0.5,
        ops_per_s=100.0,
        latency_ms_p99=12.0,
        coverage_missing=["large-read"],
        duration_s=duration_s,
        run_dir=f"runs/{cell.id}/x/y",
        report=None,
        reproduce=f"ratchet run --replay /s/{cell.id}",
    )


def test_exit_code_is_the_worst_outcome() -> None:
    campaign = campaign_of({"run": [{"scenario": "kill"}, {"scenario": "pause", "bug": "no-client-table"}]})
    kill, pause = campaign.matrix()
    assert (
        campaign_exit_code(
            [record(kill, verdict="valid"), record(pause, verdict="anomaly")], interrupted=False
        )
        == 0
    )
    assert (
        campaign_exit_code(
            [record(kill, verdict="anomaly"), record(pause, verdict="anomaly")], interrupted=False
        )
        == 1
    )
    assert (
        campaign_exit_code([record(kill, verdict="valid"), record(pause, verdict="valid")], interrupted=False)
        == 1
    )
    assert (
        campaign_exit_code(
            [record(kill, verdict="unknown"), record(pause, verdict="anomaly")], interrupted=False
        )
        == 2
    )
    assert (
        campaign_exit_code(
            [record(kill, verdict="unknown"), record(pause, verdict="valid")], interrupted=False
        )
        == 1
    )
    budget = [record(kill, verdict="valid"), skipped_record(pause, why="time budget spent")]
    assert campaign_exit_code(budget, interrupted=False) == 0
    assert campaign_exit_code(budget, interrupted=True) == 2


def test_junit_has_one_case_per_run_with_failures_errors_and_skips(tmp_path: Path) -> None:
    campaign = campaign_of(
        {"seeds": 2, "run": [{"scenario": "kill"}, {"scenario": "pause", "bug": "no-client-table"}]}
    )
    k1, k2, p1, p2 = campaign.matrix()
    records = [
        record(k1, verdict="anomaly"),
        record(k2, verdict="unknown"),
        record(p1, verdict="valid"),
        skipped_record(p2, why="time budget spent"),
    ]
    document = artifacts.campaign_document(
        campaign=campaign,
        records=records,
        shard=(1, 1),
        matrix_size=4,
        started_at="t",
        argv=["x"],
        interrupted=False,
    )
    artifacts.write_artifacts(document, tmp_path)
    suite = ET.parse(tmp_path / "junit.xml").getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == (
        "4",
        "2",
        "1",
        "1",
    )
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert set(cases) == {k1.id, k2.id, p1.id, p2.id}
    failure = cases[k1.id].find("failure")
    assert failure is not None and "a read of key 3" in failure.get("message", "")
    assert "reproduce: ratchet run --replay" in (failure.text or "")
    missed = cases[p1.id].find("failure")
    assert missed is not None and "no-client-table not found" in missed.get("message", "")
    assert cases[k2.id].find("error") is not None
    assert cases[p2.id].find("skipped") is not None
    stored = json.loads((tmp_path / "campaign.json").read_text())
    assert stored["exit_code"] == 1 and len(stored["runs"]) == 4


def test_merging_shards_joins_every_cell_once_and_notices_missing_ones(tmp_path: Path) -> None:
    campaign = campaign_of({"seeds": 5, "run": [{"scenario": "kill"}]})
    cells = campaign.matrix()
    dirs = []
    for i in (1, 2, 3):
        directory = tmp_path / f"shard{i}"
        directory.mkdir()
        mine = shard(cells, i, 3)
        for cell in mine:
            (directory / "runs" / cell.id).mkdir(parents=True)
            (directory / "runs" / cell.id / "output.log").write_text(cell.id)
        document = artifacts.campaign_document(
            campaign=campaign,
            records=[record(c, verdict="valid") for c in mine],
            shard=(i, 3),
            matrix_size=len(cells),
            started_at=f"t{i}",
            argv=["x"],
            interrupted=False,
        )
        artifacts.write_artifacts(document, directory)
        dirs.append(directory)
    merged = artifacts.merge(dirs, tmp_path / "merged")
    assert [r["index"] for r in merged["runs"]] == list(range(5))
    assert merged["exit_code"] == 0 and merged["missing_cells"] == 0
    assert merged["shards"] == [[1, 3], [2, 3], [3, 3]]
    for cell in cells:
        assert (tmp_path / "merged" / "runs" / cell.id / "output.log").read_text() == cell.id
    partial = artifacts.merge(dirs[:2], tmp_path / "partial")
    assert partial["missing_cells"] == len(shard(cells, 3, 3)) and partial["exit_code"] == 2
    with pytest.raises(BadInput, match="two shards"):
        artifacts.merge([dirs[0], dirs[0]], tmp_path / "twice")


def test_entries_alike_but_for_their_settings_get_told_apart() -> None:
    campaign = campaign_of(
        {
            "run": [
                {"scenario": "kill", "time_limit": 5},
                {"scenario": "kill", "time_limit": 9},
                {"scenario": "pause"},
            ]
        }
    )
    ids = [cell.id for cell in campaign.matrix()]
    assert ids[0] != ids[1] and ids[0].startswith("kill-") and ids[1].startswith("kill-")
    assert ids[2] == "pause-s1"  # a unique entry keeps its plain name
