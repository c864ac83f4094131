"""Disk faults as nemeses: faultfs over every node's data directory, rules on command, power cuts.

- ``disk``: one fault mode (eio-fsync, eio-write, eio-read, enospc, stall) on the data
  file of the nodes a target spec picks; inverse: clear the rules and restart a node that
  stopped because of them (VR.md: a node whose fsync fails exits; it must not be
  restarted into the same failing disk over and over, so it comes back only at the heal).
- ``power-cut``: optionally slow the backups' fsyncs first (a disk that takes its time,
  so writes pile up unsynced), then SIGKILL the targets and drop everything their disks
  had not synced (a torn last write on some of them); restart them at once, except a
  primary that was among them, which comes back only at the heal (a slower reboot).

Every start and stop returns exactly what it did (targets, rule, bytes lost per node),
which the runner records as the ``:nemesis`` op.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from core.system import System
from nemeses.disk.control import Faultfs
from nemeses.faults import pick_targets
from vr.layout import Layout

DATA_FILE = "replica.vr"  # vr.node.DATA_FILE_NAME
DISK_MODES = ("eio-fsync", "eio-write", "eio-read", "enospc", "stall")
STALL_MS_RANGE = (100, 2000)
KILL_SETTLE_S = 0.2
NEW_VIEW_TIMEOUT_S = 15.0


def wait_new_view(
    system: System, nodes: Sequence[str], *, above: int, timeout_s: float, sleep: Callable[[float], None]
) -> int | None:
    """The view the given nodes settle in once one of them is normal above view ``above`` (None: not
    within ``timeout_s``). A fault whose point is what the survivors elect waits for the election
    here, so that a slow machine does not turn it into a different fault."""
    statuses = getattr(system, "statuses", None)
    if statuses is None or not nodes:
        return None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        views = [
            int(s.get("view", 0))
            for node, s in statuses().items()
            if node in nodes and s.get("status") == "normal" and int(s.get("view", 0)) > above
        ]
        if views:
            return max(views)
        sleep(0.1)
    return None


class FaultfsMounts:
    """One faultfs per node, mounted over the node's data directory before the node first starts."""

    def __init__(self, node_dir: Callable[[str], Path]) -> None:
        self._node_dir = node_dir
        self.mounts: dict[str, Faultfs] = {}

    def prepare(self, node: str, data_dir: Path) -> None:
        fs = self.mounts.get(node)
        if fs is None:
            base = self._node_dir(node)
            fs = self.mounts[node] = Faultfs(
                data_dir, log_path=base / "faultfs.jsonl", output_path=base / "faultfs.log"
            )
        fs.mount()

    def get(self, node: str) -> Faultfs:
        fs = self.mounts.get(node)
        if fs is None or not fs.mounted:
            raise RuntimeError(f"no faultfs is mounted over {node}'s data directory")
        return fs

    def clear_all(self) -> None:
        """Clear every rule on every mount (stalled operations return); best effort, for teardown."""
        for fs in self.mounts.values():
            if fs.mounted:
                with contextlib.suppress(OSError, RuntimeError):
                    fs.clear()

    def release_all(self) -> list[str]:
        done = [node for node, fs in sorted(self.mounts.items()) if fs.unmount()]
        return [f"unmounted faultfs from {', '.join(done)}"] if done else []


def attach(system: System) -> FaultfsMounts:
    """Make ``system`` mount faultfs over each data directory it starts a node on (once per run)."""
    mounts = getattr(system, "disk", None)
    if isinstance(mounts, FaultfsMounts):
        return mounts
    if not hasattr(system, "disk"):
        raise ValueError(f"the {type(system).__name__} system cannot run its nodes on faultfs")
    mounts = FaultfsMounts(lambda node: system.node_files(node)["dir"])
    system.disk = mounts  # type: ignore[attr-defined]
    return mounts


def rule_for(mode: str, *, rule_id: str, rng: random.Random, layout: Layout) -> dict[str, Any]:
    """The faultfs rule a disk mode installs (the WAL zone for reads and writes: the superblock has
    its own redundancy story, and a fault there only stops the node from starting)."""
    wal = {"offset_min": layout.wal_headers_offset, "offset_max": layout.snapshots_offset}
    if mode == "eio-fsync":
        return {"id": rule_id, "op": "fsync", "error": "EIO", "file": DATA_FILE}
    if mode == "eio-write":
        return {"id": rule_id, "op": "write", "error": "EIO", "file": DATA_FILE, **wal}
    if mode == "eio-read":
        return {"id": rule_id, "op": "read", "error": "EIO", "file": DATA_FILE, **wal}
    if mode == "enospc":
        return {"id": rule_id, "op": "write", "error": "ENOSPC", "file": DATA_FILE, **wal}
    if mode == "stall":
        return {
            "id": rule_id,
            "op": "fsync",
            "error": None,
            "stall_ms": rng.randint(*STALL_MS_RANGE),
            "file": DATA_FILE,
        }
    raise ValueError(f"unknown disk mode {mode!r}; known: {', '.join(DISK_MODES)}")


