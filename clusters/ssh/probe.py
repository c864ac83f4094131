"""What the hosts can do for a scenario's faults, asked of every host before the run starts.

Each host is logged in to, its python3 checked (the node program needs 3.11+),
signals and /proc checked, and its packet filter exercised for real: one rule
applied in a throwaway table, read back from the kernel, healed and removed, as
``ratchet doctor`` does locally. Faults the ssh home cannot inject are refused
with the reason (exit 3) rather than attempted.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from clusters.firewall import FIREWALL_ENV, Drop, Endpoint, FirewallError
from clusters.ssh.connection import Host, Login, SSHError, connect, parallel
from clusters.ssh.firewall import host_firewall
from core.capability import Capability

PYTHON_CHECK = "import sys; print('%d.%d' % sys.version_info[:2]); sys.exit(sys.version_info < (3, 11))"

# What the ssh home does not do, and why (the capability names of core.capability.FAULT_NEEDS).
REFUSED = {
    "libfaketime": (
        "the ssh home does not inject clock faults: nemeses.clock steers each node's clock through "
        "control files in the controller's run directory, which a remote node cannot read",
        "run clock faults on the local or docker home",
    ),
    "fuse": (
        "the ssh home does not inject disk faults: the faultfs daemon and its control socket run "
        "beside the controller, not on the hosts",
        "run disk and power-cut faults on the local or docker home",
    ),
    "dm-flakey": ("the ssh home does not set up device-mapper targets on the hosts", ""),
    "message-proxy": (
        "the ssh home does not run the message proxy: it redirects replica links through the "
        "controller's own packet filter",
        "run message faults on the local home",
    ),
}

NOT_ON_SSH = {
    "corrupt": "the corrupt nemesis edits a stopped node's data file from the controller, and on the ssh "
    "home that file is on the node's host",
}


def _host_checks(host: Host, tag: str) -> dict[str, str]:
    """The problems of one host by capability (empty: all good)."""
    problems: dict[str, str] = {}
    python = host.run(["python3", "-c", PYTHON_CHECK], check=False, sudo=False)
    if python.code != 0:
        have = python.stdout.strip() or python.stderr.strip() or "no python3"
        problems["python"] = (
            f"{host.label}: the node program needs python3 >= 3.11 on the host (found {have})"
        )
    signals = host.run(["sh", "-c", 'kill -0 "$$" && test -r "/proc/$$/stat"'], check=False)
    if signals.code != 0:
        problems["signals"] = f"{host.label}: cannot signal or read /proc: {signals.stderr.strip()}"
    try:
        firewall = host_firewall(host, tag, os.environ.get(FIREWALL_ENV) or None)
        me = Endpoint("probe", host.address, 7100)
        other = Endpoint("other", "192.0.2.1", 7101)  # TEST-NET-1: no packet of the host goes there
        firewall.apply("partition", [Drop(me, other)])
        firewall.heal("partition")
        firewall.teardown()
        if not firewall.ruleset_empty_of_ours():
            problems["packet-filter"] = f"{host.label}: probe rules left after teardown"
    except (FirewallError, SSHError) as exc:
        problems["packet-filter"] = f"{host.label}: {exc}"
    return problems


def probe_hosts(hosts: Sequence[str], login: Login) -> dict[str, Capability]:
    """Capabilities shared by every host (one that lacks something makes it unavailable)."""
    tag = f"p{os.getpid() % 100000:05d}"

    def check(name: str) -> dict[str, str]:
        host = connect(name, login)
        try:
            return _host_checks(host, tag)
        finally:
            host.close()

    found = parallel(list(hosts), check)
    problems: dict[str, list[str]] = {}
    for host_problems in found.values():
        for need, text in host_problems.items():
            problems.setdefault(need, []).append(text)
    where = f"on {len(hosts)} host(s)"
    caps = {
        "namespaces": Capability(
            "namespaces", True, "each node has a host of its own: the hosts are the run's"
        ),
        "signals": Capability(
            "signals", "signals" not in problems, "; ".join(problems.get("signals", [])) or where
        ),
        "packet-filter": Capability(
            "packet-filter",
            "packet-filter" not in problems,
            "; ".join(problems.get("packet-filter", []))
            or f"nft/iptables rule applied and read back {where}",
            "apply a rule with sudo (--sudo) or log in as root; install nftables on the hosts",
        ),
    }
    for name, (detail, how) in REFUSED.items():
        caps[name] = Capability(name, False, detail, how)
    if "python" in problems:
        caps["python"] = Capability("python", False, "; ".join(problems["python"]))
    return caps
