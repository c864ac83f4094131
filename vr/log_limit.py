"""Rate-limited logging for events a peer can trigger at will (dropped bytes, closed connections).

A node logs why it dropped a message, which is what makes a drop debuggable. But anyone who
can reach the port can make it drop messages as fast as they can send bytes, and one log line
per drop would turn a flood of garbage into a full disk. So each reason gets ``burst`` lines
per ``interval_ms``; the rest of that interval is only counted, and one summary line
(``suppressed=K``) says how many were left out once the interval has passed. The exact
counts live in the node's status counters, never in the log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Window:
    started_s: float
    logged: int = 0
    suppressed: int = 0


class LogLimiter:
    """``burst`` lines per key per interval, then a count; ``flush`` writes the summaries due."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        burst: int,
        interval_ms: int,
        clock_s: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._burst = burst
        self._interval_s = interval_ms / 1000
        self._clock_s = clock_s
        self._windows: dict[str, _Window] = {}
        self.lines_suppressed = 0

    def info(self, key: str, message: str, *args: object) -> None:
        now_s = self._clock_s()
        window = self._windows.get(key)
        if window is None or now_s - window.started_s >= self._interval_s:
            if window is not None:
                self._summarize(key, window)
            window = self._windows[key] = _Window(now_s)
        if window.logged < self._burst:
            window.logged += 1
            self._logger.info(message, *args)
        else:
            window.suppressed += 1
            self.lines_suppressed += 1

    def flush(self, *, everything: bool = False) -> None:
        """Summarize and forget every window whose interval is over (called periodically), or
        every window (``everything``: at shutdown, so no count of suppressed lines is lost)."""
        now_s = self._clock_s()
        for key, window in list(self._windows.items()):
            if everything or now_s - window.started_s >= self._interval_s:
                self._summarize(key, window)
                del self._windows[key]

    def _summarize(self, key: str, window: _Window) -> None:
        if window.suppressed:
            self._logger.info(
                "log=suppressed key=%s suppressed=%d interval_ms=%d logged=%d",
                key,
                window.suppressed,
                round(self._interval_s * 1000),
                window.logged,
            )