class DiskNemesis:
    kind = "disk"

    def __init__(
        self,
        *,
        system: System,
        mounts: FaultfsMounts,
        modes: Sequence[str],
        specs: Sequence[str],
        rng: random.Random,
        layout: Layout | None = None,
    ) -> None:
        self._system, self._mounts, self._rng = system, mounts, rng
        self._modes, self._specs = tuple(modes), tuple(specs)
        self._layout = layout or Layout()
        self._active: dict[str, Any] | None = None
        self._count = 0

    @property
    def active(self) -> dict[str, Any] | None:
        return self._active

    def start(self) -> dict[str, Any]:
        if self._active:
            self.stop()
        mode = self._rng.choice(self._modes)
        spec = self._rng.choice(self._specs)
        targets = pick_targets(spec, self._system.node_names(), rng=self._rng, primary=self._system.primary)
        self._count += 1
        rule = rule_for(mode, rule_id=f"disk-{self._count}", rng=self._rng, layout=self._layout)
        for node in targets:
            self._mounts.get(node).add_rule(**rule)
        self._active = {"targets": targets, "spec": spec, "mode": mode, "rule": rule}
        return dict(self._active)

    def stop(self) -> dict[str, Any]:
        targets = list(self._active["targets"]) if self._active else []
        rule_id = self._active["rule"]["id"] if self._active else None
        hits: dict[str, int] = {}
        for node in targets:
            removed = self._mounts.get(node).clear([rule_id] if rule_id else None)
            hits[node] = sum(r.get("hits", 0) for r in removed)
        restarted = []
        for node in targets:
            if not self._system.is_running(node):
                self._system.start(node)
                restarted.append(node)
        self._active = None
        return {"targets": targets, "hits": hits, "restarted": restarted}


class PowerCutNemesis:
    kind = "power-cut"

    def __init__(
        self,
        *,
        system: System,
        mounts: FaultfsMounts,
        specs: Sequence[str],
        stall_ms: int,
        rng: random.Random,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self._system, self._mounts, self._rng = system, mounts, rng
        self._specs, self._stall_ms = tuple(specs), stall_ms
        self._sleep = sleep or time.sleep
        self._active: dict[str, Any] | None = None
        self._count = 0

    @property
    def active(self) -> dict[str, Any] | None:
        return self._active

    def start(self) -> dict[str, Any]:
        if self._active:
            self.stop()
        self._count += 1
        primary = self._system.primary()
        statuses = getattr(self._system, "statuses", dict)()
        view = max((int(s.get("view", 0)) for s in statuses.values()), default=0)
        spec = self._rng.choice(self._specs)
        nodes = self._system.node_names()
        targets = pick_targets(spec, nodes, rng=self._rng, primary=lambda: primary)
        slowed = []
        stall_id = f"power-cut-{self._count}-slow"
        if self._stall_ms > 0:
            for node in nodes:
                if node != primary and self._system.is_running(node):
                    self._mounts.get(node).add_rule(
                        id=stall_id, op="fsync", error=None, stall_ms=-1, file=DATA_FILE
                    )
                    slowed.append(node)
            self._sleep(self._stall_ms / 1000)
        # SIGKILL first without waiting: a node stalled in fsync dies only once faultfs answers it,
        # and faultfs answers only after the cut below has dropped what was unsynced.
        # A write already inside faultfs when the signal lands still completes; let those finish
        # (they take well under a millisecond) so none lands in the cache after the cut.
        killed = [node for node in targets if self._system.kill(node, wait=False)]  # type: ignore[call-arg]
        self._sleep(KILL_SETTLE_S)
        lost: dict[str, Any] = {}
        for node in targets:
            cut = self._mounts.get(node).power_cut(
                torn=self._rng.random() < 0.5, seed=self._rng.randrange(2**32)
            )
            lost[node] = {
                "dropped_bytes": sum(c["dropped_bytes"] for c in cut),
                "torn_kept": [kept for c in cut for kept in c["torn_kept"]],
            }
        for node in slowed:
            self._mounts.get(node).clear([stall_id])
        for node in killed:
            self._system.kill(node)  # reap
        down = [primary] if primary in killed else []
        for node in killed:
            if node not in down:
                self._system.start(node)
        # A cut primary reboots last: after the others have elected a new one (bounded wait).
        up = [n for n in nodes if n not in down]
        new_view = (
            wait_new_view(self._system, up, above=view, timeout_s=NEW_VIEW_TIMEOUT_S, sleep=self._sleep)
            if down
            else None
        )
        self._active = {
            "targets": targets,
            "spec": spec,
            "primary": primary,
            "slowed": slowed,
            "stall_ms": self._stall_ms,
            "killed": killed,
            "lost": lost,
            "down": down,
            "view": view,
            "new_view": new_view,
        }
        return dict(self._active)

    def stop(self) -> dict[str, Any]:
        targets = list(self._active["targets"]) if self._active else []
        restarted = []
        for node in targets:
            if not self._system.is_running(node):
                self._system.start(node)
                restarted.append(node)
        self._active = None
        return {"targets": targets, "restarted": restarted}


__all__ = ["DISK_MODES", "DiskNemesis", "FaultfsMounts", "PowerCutNemesis", "attach", "rule_for"]
