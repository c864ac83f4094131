"""Clock faults on single node processes, without touching the host's clock: libfaketime.

Every node of a run that asks for clock faults starts with libfaketime preloaded
(``LD_PRELOAD``) and reads its clock setting from its own control file
(``FAKETIME_TIMESTAMP_FILE``), re-read on every clock call (``FAKETIME_NO_CACHE=1``), so
the controller changes a running node's clock by replacing that file, never by
restarting the node. The file is replaced by rename, so a node reads either the old
or the new setting and never a half-written one (libfaketime exits the process on a
setting it cannot parse).

A setting is an offset from the real clock and a rate; libfaketime's control lines for
them, as the Debian 12 build (0.9.10) reads them:

- ``+0.250000 x1``: offset 250 ms at the real rate, exact whenever the node reads it;
- ``@1796403548.599803 x1.5``: from the moment the node reads it, the clock starts at that
  instant (``FAKETIME_FMT=%s``: epoch seconds) and runs 1.5 times as fast. The controller
  writes the node's current fake time, so the clock does not jump when its rate changes
  (at most by the few milliseconds until the node's next clock call);
- ``1796403548.599803``: frozen at that instant (a stopped clock). A rate of 0 would also stop
  it, but libfaketime divides the node's poll timeouts by the rate, so the node would never
  wake up: a stopped clock is always written as a frozen one.

The monotonic clock is left real (``FAKETIME_DONT_FAKE_MONOTONIC=1``) unless a scenario
asks for it (``nemesis.clock_monotonic``): VR's timeouts run on ticks of monotonic time,
and a lease measured on the wall clock (docs/vr.md bug #12) is what these faults are for.

The nemesis (kind ``clock``) draws, per start, one mode and its targets:

- ``bump``: each target's clock jumps by ± 2^U(2, log2 max) ms (log-uniform, as Jepsen's
  ``bump-time``);
- ``strobe``: each target's clock flips between its offset and offset + delta every
  ``period_ms`` for ``duration_ms`` (Jepsen's ``strobe-time``), from a background thread so
  other faults go on meanwhile; it ends at the offset it started from;
- ``skew``: each target's clock runs at a rate drawn from ``rates`` (e.g. x1.5);
- ``freeze``: each target's clock stands still (a clock that stopped, or a process whose
  clock reads stall).

``stop`` (and the teardown heal) is ``reset``: every node back to offset 0 at rate 1. The
completion of every op records, per target, the offset (``offsets_ms``) and rate
(``rates``) it set, and the report draws them as a clock-offset plot.
"""

from __future__ import annotations

import glob
import logging
import math
import os
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.system import System
from nemeses.faults import pick_targets

logger = logging.getLogger(__name__)

LIBRARY_GLOBS = (
    "/usr/lib/*/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
    "/usr/local/lib/faketime/libfaketime.so.1",
)
CLOCK_MODES = ("bump", "strobe", "skew", "freeze")
BUMP_MS_MIN = 4  # Jepsen's smallest bump, 2^2 ms
STROBE_PERIOD_MS_MIN = 10  # one node tick: flipping faster than the node looks gains nothing
STROBE_PERIOD_MS_MAX = 1024
DEFAULT_MAX_OFFSET_MS = 262_144  # 2^18 ms (about 4.4 minutes), Jepsen's bump range
DEFAULT_RATES = (0.5, 1.5, 2.0)


def find_libfaketime() -> str | None:
    """The path of libfaketime.so.1 on this machine, or None."""
    for pattern in LIBRARY_GLOBS:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    return None


@dataclass(frozen=True, slots=True)
class ClockSetting:
    """One node's clock: ``offset_ms`` from the real clock, running at ``rate``, or ``frozen``."""

    offset_ms: float = 0.0
    rate: float = 1.0
    frozen: bool = False

    def line(self, *, now_s: float) -> str:
        """libfaketime's control line for this setting, written at real time ``now_s``."""
        if self.frozen:
            return f"{now_s + self.offset_ms / 1000:.6f}"
        if self.rate == 1.0:
            return f"{self.offset_ms / 1000:+.6f} x1"
        return f"@{now_s + self.offset_ms / 1000:.6f} x{self.rate:g}"


