"""Message faults on replica-to-replica links: delay, reorder, duplicate, replay (through a proxy).

The nemesis decides *what* (which links, which mode, how often) from its own
seeded rng and records it; the system's message proxy (for VR,
:mod:`systems.vr.proxy`, which knows VR's framing) does it to the frames.
Targets are bound late, Jepsen-style: ``primary`` means the links to and from
the primary at the moment the fault starts. The inverse sends every frame on
unchanged; what was done is counted per link and recorded at the heal.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, Protocol

from core.system import System

MESSAGE_MODES = ("delay", "reorder", "duplicate", "replay")
MESSAGE_TARGETS = ("primary", "one", "all")


class MessageControl(Protocol):
    def set_plan(
        self,
        *,
        links: frozenset[tuple[str, str]],
        mode: str,
        probability: float,
        delay_ms_max: int,
        seed: int,
    ) -> None: ...

    def clear(self) -> None: ...

    def counters(self) -> dict[str, dict[str, int]]: ...


def links_of(
    target: str, nodes: Sequence[str], *, rng: random.Random, primary: str | None
) -> list[tuple[str, str]]:
    """Directed links a target names: every link to and from one node (the primary, or any), or all."""
    order = sorted(nodes)
    if target == "all":
        return [(a, b) for a in order for b in order if a != b]
    node = primary if target == "primary" and primary in order else rng.choice(order)
    return [(a, b) for a in order for b in order if a != b and node in (a, b)]


class MessageNemesis:
    kind = "messages"

    def __init__(
        self,
        *,
        system: System,
        control: MessageControl,
        modes: Sequence[str],
        targets: Sequence[str],
        probability: float,
        delay_ms_max: int,
        rng: random.Random,
    ) -> None:
        self.system = system
        self.control = control
        self.modes = tuple(modes)
        self.targets = tuple(targets)
        self.probability = probability
        self.delay_ms_max = delay_ms_max
        self.rng = rng
        self._active: dict[str, Any] | None = None
        self._counters_at_start: dict[str, dict[str, int]] = {}

    @property
    def active(self) -> dict[str, Any] | None:
        return self._active

    def start(self) -> dict[str, Any]:
        if self._active is not None:
            return {**self._active, "already": True}
        target = self.rng.choice(self.targets)
        mode = self.rng.choice(self.modes)
        links = links_of(target, self.system.node_names(), rng=self.rng, primary=self.system.primary())
        seed = self.rng.randrange(1 << 31)
        self._counters_at_start = self.control.counters()
        self.control.set_plan(
            links=frozenset(links),
            mode=mode,
            probability=self.probability,
            delay_ms_max=self.delay_ms_max,
            seed=seed,
        )
        nodes = sorted({node for link in links for node in link})
        self._active = {
            "targets": nodes,
            "links": [f"{a}->{b}" for a, b in links],
            "mode": mode,
            "probability": self.probability,
            "seed": seed,
            **({"delay_ms_max": self.delay_ms_max} if mode == "delay" else {}),
        }
        return dict(self._active)

    def stop(self) -> dict[str, Any]:
        self.control.clear()
        was = self._active
        self._active = None
        counters = self.control.counters()
        if was is None:
            return {"targets": [], "healed": False}
        done = {}  # what happened on each chosen link while the fault was active
        for link in was["links"]:
            before = self._counters_at_start.get(link, {})
            done[link] = {name: n - before.get(name, 0) for name, n in counters.get(link, {}).items()}
        return {"targets": was["targets"], "mode": was["mode"], "healed": True, "links": done}
