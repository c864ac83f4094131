"""Where nodes live, as the systems and nemeses see it (Jepsen's ``control`` layer).

A system under test says *what* runs on a node (its argv, its files, its
clients); a cluster says *where*: how a process is started, signalled and
stopped on a node, and how a firewall rule reaches it. The local home (processes
in the run's namespaces), containers and remote hosts each implement this
protocol, so nemeses, workloads and the runner do not change with the home.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol


class ClusterNode(Protocol):
    """One node's identity: its name, index and the address its peers and clients dial."""

    @property
    def name(self) -> str: ...
    @property
    def index(self) -> int: ...
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def address(self) -> str: ...

    def endpoint(self) -> Any: ...


class Cluster(Protocol):
    """The nodes' home: processes, signals and the packet filter between nodes."""

    kind: str
    nodes: Sequence[ClusterNode]
    firewall: Any  # clusters.firewall.Firewall: apply / heal / verify / teardown by rule kind
    python: str  # the interpreter that runs a node's program on the node (``python3`` on a host)

    def path(self, name: str, local: Path) -> str:
        """Where a file of the run directory (``local``) is on node ``name``: the same path when the
        node shares this file system (local, a bind mount), a per-run directory on a remote host."""
        ...

    def make_dirs(self, name: str, local: Path) -> None:
        """Create ``local``'s counterpart (and parents) on node ``name``."""
        ...

    def node(self, name: str) -> ClusterNode: ...
    def names(self) -> tuple[str, ...]: ...
    def spawn(
        self, name: str, argv: Sequence[str], *, output_path: Path, env: Mapping[str, str] | None = None
    ) -> int: ...
    def is_running(self, name: str) -> bool: ...
    def is_paused(self, name: str) -> bool: ...
    def exit_code(self, name: str) -> int | None: ...
    def pause(self, name: str) -> bool: ...
    def resume(self, name: str) -> bool: ...
    def kill(self, name: str, *, wait: bool = True) -> bool: ...
    def stop(self, name: str) -> None: ...
    def stop_all(self) -> list[str]: ...
    def leftover_processes(self) -> list[int]: ...
    def unexpected_exits(self) -> list[dict[str, int | str]]: ...
    def endpoints(self) -> dict[str, Any]: ...
    def close(self) -> list[str]:
        """Release the home after the nodes stopped: copy node files into the run directory,
        remove what the run created there; what was done, for the teardown record."""
        ...


class ClusterNodes:
    """Node control shared by every system whose nodes are processes of one :class:`Cluster`.

    Killing, pausing and resuming a node is the cluster's business (it owns the
    processes, wherever they run), whatever program the node runs; a system adds
    what is its own: how to start a node, clients, the primary.
    """

    cluster: Cluster

    def node_names(self) -> tuple[str, ...]:
        return self.cluster.names()

    def kill(self, node: str, *, wait: bool = True) -> bool:
        return self.cluster.kill(node, wait=wait)

    def pause(self, node: str) -> bool:
        return self.cluster.pause(node)

    def resume(self, node: str) -> bool:
        return self.cluster.resume(node)

    def is_running(self, node: str) -> bool:
        return self.cluster.is_running(node)

    def stop_all(self) -> list[str]:
        """Stop every node; what was done, for the teardown record."""
        return [f"stopped {name}" for name in self.cluster.stop_all()]
