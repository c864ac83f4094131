"""faultfs for real: mounted over a directory in a run namespace, driven through its control socket.

Claims: after SIGKILL of a writer and a power cut, the file is byte for byte the copy
taken at its last fsync (and differed from it just before the cut); EIO / ENOSPC /
stall rules hit exactly what they aim at, are logged with file, offset and length, and
go away when cleared; a bad control request is refused with its reason; the data stays
in the directory after the unmount; and a VR node whose fsync fails acks nothing, exits
(no spinning on a broken disk), and comes back healthy from the same directory once the
fault is cleared.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.capabilities import probe_fuse

PROBE = Path(__file__).with_name("faultfs_probe.py")

pytestmark = [pytest.mark.integration]


@pytest.fixture(scope="module", autouse=True)
def needs_fuse() -> None:
    cap = probe_fuse()
    if not cap.available:
        pytest.skip(f"faultfs cannot mount here: {cap.detail}. {cap.how_to_enable}")


def probe(*args: str, timeout_s: float = 120) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "clusters.namespace", "--", sys.executable, str(PROBE), *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("seed", [1, 2])
def test_power_cut_after_sigkill_loses_exactly_the_unsynced_tail(seed: int) -> None:
    result = probe("lose-unsynced", str(seed))
    assert result["changed_before_cut"], "the unsynced writes were visible before the cut"
    assert result["equal_after_cut"], "after the cut the file must equal the copy taken at the fsync"
    assert result["equal_after_unmount"]
    assert result["dropped_bytes"] > 0
    (cut,) = [entry for entry in result["log"] if entry["op"] == "power-cut"]
    assert cut["dropped_bytes"] == result["dropped_bytes"]
    assert all(length > 0 for _, length in cut["dropped_ranges"])


def test_rules_hit_what_they_aim_at_and_are_logged() -> None:
    result = probe("rules")
    assert result["fsync_errno"] == errno.EIO
    assert result["after_failed_fsync"] == "s", "a failed fsync drops the dirty page, as Linux does"
    assert result["enospc_errno"] == errno.ENOSPC
    assert result["stalled"] and result["released"]
    assert "frobnicate" in result["bad_request"]
    assert result["stats"]["counts"]["injected"] == 3
    assert result["mounted"] == "fuse.faultfs" and result["unmounted"] is None
    assert result["content_after_unmount"] == "a"
    injected = [e for e in result["log"] if e.get("fault") in ("sync", "full", "slow")]
    assert [(e["fault"], e["op"], e["file"], e["offset"], e["length"]) for e in injected] == [
        ("sync", "fsync", "f", 0, 0),
        ("full", "write", "f", 4096, 4096),
        ("slow", "fsync", "f", 0, 0),
    ]


@pytest.mark.timeout(180)
def test_eio_on_fsync_a_vr_node_never_acks_and_never_crash_loops() -> None:
    result = probe("eio-node", timeout_s=150)
    assert result["healthy_before"]
    assert result["acked_during_fault"] is False
    assert result["exit_code"] == 1, "the node exits on a failed fsync (VR.md: restart from disk)"
    assert result["still_down"]
    assert result["injected"] >= 1
    assert result["log_names_fsync_eio"]
    assert result["healthy_after"], "once the fault is cleared the node recovers from the same directory"
    assert result["k0_after"] == 1, "what was acked before the fault survived"
    assert result["clean_exit"] == 0


@pytest.mark.timeout(180)
def test_a_corrupted_committed_slot_is_repaired_from_a_peer_and_shown() -> None:
    result = probe("corrupt-repair", timeout_s=150)
    corrupted = result["corrupted_ops"]
    assert result["written"] == 30
    assert result["faulty_ops"] == corrupted, "recovery found exactly the damaged slots faulty"
    assert set(corrupted) <= set(result["repaired_ops"]), "each was repaired from a peer"
    assert result["counters"]["storage_faults"] == len(corrupted)
    assert result["counters"]["repairs"] >= len(corrupted)
    assert result["reads"] == list(range(30)), "every acknowledged write reads back"
    ops_text = ", ".join(str(op) for op in corrupted)
    assert f"storage faults found: 3 (ops {ops_text})" in result["summary"]
    assert "slots repaired from peers" in result["summary"]
