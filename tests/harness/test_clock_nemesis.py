"""The clock nemesis: libfaketime control lines, a real child process following them live, the nemesis.

The child is a real Python process with libfaketime preloaded exactly as a node is started
(``ClockControl.env``); it reports ``time.time()`` and ``time.monotonic()`` on request, and the
test compares them with its own clocks while the control file changes under it.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.errors import BadInput
from core.scenario import build_test
from nemeses.clock import ClockControl, ClockNemesis, ClockSetting, bump_ms, find_libfaketime

LIBRARY = find_libfaketime()
needs_libfaketime = pytest.mark.skipif(LIBRARY is None, reason="libfaketime is not installed")
# The child's answer travels through a pipe on a shared, busy machine: a reading is taken only
# when the round trip was short, so its error (half the round trip at most) stays below this.
TOLERANCE_MS = 150.0
ROUND_TRIP_MS_MAX = 100.0
READ_ATTEMPTS = 50

CHILD = "import sys,time\nfor _ in sys.stdin: print(time.time(), time.monotonic(), flush=True)\n"


class Child:
    """A process whose clock is controlled by ``control`` (as node ``name``)."""

    def __init__(self, control: ClockControl, name: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, **control.env(name)},
        )
        self.offsets_ms()  # the first answer waits for the interpreter to start: not a reading

    def offsets_ms(self) -> tuple[float, float]:
        """(wall offset, monotonic offset) of the child's clocks against ours, in ms."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        before_wall, before_mono = time.time(), time.monotonic()
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        wall_s, mono_s = (float(x) for x in self.proc.stdout.readline().split())
        after_wall, after_mono = time.time(), time.monotonic()
        return (wall_s - (before_wall + after_wall) / 2) * 1000, (
            mono_s - (before_mono + after_mono) / 2
        ) * 1000

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


@pytest.fixture
def child(tmp_path: Path) -> Iterator[tuple[ClockControl, Child]]:
    assert LIBRARY is not None
    control = ClockControl(tmp_path / "clock", ["n1", "n2"], library=LIBRARY)
    proc = Child(control, "n1")
    yield control, proc
    proc.close()


def test_control_lines_are_what_libfaketime_reads() -> None:
    assert ClockSetting().line(now_s=100.0) == "+0.000000 x1"
    assert ClockSetting(offset_ms=-2500).line(now_s=100.0) == "-2.500000 x1"
    assert ClockSetting(offset_ms=250, rate=1.5).line(now_s=100.0) == "@100.250000 x1.5"
    assert ClockSetting(offset_ms=-1000, frozen=True).line(now_s=100.0) == "99.000000"


def test_bumps_are_log_uniform_both_ways_within_the_bound() -> None:
    rng = random.Random(7)
    bumps = [bump_ms(rng, 262_144) for _ in range(2000)]
    assert all(4 <= abs(b) <= 262_144 for b in bumps)
    assert 800 < sum(b > 0 for b in bumps) < 1200
    # Log-uniform over 2^2..2^18: about 1/16 of the draws per octave, so small bumps are common.
    assert 60 < sum(abs(b) < 8 for b in bumps) < 200
    assert 60 < sum(abs(b) > 131_072 for b in bumps) < 200


def test_a_zero_rate_is_refused(tmp_path: Path) -> None:
    control = ClockControl(tmp_path, ["n1"], library="/nonexistent.so")
    with pytest.raises(ValueError, match="rate must be > 0"):
        control.set("n1", rate=0.0)
    assert (tmp_path / "n1.faketime").read_text() == "+0.000000 x1\n"


@needs_libfaketime
def test_a_running_process_follows_bump_freeze_skew_and_reset(child: tuple[ClockControl, Child]) -> None:
    control, proc = child
    wall, mono = proc.offsets_ms()
    assert abs(wall) < TOLERANCE_MS and abs(mono) < TOLERANCE_MS

    control.set("n1", offset_ms=-90_000)
    wall, mono = proc.offsets_ms()
    assert abs(wall + 90_000) < TOLERANCE_MS
    assert abs(mono) < TOLERANCE_MS, "the monotonic clock stays real unless asked"

    control.set("n1", frozen=True)
    first, _ = proc.offsets_ms()
    time.sleep(0.5)
    second, _ = proc.offsets_ms()
    assert 400 < first - second < 500 + TOLERANCE_MS, "a frozen clock falls behind the real one"

    control.set("n1", offset_ms=0, rate=2.0)
    first, _ = proc.offsets_ms()
    time.sleep(0.5)
    before = control.offset_ms("n1")
    second, _ = proc.offsets_ms()
    after = control.offset_ms("n1")
    assert abs(first) < TOLERANCE_MS, "changing the rate does not make the clock jump"
    assert second - first > 400, "at x2 the clock gains at least 0.5 s in 0.5 s"
    assert before - TOLERANCE_MS < second < after + TOLERANCE_MS, "the controller's own account agrees"

    assert control.reset_all() == ["n1"]
    wall, _ = proc.offsets_ms()
    assert abs(wall) < TOLERANCE_MS


@needs_libfaketime
def test_the_monotonic_clock_is_faked_only_when_asked(tmp_path: Path) -> None:
    assert LIBRARY is not None
    control = ClockControl(tmp_path, ["n1"], library=LIBRARY, fake_monotonic=True)
    proc = Child(control, "n1")
    try:
        _, before = proc.offsets_ms()
        control.set("n1", offset_ms=30_000)
        _, after = proc.offsets_ms()
        assert abs(after - before - 30_000) < TOLERANCE_MS
    finally:
        proc.close()


