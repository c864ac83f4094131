"""Nodes on remote hosts over SSH (paramiko): :class:`SSHCluster`, its probe and its cleaner.

``create`` and ``probe`` turn a scenario's ``[cluster]`` table into a logged-in
cluster or the hosts' capabilities; a host that cannot be reached, refuses the
login or lacks what the scenario needs is bad input (exit 3) with the reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from clusters.ssh.connection import Login, SSHError
from core.errors import BadInput

if TYPE_CHECKING:
    from clusters.ssh.cluster import SSHCluster
    from core.scenario import Test


def login_for(test: Test) -> Login:
    spec = test.cluster_spec
    return Login(
        username=spec.username,
        port=spec.ssh_port,
        private_key=spec.private_key,
        known_hosts=spec.known_hosts,
        strict_host_keys=spec.strict_host_keys,
        sudo=spec.sudo,
    )


def create(test: Test, *, run_dir: Path) -> SSHCluster:
    from clusters.ssh.cluster import SSHCluster

    try:
        return SSHCluster(
            test.cluster_spec.hosts,
            login_for(test),
            run_dir=run_dir,
            remote_dir=test.cluster_spec.remote_dir,
            keep_data=test.keep_data,
        )
    except SSHError as exc:
        raise BadInput(f"cannot set up the ssh cluster: {exc}.", where="cluster.hosts") from None


def probe(test: Test) -> dict[str, Any]:
    from clusters.ssh.probe import NOT_ON_SSH, probe_hosts

    for fault in test.nemesis.faults:
        if fault in NOT_ON_SSH:
            raise BadInput(
                f"cannot run this scenario on the ssh home: {NOT_ON_SSH[fault]}; run {fault!r} on the "
                "local or docker home.",
                where="nemesis.faults",
            )
    try:
        caps = probe_hosts(test.cluster_spec.hosts, login_for(test))
    except SSHError as exc:
        raise BadInput(f"cannot reach the ssh hosts: {exc}.", where="cluster.hosts") from None
    python = caps.pop("python", None)
    if python is not None:
        raise BadInput(f"cannot run nodes on these hosts: {python.detail}.", where="cluster.hosts")
    return caps
