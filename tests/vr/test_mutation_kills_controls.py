"""Controls for ``tests/vr/test_mutation_kills*.py``: each check fails on the mutant it was written for.

The check passes on the correct replica (it runs in the killer); here the mutant is applied
with ``bench/mutation.py``'s own machinery, in a private copy of the tree, and the same test
must fail there. Slow (a copy and a pytest run per mutant), so not part of the killer nor of
the default suite: ``pip install -e '.[test,mutation]'`` then ``pytest -m soak`` on this file.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.soak

ROOT = Path(__file__).resolve().parents[2]
KILLS = "tests/vr/test_mutation_kills.py"
DIRECT = "tests/vr/test_mutation_kills_direct.py"


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_mutation", ROOT / "bench/mutation.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


CASES = [
    (
        "test_a_torn_header_over_an_intact_prepare_is_repaired_from_the_local_copy",
        "vr/journal.py",
        "holds_intact",
        "return self._inhabited.get(op % self.layout.slot_count) == checksum_expected",
        "return self._inhabited.get(op % self.layout.slot_count) is checksum_expected",
    ),
    (
        "test_a_faulty_slot_at_the_checkpoints_next_op_leaves_the_head_certain",
        "vr/replica.py",
        "_head_certain",
        "for op in range(self.op, op_prepare_max + 1):",
        "for op in range(self.op, op_prepare_max + 2):",
    ),
    (
        "test_a_faulty_slot_at_the_checkpoints_next_op_leaves_the_head_certain",
        "vr/journal.py",
        "_torn_slots",
        "for op in range(head + 1, op_prepare_max + 1):",
        "for op in range(head + 1, op_prepare_max + 2):",
    ),
    (
        "test_a_backup_that_missed_prepares_fills_the_gap_by_header_requests",
        "vr/replica.py",
        "_send_request_headers",
        "if op_max < op_min:",
        "if not op_max < op_min:",
    ),
    (
        "test_a_backup_that_missed_prepares_fills_the_gap_by_header_requests",
        "vr/replica.py",
        "_on_request_headers",
        "for op in range(op_min, op_max + 1):",
        "for op in range(op_min, op_max << 1):",
    ),
    (
        "test_a_replica_restarted_in_a_view_newer_than_its_log_keeps_nothing_above_the_view_head",
        "vr/replica.py",
        "_open",
        "self.journal.remove_entries_from(head + 1)",
        "self.journal.remove_entries_from(head + 2)",
    ),
    (
        f"{DIRECT}::test_a_checkpoint_that_hashes_right_but_does_not_parse_is_dropped",
        "vr/replica.py",
        "_on_sync",
        "except (ValueError, KeyError, json.JSONDecodeError, UnicodeDecodeError):",
        "except (CosmicRayTestingException, KeyError, json.JSONDecodeError, UnicodeDecodeError):",
    ),
    (
        f"{DIRECT}::test_a_do_view_change_for_a_view_this_replica_does_not_lead_is_dropped",
        "vr/replica.py",
        "_on_do_view_change",
        "if self._primary_index(header.view) != self.replica:",
        "if self._primary_index(header.view) > self.replica:",
    ),
    (
        f"{DIRECT}::test_a_vote_says_on_the_wire_whether_its_head_is_uncertain",
        "vr/replica.py",
        "_decode_do_view_change",
        "head_uncertain=header.client == 1,",
        "head_uncertain=header.client > 1,",
    ),
    (
        f"{DIRECT}::test_a_prepare_from_a_newer_view_makes_a_normal_backup_ask_for_the_start_view_at_once",
        "vr/replica.py",
        "_on_prepare",
        "if self.status_name != Status.RECOVERING_HEAD:",
        "if not self.status_name != Status.RECOVERING_HEAD:",
    ),
    (
        f"{DIRECT}::test_a_new_view_log_with_a_hole_keeps_the_ops_below_the_hole",
        "vr/replica.py",
        "choose_new_view_log#1",  # the second "head = op - 1" of the function
        "head = op - 1",
        "head = op % 1",
    ),
    (
        f"{DIRECT}::test_a_freshly_formatted_journal_believes_what_a_recovery_of_its_disk_finds",
        "vr/journal.py",
        "format",
        "self._inhabited = {0: root.header.checksum}",
        "self._inhabited = { -1: root.header.checksum}",
    ),
    (
        f"{DIRECT}::test_a_freshly_formatted_journal_believes_what_a_recovery_of_its_disk_finds",
        "vr/journal.py",
        "recover",
        "decision_counts[decision.value] = decision_counts.get(decision.value, 0) + 1",
        "decision_counts[decision.value] = decision_counts.get(decision.value, 1) + 1",
    ),
    (
        f"{DIRECT}::test_a_prepare_of_this_view_is_taken_even_if_it_does_not_chain_to_a_head_from_an_older_view",
        "vr/replica.py",
        "_on_prepare",
        "if head is not None and head.view == self.view and header.parent != head.checksum:",
        "if head is not None and head.view <= self.view and header.parent != head.checksum:",
    ),
    (
        f"{DIRECT}::test_a_torn_header_over_a_never_written_slot_above_the_head_leaves_the_head_certain",
        "vr/journal.py",
        "_torn_slots",
        "and (prepare.command == Command.RESERVED or prepare.op <= op_checkpoint)",
        "and (prepare.command is not Command.RESERVED or prepare.op <= op_checkpoint)",
    ),
    (
        f"{DIRECT}::test_a_rotted_prepare_in_the_checkpoint_ops_slot_is_a_torn_append_of_the_last_op_the_ring_holds",
        "vr/journal.py",
        "_torn_slots",
        "for op in range(head + 1, op_prepare_max + 1):",
        "for op in range(head + 1, op_prepare_max + 0):",
    ),
    (
        f"{DIRECT}::test_a_replica_in_recovering_head_calls_a_new_view_only_after_its_requests_went_unanswered",
        "vr/replica.py",
        "_on_request_start_view_timeout",
        "if self.recovering_head_attempts >= RECOVERING_HEAD_ATTEMPTS_MAX:",
        "if self.recovering_head_attempts != RECOVERING_HEAD_ATTEMPTS_MAX:",
    ),
    (
        f"{DIRECT}::test_a_prepare_of_this_view_is_taken_even_if_it_does_not_chain_to_a_head_from_an_older_view",
        "vr/replica.py",
        "_on_prepare",
        'self.counters["chain_breaks"] = self.counters.get("chain_breaks", 0) + 1',
        'self.counters["chain_breaks"] = self.counters.get("chain_breaks", 0) | 1',
    ),
    (
        f"{DIRECT}::test_a_retransmitted_prepare_of_the_executed_op_is_dropped_as_committed",
        "vr/replica.py",
        "_on_repair",
        "if header.op <= self.commit_min:",
        "if header.op < self.commit_min:",
    ),
    (
        f"{DIRECT}::test_a_restarted_replica_knows_at_least_the_commit_its_newest_prepare_carries",
        "vr/replica.py",
        "_open",
        "for candidate in range(max(self.commit_min, self.op - self.options.pipeline_max * 2), self.op + 1):",
        "for candidate in range(max(self.commit_min, self.op - self.options.pipeline_max + 2), self.op + 1):",
    ),
    (
        f"{DIRECT}::test_a_start_view_beyond_the_ring_makes_a_normal_backup_ask_for_the_checkpoint_at_once",
        "vr/replica.py",
        "_catch_up_from_start_view",
        "if header.op > self.op_prepare_max:",
        "if header.op is self.op_prepare_max:",
    ),
    (
        "tests/vr/test_sim.py::test_regression_committed_op_only_in_a_checkpoint_is_reached_by_state_sync",
        "vr/replica.py",
        "_commit_stalled",
        "if self.commit_min >= self.commit_max or self.commit_min != since_op:",
        "if self.commit_min < self.commit_max or self.commit_min != since_op:",
    ),
]


@pytest.mark.timeout(1800)  # listing a module's mutants and a pytest run, on a loaded machine
@pytest.mark.parametrize(
    ("test", "module", "function", "before", "after"),
    CASES,
    ids=[f"{case[2]}" for case in CASES],  # function (#n: which of its identical lines)
)
def test_the_check_fails_on_its_mutant(
    test: str, module: str, function: str, before: str, after: str
) -> None:
    pytest.importorskip("cosmic_ray", reason="the [mutation] extra (cosmic-ray) is not installed")
    bench = _bench()
    function, _, nth = function.partition("#")
    where = test if "::" in test else f"{KILLS}::{test}"
    done = bench.run_tests_on_mutant(module, function, before, after, [where], nth=int(nth) if nth else None)
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    assert "1 failed" in done.stdout, done.stdout[-2000:]
