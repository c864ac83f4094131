"""Evidence for survivors docs/mutation.md reads as equivalent: the state that would tell them apart never occurs.

``_send_prepare_oks`` returns unless ``log_view == view`` (the mutant: unless ``log_view <= view``,
since ``log_view > view`` never holds). The two differ only if a normal backup could ack with
``log_view < view``: here every call, and every replica after every step, is checked on plain and
storage-stressed simulator seeds, so a path into that state would fail this test.

``_suffix_headers`` with ``op - pipeline_max / 1`` differs only when ``commit_max < op -
pipeline_max`` (the float term then wins the ``max`` and ``range()`` raises): checked at every
call on the same seeds. ``_open`` reading recent headers for commit_max from ``op - pipeline_max``
instead of ``op - 2 * pipeline_max`` differs only if a header below the shorter window carries a
higher commit than the head's: checked (for ``3 * pipeline_max``) at every restart.
"""

from __future__ import annotations

from typing import Any

import pytest

from vr.replica import Replica, Status
from vr.testing import cluster as sim_cluster
from vr.testing.sim import run_seed

SEEDS = [*range(1, 9), *range(5000, 5004)]


@pytest.mark.parametrize("seed", SEEDS)
def test_a_normal_replica_always_has_its_log_in_its_view(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    send_prepare_oks = Replica._send_prepare_oks

    def checked(self: Replica) -> None:
        if self.status_name == Status.NORMAL:
            calls.append(1)
            assert self.log_view == self.view, (self.replica, self.log_view, self.view)
        send_prepare_oks(self)

    step = sim_cluster.SimCluster.step

    def checked_step(self: sim_cluster.SimCluster) -> None:
        step(self)
        for replica in self.replicas:
            if replica is not None and replica.status_name == Status.NORMAL:
                assert replica.log_view == replica.view, (replica.replica, replica.log_view, replica.view)

    monkeypatch.setattr(Replica, "_send_prepare_oks", checked)
    monkeypatch.setattr(sim_cluster.SimCluster, "step", checked_step)
    stressed = {"power_cut_probability": 0.03, "corrupt_probability": 0.01} if seed >= 5000 else {}
    result = run_seed(seed, **stressed)
    assert result.ok, result.detail
    assert calls, "no normal replica acked: the seed checked nothing"


@pytest.mark.parametrize("seed", SEEDS)
def test_no_start_view_is_built_with_the_head_a_pipeline_above_commit_max(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    suffix_headers = Replica._suffix_headers

    def checked(self: Replica) -> list[Any]:
        calls.append(1)
        assert self.op - self.commit_max <= self.options.pipeline_max, (
            self.replica,
            self.op,
            self.commit_max,
        )
        return suffix_headers(self)

    monkeypatch.setattr(Replica, "_suffix_headers", checked)
    stressed = {"power_cut_probability": 0.03, "corrupt_probability": 0.01} if seed >= 5000 else {}
    result = run_seed(seed, **stressed)
    assert result.ok, result.detail
    assert calls, "no start-view was built: the seed checked nothing"


@pytest.mark.parametrize("seed", SEEDS)
def test_a_restart_finds_its_highest_commit_in_its_head(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[int] = []
    open_ = Replica._open

    def checked(self: Replica, state: Any, data: bytes) -> None:
        open_(self, state, data)
        head = self.journal.header_for_op(self.op)
        if head is None:
            return  # the head is the executed checkpoint op: both windows start at it
        opened.append(self.op)
        low = max(self.checkpoint_op, self.op - 3 * self.options.pipeline_max)
        commits = [
            h.commit for op in range(low, self.op + 1) if (h := self.journal.header_for_op(op)) is not None
        ]
        assert max(commits) == head.commit, (self.replica, self.op, commits)

    monkeypatch.setattr(Replica, "_open", checked)
    stressed = {"power_cut_probability": 0.03, "corrupt_probability": 0.01} if seed >= 5000 else {}
    result = run_seed(seed, **stressed)
    assert result.ok, result.detail
