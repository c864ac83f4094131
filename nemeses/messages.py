"""Message faults on replica-to-replica links: delay, reorder, duplicate, replay, drop, flap.

The nemesis decides *what* (which links, which mode, how often) from its own
seeded rng and records it; the system's message proxy (for VR,
:mod:`systems.vr.proxy`, which knows VR's framing) does it to the frames.
Targets are bound late, Jepsen-style: ``primary`` means the links to and from
the primary at the moment the fault starts. The inverse sends every frame on
unchanged; what was done is counted per link and recorded at the heal.

``flap`` is a partition that never heals while it lasts: every frame to and
from one node is dropped, and every 0.3-1.5 s (seeded) the cut moves to
another node (the primary of that moment, or another one) with no healed gap
in between. This is the simulator's flapping partition on real nodes: a backup
rejoins (installing headers whose prepares it still needs) at the moment the
third replica is cut off, and view changes follow each other while votes of
earlier ones are still held, which is where the view-change and repair paths
of a replicated log are weakest. The links not cut lag by up to
``message_delay_ms`` (order kept), and a cut loses what its links still had in
flight, so a primary cut off takes with it the news of its last commits, as
on a slow network. Each move is recorded with its time.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Sequence
from typing import Any, Protocol

from core.system import System

MESSAGE_MODES = ("delay", "reorder", "duplicate", "replay", "drop", "flap")
MESSAGE_TARGETS = ("primary", "one", "all")
FLAP_HOLD_S = (0.3, 1.5)  # how long one cut of a flapping partition holds before it moves
FLAP_JOIN_S = 10.0


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
        self._flap: _Flap | None = None

    @property
    def active(self) -> dict[str, Any] | None:
        return self._active

    def start(self) -> dict[str, Any]:
        if self._active is not None:
            return {**self._active, "already": True}
        target = self.rng.choice(self.targets)
        mode = self.rng.choice(self.modes)
        seed = self.rng.randrange(1 << 31)
        self._counters_at_start = self.control.counters()
        if mode == "flap":
            self._flap = _Flap(self, random.Random(seed))
            first = self._flap.begin()
            self._active = {
                "targets": [first["node"]],
                "links": [
                    f"{a}->{b}" for a in self.system.node_names() for b in self.system.node_names() if a != b
                ],
                "mode": mode,
                "seed": seed,
                "hold_s": list(FLAP_HOLD_S),
                "lag_ms_max": self.delay_ms_max,
            }
            return {**self._active, "first": first}
        links = links_of(target, self.system.node_names(), rng=self.rng, primary=self.system.primary())
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
        moves = self._flap.end() if self._flap is not None else None
        self._flap = None
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
        if moves is not None:
            targets = sorted({move["node"] for move in moves})
            return {"targets": targets, "mode": "flap", "healed": True, "moves": moves, "links": done}
        return {"targets": was["targets"], "mode": was["mode"], "healed": True, "links": done}


class _Flap:
    """The moving cut of ``flap``: a thread that drops every frame of one node, then moves the cut.

    Its own rng (seeded from the nemesis's, and recorded), so the other faults' draws and its own
    do not interleave by thread timing. Each move picks a target kind from the scenario's targets:
    ``primary`` is the primary of that moment (another node if that one is already cut off),
    ``one`` any other node, ``all`` every link (nobody hears anybody for one hold).
    """

    def __init__(self, nemesis: MessageNemesis, rng: random.Random) -> None:
        self.nemesis = nemesis
        self.rng = rng
        self.moves: list[dict[str, Any]] = []
        self.began = time.monotonic()
        self.current: str | None = None
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()

    def _move(self) -> dict[str, Any]:
        nodes = sorted(self.nemesis.system.node_names())
        target = self.rng.choice(self.nemesis.targets)
        others = [n for n in nodes if n != self.current] or nodes
        if target == "all":
            node = "all"
            links = [(a, b) for a in nodes for b in nodes if a != b]
        else:
            primary = self.nemesis.system.primary() if target == "primary" else None
            node = primary if primary in others else self.rng.choice(others)
            links = [(a, b) for a in nodes for b in nodes if a != b and node in (a, b)]
        if self.stopping.is_set() and self.moves:
            return self.moves[-1]  # stop came while we asked for the primary: leave the heal to it
        self.nemesis.control.set_plan(
            links=frozenset(links),
            mode="drop",
            probability=1.0,
            delay_ms_max=self.nemesis.delay_ms_max,
            seed=self.rng.randrange(1 << 31),
        )
        self.current = node
        move = {"at_s": round(time.monotonic() - self.began, 3), "target": target, "node": node}
        with self.lock:
            self.moves.append(move)
        return move

    def _run(self) -> None:
        while not self.stopping.wait(self.rng.uniform(*FLAP_HOLD_S)):
            self._move()

    def begin(self) -> dict[str, Any]:
        first = self._move()
        self.thread = threading.Thread(target=self._run, name="messages-flap", daemon=True)
        self.thread.start()
        return first

    def end(self) -> list[dict[str, Any]]:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout=FLAP_JOIN_S)
        with self.lock:
            return list(self.moves)
