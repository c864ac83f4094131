"""Fixtures for the ssh home's tests: real sshd hosts in network namespaces (tests.clusters.sshhosts)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clusters.sshhosts import SSHHosts, available, sudo_available

SUDO_USER = "rtuser"  # the non-root login of ``sudo_hosts``


@pytest.fixture(scope="module")
def ssh_hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSHHosts]:
    reason = available()
    if reason:
        pytest.skip(f"ssh test hosts unavailable: {reason}")
    hosts = SSHHosts(3, tmp_path_factory.mktemp("sshhosts")).start()
    try:
        yield hosts
    finally:
        hosts.close()


@pytest.fixture(scope="module")
def sudo_hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSHHosts]:
    """Three hosts whose login is a non-root account with passwordless sudo (``--sudo``)."""
    reason = sudo_available()
    if reason:
        pytest.skip(f"ssh test hosts with a sudo login unavailable: {reason}")
    hosts = SSHHosts(3, tmp_path_factory.mktemp("sudohosts"), user=SUDO_USER).start()
    try:
        yield hosts
    finally:
        hosts.close()


@pytest.fixture
def in_control(ssh_hosts: SSHHosts) -> Iterator[SSHHosts]:
    """This test's thread in the control namespace (where the bridge is), back out afterwards."""
    ssh_hosts.enter_control()
    try:
        yield ssh_hosts
    finally:
        ssh_hosts.leave_control()


def ssh_scenario(
    hosts: SSHHosts, path: Path, *, faults: list[str], time_limit_s: float, keep_data: str = "on-failure"
) -> Path:
    """A scenario file naming the test hosts (known_hosts and remote_dir have no flags)."""
    lines = [
        'name = "ssh-test"',
        'description = "the ssh home on test hosts"',
        "[cluster]",
        'kind = "ssh"',
        f"hosts = {json.dumps(hosts.addresses)}",
        f"username = {json.dumps(hosts.username)}",
        f"private_key = {json.dumps(str(hosts.key))}",
        f"known_hosts = {json.dumps(str(hosts.known_hosts))}",
        f"remote_dir = {json.dumps(hosts.remote_dir)}",
        "[workload]",
        "keys = 8",
        "rate = 200",
        "[nemesis]",
        f"faults = {json.dumps(faults)}",
        "interval_s = 2",
        "[run]",
        f"time_limit_s = {time_limit_s}",
        "concurrency = 5",
        f"keep_data = {json.dumps(keep_data)}",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path
