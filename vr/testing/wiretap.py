"""A wiretap on the simulated network: record what each replica sends, and drop chosen messages.

The simulator's checks look at outcomes (safety, convergence, liveness within a budget), so
a replica that reaches the right state by a slower or more expensive path passes them.
Tests that pin down *how* a replica recovers (it repaired from its own disk instead of
asking a peer; it asked for headers instead of crawling the chain one prepare at a time; it
rejoined a view at the first prepare it saw) need to see the messages: the wiretap wraps
``Network.send`` of one ``SimCluster`` and keeps every send in order, with the tick, and can
drop the ones a predicate names (a scripted message fault, deterministic like the rest).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from vr.message import Command, Message
from vr.testing.network import Network

DropRule = Callable[[int, int, Message], bool]  # (source, target, message) -> drop it?


@dataclass(frozen=True, slots=True)
class Sent:
    tick: int
    source: int
    target: int
    message: Message
    dropped: bool


@dataclass(slots=True)
class Wiretap:
    """Installed on a network by :func:`tap`; ``drop`` may be replaced while the run goes on."""

    network: Network
    drop: DropRule | None = None
    sent: list[Sent] = field(default_factory=list)

    def by(self, source: int, command: Command, *, since_tick: int = 0) -> list[Sent]:
        """What ``source`` sent of ``command`` from ``since_tick`` on (dropped ones included)."""
        return [
            s
            for s in self.sent
            if s.source == source and s.message.header.command == command and s.tick >= since_tick
        ]

    def to(
        self, target: int, command: Command, *, since_tick: int = 0, delivered_only: bool = True
    ) -> list[Sent]:
        return [
            s
            for s in self.sent
            if s.target == target
            and s.message.header.command == command
            and s.tick >= since_tick
            and not (delivered_only and s.dropped)
        ]


def tap(network: Network) -> Wiretap:
    """Wrap ``network.send`` (this instance only) so every send passes through a new wiretap."""
    wiretap = Wiretap(network)
    send = network.send

    def tapped(*, source: int, target: int, message: Message, now: int) -> None:
        dropped = wiretap.drop is not None and wiretap.drop(source, target, message)
        wiretap.sent.append(Sent(now, source, target, message, dropped))
        if dropped:
            network.stats["blocked"] += 1
            return
        send(source=source, target=target, message=message, now=now)

    network.send = tapped  # type: ignore[method-assign]
    return wiretap
