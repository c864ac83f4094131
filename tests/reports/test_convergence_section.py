"""The report's Convergence section, from a run whose replicas were found to diverge.

The checker's entry is produced by the real checker from node reports hashed by the
replica's own state-machine code; the section must name the diverged replica, the op,
and show each differing key's value per node with the diverged cells marked, and
hostile key text must stay escaped.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from checkers.convergence import check_convergence
from reports.build import write_run_report
from tests.reports.handmade import partition_history, write_run
from vr.state_machine import StateMachine

TEST = {"scenario": "no-faults", "seed": 7, "nodes": ["n1", "n2", "n3"]}


def node_report(kv: dict[str, Any], op: int) -> dict[str, Any]:
    machine = StateMachine()
    machine.kv = dict(kv)
    state = {"op": op, **machine.digest().to_json(), "key_hashes": machine.key_hashes(), "values": dict(kv)}
    return {"commit_min": op, "prefix": [[op, "ab" * 16]], "state": state, "probes": {}}


def test_a_divergence_gets_its_own_section_naming_replica_op_and_keys(tmp_path: Path) -> None:
    good = {"k1": 5, "<b>k2</b>": 7}
    bad = {"k1": -5, "<b>k2</b>": 7}
    snapshot = {
        "label": "after the final heal",
        "time_ns": 1,
        "probe_op": None,
        "nodes": {"n1": node_report(good, 77), "n2": node_report(bad, 77), "n3": node_report(good, 77)},
    }
    convergence = check_convergence({"snapshots": [snapshot]})
    results = {"valid": False, "checkers": {"linearizable": {"valid": True}, "convergence": convergence}}
    run = write_run(
        tmp_path / "store" / "no-faults" / "20261204T170000", partition_history(), results=results, test=TEST
    )
    html = write_run_report(run).read_text()
    section = html[
        html.index('<section id="convergence">') : html.index(
            "</section>", html.index('<section id="convergence">')
        )
    ]
    assert 'href="#convergence"' in html
    assert "n2 diverged at op 77" in section
    assert "n2 (diverged)" in section
    row = re.search(r"<tr><td class=\"mono\">k1</td>(.*?)</tr>", section, re.S)
    assert row is not None
    cells = re.findall(r'<td class="mono( bad)?">([^<]*)</td>', row.group(1))
    assert cells == [("", "5"), (" bad", "-5"), ("", "5")]
    assert "<b>k2</b>" not in html  # the key did not differ, and hostile text is escaped anyway
    assert "after the final heal" in section


def test_a_run_without_convergence_reports_has_no_section(tmp_path: Path) -> None:
    results = {"valid": True, "checkers": {"linearizable": {"valid": True}}}
    run = write_run(
        tmp_path / "store" / "no-faults" / "20261204T170000", partition_history(), results=results, test=TEST
    )
    html = write_run_report(run).read_text()
    assert '<section id="convergence">' not in html
    assert 'href="#convergence"' not in html


def test_state_classes_never_reached_are_listed_first_and_marked(tmp_path: Path) -> None:
    results = {
        "valid": True,
        "checkers": {"linearizable": {"valid": True}},
        "coverage": {
            "classes": {"read-missing": 3, "cas-mismatch": 0},
            "missing": ["cas-mismatch"],
            "expected": {"read-missing": "ok read of a missing key", "cas-mismatch": "cas refused"},
        },
    }
    run = write_run(
        tmp_path / "store" / "no-faults" / "20261204T170000", partition_history(), results=results, test=TEST
    )
    html = write_run_report(run).read_text()
    table = html[html.index('id="coverage"') :]
    assert table.index("cas-mismatch") < table.index("read-missing")
    assert re.search(r'<tr class="bad"><td class="mono">cas-mismatch</td><td class="num">0</td>', table)
    assert "(never reached)" in table