def control_env(*, library: str, control_file: Path, fake_monotonic: bool) -> dict[str, str]:
    """Environment that makes a process read its clock from ``control_file`` through libfaketime."""
    preload = os.environ.get("LD_PRELOAD", "")
    return {
        "LD_PRELOAD": f"{library}:{preload}" if preload else library,
        "FAKETIME_TIMESTAMP_FILE": str(control_file),
        "FAKETIME_NO_CACHE": "1",
        "FAKETIME_FMT": "%s",
        "FAKETIME_DONT_FAKE_MONOTONIC": "0" if fake_monotonic else "1",
        # No shared start time with other processes (each node is its own machine), no file
        # timestamps faked (the node's data files keep real times).
        "FAKETIME_DISABLE_SHM": "1",
        "NO_FAKE_STAT": "1",
    }


def write_setting(path: Path, setting: ClockSetting, *, now_s: float | None = None) -> str:
    """Replace the control file atomically; returns the line written."""
    line = setting.line(now_s=time.time() if now_s is None else now_s)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(line + "\n")
    os.replace(tmp, path)
    return line


class ClockControl:
    """Per-node clock control files under ``directory`` and the environment that uses them.

    A node keeps its setting across restarts (the file stays), as a machine's clock does
    when only the process dies.
    """

    def __init__(
        self,
        directory: Path,
        nodes: Sequence[str],
        *,
        library: str,
        fake_monotonic: bool = False,
        wall_s: Callable[[], float] = time.time,
    ) -> None:
        self.directory, self.library, self.fake_monotonic = directory, library, fake_monotonic
        self._wall_s = wall_s
        self._lock = threading.Lock()
        self._settings: dict[str, ClockSetting] = {}
        self._since_s: dict[str, float] = {}
        directory.mkdir(parents=True, exist_ok=True)
        for node in nodes:
            self._write(node, ClockSetting())

    def path(self, node: str) -> Path:
        return self.directory / f"{node}.faketime"

    def env(self, node: str) -> dict[str, str]:
        """The environment of a node process about to start. A skewed clock's line names the instant
        the skew began, which a new process would start from: it is rewritten from now."""
        setting = self.setting(node)
        if setting.rate != 1.0 and not setting.frozen:
            self.set(node, rate=setting.rate)
        return control_env(
            library=self.library, control_file=self.path(node), fake_monotonic=self.fake_monotonic
        )

    def _write(self, node: str, setting: ClockSetting) -> None:
        now_s = self._wall_s()
        write_setting(self.path(node), setting, now_s=now_s)
        self._settings[node] = setting
        self._since_s[node] = now_s

    def offset_ms(self, node: str) -> float:
        """The node's offset now (a skewed clock's offset grows with time, a frozen one's falls)."""
        with self._lock:
            return self._offset_now(node)

    def _offset_now(self, node: str) -> float:
        setting = self._settings.get(node, ClockSetting())
        elapsed_ms = (self._wall_s() - self._since_s.get(node, self._wall_s())) * 1000
        if setting.frozen:
            return setting.offset_ms - elapsed_ms
        return setting.offset_ms + (setting.rate - 1.0) * elapsed_ms

    def setting(self, node: str) -> ClockSetting:
        with self._lock:
            return self._settings.get(node, ClockSetting())

    def set(
        self, node: str, *, offset_ms: float | None = None, rate: float = 1.0, frozen: bool = False
    ) -> float:
        """Set the node's clock; ``offset_ms`` None keeps its current offset. Returns the offset set."""
        if not frozen and rate <= 0:
            raise ValueError(f"clock rate must be > 0 (a stopped clock is a frozen one), got {rate}")
        with self._lock:
            offset = self._offset_now(node) if offset_ms is None else float(offset_ms)
            self._write(node, ClockSetting(offset, rate, frozen))
            return offset

    def reset(self, node: str) -> None:
        with self._lock:
            self._write(node, ClockSetting())

    def reset_all(self) -> list[str]:
        """Every node back to the real clock; returns the nodes that were not on it."""
        with self._lock:
            changed = [n for n, s in sorted(self._settings.items()) if s != ClockSetting()]
            for node in list(self._settings):
                self._write(node, ClockSetting())
            return changed


def bump_ms(rng: random.Random, max_offset_ms: float) -> int:
    """± 2^U(2, log2 max) ms: log-uniform, so small and large jumps are equally likely per octave."""
    top = math.log2(max(max_offset_ms, BUMP_MS_MIN * 2))
    magnitude = round(2 ** rng.uniform(math.log2(BUMP_MS_MIN), top))
    return magnitude if rng.random() < 0.5 else -magnitude


