"""A seeded packet simulator: loss, duplication, delay/reordering, symmetric and asymmetric partitions.

Endpoints are small integers: replicas ``0..replica_count-1`` and clients after them.
Every packet gets a delivery tick drawn from the seeded PRNG, so reordering falls out of
independent delays; a duplicated packet is delivered twice at different ticks. A
partition blocks directed links: symmetric blocks both directions, asymmetric only one
side's outgoing traffic (it can hear but not be heard), which is what lets a one-way
isolated replica keep deposing a healthy primary in a naive protocol.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field

from vr.message import Message


@dataclass(frozen=True, slots=True)
class NetworkOptions:
    """Per-packet fault probabilities and delays (in ticks)."""

    loss_probability: float = 0.0
    duplicate_probability: float = 0.0
    delay_min_ticks: int = 1
    delay_mean_ticks: int = 2
    partition_probability: float = 0.0  # per tick, while healed
    heal_probability: float = 0.05  # per tick, while partitioned
    partition_asymmetric_probability: float = 0.3
    capacity_per_link: int = 64
    isolate_primary: bool = False  # partitions may also cut off whoever leads at that moment


@dataclass(order=True, slots=True)
class _Packet:
    deliver_tick: int
    sequence: int
    source: int = field(compare=False)
    target: int = field(compare=False)
    message: Message = field(compare=False)


class Network:
    """Queues messages between endpoints and delivers them on their tick."""

    def __init__(self, *, replica_count: int, options: NetworkOptions, rng: random.Random) -> None:
        self.replica_count = replica_count
        self.options = options
        self.rng = rng
        self.queue: list[_Packet] = []
        self.sequence = 0
        self.blocked: set[tuple[int, int]] = set()  # (source, target) links that drop everything
        self.partitioned = False
        self.in_flight: dict[tuple[int, int], int] = {}
        self.stats = {"sent": 0, "lost": 0, "duplicated": 0, "blocked": 0, "delivered": 0, "overflow": 0}
        self.auto_partitions = True

    def send(self, *, source: int, target: int, message: Message, now: int) -> None:
        self.stats["sent"] += 1
        if (source, target) in self.blocked:
            self.stats["blocked"] += 1
            return
        if self.rng.random() < self.options.loss_probability:
            self.stats["lost"] += 1
            return
        link = (source, target)
        if self.in_flight.get(link, 0) >= self.options.capacity_per_link:
            self.stats["overflow"] += 1
            return
        copies = 2 if self.rng.random() < self.options.duplicate_probability else 1
        if copies == 2:
            self.stats["duplicated"] += 1
        for _ in range(copies):
            self._enqueue(source, target, message, now)

    def _enqueue(self, source: int, target: int, message: Message, now: int) -> None:
        extra = self.options.delay_mean_ticks - self.options.delay_min_ticks
        delay = self.options.delay_min_ticks + (int(self.rng.expovariate(1 / extra)) if extra > 0 else 0)
        self.sequence += 1
        link = (source, target)
        self.in_flight[link] = self.in_flight.get(link, 0) + 1
        heapq.heappush(self.queue, _Packet(now + delay, self.sequence, source, target, message))

    def deliverable(self, now: int) -> list[tuple[int, int, Message]]:
        """Pop every packet due by ``now`` (a link blocked meanwhile still drops it)."""
        out: list[tuple[int, int, Message]] = []
        while self.queue and self.queue[0].deliver_tick <= now:
            packet = heapq.heappop(self.queue)
            link = (packet.source, packet.target)
            self.in_flight[link] -= 1
            if link in self.blocked:
                self.stats["blocked"] += 1
                continue
            self.stats["delivered"] += 1
            out.append((packet.source, packet.target, packet.message))
        return out

    # Partitions ----------------------------------------------------------------------------------

    def tick_partitions(self, *, primary: int | None = None) -> None:
        if not self.auto_partitions:
            return
        if self.partitioned:
            if self.rng.random() < self.options.heal_probability:
                self.heal()
        elif self.rng.random() < self.options.partition_probability:
            self.partition_random(primary=primary if self.options.isolate_primary else None)

    def partition_random(self, *, primary: int | None = None) -> None:
        """A random cut: one replica alone, a random split, or the current primary alone.

        Cutting off the primary is the classic fault of a leader-based protocol (it holds
        requests nobody else has seen yet); ``primary`` is whoever claims to lead now.
        """
        replicas = list(range(self.replica_count))
        modes = ["isolate_single", "uniform_size"] + (["isolate_primary"] if primary is not None else [])
        mode = self.rng.choice(modes)
        if mode == "isolate_primary" and primary is not None:
            side = {primary}
        elif mode != "uniform_size":
            side = {self.rng.choice(replicas)}
        else:
            size = self.rng.randrange(1, self.replica_count)
            side = set(self.rng.sample(replicas, size))
        asymmetric = self.rng.random() < self.options.partition_asymmetric_probability
        self.partition(side, asymmetric=asymmetric)

    def partition(self, side: set[int], *, asymmetric: bool = False) -> None:
        """Cut replicas in ``side`` from the other replicas (clients stay connected to everyone)."""
        self.blocked.clear()
        other = set(range(self.replica_count)) - side
        for a in side:
            for b in other:
                self.blocked.add((a, b))
                if not asymmetric:
                    self.blocked.add((b, a))
        self.partitioned = True

    def isolate(self, replica: int, *, endpoints: list[int]) -> None:
        """Cut one replica from everyone, clients included."""
        for other in endpoints:
            if other != replica:
                self.blocked.add((replica, other))
                self.blocked.add((other, replica))
        self.partitioned = True

    def heal(self) -> None:
        self.blocked.clear()
        self.partitioned = False
