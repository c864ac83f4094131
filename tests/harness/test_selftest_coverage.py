"""``ratchet selftest`` covers every planted bug, or says why a real run does not reach it.

Claims: each bug of vr/bugs.py has a selftest entry (with the correct build on the same
scenario and flags) or an entry in ``NOT_END_TO_END`` with its reason, never both; and asking
selftest for a left-out bug is bad input that names the reason.
"""

from __future__ import annotations

import argparse

import pytest

from core.errors import BadInput
from harness.campaigns.shipped import load
from harness.commands.selftest import NOT_END_TO_END, handle, summarize
from vr.bugs import BUGS


def test_every_planted_bug_is_run_or_explained() -> None:
    covered = {run.bug for run in load("selftest").runs if run.bug}
    assert covered | set(NOT_END_TO_END) == set(BUGS)
    assert not covered & set(NOT_END_TO_END)
    assert all(len(why) > 40 for why in NOT_END_TO_END.values())


def test_asking_for_a_left_out_bug_names_the_reason(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    reason = "a stand-in bug this test leaves out, with a reason long enough to be one"
    monkeypatch.setitem(NOT_END_TO_END, "left-out-bug", reason)
    args = argparse.Namespace(seeds=1, bug=["left-out-bug"], jobs=1, store=str(tmp_path))
    with pytest.raises(BadInput, match="no selftest entry") as raised:
        handle(args)
    assert reason[:30] in str(raised.value)
    assert "stale-view-votes" in str(raised.value)  # the covered bugs are listed


def test_the_summary_names_the_checker_that_found_each_bug() -> None:
    from harness.campaigns.records import RunRecord

    fields = dict.fromkeys(RunRecord.__dataclass_fields__)
    found = RunRecord(
        **{
            **fields,
            "scenario": "flap",
            "bug": "duplicate-prepare-no-checksum",
            "seed": 2,
            "verdict": "anomaly",
            "duration_s": 61.0,
            "anomaly": "catch-up found an anomaly: n2 stayed at op 826 while n1 executed op 926",
        }
    )
    missed = RunRecord(
        **{
            **fields,
            "scenario": "flap",
            "bug": "duplicate-prepare-no-checksum",
            "seed": 3,
            "verdict": "valid",
            "duration_s": 60.0,
            "anomaly": "",
        }
    )
    lines, code = summarize([missed, found])
    assert code == 0
    assert lines == [
        "found     duplicate-prepare-no-checksum by flap: 1 of 2 seeds; first at seed 2 in 61 s (found by catch-up)"
    ]
