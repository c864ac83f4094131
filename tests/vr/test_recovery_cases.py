"""The journal's recovery decision table (docs/vr.md §2.3) as data, checked exhaustively."""

from __future__ import annotations

import itertools

import pytest

from vr.journal import COLUMNS, RECOVERY_CASES, Decision, SlotFacts, classify, matching_cases
from vr.message import Command, Header, Operation, make_header

CLUSTER = 5
ALL_INPUTS = list(itertools.product((False, True), repeat=len(COLUMNS)))


def test_every_combination_of_inputs_matches_exactly_one_case() -> None:
    """Like TigerBeetle's 2^11 test: the rows partition the whole input space (here 2^10)."""
    assert len(ALL_INPUTS) == 2 ** len(COLUMNS) == 1024
    counts: dict[str, int] = {}
    for values in ALL_INPUTS:
        cases = matching_cases(values)
        assert len(cases) == 1, (values, [c.label for c in cases])
        counts[cases[0].label] = counts.get(cases[0].label, 0) + 1
    assert set(counts) == {case.label for case in RECOVERY_CASES}, "a row that no input reaches is dead"
    assert sum(counts.values()) == 1024


def test_consistent_inputs_classify_and_inconsistent_ones_assert() -> None:
    """An input that violates a row's implied columns is a caller bug: classify asserts."""
    consistent = 0
    for values in ALL_INPUTS:
        facts = SlotFacts(*values)
        (case,) = matching_cases(values)
        if case.implied_violations(values):
            with pytest.raises(AssertionError):
                classify(facts)
        else:
            assert classify(facts) is case
            consistent += 1
    assert 0 < consistent < 1024


def test_every_row_is_reachable_by_a_consistent_input() -> None:
    reached = set()
    for values in ALL_INPUTS:
        (case,) = matching_cases(values)
        if not case.implied_violations(values):
            reached.add(case.label)
    assert reached == {case.label for case in RECOVERY_CASES}


def test_every_row_has_a_reason_and_both_decisions() -> None:
    for case in RECOVERY_CASES:
        assert len(case.why) > 40, case.label
        assert isinstance(case.decision_multiple, Decision)
        assert isinstance(case.decision_solo, Decision)
        assert Decision.CUT_TORN not in (case.decision_multiple, case.decision_solo), (
            "cut_torn comes only from the torn-append refinement, never from a single slot's view"
        )


def test_no_single_slot_view_ever_truncates_a_checksum_mismatch() -> None:
    """docs/vr.md bug #9: a prepare that fails its checksum (p_ok false) is never cut by the table."""
    for values in ALL_INPUTS:
        facts = dict(zip(COLUMNS, values, strict=True))
        (case,) = matching_cases(values)
        if not facts["p_ok"] and not facts["beyond"]:
            assert case.decision_multiple == Decision.VSR, case.label
            assert case.decision_solo == Decision.VSR, case.label


# Spot checks from real headers -------------------------------------------------------------------


def _prepare(op: int, *, view: int = 1, body: bytes = b"x") -> Header:
    return make_header(
        command=Command.PREPARE, cluster=CLUSTER, body=body, op=op, view=view, operation=Operation.BATCH
    )


def _case(
    header: Header | None, prepare: Header | None, *, op_max: int = 10, op_prepare_max: int = 64
) -> str:
    return classify(SlotFacts.of(header, prepare, op_max=op_max, op_prepare_max=op_prepare_max)).label


def test_spot_clean_slot_is_eql() -> None:
    p = _prepare(3)
    assert _case(p, p) == "P"
    assert classify(SlotFacts.of(p, p, op_max=10, op_prepare_max=64)).decision(solo=False) == Decision.EQL


def test_spot_torn_prepare_is_faulty_not_cut() -> None:
    """A reserved or older header over an unreadable prepare is vsr from the table; only the
    torn-append refinement (which sees the whole journal) may turn it into cut_torn."""
    reserved = Header.reserved(CLUSTER, 3)
    assert _case(reserved, None) == "B"
    assert _case(_prepare(3), None) == "C"
    for label in ("B", "C"):
        case = next(c for c in RECOVERY_CASES if c.label == label)
        assert case.decision(solo=False) == Decision.VSR


def test_spot_header_lost_prepare_intact_is_fixed() -> None:
    """Crashed while writing the header of the newest op: the prepare is intact, rewrite the header."""
    p = _prepare(10)
    assert _case(None, p, op_max=10) == "F"
    assert classify(SlotFacts.of(None, p, op_max=10, op_prepare_max=64)).decision(solo=False) == Decision.FIX
    assert _case(Header.reserved(CLUSTER, 10), p) == "G"
    assert _case(_prepare(10), _prepare(10 + 64), op_max=74, op_prepare_max=128) == "M"


def test_spot_header_lost_older_prepare_needs_peers_unless_solo() -> None:
    case = classify(SlotFacts.of(None, _prepare(4), op_max=10, op_prepare_max=64))
    assert case.label == "E"
    assert case.decision(solo=False) == Decision.VSR
    assert case.decision(solo=True) == Decision.FIX


def test_spot_different_versions_are_vsr() -> None:
    """Same op, different checksums (two views): we cannot tell which one is current."""
    assert _case(_prepare(5, view=2), _prepare(5, view=3)) == "O"
    assert _case(_prepare(5 + 64), _prepare(5), op_prepare_max=128) == "N"
    for label in ("O", "N"):
        case = next(c for c in RECOVERY_CASES if c.label == label)
        assert case.decision(solo=False) == Decision.VSR


def test_spot_beyond_the_checkpoint_window_is_cut() -> None:
    assert _case(_prepare(70), _prepare(6), op_prepare_max=64) == "H"
    assert _case(None, _prepare(70), op_prepare_max=64) == "H"


def test_spot_never_used_slot_is_nil() -> None:
    reserved = Header.reserved(CLUSTER, 9)
    assert _case(reserved, reserved) == "L"
    assert _case(_prepare(9), reserved) == "K"


def test_root_header_is_a_valid_prepare() -> None:
    root = Header.root(CLUSTER)
    assert root.command == Command.PREPARE and root.op == 0
    assert _case(root, root, op_max=0) == "P"
