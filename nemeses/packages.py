"""The combined nemesis package: chosen fault kinds, their schedule, and the final heal, as data.

Like Jepsen's ``nemesis.combined``: a package holds the nemesis (dispatching
``start-<kind>`` / ``stop-<kind>`` ops to the fault of that kind), the generator
that schedules them during the main phase (every ``interval`` seconds on
average, a randomly chosen kind flips between start and stop, so faults of
different kinds overlap), the final generator that stops every kind, and perf
metadata (name and colour per kind) that reports use to shade fault windows.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from clusters.firewall import Endpoint, Firewall
from core import generator as gen
from core.scenario import NemesisSpec
from core.system import System
from nemeses.chain import PrimaryChainNemesis
from nemeses.clock import ClockControl, ClockNemesis
from nemeses.disk import build as disk
from nemeses.faults import (
    KillNemesis,
    LossNemesis,
    Nemesis,
    PartitionNemesis,
    PauseNemesis,
    RollingKillNemesis,
)
from nemeses.messages import MessageControl, MessageNemesis

COLOURS = {
    "partition": "#d62728",
    "loss": "#ff7f0e",
    "pause": "#9467bd",
    "kill": "#8c564b",
    "rolling-kill": "#e377c2",
    "clock": "#17becf",
    "messages": "#bcbd22",
    "primary-chain": "#7f7f00",
    "disk": "#2ca02c",
    "power-cut": "#dbdb8d",
    "corrupt": "#7f7f7f",
    "dm-flakey": "#aec7e8",
}
# The order faults are healed in, at the end of a run and at teardown: network first, so restarted
# nodes can talk.
HEAL_ORDER = (
    "partition",
    "primary-chain",
    "loss",
    "messages",
    "clock",
    "pause",
    "disk",
    "kill",
    "rolling-kill",
    "power-cut",
    "corrupt",
    "dm-flakey",
)


class UnknownNemesisOp(ValueError):
    pass


class BatchPrimary:
    """The system as the faults of one ``together`` batch see it: one primary for the whole batch.

    Each fault resolves ``primary`` when it starts. In a batch started back to back, a view change
    between two starts (or an unknown primary, which each fault replaces by its own random pick)
    would aim the faults at different nodes, and the combination the scenario asks for, such as a
    cut-off primary whose clock stopped, would not happen. The first fault of a batch that asks
    fixes the node, waiting up to ``wait_s`` for a view change to settle; the batch's last stop
    releases it. Everything else is the system's own.
    """

    def __init__(self, system: System, rng: random.Random, *, wait_s: float = 2.0) -> None:
        self._system, self._rng, self._wait_s = system, rng, wait_s
        self._open = False
        self._pinned: str | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._system, name)

    def open(self) -> None:
        if not self._open:
            self._open, self._pinned = True, None

    def close(self) -> None:
        self._open, self._pinned = False, None

    def primary(self) -> str | None:
        if not self._open:
            return self._system.primary()
        if self._pinned is None:
            deadline = time.monotonic() + self._wait_s
            current = self._system.primary()
            while current is None and time.monotonic() < deadline:
                time.sleep(0.1)
                current = self._system.primary()
            self._pinned = (
                current if current is not None else self._rng.choice(sorted(self._system.node_names()))
            )
        return self._pinned


class Combined:
    """Dispatches nemesis ops to the fault of their kind; heals everything at teardown."""

    def __init__(self, nemeses: Mapping[str, Nemesis], *, batch: BatchPrimary | None = None) -> None:
        self.nemeses = dict(nemeses)
        self._batch = batch

    @staticmethod
    def parse(f: str) -> tuple[str, str]:
        action, _, kind = f.partition("-")
        if action not in ("start", "stop") or not kind:
            raise UnknownNemesisOp(f"not a nemesis op: {f!r}")
        return action, kind

    def invoke(self, f: str) -> dict[str, Any]:
        action, kind = self.parse(f)
        nemesis = self.nemeses.get(kind)
        if nemesis is None:
            raise UnknownNemesisOp(f"no {kind!r} nemesis in this package (have {sorted(self.nemeses)})")
        if self._batch is None:
            return nemesis.start() if action == "start" else nemesis.stop()
        if action == "start":
            self._batch.open()
            return nemesis.start()
        try:
            return nemesis.stop()
        finally:
            if not self.active():
                self._batch.close()

    def active(self) -> dict[str, dict[str, Any]]:
        return {kind: dict(n.active) for kind, n in self.nemeses.items() if n.active}


@dataclass(frozen=True, slots=True)
class Package:
    nemesis: Combined
    generator: Any
    final_generator: Any
    kinds: tuple[str, ...]
    perf: tuple[tuple[str, str], ...]


def _op(f: str) -> dict[str, Any]:
    return {"type": "info", "f": f, "value": None}


def schedule(kinds: tuple[str, ...], interval_s: float, *, seed: int) -> Any:
    """Every ~interval_s (stagger), one kind chosen at random flips start -> stop -> start ...

    The gaps and the choice of kind come from ``seed`` alone (the generators' own streams),
    so a seed names the same sequence of faults whatever the clients did meanwhile.
    """
    if not kinds:
        return None
    flips = [gen.flip_flop(gen.repeat(_op(f"start-{k}")), gen.repeat(_op(f"stop-{k}"))) for k in kinds]
    return gen.stagger(interval_s, gen.mix(flips, seed=seed), seed=seed ^ 0x5354414747)


def together(kinds: tuple[str, ...], interval_s: float) -> Any:
    """Every ~interval_s all kinds start (in the order listed), then all stop (heal order), ...

    For faults that matter only in combination: a primary whose clock stopped *and* that is cut
    off from its peers (a clock fault alone or a partition alone is harmless to a lease).
    """
    if not kinds:
        return None
    starts = [_op(f"start-{k}") for k in kinds]
    stops = [_op(f"stop-{k}") for k in HEAL_ORDER if k in kinds]
    return gen.cycle([gen.sleep(interval_s), *starts, gen.sleep(interval_s), *stops])


def final(kinds: tuple[str, ...]) -> Any:
    """Stop every kind, in a fixed order (network first, so restarted nodes can talk)."""
    order = [k for k in HEAL_ORDER if k in kinds]
    return [_op(f"stop-{k}") for k in order]


def build(
    spec: NemesisSpec,
    *,
    system: System,
    firewall: Firewall,
    endpoints: Mapping[str, Endpoint],
    rng: random.Random,
    clock: ClockControl | None = None,
    messages: MessageControl | None = None,
) -> Package:
    batch = BatchPrimary(system, rng) if spec.schedule == "together" else None
    if batch is not None:
        system = cast(System, batch)
    nemeses: dict[str, Nemesis] = {}
    for kind in spec.faults:
        if kind == "partition":
            nemeses[kind] = PartitionNemesis(
                system=system, firewall=firewall, endpoints=endpoints, shapes=spec.grudges, rng=rng
            )
        elif kind == "loss":
            nemeses[kind] = LossNemesis(
                firewall=firewall, endpoints=endpoints, fraction=spec.loss_fraction, rng=rng
            )
        elif kind == "pause":
            nemeses[kind] = PauseNemesis(system=system, specs=spec.pause_targets, rng=rng)
        elif kind == "kill":
            nemeses[kind] = KillNemesis(system=system, specs=spec.kill_targets, rng=rng)
        elif kind == "rolling-kill":
            nemeses[kind] = RollingKillNemesis(system=system, rng=rng)
        elif kind == "primary-chain":
            nemeses[kind] = PrimaryChainNemesis(
                system=system, firewall=firewall, endpoints=endpoints, rng=rng
            )
        elif kind == "clock":
            if clock is None:
                raise ValueError("the clock fault needs the nodes started with a ClockControl")
            nemeses[kind] = ClockNemesis(
                system=system,
                control=clock,
                modes=spec.clock_modes,
                specs=spec.clock_targets,
                rng=rng,
                max_offset_ms=spec.clock_max_ms,
                rates=spec.clock_rates,
                strobe_duration_ms_max=spec.interval_s * 1000,
            )
        elif kind == "messages":
            if messages is None:
                raise ValueError("the messages fault needs the system's message proxy")
            nemeses[kind] = MessageNemesis(
                system=system,
                control=messages,
                modes=spec.message_modes,
                targets=spec.message_targets,
                probability=spec.message_probability,
                delay_ms_max=spec.message_delay_ms,
                rng=rng,
            )
        elif kind in disk.KINDS:
            nemeses[kind] = disk.build(
                kind, spec, system=system, rng=rng, firewall=firewall, endpoints=endpoints
            )
        else:
            raise ValueError(f"fault kind {kind!r} is not implemented (refused at validation)")
    kinds = tuple(nemeses)
    return Package(
        nemesis=Combined(nemeses, batch=batch),
        generator=(
            together(kinds, spec.interval_s)
            if spec.schedule == "together"
            else schedule(kinds, spec.interval_s, seed=rng.getrandbits(64))
        ),
        final_generator=final(kinds),
        kinds=kinds,
        perf=tuple((k, COLOURS.get(k, "#7f7f7f")) for k in kinds),
    )
