"""Progress on stderr: a live display on a terminal, a heartbeat line otherwise.

The live display: phase, elapsed/remaining, ok/fail/info per second, faults, primary.

Runs in its own daemon thread and only reads the runner's counters and state;
the current primary is asked of the system every few seconds (a status round
trip), never on the runner's threads.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from core.system import System
from harness.runner import Recorder, RunState

REFRESH_S = 0.5
PRIMARY_EVERY_S = 2.0
RATE_WINDOW_S = 2.0


def _fmt_s(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60:d}:{seconds % 60:02d}"


class Progress:
    def __init__(
        self,
        *,
        recorder: Recorder,
        state: RunState,
        system: System,
        title: str,
        time_limit_s: float,
        console: Console | None = None,
    ) -> None:
        self.recorder, self.state, self.system = recorder, state, system
        self.title, self.time_limit_s = title, time_limit_s
        self.console = console or Console(stderr=True)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="progress", daemon=True)
        self._samples: deque[tuple[float, dict[str, int]]] = deque()
        self._primary: str | None = None
        self._primary_at = 0.0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _rates(self) -> dict[str, float]:
        now = time.monotonic()
        counts = dict(self.recorder.counts)
        self._samples.append((now, counts))
        while len(self._samples) > 1 and now - self._samples[0][0] > RATE_WINDOW_S:
            self._samples.popleft()
        then, old = self._samples[0]
        span = max(now - then, 1e-9)
        return {k: (counts.get(k, 0) - old.get(k, 0)) / span for k in ("ok", "fail", "info")}

    def _render(self) -> Table:
        state = self.state
        elapsed = (time.monotonic_ns() - state.started_ns) / 1e9 if state.started_ns else 0.0
        remaining = ""
        if state.main_deadline_ns is not None and state.phase == "main":
            remaining = f"  remaining {_fmt_s((state.main_deadline_ns - time.monotonic_ns()) / 1e9)}"
        if time.monotonic() - self._primary_at > PRIMARY_EVERY_S and state.phase in (
            "main",
            "recovery",
            "heal",
        ):
            try:
                self._primary = self.system.primary()
            except Exception:  # a status round trip failing is just "unknown" on a display
                self._primary = None
            self._primary_at = time.monotonic()
        rates = self._rates()
        counts = self.recorder.counts
        table = Table.grid(padding=(0, 2))
        table.add_row(
            Text(self.title, style="bold"),
            Text(f"phase {state.phase}", style="cyan"),
            Text(f"elapsed {_fmt_s(elapsed)}{remaining}"),
        )
        table.add_row(
            Text(f"ok {counts.get('ok', 0)} ({rates['ok']:.0f}/s)", style="green"),
            Text(f"fail {counts.get('fail', 0)} ({rates['fail']:.0f}/s)", style="yellow"),
            Text(f"info {counts.get('info', 0)} ({rates['info']:.0f}/s)", style="magenta"),
        )
        faults = faults_text(state.active_faults)
        table.add_row(
            Text(f"faults: {faults}", style="red" if state.active_faults else "dim"),
            Text(f"primary: {self._primary or '?'}"),
            Text(""),
        )
        return table

    def _loop(self) -> None:
        live: Any = Live(self._render(), console=self.console, refresh_per_second=4, transient=False)
        with live:
            while not self._stop.wait(REFRESH_S):
                live.update(self._render())
            live.update(self._render())


HEARTBEAT_S = 5.0


def faults_text(active_faults: dict[str, Any]) -> str:
    """``partition[n1], pause[n3]``: the faults in force, with their targets; ``none`` when there are none."""
    return (
        ", ".join(f"{k}[{','.join(map(str, v.get('targets', [])))}]" for k, v in active_faults.items())
        or "none"
    )


class Heartbeat:
    """Without a terminal: one plain line every few seconds (elapsed, phase, ops, faults active).

    A log or a CI job then shows the run is alive and what it is doing, with no
    cursor movement and no line wrapping. Never asks the nodes anything.
    """

    def __init__(self, *, recorder: Recorder, state: RunState, console: Console, every_s: float) -> None:
        self.recorder, self.state, self.console, self.every_s = recorder, state, console, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def line(self) -> str:
        state, counts = self.state, self.recorder.counts
        elapsed = (time.monotonic_ns() - state.started_ns) / 1e9 if state.started_ns else 0.0
        return (
            f"[{_fmt_s(elapsed)}] {state.phase}: ok {counts.get('ok', 0)}, fail {counts.get('fail', 0)}, "
            f"info {counts.get('info', 0)}; faults active: {faults_text(state.active_faults)}"
        )

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self.console.print(Text(self.line()), soft_wrap=True)