class OneSystem:
    """The two things a clock nemesis asks of a system: node names and the current primary."""

    def node_names(self) -> tuple[str, ...]:
        return ("n1", "n2", "n3")

    def primary(self) -> str | None:
        return "n2"


@needs_libfaketime
def test_the_nemesis_records_exact_targets_and_values_and_resets(child: tuple[ClockControl, Child]) -> None:
    control, proc = child
    nemesis = ClockNemesis(
        system=OneSystem(),  # type: ignore[arg-type]
        control=control,
        modes=["bump"],
        specs=["all"],
        rng=random.Random(3),
        max_offset_ms=60_000,
    )
    started = nemesis.start()
    assert started["mode"] == "bump" and started["targets"] == ["n1", "n2", "n3"]
    assert set(started["offsets_ms"]) == {"n1", "n2", "n3"}
    wall, _ = proc.offsets_ms()
    assert abs(wall - started["offsets_ms"]["n1"]) < TOLERANCE_MS
    assert nemesis.active is not None
    stopped = nemesis.stop()
    assert stopped["offsets_ms"] == {"n1": 0.0, "n2": 0.0, "n3": 0.0}
    assert nemesis.active is None
    wall, _ = proc.offsets_ms()
    assert abs(wall) < TOLERANCE_MS


@needs_libfaketime
def test_a_strobe_flips_and_ends_where_it_began(child: tuple[ClockControl, Child]) -> None:
    control, proc = child
    nemesis = ClockNemesis(
        system=OneSystem(),  # type: ignore[arg-type]
        control=control,
        modes=["strobe"],
        specs=["primary"],
        rng=random.Random(1),
        max_offset_ms=50_000,
        strobe_duration_ms_max=600,
    )
    control.set("n2", offset_ms=0)
    started = nemesis.start()
    assert started["targets"] == ["n2"] and started["mode"] == "strobe"
    seen = set()
    strobed = Child(control, "n2")
    try:
        deadline = time.monotonic() + started["duration_ms"] / 1000 + 1
        while time.monotonic() < deadline:
            seen.add(round(strobed.offsets_ms()[0] / 1000))
            time.sleep(0.005)
        assert {0, round(started["delta_ms"] / 1000)} <= seen
        assert abs(strobed.offsets_ms()[0]) < TOLERANCE_MS, "the strobe ended at its starting offset"
    finally:
        strobed.close()
    stopped = nemesis.stop()
    assert stopped["flips"] >= 2
    assert abs(proc.offsets_ms()[0]) < TOLERANCE_MS, "n1 was never a target"


def scenario(nemesis: dict) -> dict:
    return {"cluster": {"nodes": 3}, "nemesis": {"faults": ["clock"], "interval_s": 2, **nemesis}}


def test_clock_settings_validate_with_the_key_named() -> None:
    test = build_test(
        scenario({"clock_modes": ["freeze"], "clock_rates": ["x1.5"], "clock_monotonic": True}),
        source=None,
        seed_if_absent=1,
    )
    assert test.nemesis.clock_modes == ("freeze",)
    assert test.nemesis.clock_rates == (1.5,)
    assert test.nemesis.clock_monotonic is True
    for bad, key in (
        ({"clock_rates": ["x0"]}, "clock_rates"),
        ({"clock_rates": ["1.5"]}, "clock_rates"),
        ({"clock_modes": ["bumpp"]}, "clock_modes"),
        ({"clock_monotonic": 1}, "clock_monotonic"),
        ({"clock_max_ms": 2}, "clock_max_ms"),
        ({"schedule": "sometimes"}, "schedule"),
    ):
        with pytest.raises(BadInput, match=key):
            build_test(scenario(bad), source=None, seed_if_absent=1)


@needs_libfaketime
def test_the_probe_shifts_a_real_child_and_refuses_a_library_that_does_not() -> None:
    from harness.capabilities import fault_refusal, probe_faketime, probe_namespaces

    working = probe_faketime()
    assert working.available, working.detail
    assert "+3600.0 s, -3600.0 s" in working.detail
    # A library the loader cannot preload: the child runs on the real clock, and the probe says so.
    broken = probe_faketime("/nonexistent/libfaketime.so.1")
    assert not broken.available
    assert "does not shift a child's clock" in broken.detail and broken.how_to_enable
    reason = fault_refusal("clock", {"namespaces": probe_namespaces(), "libfaketime": broken})
    assert reason is not None and "needs libfaketime" in reason and "apt-get install libfaketime" in reason


@needs_libfaketime
def test_a_process_started_while_its_clock_is_skewed_continues_from_the_offset_reached(
    tmp_path: Path,
) -> None:
    assert LIBRARY is not None
    control = ClockControl(tmp_path, ["n1"], library=LIBRARY)
    control.set("n1", offset_ms=0, rate=2.0)
    time.sleep(1.0)  # the clock gains 1 s; a restarted node must not go back to the skew's start
    proc = Child(control, "n1")
    try:
        before = control.offset_ms("n1")
        wall, _ = proc.offsets_ms()
        after = control.offset_ms("n1")  # at x2 the offset grows while the child answers
        assert before - TOLERANCE_MS < wall < after + TOLERANCE_MS
        assert wall > 900
    finally:
        proc.close()
