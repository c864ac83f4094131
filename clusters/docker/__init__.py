"""Nodes in docker containers (``cluster.kind = 'docker'``), through the docker SDK.

- :mod:`.image`: the node image (host's /usr read-only, Debian packages only), cached;
- :mod:`.cluster`: :class:`DockerCluster`, one container per node on a per-run bridge network;
- :mod:`.firewall`: partitions and loss with nftables inside each container;
- :mod:`.probe`: what the containers can do for a scenario's faults, asked before the run;
- :mod:`.leftovers`: containers, networks and images left by crashed runs (``ratchet clean``).
"""

from clusters.docker.cluster import DockerCluster

__all__ = ["DockerCluster"]
