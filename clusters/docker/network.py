"""The run's own bridge network: a private /24 that collides with nothing this host routes.

Candidates are the /24s of 10.213.0.0/16, starting at one derived from the run id
(two runs at once usually start apart); a candidate is skipped when it overlaps
a route of the host (``/proc/net/route``: interfaces, VPNs, other bridges) or the
subnet of an existing docker network. docker refuses an overlapping pool itself,
so two runs racing for one subnet end with one of them moving on to the next.
The gateway (``.1``) is the host's end of the bridge: the controller's clients
reach the nodes from it. Node ``i`` gets ``.(i + 2)``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

POOL = ipaddress.ip_network("10.213.0.0/16")
ATTEMPTS = 16


def host_routes() -> list[ipaddress.IPv4Network]:
    """The host's IPv4 routes except the default route."""
    routes = []
    try:
        lines = Path("/proc/net/route").read_text().splitlines()[1:]
    except OSError:
        return routes
    for line in lines:
        fields = line.split()
        if len(fields) < 8:
            continue
        dest = socket.inet_ntoa(struct.pack("<L", int(fields[1], 16)))
        mask = socket.inet_ntoa(struct.pack("<L", int(fields[7], 16)))
        network = ipaddress.ip_network(f"{dest}/{mask}", strict=False)
        if network.prefixlen > 0:
            routes.append(network)
    return routes


def docker_subnets(client: Any) -> list[ipaddress.IPv4Network]:
    found = []
    for network in client.networks.list():
        for config in (network.attrs.get("IPAM") or {}).get("Config") or []:
            subnet = config.get("Subnet")
            if subnet and ":" not in subnet:
                found.append(ipaddress.ip_network(subnet, strict=False))
    return found


def candidates(run_id: str, taken: list[ipaddress.IPv4Network]) -> Iterator[ipaddress.IPv4Network]:
    subnets = list(POOL.subnets(new_prefix=24))
    start = int.from_bytes(hashlib.sha256(run_id.encode()).digest()[:4], "big") % len(subnets)
    for offset in range(len(subnets)):
        subnet = subnets[(start + offset) % len(subnets)]
        if not any(subnet.overlaps(other) for other in taken):
            yield subnet


def node_address(subnet: ipaddress.IPv4Network, index: int) -> str:
    return str(subnet.network_address + index + 2)


def gateway(subnet: ipaddress.IPv4Network) -> str:
    return str(subnet.network_address + 1)
