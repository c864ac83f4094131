"""The convergence checker on handmade node reports: agreement, a diverged prefix, a diverged state.

Reports have the shape a node sends (contracts §3, ``convergence`` in STATUS_REPLY);
the finding must name the diverged replica (the minority), the op and the keys.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from checkers.check import check_run
from checkers.convergence import check_convergence, check_run_dir
from vr.state_machine import StateMachine


def report(
    kv: dict[str, Any], *, op: int, prefix: list[list[Any]] | None = None, keys: bool = True
) -> dict[str, Any]:
    """A node's report, hashed by the replica's own state machine code."""
    machine = StateMachine()
    machine.kv = dict(kv)
    state: dict[str, Any] = {"op": op, **machine.digest().to_json()}
    if keys:
        state["key_hashes"] = machine.key_hashes()
        state["values"] = dict(kv)
    return {
        "commit_min": op,
        "commit_checksum": "c" * 32,
        "prefix": prefix if prefix is not None else [[o, f"{o:032x}"] for o in range(max(1, op - 3), op + 1)],
        "state": state,
        "probes": {},
    }


def snapshot(nodes: dict[str, Any], label: str = "after the final heal") -> dict[str, Any]:
    return {"label": label, "time_ns": 1, "probe_op": None, "nodes": nodes}


def test_agreeing_replicas_are_valid() -> None:
    kv = {"a": 1, "b": [2, 3]}
    result = check_convergence({"snapshots": [snapshot({n: report(kv, op=9) for n in ("n1", "n2", "n3")})]})
    assert result["valid"] is True
    assert result["findings"] == []
    assert result["snapshots"][0]["state_ops"] == [9]
    assert "agree" in result["summary"]


def test_a_diverged_state_names_the_minority_replica_the_op_and_the_keys() -> None:
    good = {"a": 1, "b": 2, "c": 3}
    bad = {"a": 1, "b": -2, "c": 3, "d": 4}
    nodes = {"n1": report(good, op=40), "n2": report(good, op=40), "n3": report(bad, op=40)}
    result = check_convergence({"snapshots": [snapshot(nodes)]})
    assert result["valid"] is False
    (finding,) = result["findings"]
    assert finding["kind"] == "state" and finding["op"] == 40
    assert finding["diverged"] == ["n3"] and finding["agree"] == ["n1", "n2"]
    assert finding["keys_total"] == 2
    assert [k["key"] for k in finding["keys"]] == ["b", "d"]
    assert finding["keys"][0]["values"] == {"n1": 2, "n2": 2, "n3": -2}
    assert finding["sentence"].startswith("n3 diverged from n1, n2 at op 40: 2 key(s) differ: 'b' n1=2")


def test_states_at_different_ops_are_not_compared_but_a_probe_at_a_common_op_is() -> None:
    nodes = {"n1": report({"a": 1}, op=10), "n2": report({"a": 2}, op=11)}
    assert check_convergence({"snapshots": [snapshot(nodes)]})["findings"] == []
    probe_good = {**report({"a": 1}, op=8)["state"]}
    probe_bad = {**report({"a": 5}, op=8)["state"]}
    nodes["n1"]["probes"] = {"8": probe_good}
    nodes["n2"]["probes"] = {"8": probe_bad, "9": {"op": 9, "skipped": "state sync jumped to op 11"}}
    result = check_convergence({"snapshots": [snapshot(nodes, "after healing partition")]})
    (finding,) = result["findings"]
    assert finding["op"] == 8 and finding["snapshot"] == "after healing partition"
    assert finding["diverged"] == ["n2"]  # a tie: the group holding the first node by name agrees


def test_a_different_prepare_at_a_common_op_is_a_prefix_divergence() -> None:
    shared = [[5, "aa" * 16], [6, "bb" * 16]]
    nodes = {
        "n1": report({}, op=7, prefix=[*shared, [7, "cc" * 16]]),
        "n2": report({}, op=7, prefix=[*shared, [7, "cc" * 16]]),
        "n3": report({}, op=7, prefix=[[5, "aa" * 16], [6, "ff" * 16], [7, "ee" * 16]]),
    }
    result = check_convergence({"snapshots": [snapshot(nodes)]})
    kinds = [(f["kind"], f["op"], f["diverged"]) for f in result["findings"]]
    assert ("prefix", 6, ["n3"]) in kinds
    assert "executed a different op 6" in result["summary"]


def test_nothing_comparable_is_unknown_and_unanswered_nodes_are_listed() -> None:
    nodes = {"n1": report({"a": 1}, op=3, prefix=[]), "n2": "no answer: timed out", "n3": "not running"}
    result = check_convergence({"snapshots": [snapshot(nodes)]})
    assert result["valid"] == "unknown"
    assert result["snapshots"][0]["unanswered"] == {"n2": "no answer: timed out", "n3": "not running"}


def test_without_per_key_hashes_the_finding_still_names_replica_and_op() -> None:
    nodes = {n: report({"a": v}, op=4, keys=False) for n, v in (("n1", 1), ("n2", 1), ("n3", 9))}
    (finding,) = check_convergence({"snapshots": [snapshot(nodes)]})["findings"]
    assert finding["keys_total"] is None and finding["diverged"] == ["n3"]
    assert "key-value states differ" in finding["sentence"]


def test_a_run_directory_with_reports_gets_the_checker_and_its_verdict(tmp_path: Path) -> None:
    (tmp_path / "history.jsonl").write_text(
        json.dumps({"index": 0, "time_ns": 1, "process": 0, "type": "invoke", "f": "write", "key": "a",
                    "value": 1, "error": None, "node": None}) + "\n"
        + json.dumps({"index": 1, "time_ns": 2, "process": 0, "type": "ok", "f": "write", "key": "a",
                      "value": 1, "error": None, "node": "n1"}) + "\n"
    )  # fmt: skip
    assert check_run_dir(tmp_path) is None
    assert "convergence" not in check_run(tmp_path)["checkers"]
    nodes = {"n1": report({"a": 1}, op=2), "n2": report({"a": 1}, op=2), "n3": report({"a": 3}, op=2)}
    (tmp_path / "convergence.json").write_text(json.dumps({"snapshots": [snapshot(nodes)]}))
    results = check_run(tmp_path)
    assert results["checkers"]["linearizable"]["valid"] is True
    assert results["checkers"]["convergence"]["valid"] is False
    assert results["valid"] is False
    (tmp_path / "convergence.json").write_text("{not json")
    assert check_run(tmp_path)["checkers"]["convergence"]["valid"] == "unknown"


def test_ratchet_check_of_a_stored_run_reports_a_divergence(tmp_path: Path) -> None:
    import subprocess
    import sys

    write = {"process": 0, "f": "write", "key": "a", "value": 1, "error": None}
    (tmp_path / "history.jsonl").write_text(
        json.dumps({"index": 0, "time_ns": 1, "type": "invoke", "node": None, **write}) + "\n"
        + json.dumps({"index": 1, "time_ns": 2, "type": "ok", "node": "n1", **write}) + "\n"
    )  # fmt: skip
    (tmp_path / "test.json").write_text(json.dumps({"test": {"workload": {"model": "cas-register"}}}))
    (tmp_path / "results.json").write_text(json.dumps({"valid": True, "checkers": {}, "elapsed_s": 1.0}))
    nodes = {"n1": report({"a": 1}, op=2), "n2": report({"a": 1}, op=2), "n3": report({"a": 3}, op=2)}
    (tmp_path / "convergence.json").write_text(json.dumps({"snapshots": [snapshot(nodes)]}))
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "check", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.startswith("ANOMALY")  # the history alone is linearizable
    assert (
        "convergence: n3 diverged from n1, n2 at op 2: 1 key(s) differ: 'a' n1=1, n2=1, n3=3" in done.stdout
    )


def test_long_values_are_kept_short_in_findings() -> None:
    big = ["1:" + "x" * 16_000]
    nodes = {
        "n1": report({"a": big}, op=5),
        "n2": report({"a": big}, op=5),
        "n3": report({"a": ["-1"]}, op=5),
    }
    (finding,) = check_convergence({"snapshots": [snapshot(nodes)]})["findings"]
    shown = finding["keys"][0]["values"]
    assert shown["n3"] == ["-1"]
    assert shown["n1"].endswith("(16006 bytes of JSON)") and len(shown["n1"]) < 100
    assert len(finding["sentence"]) < 400
