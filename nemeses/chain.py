"""Isolate the primary, then its successor as soon as it leads: back-to-back view changes.

Why this shape: a view change is where a replicated log is most fragile, and the second of
two quick view changes is where a new primary must pick the right log from votes cast by
replicas that saw different views (VR.md bug #5: the highest op is not the newest log). A cut-off
primary keeps preparing what its clients send (an uncommitted suffix); the others elect a
successor, which commits in the new view; if the successor is cut off in turn while the old
primary comes back, the next view change hears the old primary's long stale log and the
successor's shorter newer one. A correct VR keeps the newer (higher log_view) one.

``start`` isolates the current primary (all its links, both ways), then, up to ``links - 1``
times, waits (at most ``wait_s``) until another node leads a newer view and has committed an op
in it, and moves the isolation to that node in one packet-filter change (the previous one
is healed in the same transaction, so it never hears the cluster in between). ``stop`` heals.
The completion records every link: node, view, commit, and when it was cut.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

from clusters.firewall import Drop, Endpoint, Firewall
from core.system import System
from nemeses import grudges

logger = logging.getLogger(__name__)

LINKS_DEFAULT = 2
WAIT_S_DEFAULT = 5.0
POLL_S = 0.005


class PrimaryChainNemesis:
    kind = "primary-chain"

    def __init__(
        self,
        *,
        system: System,
        firewall: Firewall,
        endpoints: Mapping[str, Endpoint],
        rng: random.Random,
        links: int = LINKS_DEFAULT,
        wait_s: float = WAIT_S_DEFAULT,
        now_s: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._system, self._firewall, self._endpoints, self._rng = system, firewall, endpoints, rng
        self._links, self._wait_s = links, wait_s
        self._now_s, self._sleep = now_s, sleep
        self._active: dict[str, Any] | None = None

    @property
    def active(self) -> dict[str, Any] | None:
        return self._active

    def _statuses(self) -> dict[str, dict[str, Any]]:
        statuses = getattr(self._system, "statuses", None)
        return statuses() if callable(statuses) else {}

    def _isolate(self, node: str) -> dict[str, list[str]]:
        nodes = list(self._endpoints)
        grudge, _ = grudges.compute("primary", nodes, rng=self._rng, primary=node)
        drops = [
            Drop(self._endpoints[src], self._endpoints[dst])
            for dst, srcs in sorted(grudge.items())
            for src in sorted(srcs)
        ]
        self._firewall.apply(self.kind, drops)
        return grudges.to_json(grudge)

    def _successor(self, cut: str, view: int) -> tuple[str, dict[str, Any]] | None:
        """A node other than ``cut`` that leads a view above ``view`` and committed an op in it."""
        started: dict[tuple[str, int], int] = {}
        deadline = self._now_s() + self._wait_s
        names = list(self._system.node_names())
        while self._now_s() < deadline:
            for node, status in self._statuses().items():
                index = status.get("primary")
                if node == cut or status.get("status") != "normal" or int(status.get("view", 0)) <= view:
                    continue
                if not isinstance(index, int) or names[index] != node:
                    continue
                # The head it started the view with: ops up to it may be inherited, so only a commit
                # beyond it is an op prepared and committed in the new view.
                head = started.setdefault((node, int(status["view"])), int(status.get("op", 0)))
                if int(status.get("commit", 0)) > head:
                    return node, status
            self._sleep(POLL_S)
        return None

    def start(self) -> dict[str, Any]:
        if self._active:
            self.stop()
        primary = self._system.primary()
        if primary is None:
            return {"targets": [], "skipped": "no primary"}
        status = self._statuses().get(primary, {})
        view = int(status.get("view", 0))
        grudge = self._isolate(primary)
        chain = [
            {
                "node": primary,
                "view": view,
                "op": status.get("op"),
                "commit": status.get("commit"),
                "cut_s": 0.0,
            }
        ]
        began = self._now_s()
        self._active = {"targets": [primary], "chain": chain, "grudge": grudge}
        for _ in range(self._links - 1):
            found = self._successor(chain[-1]["node"], view)
            if found is None:
                self._active["stalled"] = f"no successor led and committed within {self._wait_s} s"
                break
            node, status = found
            view = int(status["view"])
            self._active["grudge"] = self._isolate(node)
            chain.append(
                {
                    "node": node,
                    "view": view,
                    "commit": status.get("commit"),
                    "cut_s": round(self._now_s() - began, 3),
                }
            )
            self._active["targets"] = [node]
        self._active["isolated"] = [link["node"] for link in chain]
        return dict(self._active)

    def stop(self) -> dict[str, Any]:
        healed = self._firewall.heal(self.kind)
        targets = self._active["targets"] if self._active else []
        self._active = None
        return {"targets": targets, "healed": healed}
