"""Where nodes live: each home implements :class:`core.cluster.Cluster`.

``create`` picks the home a scenario names (``[cluster] kind``) and ``probe``
asks that home what it can do for the scenario's faults; the runner, nemeses
and workloads see only the protocol.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import BadInput

if TYPE_CHECKING:  # importing a home (clusters.namespace first of all) stays light
    from core.cluster import Cluster
    from core.scenario import Test

HOMES_ELSEWHERE = ("docker", "ssh")  # homes outside the controller's own namespaces


def _not_here(kind: str) -> BadInput:
    return BadInput(
        f"cluster.kind = {kind!r} is not available in this build of Ratchet; use cluster.kind = 'local'.",
        where="cluster.kind",
    )


def create(test: Test, *, run_dir: Path) -> Cluster:
    """The cluster ``test`` asks for, its nodes not yet started (files of the run under ``run_dir``)."""
    if test.cluster == "local":
        from clusters.local import LocalCluster

        return LocalCluster(node_count=test.nodes)
    if test.cluster == "ssh":
        from clusters import ssh

        return ssh.create(test, run_dir=run_dir)
    if test.cluster == "docker":
        from clusters.docker import DockerCluster

        return DockerCluster(
            node_count=test.nodes,
            run_dir=run_dir,
            image=test.cluster_spec.image,
            disk=bool({"disk", "power-cut"} & set(test.nemesis.faults)),
        )
    raise _not_here(test.cluster)


def probe(test: Test) -> dict[str, Any]:
    """What a home other than local can do for ``test``'s faults (core.capability.Capability by need),
    asked of the home itself: a throwaway container, or every host."""
    if test.cluster == "ssh":
        from clusters import ssh

        return ssh.probe(test)
    if test.cluster == "docker":
        from clusters.docker.probe import probe as probe_docker

        return probe_docker(image=test.cluster_spec.image, faults=tuple(test.nemesis.faults))
    raise _not_here(test.cluster)
