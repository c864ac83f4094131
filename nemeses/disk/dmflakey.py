"""dm-flakey: the kernel's own flaky block device under a node's data directory.

Per node: a sparse backing file, a loop device over it (``losetup --find --show``), a
device-mapper device ``ratchet-<run token>-<node>`` over the loop device with a ``linear``
table (healthy), an ext4 filesystem on it mounted over the node's data directory. A
fault reloads the table with a ``flakey`` one (``dmsetup suspend`` / ``load`` /
``resume``): up for ``up_s`` seconds, then down for ``down_s`` seconds, and while down
``error_reads``, ``error_writes``, ``drop_writes`` or ``corrupt_bio_byte``. The heal
reloads the linear table. Teardown unmounts, removes the dm device, detaches the loop
device and deletes the backing file.

Cleanup when the controller is SIGKILLed: the mount goes with the run's mount
namespace, but device-mapper and loop devices are global kernel objects and outlive
it. So :func:`sweep_leftovers` (run before each run that uses dm-flakey) removes every
``ratchet-*`` device that nothing holds open any more (a live run's device is mounted,
open count 1; a dead run's mount went with its namespace, open count 0) and detaches
its loop device.

Hosts without device-mapper (``dmsetup targets`` fails or lists no ``flakey``) are
refused up front by harness.capabilities (exit 3 with the reason).
"""

from __future__ import annotations

import re
import secrets
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SECTOR_BYTES = 512
DEVICE_SIZE_BYTES_DEFAULT = 256 * 1024 * 1024
FEATURES = ("error_reads", "error_writes", "drop_writes", "corrupt_bio_byte")
NAME_PREFIX = "ratchet-"
COMMAND_TIMEOUT_S = 30


class DmError(RuntimeError):
    """A device-mapper or loop command failed; the message carries its stderr."""


@dataclass(frozen=True, slots=True)
class FlakeyMode:
    """One flakey table's behaviour: up/down intervals and what happens while down."""

    up_s: int
    down_s: int
    feature: str  # one of FEATURES
    corrupt_byte: int = 1  # corrupt_bio_byte: which byte of each bio (1-based)
    corrupt_direction: str = "w"  # r or w
    corrupt_value: int = 0  # the value that byte is set to
    corrupt_flags: int = 0  # bio flags to match (0: all)

    def __post_init__(self) -> None:
        if self.feature not in FEATURES:
            raise ValueError(f"unknown dm-flakey feature {self.feature!r}; known: {', '.join(FEATURES)}")
        if self.up_s < 0 or self.down_s < 1:
            raise ValueError("dm-flakey needs up_s >= 0 and down_s >= 1")
        if self.corrupt_direction not in ("r", "w"):
            raise ValueError("corrupt_bio_byte direction is 'r' or 'w'")
        if not 0 <= self.corrupt_value <= 255 or self.corrupt_byte < 1:
            raise ValueError("corrupt_bio_byte needs byte >= 1 and a value 0..255")


def linear_table(device: str, sectors: int) -> str:
    """The healthy table: every sector passed straight to ``device``."""
    return f"0 {sectors} linear {device} 0"


def flakey_table(device: str, sectors: int, mode: FlakeyMode) -> str:
    """``<start> <len> flakey <dev> <offset> <up interval> <down interval> [<#args> <args>...]``
    (Documentation/admin-guide/device-mapper/dm-flakey.rst)."""
    if mode.feature == "corrupt_bio_byte":
        args = [
            "corrupt_bio_byte",
            str(mode.corrupt_byte),
            mode.corrupt_direction,
            str(mode.corrupt_value),
            str(mode.corrupt_flags),
        ]
    else:
        args = [mode.feature]
    return f"0 {sectors} flakey {device} 0 {mode.up_s} {mode.down_s} {len(args)} {' '.join(args)}"


def device_name(node: str, *, token: str) -> str:
    return f"{NAME_PREFIX}{token}-{node}"


