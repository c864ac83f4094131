"""Where nodes live: each home implements :class:`core.cluster.Cluster`.

``create`` picks the home a scenario names (``[cluster] kind``); the runner,
nemeses and workloads see only the protocol.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # importing a home (clusters.namespace first of all) stays light
    from core.cluster import Cluster
    from core.scenario import Test


def create(test: Test) -> Cluster:
    """The cluster ``test`` asks for, its nodes not yet started."""
    if test.cluster == "local":
        from clusters.local import LocalCluster

        return LocalCluster(node_count=test.nodes)
    raise ValueError(f"no cluster home named {test.cluster!r}")
