"""examples/github-actions.yml: its ratchet commands run as written (shards listed, shards merged)."""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from harness.campaigns import artifacts
from harness.campaigns.records import RunRecord, outcome_of
from harness.campaigns.shipped import load
from harness.campaigns.spec import shard

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / "examples" / "github-actions.yml"


def command(marker: str) -> str:
    """The shell command of the step that runs ``ratchet <marker>`` (continuation lines joined)."""
    text = WORKFLOW.read_text().replace("\\\n", " ")
    match = re.search(r"((?:sudo )?\.venv/bin/ratchet " + re.escape(marker) + r" [^\n]*)", text)
    assert match, f"no `ratchet {marker}` step in {WORKFLOW}"
    line = match.group(1)
    return line.replace("sudo ", "").replace(".venv/bin/ratchet", f"{sys.executable} -m harness.cli")


def env_of_workflow() -> dict[str, str]:
    text = WORKFLOW.read_text()
    return {
        "CAMPAIGN": re.search(r"CAMPAIGN: (\S+)", text).group(1),
        "SHARDS": re.search(r"SHARDS: (\d+)", text).group(1),
    }  # type: ignore[union-attr]


def bash(line: str, *, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        ["bash", "-c", line],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_matrix_lists_every_shard_and_covers_the_campaign_once(tmp_path: Path) -> None:
    env = env_of_workflow()
    shards = int(env["SHARDS"])
    assert f"shard: [{', '.join(str(i) for i in range(1, shards + 1))}]" in WORKFLOW.read_text()
    seen: list[str] = []
    for index in range(1, shards + 1):
        line = (
            command("campaign")
            .replace("${{ matrix.shard }}", str(index))
            .replace("${{ github.run_number }}", "41")
        )
        proc = bash(line + " --list", cwd=tmp_path, env=env)
        assert proc.returncode == 0, proc.stderr
        seen += [row.split("\t")[0] for row in proc.stdout.splitlines()]
    campaign = load(env["CAMPAIGN"], seed_base=41)
    assert sorted(seen) == sorted(cell.id for cell in campaign.matrix())


def test_the_merge_step_joins_the_downloaded_shards(tmp_path: Path) -> None:
    env = env_of_workflow()
    shards = int(env["SHARDS"])
    campaign = load(env["CAMPAIGN"], seed_base=41)
    cells = campaign.matrix()
    for index in range(1, shards + 1):  # what actions/download-artifact lays out
        directory = (
            tmp_path
            / "shards"
            / f"ratchet-shard-{index}"
            / campaign.name
            / f"20261204T021700-shard{index}of{shards}"
        )
        directory.mkdir(parents=True)
        mine = shard(cells, index, shards)
        records = [
            RunRecord.from_json(
                {"id": c.id, "index": c.index, "scenario": c.run.scenario, "seed": c.seed, "expect": c.run.expect,
                 "verdict": "valid", "outcome": outcome_of("valid", c.run.expect), "exit_code": 0, "reason": "",
                 "anomaly": "", "ops": 1, "ok": 1, "fail": 0, "info": 0, "duration_s": 1.0, "reproduce": "r"}
            )
            for c in mine
        ]  # fmt: skip
        document = artifacts.campaign_document(
            campaign=campaign,
            records=records,
            shard=(index, shards),
            matrix_size=len(cells),
            started_at="2026-12-04T02:17:00Z",
            argv=["ratchet"],
            interrupted=False,
        )
        artifacts.write_artifacts(document, directory)
    proc = bash(command("campaign merge"), cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    (junit,) = tmp_path.glob("site/campaigns/*/merged/junit.xml")  # the path the report step reads
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("tests") == str(len(cells))
    assert (tmp_path / "site" / "campaigns" / "index.html").is_file()
