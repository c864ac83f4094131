"""``ratchet clean``: remove what crashed runs left behind.

Without ``--ssh``: docker objects (containers, networks, untagged image layers) with
Ratchet's labels whose controller is gone, and a disk run's faultfs daemons and
mounts on this host (clusters.docker.leftovers): a docker run
removes its own on Ctrl-C and SIGTERM, a SIGKILLed one cannot. ``--image`` also
removes the cached node image.

``--ssh --nodes h1,h2,...``: on each host, every run directory under the remote
directory whose controller is gone (clusters.ssh.clean): the node's process group,
the run's packet-filter table or chains, the directory itself. A run still in
progress on this machine is kept unless ``--all``.
"""

from __future__ import annotations

import argparse
from typing import Any

from core.errors import BadInput

ORDER = 62


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "clean",
        help="remove what crashed runs left: docker containers/networks/layers (ssh hosts: --ssh --nodes ...)",
        description="Remove what runs killed with SIGKILL left behind: by default every docker container, network "
        "and untagged image layer with Ratchet's labels whose controller is gone (and a disk run's faultfs "
        "daemons and mounts on this host). With --ssh: on each host of --nodes, "
        "every run directory of Ratchet's under --remote-dir whose controller is gone, with its process "
        "group and packet-filter rules.",
    )
    parser.add_argument("--all", action="store_true", help="also remove leftovers of runs still in progress")
    parser.add_argument("--dry-run", action="store_true", help="say what would be removed, remove nothing")
    parser.add_argument("--image", action="store_true", help="docker: also remove the cached node image")
    add_ssh_arguments(parser)
    parser.set_defaults(handler=handle)


def add_ssh_arguments(parser: argparse.ArgumentParser) -> None:
    ssh = parser.add_argument_group("ssh hosts")
    ssh.add_argument("--ssh", action="store_true", help="clean ssh hosts (--nodes)")
    ssh.add_argument(
        "--nodes", metavar="HOSTS", help="comma-separated hosts, as given to ratchet run --nodes"
    )
    ssh.add_argument("--username", help="login name (default root)")
    ssh.add_argument("--ssh-private-key", metavar="PATH", help="private key file")
    ssh.add_argument("--ssh-port", type=int, metavar="PORT", help="SSH port (default 22)")
    ssh.add_argument("--sudo", action="store_true", help="run the removal through sudo -n")
    ssh.add_argument("--known-hosts", metavar="PATH", help="known_hosts file (default ~/.ssh/known_hosts)")
    ssh.add_argument(
        "--strict-host-key-checking",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="refuse hosts whose key is not in known_hosts (default: refuse)",
    )
    ssh.add_argument(
        "--remote-dir", default="/tmp/ratchet", help="the runs' directory on the hosts (default /tmp/ratchet)"
    )


def handle(args: argparse.Namespace) -> int:
    if args.ssh:
        return handle_ssh(args)
    return handle_docker(args)


def handle_docker(args: argparse.Namespace) -> int:
    from rich.console import Console

    from clusters.docker import leftovers
    from clusters.docker.cluster import client_from_env

    console = Console(soft_wrap=True, highlight=False)
    client = client_from_env()
    found = leftovers.find(client, live_too=args.all, cached_image=args.image)
    if not found:
        console.print("nothing to clean: no docker objects of Ratchet's left by crashed runs")
        return 0
    if args.dry_run:
        console.print(f"would remove {found.describe()}")
        return 0
    for line in leftovers.remove(client, found):
        console.print(line)
    return 0


def handle_ssh(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape

    from clusters.ssh import clean
    from clusters.ssh.connection import SSHError

    hosts = [h.strip() for h in (args.nodes or "").split(",") if h.strip()]
    if not hosts:
        raise BadInput("--ssh needs the hosts to clean: --nodes h1,h2,...", where="--nodes")
    if not args.remote_dir.startswith("/"):
        raise BadInput(
            f"--remote-dir must be an absolute path, not {args.remote_dir!r}.", where="--remote-dir"
        )
    login = clean.default_login(
        username=args.username,
        private_key=args.ssh_private_key,
        port=args.ssh_port,
        sudo=args.sudo,
        strict_host_keys=args.strict_host_key_checking,
        known_hosts=args.known_hosts,
    )
    console = Console(soft_wrap=True, highlight=False)
    try:
        found = clean.find(hosts, login, args.remote_dir, live_too=args.all)
        if not found:
            console.print(
                f"nothing to clean: no run directories of Ratchet's under {escape(args.remote_dir)} on {len(hosts)} host(s)"
            )
            return 0
        if args.dry_run:
            for item in found:
                console.print(f"would remove {escape(item.describe())}")
            return 0
        for line in clean.remove(found, login):
            console.print(escape(line))
    except SSHError as exc:
        raise BadInput(f"cannot clean the ssh hosts: {exc}.", where="--nodes") from None
    return 0