class _Strober(threading.Thread):
    """Flips some nodes' clocks between two offsets every period until the duration or stop."""

    def __init__(
        self,
        control: ClockControl,
        flips: Mapping[str, tuple[float, float]],
        *,
        period_s: float,
        duration_s: float,
    ) -> None:
        super().__init__(name="clock-strobe", daemon=True)
        self._control, self._flips = control, dict(flips)
        self._period_s, self._duration_s = period_s, duration_s
        self.stop_event = threading.Event()
        self.count = 0

    def run(self) -> None:
        started = time.monotonic()
        high = False
        while not self.stop_event.is_set():
            due = started + (self.count + 1) * self._period_s
            if due - started > self._duration_s:
                break
            if self.stop_event.wait(max(0.0, due - time.monotonic())):
                break
            high = not high
            for node, (low_ms, high_ms) in self._flips.items():
                self._control.set(node, offset_ms=high_ms if high else low_ms)
            self.count += 1
        if high:  # end where it began
            for node, (low_ms, _) in self._flips.items():
                self._control.set(node, offset_ms=low_ms)


class ClockNemesis:
    """Clock faults on chosen nodes (bump, strobe, skew, freeze); ``stop`` resets them."""

    kind = "clock"

    def __init__(
        self,
        *,
        system: System,
        control: ClockControl,
        modes: Sequence[str],
        specs: Sequence[str],
        rng: random.Random,
        max_offset_ms: float = DEFAULT_MAX_OFFSET_MS,
        rates: Sequence[float] = DEFAULT_RATES,
        strobe_duration_ms_max: float = 10_000,
    ) -> None:
        unknown = sorted(set(modes) - set(CLOCK_MODES))
        if unknown or not modes:
            raise ValueError(f"clock modes must be among {CLOCK_MODES}, got {list(modes)}")
        self._system, self._control, self._rng = system, control, rng
        self._modes, self._specs = tuple(modes), tuple(specs)
        self._max_offset_ms, self._rates = max_offset_ms, tuple(rates)
        self._strobe_duration_ms_max = strobe_duration_ms_max
        self._active: dict[str, Any] | None = None
        self._strober: _Strober | None = None

    @property
    def active(self) -> dict[str, Any] | None:
        return self._active

    def start(self) -> dict[str, Any]:
        if self._active:
            self.stop()
        mode = self._rng.choice(self._modes)
        spec = self._rng.choice(self._specs)
        targets = pick_targets(spec, self._system.node_names(), rng=self._rng, primary=self._system.primary)
        value: dict[str, Any] = {
            "targets": targets,
            "mode": mode,
            "spec": spec,
            "monotonic": self._control.fake_monotonic,
        }
        offsets: dict[str, float] = {}
        rates: dict[str, float] = {}
        if mode == "bump":
            for node in targets:
                offsets[node] = self._control.set(
                    node, offset_ms=self._control.offset_ms(node) + bump_ms(self._rng, self._max_offset_ms)
                )
                rates[node] = 1.0
        elif mode == "skew":
            for node in targets:
                rates[node] = self._rng.choice(self._rates)
                offsets[node] = self._control.set(node, rate=rates[node])
        elif mode == "freeze":
            for node in targets:
                offsets[node] = self._control.set(node, frozen=True)
                rates[node] = 0.0
        else:
            delta_ms = bump_ms(self._rng, self._max_offset_ms)
            period_ms = int(
                2 ** self._rng.uniform(math.log2(STROBE_PERIOD_MS_MIN), math.log2(STROBE_PERIOD_MS_MAX))
            )
            duration_ms = int(
                self._rng.uniform(period_ms * 2, max(period_ms * 2, self._strobe_duration_ms_max))
            )
            flips = {}
            for node in targets:
                low = self._control.offset_ms(node)
                flips[node] = (low, low + delta_ms)
                offsets[node], rates[node] = low, 1.0
            value.update(delta_ms=delta_ms, period_ms=period_ms, duration_ms=duration_ms)
            self._strober = _Strober(
                self._control, flips, period_s=period_ms / 1000, duration_s=duration_ms / 1000
            )
            self._strober.start()
        value["offsets_ms"] = {n: round(v, 3) for n, v in offsets.items()}
        value["rates"] = rates
        self._active = value
        return dict(value)

    def stop(self) -> dict[str, Any]:
        """Reset: every node's clock back to real time (the strobe, if running, stops first)."""
        targets = list(self._active["targets"]) if self._active else []
        value: dict[str, Any] = {"targets": targets}
        if self._strober is not None:
            self._strober.stop_event.set()
            self._strober.join(timeout=5.0)
            value["flips"] = self._strober.count
            self._strober = None
        reset = self._control.reset_all()
        value["reset"] = reset
        value["offsets_ms"] = {n: 0.0 for n in sorted(set(targets) | set(reset))}
        value["rates"] = {n: 1.0 for n in value["offsets_ms"]}
        self._active = None
        return value
