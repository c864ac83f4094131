"""The four faults Ratchet injects on a local cluster, each with its declared inverse.

A nemesis has ``start()`` (inject; returns the completion value recorded in the
history: at least ``targets``), ``stop()`` (the inverse; returns the same), and
``active`` (what is injected right now, for teardown and the progress display).
Targets are resolved when the fault starts (Jepsen's late binding: ``primary``
means the primary at that moment) from the nemesis's own seeded rng.

- partition: a grudge (nemeses.grudges) enforced by the run's packet filter.
- loss: a fraction of packets between chosen nodes and the rest dropped.
- pause: SIGSTOP, inverse SIGCONT.
- kill: SIGKILL, inverse restart from the node's data directory.
- rolling-kill: kill a backup, later kill the primary and restart the lagging backup; inverse
  restart the primary.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from clusters.firewall import Drop, Endpoint, Firewall
from core.system import System
from nemeses import grudges

logger = logging.getLogger(__name__)


class Nemesis(Protocol):
    kind: str

    @property
    def active(self) -> dict[str, Any] | None: ...
    def start(self) -> dict[str, Any]: ...
    def stop(self) -> dict[str, Any]: ...


def pick_targets(
    spec: str, nodes: Sequence[str], *, rng: random.Random, primary: Callable[[], str | None]
) -> list[str]:
    """Resolve a target spec (one, primary, minority, majority, all) to node names."""
    order = sorted(nodes)
    if spec == "one":
        return [rng.choice(order)]
    if spec == "primary":
        current = primary()
        return [current if current in order else rng.choice(order)]
    if spec == "minority":
        return sorted(rng.sample(order, max(1, (len(order) - 1) // 2)))
    if spec == "majority":
        return sorted(rng.sample(order, len(order) // 2 + 1))
    if spec == "all":
        return order
    raise ValueError(f"unknown target spec {spec!r}")


class PartitionNemesis:
    kind = "partition"

    def __init__(
        self,
        *,
        system: System,
        firewall: Firewall,
        endpoints: Mapping[str, Endpoint],
        shapes: Sequence[str],
        rng: random.Random,
    ) -> None:
        self._system, self._firewall, self._endpoints = system, firewall, endpoints
        self._shapes, self._rng = tuple(shapes), rng
        self._active: dict[str, Any] | None = None
        self._queue: list[str] = []

    @property
    def active(self) -> dict[str, Any] | None:
        return self._active

    def _next_shape(self) -> str:
        """Shapes in a seeded shuffled order, every shape once per round: a run with k shapes
        exercises all of them within k partitions instead of leaving coverage to chance."""
        if not self._queue:
            self._queue = list(self._shapes)
            self._rng.shuffle(self._queue)
        return self._queue.pop(0)

    def start(self) -> dict[str, Any]:
        shape = self._next_shape()
        nodes = list(self._endpoints)
        primary = self._system.primary() if shape == "primary" else None
        grudge, targets = grudges.compute(shape, nodes, rng=self._rng, primary=primary)
        drops = [
            Drop(self._endpoints[src], self._endpoints[dst])
            for dst, srcs in sorted(grudge.items())
            for src in sorted(srcs)
        ]
        self._firewall.apply(self.kind, drops)
        self._active = {
            "targets": targets,
            "shape": shape,
            "grudge": grudges.to_json(grudge),
            "rules": len(drops),
        }
        return dict(self._active)

    def stop(self) -> dict[str, Any]:
        healed = self._firewall.heal(self.kind)
        targets = self._active["targets"] if self._active else []
        self._active = None
        return {"targets": targets, "healed": healed}


# Where the controller's client connections come from (no port: they only open connections).
CLIENTS = Endpoint("clients", "127.0.0.1", port=None)


class LossNemesis:
    """Random drop of a fraction of packets between chosen nodes and everyone, clients included."""

    kind = "loss"

    def __init__(
        self, *, firewall: Firewall, endpoints: Mapping[str, Endpoint], fraction: float, rng: random.Random
    ) -> None:
        self._firewall, self._endpoints, self._fraction, self._rng = firewall, endpoints, fraction, rng
        self._active: dict[str, Any] | None = None

    @property
    def active(self) -> dict[str, Any] | None:
        return self._active

    def start(self) -> dict[str, Any]:
        nodes = sorted(self._endpoints)
        targets = sorted(self._rng.sample(nodes, self._rng.randint(1, len(nodes))))
        pairs = [(a, b) for a in nodes for b in nodes if a != b and (a in targets or b in targets)]
        drops = [Drop(self._endpoints[a], self._endpoints[b], self._fraction) for a, b in pairs]
        # A target's replies to clients are lost too: clients then retry the same request, which is
        # what a replica's client table exists for (docs/vr.md bug #13).
        drops += [Drop(self._endpoints[t], CLIENTS, self._fraction) for t in targets]
        self._firewall.apply(self.kind, drops)
        self._active = {
            "targets": targets,
            "fraction": self._fraction,
            "rules": len(drops),
            "replies_to_clients": True,
        }
        return dict(self._active)

    def stop(self) -> dict[str, Any]:
        healed = self._firewall.heal(self.kind)
        targets = self._active["targets"] if self._active else []
        self._active = None
        return {"targets": targets, "healed": healed}


class _NodeNemesis:
    """A fault applied to whole nodes picked by a target spec (one, primary, minority, all, ...).

    Subclasses say what the fault does to one node (``_apply``, True when it took
    effect) and how ``stop`` undoes it; picking targets and recording what was
    applied or skipped is shared.
    """

    kind = ""

    def __init__(self, *, system: System, specs: Sequence[str], rng: random.Random) -> None:
        self._system, self._specs, self._rng = system, tuple(specs), rng
        self._active: dict[str, Any] | None = None

    @property
    def active(self) -> dict[str, Any] | None:
        return self._active

    def _apply(self, node: str) -> bool:
        raise NotImplementedError

    def start(self) -> dict[str, Any]:
        if self._active:
            self.stop()
        spec = self._rng.choice(self._specs)
        wanted = pick_targets(spec, self._system.node_names(), rng=self._rng, primary=self._system.primary)
        applied = [n for n in wanted if self._apply(n)]
        self._active = {"targets": applied, "spec": spec, "skipped": sorted(set(wanted) - set(applied))}
        return dict(self._active)

    def _targets(self) -> list[str]:
        """The nodes to heal. ``stop`` clears ``active`` only after healing them, so a heal that
        raises leaves the fault active for teardown to retry."""
        return list(self._active["targets"]) if self._active else []


class PauseNemesis(_NodeNemesis):
    kind = "pause"

    def _apply(self, node: str) -> bool:
        return self._system.pause(node)

    def stop(self) -> dict[str, Any]:
        targets = self._targets()
        resumed = [n for n in targets if self._system.resume(n)]
        self._active = None
        return {"targets": targets, "resumed": resumed}


class KillNemesis(_NodeNemesis):
    kind = "kill"

    def _apply(self, node: str) -> bool:
        return self._system.kill(node)

    def stop(self) -> dict[str, Any]:
        targets = self._targets()
        restarted = []
        for node in targets:
            if not self._system.is_running(node):
                self._system.start(node)
                restarted.append(node)
        self._active = None
        return {"targets": targets, "restarted": restarted}


LAG_S_DEFAULT = 1.5


class RollingKillNemesis:
    """Kill a backup, let the cluster commit without it, then kill the primary and restart the backup.

    Why this shape: a replica that answers reads from its own state (docs/vr.md bug #11) is wrong only
    while it lags *and* clients ask it, and a client asks a backup only when the primary fails it
    (a refused connection makes it try every replica at once). A backup killed for ``lag_s`` misses
    everything committed meanwhile; restarted from its data directory just after the primary dies,
    it comes back a normal backup with nobody to catch up from, while clients are turning to the
    backups. On a correct cluster the same sequence is an ordinary double crash that a majority
    survives (the primary's restart in ``stop`` forces a view change, nothing more).

    ``start`` performs the whole sequence (the lag is part of the fault, so it sleeps inside);
    what stays injected afterwards is the killed primary, restarted by ``stop``.
    """

    kind = "rolling-kill"

    def __init__(
        self,
        *,
        system: System,
        rng: random.Random,
        lag_s: float = LAG_S_DEFAULT,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self._system, self._rng, self._lag_s = system, rng, lag_s
        self._sleep = sleep or time.sleep
        self._active: dict[str, Any] | None = None

    @property
    def active(self) -> dict[str, Any] | None:
        return self._active

    def start(self) -> dict[str, Any]:
        if self._active:
            self.stop()
        primary = self._system.primary()
        backups = sorted(n for n in self._system.node_names() if n != primary and self._system.is_running(n))
        if primary is None or not backups:
            # No known primary (a view change in progress): nothing this fault can aim at now.
            return {"targets": [], "skipped": "no primary" if primary is None else "no running backup"}
        backup = self._rng.choice(backups)
        if not self._system.kill(backup):
            return {"targets": [], "skipped": f"{backup} was not running"}
        self._sleep(self._lag_s)
        killed_primary = self._system.kill(primary)
        self._system.start(backup)  # from its data directory, now lag_s behind the cluster
        down = [primary] if killed_primary else []
        self._active = {
            "targets": [backup, *down],
            "lagging": backup,
            "primary": primary,
            "down": down,
            "lag_s": self._lag_s,
        }
        return dict(self._active)

    def stop(self) -> dict[str, Any]:
        targets = self._active["targets"] if self._active else []
        restarted = []
        for node in targets:
            if not self._system.is_running(node):
                self._system.start(node)
                restarted.append(node)
        self._active = None
        return {"targets": targets, "restarted": restarted}
