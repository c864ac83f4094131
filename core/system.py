"""The system under test, as the runner and the nemeses see it (Jepsen's ``DB``).

Kept small on purpose so a second system (etcd, later) plugs in without
touching the runner or the nemeses: lifecycle of the whole cluster (``setup``,
``teardown``), of one node (``start``, ``kill``, ``pause``, ``resume``), where
a node's files are, a client factory, and who the primary is. The network is
not here: partitions and loss act on the cluster's firewall, whatever runs on
the nodes.

Clients raise exactly two exceptions, which carry Jepsen's op model:
:class:`OpFailed` (the op definitely did not happen: ``fail``) and
:class:`OpIndeterminate` (it may or may not have: ``info``). Anything else a
client raises is treated as ``info`` too (we cannot know), and logged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol


class OpFailed(Exception):
    """Definitely not applied (and never will be), e.g. a cas whose old value did not match."""

    def __init__(self, error: str, *, value: Any = None) -> None:
        super().__init__(error)
        self.error = error
        self.value = value


class OpIndeterminate(Exception):
    """Unknown outcome: timed out or connection lost after the request was sent."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


class Client(Protocol):
    """A register client bound to one logical process (one outstanding request)."""

    def read(self, key: str) -> Any: ...
    def write(self, key: str, value: Any) -> Any: ...
    def cas(self, key: str, old: Any, new: Any) -> Any: ...
    def close(self) -> None: ...

    @property
    def last_node(self) -> str | None: ...


class AppendClient(Client, Protocol):
    """A client of a system whose values can be lists grown by ``append`` (the append workload)."""

    def append(self, key: str, value: Any) -> Any: ...


class System(Protocol):
    name: str

    def node_names(self) -> tuple[str, ...]: ...
    def setup(self) -> None: ...
    def start(self, node: str) -> None: ...
    def kill(self, node: str) -> bool: ...
    def pause(self, node: str) -> bool: ...
    def resume(self, node: str) -> bool: ...
    def is_running(self, node: str) -> bool: ...
    def node_files(self, node: str) -> dict[str, Path]: ...
    def open_client(self, *, process: int, seed: int) -> Client: ...
    def primary(self) -> str | None: ...
    def wait_healthy(self, *, timeout_s: float) -> bool: ...
    def teardown(self, *, keep_data: bool) -> list[str]: ...