def _run(argv: list[str], *, stdin: str | None = None) -> str:
    try:
        proc = subprocess.run(
            argv, input=stdin, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DmError(f"{' '.join(argv)}: {exc}") from exc
    if proc.returncode != 0:
        raise DmError(f"{' '.join(argv)}: {(proc.stderr or proc.stdout).strip()}")
    return proc.stdout


def flakey_available() -> tuple[bool, str]:
    """(True, detail) where ``dmsetup targets`` lists flakey and losetup exists."""
    try:
        out = _run(["dmsetup", "targets"])
    except DmError as exc:
        return False, f"dmsetup targets failed: {str(exc).splitlines()[0] if str(exc) else exc}"
    if not re.search(r"^flakey\s", out, re.MULTILINE):
        return False, "device-mapper works but has no flakey target (modprobe dm-flakey)"
    try:
        _run(["losetup", "--version"])
    except DmError as exc:
        return False, f"losetup missing: {exc}"
    return True, "device-mapper lists the flakey target and losetup works"


class FlakeyDisk:
    """One node's loop + dm device + ext4, mounted over its data directory."""

    def __init__(
        self,
        node: str,
        data_dir: Path,
        backing: Path,
        *,
        token: str | None = None,
        size_bytes: int = DEVICE_SIZE_BYTES_DEFAULT,
    ) -> None:
        self.node, self.data_dir, self.backing = node, Path(data_dir), Path(backing)
        self.size_bytes = size_bytes
        self.name = device_name(node, token=token or secrets.token_hex(4))
        self.loop: str | None = None
        self.mounted = False
        self.flakey: FlakeyMode | None = None

    @property
    def sectors(self) -> int:
        return self.size_bytes // SECTOR_BYTES

    @property
    def mapper(self) -> str:
        return f"/dev/mapper/{self.name}"

    def setup(self) -> None:
        self.backing.parent.mkdir(parents=True, exist_ok=True)
        with self.backing.open("wb") as handle:
            handle.truncate(self.size_bytes)
        self.loop = _run(["losetup", "--find", "--show", str(self.backing)]).strip()
        _run(["dmsetup", "create", self.name], stdin=linear_table(self.loop, self.sectors) + "\n")
        _run(["mkfs.ext4", "-q", "-F", self.mapper])
        self.data_dir.mkdir(parents=True, exist_ok=True)
        _run(["mount", self.mapper, str(self.data_dir)])
        self.mounted = True

    def _load(self, table: str) -> None:
        _run(["dmsetup", "suspend", self.name])
        try:
            _run(["dmsetup", "load", self.name], stdin=table + "\n")
        finally:
            _run(["dmsetup", "resume", self.name])

    def inject(self, mode: FlakeyMode) -> str:
        assert self.loop is not None
        table = flakey_table(self.loop, self.sectors, mode)
        self._load(table)
        self.flakey = mode
        return table

    def heal(self) -> str:
        assert self.loop is not None
        table = linear_table(self.loop, self.sectors)
        self._load(table)
        self.flakey = None
        return table

    def teardown(self) -> None:
        if self.mounted:
            _run(["umount", str(self.data_dir)])
            self.mounted = False
        if self.loop is not None:
            _run(["dmsetup", "remove", "--retry", self.name])
            _run(["losetup", "--detach", self.loop])
            self.loop = None
        self.backing.unlink(missing_ok=True)


def sweep_leftovers() -> list[str]:
    """Remove ``ratchet-*`` dm devices nothing holds open (their run died with its namespace)."""
    try:
        out = _run(["dmsetup", "ls"])
    except DmError:
        return []
    removed = []
    for line in out.splitlines():
        name = line.split()[0] if line.split() else ""
        if not name.startswith(NAME_PREFIX):
            continue
        info = _run(["dmsetup", "info", "-c", "--noheadings", "-o", "open", name]).strip()
        if info != "0":
            continue
        deps = _run(["dmsetup", "deps", "-o", "devname", name])
        _run(["dmsetup", "remove", "--retry", name])
        for loop in re.findall(r"\((loop\d+)\)", deps):
            subprocess.run(["losetup", "--detach", f"/dev/{loop}"], capture_output=True, check=False)
        removed.append(name)
    return removed


__all__ = [
    "FEATURES",
    "DmError",
    "DmFlakeyNemesis",
    "FlakeyDisk",
    "FlakeyMode",
    "FlakeyMounts",
    "device_name",
    "flakey_available",
    "flakey_table",
    "linear_table",
    "sweep_leftovers",
]


class FlakeyMounts:
    """A FlakeyDisk per node, set up over the data directory before the node first starts."""

    def __init__(self, node_dir: Callable[[str], Path]) -> None:
        self._node_dir = node_dir
        self.disks: dict[str, FlakeyDisk] = {}
        self.token = secrets.token_hex(4)
        self.swept = sweep_leftovers()

    def prepare(self, node: str, data_dir: Path) -> None:
        if node in self.disks:
            return
        disk = FlakeyDisk(node, data_dir, self._node_dir(node) / "flakey.img", token=self.token)
        disk.setup()
        self.disks[node] = disk

    def clear_all(self) -> None:
        for disk in self.disks.values():
            if disk.flakey is not None:
                disk.heal()

    def release_all(self) -> list[str]:
        done = []
        for node, disk in sorted(self.disks.items()):
            disk.teardown()
            done.append(node)
        self.disks.clear()
        return [f"removed dm-flakey devices of {', '.join(done)}"] if done else []


class DmFlakeyNemesis:
    """Reload the targets' tables with a flakey one (a seeded feature and up/down intervals)."""

    kind = "dm-flakey"

    def __init__(
        self, *, system: Any, mounts: FlakeyMounts, features: Sequence[str], specs: Sequence[str], rng: Any
    ) -> None:
        self._system, self._mounts, self._rng = system, mounts, rng
        self._features, self._specs = tuple(features), tuple(specs)
        self._active: dict[str, Any] | None = None

    @property
    def active(self) -> dict[str, Any] | None:
        return self._active

    def start(self) -> dict[str, Any]:
        from nemeses.faults import pick_targets

        if self._active:
            self.stop()
        spec = self._rng.choice(self._specs)
        targets = pick_targets(spec, self._system.node_names(), rng=self._rng, primary=self._system.primary)
        mode = FlakeyMode(
            up_s=self._rng.randint(0, 3),
            down_s=self._rng.randint(1, 3),
            feature=self._rng.choice(self._features),
            corrupt_byte=self._rng.randint(1, 4096),
            corrupt_value=self._rng.randint(0, 255),
        )
        tables = {node: self._mounts.disks[node].inject(mode) for node in targets}
        self._active = {"targets": targets, "spec": spec, "tables": tables}
        return dict(self._active)

    def stop(self) -> dict[str, Any]:
        targets = list(self._active["targets"]) if self._active else []
        tables = {node: self._mounts.disks[node].heal() for node in targets if node in self._mounts.disks}
        restarted = []
        for node in targets:
            if not self._system.is_running(node):
                self._system.start(node)
                restarted.append(node)
        self._active = None
        return {"targets": targets, "tables": tables, "restarted": restarted}
