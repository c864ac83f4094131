"""Build the disk fault kinds of a nemesis package from the scenario's ``[nemesis]`` settings."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from clusters.firewall import Endpoint, Firewall
from core.system import System
from nemeses.disk.corrupt_nemesis import DAMAGE, CorruptNemesis
from nemeses.disk.dmflakey import FEATURES, DmFlakeyNemesis, FlakeyMounts
from nemeses.disk.nemesis import DISK_MODES, DiskNemesis, PowerCutNemesis, attach

KINDS = ("disk", "power-cut", "corrupt", "dm-flakey")
DISK_TARGETS_DEFAULT = ("one", "minority")
POWER_CUT_TARGETS_DEFAULT = ("majority",)


def build(
    kind: str,
    spec: Any,
    *,
    system: System,
    rng: random.Random,
    firewall: Firewall | None = None,
    endpoints: Mapping[str, Endpoint] | None = None,
) -> Any:
    """The nemesis for ``kind``; disk and power-cut mount faultfs over every data directory the
    system starts (corrupt writes a stopped node's file directly and needs no faultfs)."""
    if kind == "corrupt":
        return CorruptNemesis(
            system=system,
            firewall=firewall,
            endpoints=endpoints or {},
            damage=getattr(spec, "corrupt_damage", DAMAGE) or DAMAGE,
            specs=getattr(spec, "corrupt_targets", ("one",)) or ("one",),
            isolate_acker=getattr(spec, "corrupt_sequence", "plain") == "isolate-acker",
            rng=rng,
        )
    if kind == "dm-flakey":
        if getattr(system, "disk", None) is not None:
            raise ValueError("dm-flakey and faultfs cannot both sit under the same data directories")
        flakey = FlakeyMounts(lambda node: system.node_files(node)["dir"])
        system.disk = flakey  # type: ignore[attr-defined]
        return DmFlakeyNemesis(
            system=system,
            mounts=flakey,
            features=FEATURES,
            specs=getattr(spec, "disk_targets", DISK_TARGETS_DEFAULT) or DISK_TARGETS_DEFAULT,
            rng=rng,
        )
    mounts = attach(system)
    if kind == "disk":
        return DiskNemesis(
            system=system,
            mounts=mounts,
            modes=getattr(spec, "disk_faults", DISK_MODES) or DISK_MODES,
            specs=getattr(spec, "disk_targets", DISK_TARGETS_DEFAULT) or DISK_TARGETS_DEFAULT,
            rng=rng,
        )
    if kind == "power-cut":
        return PowerCutNemesis(
            system=system,
            mounts=mounts,
            specs=getattr(spec, "power_cut_targets", POWER_CUT_TARGETS_DEFAULT) or POWER_CUT_TARGETS_DEFAULT,
            stall_ms=int(getattr(spec, "power_cut_stall_ms", 0)),
            rng=rng,
        )
    raise ValueError(f"not a disk fault kind: {kind!r}")
