"""Corruption aimed by VR's own layout: where op N lives (vr.layout), what to do to those bytes.

Kinds of damage, each on a sector-aligned range of the data file:

- ``bitflip``: a few seeded bits flipped (bit rot);
- ``zero``: the sector zeroed (a latent sector error read back as zeros);
- ``misdirect``: the sector overwritten with another sector of the same zone (a write
  that landed at the wrong address);
- ``lost-write``: the range restored to the bytes it held at an earlier snapshot (a write
  the disk acknowledged and never made; before any snapshot, the formatted zeros).

Applied to a stopped node's file (:func:`apply_to_file`: pwrite + fsync through whatever
is mounted there) or live under a running node through faultfs (``Faultfs.corrupt``).

Targets pick ops, not offsets: ``one`` node, a ``minority``, or ``helix`` (every node,
each on a different stripe of ops, op % n == its index, so every op keeps an intact
copy on all but one node: a correct VR repairs each from a peer; a replica that trusts
or truncates at a bad checksum does not).
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from pathlib import Path

from vr.layout import Extent, Layout
from vr.message import SECTOR_SIZE

DAMAGE = ("bitflip", "zero", "misdirect", "lost-write")
BITFLIPS_MAX = 8


def damaged(
    kind: str,
    extent: Extent,
    *,
    current: bytes,
    rng: random.Random,
    layout: Layout,
    read_at: object,
    snapshot: bytes | None = None,
) -> bytes:
    """The bytes to write over ``extent`` (whose present content is ``current``)."""
    assert len(current) == extent.length
    if kind == "bitflip":
        out = bytearray(current)
        for _ in range(rng.randint(1, BITFLIPS_MAX)):
            bit = rng.randrange(len(out) * 8)
            out[bit // 8] ^= 1 << (bit % 8)
        return bytes(out)
    if kind == "zero":
        return bytes(extent.length)
    if kind == "misdirect":
        zone = layout.zone_extent(extent.zone)
        sectors = [
            off
            for off in range(zone.offset, zone.end - extent.length + 1, SECTOR_SIZE)
            if not (extent.offset <= off < extent.end)
        ]
        source = rng.choice(sectors)
        data = read_at(source, extent.length)  # type: ignore[operator]
        assert isinstance(data, bytes)
        return data if data != current else bytes(extent.length)
    if kind == "lost-write":
        return snapshot if snapshot is not None and snapshot != current else bytes(extent.length)
    raise ValueError(f"unknown damage {kind!r}; known: {', '.join(DAMAGE)}")


def apply_to_file(path: Path, offset: int, data: bytes) -> None:
    """Write ``data`` at ``offset`` and fsync (the node is stopped: nobody else writes the file)."""
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        written = 0
        while written < len(data):
            written += os.pwrite(fd, data[written:], offset + written)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_file(path: Path, offset: int, length: int) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.pread(fd, length, offset)
    finally:
        os.close(fd)


def helix_ops(nodes: Sequence[str], ops: Sequence[int]) -> dict[str, list[int]]:
    """Each node a different stripe of ``ops``: op goes to node ``op % len(nodes)``."""
    order = sorted(nodes)
    stripes: dict[str, list[int]] = {node: [] for node in order}
    for op in ops:
        stripes[order[op % len(order)]].append(op)
    return stripes


__all__ = ["DAMAGE", "apply_to_file", "damaged", "helix_ops", "read_file"]
