"""Ratchet's own Viewstamped Replication cluster (``vr/``) as a system under test.

What is VR's own lives here: how a node is started and found (``system``), its
clients, its convergence probe, and the frame-aware proxy that message faults
use on replica links (``proxy``: it knows VR's framing). Where the nodes run is
the cluster's business (``clusters/``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.cluster import Cluster
from core.scenario import Test
from systems.vr.system import VRSystem


def clock_control(cluster: Cluster, clock_dir: Path, test: Test) -> Any:
    """Per-node clock control files (nemeses.clock) when the scenario injects clock faults, else None."""
    if "clock" not in test.nemesis.faults:
        return None
    from nemeses.clock import ClockControl, find_libfaketime

    library = find_libfaketime()
    if library is None:  # validation refuses this first; a run started anyway says why
        raise RuntimeError("clock faults need libfaketime (apt-get install libfaketime faketime)")
    return ClockControl(
        clock_dir, cluster.names(), library=library, fake_monotonic=test.nemesis.clock_monotonic
    )


def message_proxy(cluster: Cluster, test: Test) -> Any:
    """A proxy on every replica link (systems.vr.proxy) when the scenario injects message faults."""
    if "messages" not in test.nemesis.faults:
        return None
    from systems.vr.proxy import MessageProxy

    return MessageProxy({node.name: (node.host, node.port) for node in cluster.nodes})


def build(cluster: Cluster, *, nodes_dir: Path, clock_dir: Path, test: Test) -> VRSystem:
    """The VR system for one run of ``test`` on ``cluster``."""
    return VRSystem(
        cluster,
        nodes_dir=nodes_dir,
        bug=test.bug,
        seed=test.seed,
        client_timeout_s=test.workload.client_timeout_s,
        bind_clients_to_nodes=test.workload.clients == "nodes",
        clock=clock_control(cluster, clock_dir, test),
        messages=message_proxy(cluster, test),
    )
