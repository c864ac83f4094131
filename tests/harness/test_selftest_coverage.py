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
from harness.commands.selftest import NOT_END_TO_END, handle
from vr.bugs import BUGS


def test_every_planted_bug_is_run_or_explained() -> None:
    covered = {run.bug for run in load("selftest").runs if run.bug}
    assert covered | set(NOT_END_TO_END) == set(BUGS)
    assert not covered & set(NOT_END_TO_END)
    assert all(len(why) > 40 for why in NOT_END_TO_END.values())


def test_asking_for_a_left_out_bug_names_the_reason(tmp_path) -> None:
    bug = next(iter(NOT_END_TO_END))
    args = argparse.Namespace(seeds=1, bug=[bug], jobs=1, store=str(tmp_path))
    with pytest.raises(BadInput, match="no selftest entry") as raised:
        handle(args)
    assert NOT_END_TO_END[bug][:30] in str(raised.value)
