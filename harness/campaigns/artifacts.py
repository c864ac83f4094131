"""What a campaign leaves for CI: ``campaign.json`` and JUnit XML; and joining the shards of one.

``campaign.json`` is the source of truth (one record per cell, and the cells
that did not run); the JUnit file is derived from it, so merging shards only
merges JSON and writes the XML again. JUnit: one testcase per scenario x seed;
a run that failed its expectation is a ``failure`` (the anomaly sentence, the
reproduce command and the report path in its text), a run that could not say
is an ``error``, a run not started is ``skipped``.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from junitparser import Error, Failure, JUnitXml, Skipped, TestCase, TestSuite

from core.errors import BadInput
from harness.campaigns.execute import write_json
from harness.campaigns.records import RunRecord, campaign_exit_code

CAMPAIGN_JSON = "campaign.json"
JUNIT_XML = "junit.xml"
FORMAT = 1


def build_id() -> str:
    """The build of the system under test: a digest of vr/'s sources, with Ratchet's version.

    Two executions with the same build ran the same replica code, so an outcome that flips
    between them is the schedule's doing (flaky), not a change's.
    """
    import hashlib
    from importlib import metadata

    import vr

    digest = hashlib.sha256()
    root = Path(vr.__file__).parent
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    try:
        version = metadata.version("ratchet")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return f"{version}+vr.{digest.hexdigest()[:12]}"


def campaign_document(
    *,
    campaign: Any,
    records: Sequence[RunRecord],
    shard: tuple[int, int],
    matrix_size: int,
    started_at: str,
    argv: Sequence[str],
    interrupted: bool,
    teardown_note: str = "",
) -> dict[str, Any]:
    counts = {
        outcome: sum(1 for r in records if r.outcome == outcome)
        for outcome in ("pass", "fail", "error", "skipped")
    }
    return {
        "format": FORMAT,
        "campaign": campaign.name,
        "description": campaign.description,
        "source": campaign.source,
        "digest": campaign.digest,
        "seeds": list(campaign.seeds),
        "build": build_id(),
        "shards": [list(shard)],
        "matrix_size": matrix_size,
        "started_at": started_at,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command_line": list(argv),
        "interrupted": interrupted,
        "counts": counts,
        "exit_code": campaign_exit_code(list(records), interrupted=interrupted),
        "note": teardown_note,
        "runs": [r.to_json() for r in records],
    }


def _detail(record: RunRecord, campaign_dir: Path) -> str:
    lines = []
    if record.anomaly:
        lines.append(record.anomaly)
    if record.reason:
        lines.append(f"reason: {record.reason}")
    if record.expect == "anomaly" and record.verdict == "valid":
        lines.append(f"planted bug {record.bug} was not found (the run was valid)")
    if record.report:
        lines.append(f"report: {campaign_dir / record.report}")
    lines.append(f"reproduce: {record.reproduce}")
    return "\n".join(lines)


def write_junit(document: dict[str, Any], campaign_dir: Path) -> Path:
    suite = TestSuite(document["campaign"])
    suite.timestamp = document["started_at"]
    for data in document["runs"]:
        record = RunRecord.from_json(data)
        case = TestCase(record.id, f"ratchet.{document['campaign']}.{record.scenario}", record.duration_s)
        if record.outcome == "fail":
            message = (
                record.anomaly or f"expected {record.expect}, got {record.verdict}"
                if record.expect == "valid"
                else f"planted bug {record.bug} not found"
            )
            result: Any = Failure(message[:500])
            result.text = _detail(record, campaign_dir)
            case.result = [result]
        elif record.outcome == "error":
            result = Error(f"unknown: {record.reason}"[:500])
            result.text = _detail(record, campaign_dir)
            case.result = [result]
        elif record.outcome == "skipped":
            case.result = [Skipped(record.reason)]
        suite.add_testcase(case)
    xml = JUnitXml()
    xml.add_testsuite(suite)
    path = campaign_dir / JUNIT_XML
    xml.write(str(path), pretty=True)
    return path


def write_artifacts(document: dict[str, Any], campaign_dir: Path) -> None:
    write_json(campaign_dir / CAMPAIGN_JSON, document)
    write_junit(document, campaign_dir)


def read_document(campaign_dir: Path) -> dict[str, Any]:
    path = campaign_dir / CAMPAIGN_JSON
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise BadInput("no campaign.json here: not a campaign directory.", where=str(campaign_dir)) from exc
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read campaign.json: {exc}.", where=str(path)) from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("runs"), list):
        raise BadInput(f"campaign.json is not a format-{FORMAT} campaign record.", where=str(path))
    return data


def merge(campaign_dirs: Sequence[Path], out_dir: Path) -> dict[str, Any]:
    """Join shards of one campaign (same file, same seeds) into ``out_dir``, runs copied along.

    Each cell must come from exactly one shard; a cell that is in no shard (a shard that never
    arrived) is listed as skipped and makes the merged exit code at least 2.
    """
    documents = [read_document(d) for d in campaign_dirs]
    first = documents[0]
    for directory, doc in zip(campaign_dirs, documents, strict=True):
        for key in ("campaign", "digest", "seeds", "matrix_size"):
            if doc.get(key) != first.get(key):
                raise BadInput(
                    f"{key} differs from {campaign_dirs[0]}'s ({doc.get(key)!r} vs {first.get(key)!r}): "
                    "only shards of the same campaign file and seeds can be merged.",
                    where=str(directory),
                )
    by_index: dict[int, tuple[dict[str, Any], Path]] = {}
    for directory, doc in zip(campaign_dirs, documents, strict=True):
        for run in doc["runs"]:
            if run.get("outcome") == "skipped" and run["index"] in by_index:
                continue
            previous = by_index.get(run["index"])
            if previous is not None and previous[0].get("outcome") != "skipped":
                if run.get("outcome") == "skipped":
                    continue
                raise BadInput(
                    f"cell {run['id']} ran in two shards ({previous[1]} and {directory}).",
                    where=str(directory),
                )
            by_index[run["index"]] = (run, directory)
    out_dir.mkdir(parents=True, exist_ok=True)
    runs: list[dict[str, Any]] = []
    for index in sorted(by_index):
        run, directory = by_index[index]
        run = dict(run)
        source = directory / "runs" / run["id"]
        if source.is_dir():
            target = out_dir / "runs" / run["id"]
            if source.resolve() != target.resolve():
                shutil.copytree(source, target, symlinks=True, dirs_exist_ok=True)
        runs.append(run)
    missing = first["matrix_size"] - len(runs)
    interrupted = any(doc.get("interrupted") for doc in documents)
    merged = dict(first)
    merged.update(
        {
            "shards": sorted(shard for doc in documents for shard in doc.get("shards", [])),
            "started_at": min(doc["started_at"] for doc in documents),
            "finished_at": max(doc["finished_at"] for doc in documents),
            "interrupted": interrupted,
            "runs": runs,
            "merged_from": [str(d) for d in campaign_dirs],
            "missing_cells": missing,
        }
    )
    records = [RunRecord.from_json(r) for r in runs]
    merged["counts"] = {
        o: sum(1 for r in records if r.outcome == o) for o in ("pass", "fail", "error", "skipped")
    }
    merged["exit_code"] = campaign_exit_code(records, interrupted=interrupted or missing > 0)
    write_artifacts(merged, out_dir)
    return merged
