"""Nodes in docker containers (``cluster.kind = 'docker'``), through the docker SDK.

- :mod:`.image`: the node image (host's /usr read-only, Debian packages only), cached;
- :mod:`.cluster`: :class:`DockerCluster`, one container per node on a per-run bridge network;
- :mod:`.firewall`: partitions and loss with nftables inside each container;
- :mod:`.probe`: what the containers can do for a scenario's faults, asked before the run;
- :mod:`.hostmounts`: the run directory's mounts shared with the containers (disk faults);
- :mod:`.leftovers`: containers, networks and images left by crashed runs (``ratchet clean``),
  and a disk run's faultfs daemons and mounts on this host.
"""

from clusters.docker.cluster import DockerCluster

__all__ = ["DockerCluster"]
