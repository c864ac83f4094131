"""Find and remove what docker runs left behind: containers, networks and image layers by label.

A run's own objects are removed by its ``close()`` (also on Ctrl-C and SIGTERM);
a controller killed with SIGKILL leaves them, and they are *dangling*: labelled
by a controller process that no longer exists (:mod:`clusters.docker.labels`).
``ratchet clean`` and the start of every docker run remove dangling objects;
objects of a live run are left alone unless asked (``ratchet clean --all``).
A disk run's node containers name its shared run directory (``hostmounts.LABEL``):
removing them also stops the faultfs daemons and unmounts what is left there.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clusters.docker import hostmounts
from clusters.docker import labels as lab

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Found:
    containers: list[Any] = field(default_factory=list)
    networks: list[Any] = field(default_factory=list)
    images: list[Any] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.containers or self.networks or self.images)

    def describe(self) -> str:
        parts = []
        if self.containers:
            parts.append(f"containers {', '.join(sorted(c.name for c in self.containers))}")
        if self.networks:
            parts.append(f"networks {', '.join(sorted(n.name for n in self.networks))}")
        if self.images:
            parts.append(f"images {', '.join(sorted(i.short_id for i in self.images))}")
        shared = sorted(
            {c.labels[hostmounts.LABEL] for c in self.containers if (c.labels or {}).get(hostmounts.LABEL)}
        )
        if shared:
            parts.append(f"faultfs daemons and mounts under {', '.join(shared)}")
        return "; ".join(parts) or "nothing"


def find(
    client: Any, *, run_id: str | None = None, live_too: bool = False, cached_image: bool = False
) -> Found:
    """Ratchet's objects: of ``run_id`` if given (live or not), else the dangling ones (all with
    ``live_too``). Images: untagged layers of ours; the cached node image too with ``cached_image``."""
    wanted = [f"{lab.MANAGED}=1"] + ([f"{lab.RUN}={run_id}"] if run_id else [])

    def keep(obj_labels: dict[str, str] | None) -> bool:
        return run_id is not None or live_too or lab.dangling(obj_labels)

    found = Found()
    for container in client.containers.list(all=True, filters={"label": wanted}):
        if keep(container.labels):
            found.containers.append(container)
    for network in client.networks.list(filters={"label": wanted}):
        if keep(network.attrs.get("Labels")):
            found.networks.append(network)
    if run_id is None:
        found.images.extend(client.images.list(filters={"label": f"{lab.MANAGED}=1", "dangling": True}))
        if cached_image:
            seen = {i.id for i in found.images}
            found.images.extend(
                i for i in client.images.list(filters={"label": f"{lab.MANAGED}=1"}) if i.id not in seen
            )
    return found


def remove(client: Any, found: Found) -> list[str]:
    """Remove containers first (a network in use cannot go), then networks, then images."""
    import docker.errors

    done: list[str] = []
    shared: set[str] = set()
    for container in found.containers:
        try:
            container.remove(force=True, v=True)
            done.append(f"removed container {container.name}")
        except docker.errors.NotFound:
            pass
        if (container.labels or {}).get(hostmounts.LABEL):
            shared.add(container.labels[hostmounts.LABEL])
    for run_dir in sorted(shared):  # a disk run's faultfs daemons and mounts on this host
        done.extend(hostmounts.release(Path(run_dir)))
    for network in found.networks:
        try:
            network.remove()
            done.append(f"removed network {network.name}")
        except docker.errors.NotFound:
            pass
    for image in found.images:
        try:
            client.images.remove(image.id, force=True)
            done.append(f"removed image {', '.join(image.tags) or image.short_id}")
        except docker.errors.NotFound:
            pass
    return done
