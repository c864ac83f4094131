"""The ``corrupt`` nemesis: damage committed WAL slots of stopped nodes, aimed through vr.layout.

Plain targeting (``one``, ``minority``, ``helix``): each target is SIGKILLed, the
prepare slots of some of its most recently committed ops are damaged (``helix``: every
node, each on its own stripe of ops), and it is restarted from the damaged file. A
correct VR finds the bad checksums at recovery, keeps those ops as faulty and repairs
them from peers.

``isolate_acker``: the sequence that separates "repair it" from "truncate it": with the
primary P and backups A, B, isolate B so ops commit on P and A alone; kill A; damage the
first op B lacks in A's WAL; heal B and isolate P (the other acker); restart A. Now the
only intact copies of those committed ops sit behind the partition: a correct VR keeps
them as faulty and waits for P (no progress until the heal), a VR that truncates its log
at a checksum mismatch elects a view without them and loses committed writes.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from clusters.firewall import Drop, Endpoint, Firewall
from core.system import System
from nemeses.disk.corrupt import DAMAGE, apply_to_file, damaged, helix_ops, read_file
from nemeses.disk.nemesis import NEW_VIEW_TIMEOUT_S, wait_new_view
from nemeses.faults import pick_targets
from vr.layout import Layout

DATA_FILE = "replica.vr"
OPS_PER_TARGET = 3
LAG_S_DEFAULT = 1.5
CHAIN = "corrupt"


class CorruptNemesis:
    kind = "corrupt"

    def __init__(
        self,
        *,
        system: System,
        firewall: Firewall | None,
        endpoints: Mapping[str, Endpoint],
        damage: Sequence[str],
        specs: Sequence[str],
        isolate_acker: bool,
        rng: random.Random,
        layout: Layout | None = None,
        lag_s: float = LAG_S_DEFAULT,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self._system, self._firewall, self._endpoints = system, firewall, endpoints
        self._damage, self._specs, self._isolate = tuple(damage), tuple(specs), isolate_acker
        self._rng, self._layout, self._lag_s = rng, layout or Layout(), lag_s
        self._sleep = sleep or time.sleep
        self._active: dict[str, Any] | None = None
        self._snapshots: dict[tuple[str, int], bytes] = {}  # (node, offset) -> bytes seen earlier

    @property
    def active(self) -> dict[str, Any] | None:
        return self._active

    # -- pieces ----------------------------------------------------------------------------

    def _path(self, node: str) -> Any:
        return self._system.node_files(node)["data"] / DATA_FILE

    def _corrupt_ops(self, node: str, ops: Sequence[int]) -> list[dict[str, Any]]:
        """Damage the first sector of each op's prepare slot in ``node``'s (stopped) data file."""
        path = self._path(node)
        done = []
        for op in ops:
            extent = self._layout.extents_of_op(op)["prepare_header_sector"]
            current = read_file(path, extent.offset, extent.length)
            kind = self._rng.choice(self._damage)
            data = damaged(
                kind,
                extent,
                current=current,
                rng=self._rng,
                layout=self._layout,
                read_at=lambda offset, length, p=path: read_file(p, offset, length),
                snapshot=self._snapshots.get((node, extent.offset)),
            )
            self._snapshots[(node, extent.offset)] = current
            apply_to_file(path, extent.offset, data)
            done.append(
                {"node": node, "op": op, "damage": kind, "zone": extent.zone, "offset": extent.offset,
                 "length": extent.length}
            )  # fmt: skip
        return done

    def _isolate_node(self, node: str) -> None:
        assert self._firewall is not None
        others = [n for n in self._endpoints if n != node]
        drops = [Drop(self._endpoints[o], self._endpoints[node]) for o in sorted(others)]
        drops += [Drop(self._endpoints[node], self._endpoints[o]) for o in sorted(others)]
        self._firewall.apply(CHAIN, drops)

    def _status(self, node: str) -> dict[str, Any]:
        return self._system.statuses().get(node, {})  # type: ignore[attr-defined,no-any-return]

    # -- start / stop ----------------------------------------------------------------------

    def start(self) -> dict[str, Any]:
        if self._active:
            self.stop()
        if self._isolate:
            return self._start_isolating()
        spec = self._rng.choice(self._specs)
        nodes = self._system.node_names()
        statuses = self._system.statuses()  # type: ignore[attr-defined]
        if spec == "helix":
            commit = max((int(s.get("commit", 0)) for s in statuses.values()), default=0)
            window = list(range(max(1, commit - len(nodes) * OPS_PER_TARGET + 1), commit + 1))
            plan = helix_ops(nodes, window)
        else:
            targets = pick_targets(spec, nodes, rng=self._rng, primary=self._system.primary)
            plan = {}
            for node in targets:
                commit = int(statuses.get(node, {}).get("commit", 0))
                plan[node] = list(range(max(1, commit - OPS_PER_TARGET + 1), commit + 1))
        damage: list[dict[str, Any]] = []
        targets = sorted(n for n, ops in plan.items() if ops)
        for node in targets:
            self._system.kill(node)
            damage += self._corrupt_ops(node, plan[node])
            self._system.start(node)
        self._active = {"targets": targets, "spec": spec, "corrupted": damage}
        return dict(self._active)

    def _start_isolating(self) -> dict[str, Any]:
        primary = self._system.primary()
        view = max((int(s.get("view", 0)) for s in self._system.statuses().values()), default=0)  # type: ignore[attr-defined]
        backups = sorted(n for n in self._system.node_names() if n != primary and self._system.is_running(n))
        if primary is None or len(backups) < 2:
            return {"targets": [], "skipped": "no primary" if primary is None else "fewer than two backups"}
        target = self._rng.choice(backups)
        lagging = next(n for n in backups if n != target)
        self._isolate_node(lagging)
        self._sleep(self._lag_s)
        lagging_op = int(self._status(lagging).get("op", 0))
        target_status = self._status(target)
        commit = int(target_status.get("commit", 0))
        self._system.kill(target)
        ops = [lagging_op + 1] if commit > lagging_op else ([commit] if commit > 0 else [])
        damage = self._corrupt_ops(target, ops)
        self._isolate_node(primary)  # replaces the lagging node's isolation: heal B, cut off P
        self._system.start(target)
        # Let the two that can talk elect (or fail to: a correct VR may not finish without the
        # faulty op's only intact copy) before the heal can bring the acker back.
        new_view = wait_new_view(
            self._system, [target, lagging], above=view, timeout_s=NEW_VIEW_TIMEOUT_S, sleep=self._sleep
        )
        self._active = {
            "targets": [target],
            "spec": "isolate-acker",
            "acker": primary,
            "lagging": lagging,
            "lagging_op": lagging_op,
            "target_commit": commit,
            "isolated": primary,
            "corrupted": damage,
            "view": view,
            "new_view": new_view,
        }
        return dict(self._active)

    def stop(self) -> dict[str, Any]:
        targets = list(self._active["targets"]) if self._active else []
        healed = self._firewall.heal(CHAIN) if self._firewall is not None and self._isolate else False
        restarted = []
        for node in self._system.node_names():
            if not self._system.is_running(node) and node in targets:
                self._system.start(node)
                restarted.append(node)
        self._active = None
        return {"targets": targets, "healed": healed, "restarted": restarted}


__all__ = ["DAMAGE", "CorruptNemesis"]
