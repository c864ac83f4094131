"""Tick-driven timeouts with seeded exponential backoff (no clock reads).

A replica's only notion of time is ``tick()`` (10 ms each in a real node, a loop
step in the simulator). Each timeout counts ticks; jitter comes from the replica's
injected ``random.Random`` so a simulation seed reproduces every firing.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(slots=True)
class Timeout:
    """Fires once ``after_ticks`` (plus backoff and jitter) have elapsed since the last start/reset."""

    name: str
    after_ticks: int
    rng: random.Random
    ticking: bool = False
    ticks: int = 0
    attempts: int = 0
    _deadline_ticks: int = field(default=0)

    def __post_init__(self) -> None:
        assert self.after_ticks > 0, self.name
        self._deadline_ticks = self.after_ticks

    def start(self) -> None:
        self.ticking = True
        self.ticks = 0
        self.attempts = 0
        self._deadline_ticks = self.after_ticks + self._jitter(self.after_ticks)

    def stop(self) -> None:
        self.ticking = False
        self.ticks = 0
        self.attempts = 0

    def reset(self) -> None:
        """Restart the count without forgetting the backoff (used after handling a firing)."""
        assert self.ticking, self.name
        self.ticks = 0
        self._deadline_ticks = self.after_ticks + self._jitter(self.after_ticks)

    def backoff(self) -> None:
        """Restart with an exponentially longer (capped, jittered) deadline."""
        assert self.ticking, self.name
        self.ticks = 0
        self.attempts += 1
        base = self.after_ticks * (1 << min(self.attempts, 4))
        self._deadline_ticks = base + self._jitter(base)

    def tick(self) -> None:
        if self.ticking:
            self.ticks += 1

    def fired(self) -> bool:
        return self.ticking and self.ticks >= self._deadline_ticks

    def _jitter(self, base: int) -> int:
        return self.rng.randrange(0, max(1, base // 2))
