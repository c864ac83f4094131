"""The message proxy on real sockets in a private network namespace, and a real run through it.

Claims: the redirect catches a node's connection to a peer and the peer still sees the node's own
address (so partitions still apply); each mode does what it says to whole frames and counts it
exactly: duplicate adds copies, replay adds earlier frames, reorder swaps without losing any,
delay keeps order, drop loses exactly the frames it counts; a run with the messages fault records what it did per link and heals it.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from harness.capabilities import namespace_argv, probe_message_proxy
from tests.harness.test_vr_runs import assert_nothing_left

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not probe_message_proxy().available, reason=f"no message proxy here: {probe_message_proxy().detail}"
    ),
]
FRAMES = 200


@pytest.fixture(scope="module")
def probed() -> dict:
    proc = subprocess.run(
        [
            *namespace_argv(),
            sys.executable,
            "-m",
            "tests.harness.proxy_probe",
            "replay",
            "duplicate",
            "reorder",
            "delay",
            "drop",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_frames_arrive_whole_from_the_senders_own_address(probed: dict) -> None:
    for mode, result in probed.items():
        assert result["whole"], mode
        assert result["peer"] == "127.0.0.2", mode
        assert result["counters"]["frames"] == FRAMES, mode


def test_duplicate_sends_exactly_the_counted_copies(probed: dict) -> None:
    result = probed["duplicate"]
    copies = Counter(result["numbers"])
    assert set(copies) == set(range(FRAMES))
    assert sum(n - 1 for n in copies.values()) == result["counters"]["duplicated"] > 20
    assert result["numbers"] == sorted(result["numbers"])


def test_replay_sends_earlier_frames_again(probed: dict) -> None:
    result = probed["replay"]
    numbers = result["numbers"]
    assert len(numbers) == FRAMES + result["counters"]["replayed"] and result["counters"]["replayed"] > 20
    firsts = [n for i, n in enumerate(numbers) if n not in numbers[:i]]
    assert firsts == list(range(FRAMES))  # every frame once, in order, plus the replays
    highest = -1
    for n in numbers:
        if n <= highest:  # a replay is always of a frame that went before it
            assert n in numbers[: numbers.index(highest) + 1]
        highest = max(highest, n)


def test_reorder_swaps_neighbours_and_loses_nothing(probed: dict) -> None:
    result = probed["reorder"]
    numbers = result["numbers"]
    assert sorted(numbers) == list(range(FRAMES))
    inversions = sum(1 for a, b in itertools.pairwise(numbers) if a > b)
    assert inversions == result["counters"]["reordered"] > 10


def test_delay_holds_frames_back_but_keeps_their_order(probed: dict) -> None:
    result = probed["delay"]
    assert result["numbers"] == list(range(FRAMES))
    assert result["counters"]["delayed"] > 20


def test_drop_loses_exactly_the_counted_frames_and_keeps_the_rest_in_order(probed: dict) -> None:
    result = probed["drop"]
    numbers = result["numbers"]
    assert numbers == sorted(set(numbers))
    assert len(numbers) == FRAMES - result["counters"]["dropped"] and result["counters"]["dropped"] > 20


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="checks the host's ruleset (nft list tables), which needs root")
def test_a_run_with_message_faults_records_them_and_heals(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.cli",
            "run",
            "--nemesis",
            "messages",
            "--nemesis-interval",
            "2",
            "--time-limit",
            "10",
            "--seed",
            "5",
            "--store",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = (tmp_path / "latest").resolve()
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    starts = [op for op in history if op["f"] == "start-messages" and op["value"]]
    stops = [op for op in history if op["f"] == "stop-messages" and op["value"] and op["value"].get("healed")]
    assert starts and len(stops) == len(starts)
    for start, stop in zip(starts, stops, strict=True):
        assert start["value"]["mode"] in ("delay", "reorder", "duplicate", "replay")
        assert set(stop["value"]["links"]) == set(start["value"]["links"])
        assert sum(link["frames"] for link in stop["value"]["links"].values()) > 0
    teardown = json.loads((run / "results.json").read_text())["teardown"]
    assert "removed the message proxy's redirect" in teardown and "stopped the message proxy" in teardown
    assert_nothing_left(run)
