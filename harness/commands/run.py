"""``ratchet run``: one real fault-injection run against a local VR cluster.

Everything a user can get wrong is validated first (exit 3, nothing started).
Then the controller moves into private namespaces (clusters.namespace), so the
nodes, their firewall rules and mounts die with it whatever happens, and the
run itself is :func:`harness.session.execute`.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path
from typing import Any

from core.errors import BadInput

ORDER = 10

FLAG_KEYS: dict[str, tuple[str, str]] = {
    "cluster": ("cluster", "kind"),
    "bug": ("cluster", "bug"),
    "username": ("cluster", "username"),
    "ssh_private_key": ("cluster", "private_key"),
    "ssh_port": ("cluster", "ssh_port"),
    "sudo": ("cluster", "sudo"),
    "strict_host_key_checking": ("cluster", "strict_host_keys"),
    "image": ("cluster", "image"),
    "keys": ("workload", "keys"),
    "rate": ("workload", "rate"),
    "clients": ("workload", "clients"),
    "nemesis_interval": ("nemesis", "interval_s"),
    "time_limit": ("run", "time_limit_s"),
    "concurrency": ("run", "concurrency"),
    "seed": ("run", "seed"),
    "recovery": ("run", "recovery_s"),
    "store": ("run", "store"),
    "keep_data": ("run", "keep_data"),
}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run a scenario: provision a local VR cluster, drive clients, inject faults, check",
        description="Provision a local VR cluster in private namespaces, drive a workload, inject faults, "
        "record the history, check it and store the run under store/<scenario>/<time>/. "
        "Exit 0 valid, 1 anomaly, 2 unknown / could not complete, 3 bad input.",
    )
    parser.add_argument(
        "scenario", nargs="?", help="scenario name (see `ratchet scenarios`) or path to a .toml"
    )
    parser.add_argument("--nemesis", help="fault kinds, comma-separated: partition,loss,pause,kill (or none)")
    parser.add_argument("--nemesis-interval", type=float, metavar="S", help="seconds between fault changes")
    parser.add_argument("--grudges", help="partition shapes, comma-separated (one,primary,majority,...)")
    parser.add_argument("--time-limit", type=float, metavar="S", help="length of the main phase in seconds")
    parser.add_argument("--concurrency", type=int, help="client threads")
    parser.add_argument("--rate", type=float, help="target ops/s over all clients (0 = unlimited)")
    parser.add_argument("--keys", type=int, help="independent registers")
    parser.add_argument(
        "--clients",
        metavar="ROUTE",
        help="where requests go first: primary (default) or nodes (client p bound to node p mod N, Jepsen-style)",
    )
    parser.add_argument("--cluster", metavar="KIND", help="where nodes run: local (default), docker, ssh")
    parser.add_argument(
        "--nodes",
        metavar="N|HOSTS",
        help="replica count, or the hosts to run on, comma-separated (ssh: --nodes n1,n2,n3)",
    )
    parser.add_argument("--username", help="ssh: login name on the hosts (default root)")
    parser.add_argument("--ssh-private-key", metavar="PATH", help="ssh: private key file")
    parser.add_argument(
        "--ssh-port", type=int, metavar="PORT", help="ssh: sshd port on every host (default 22)"
    )
    parser.add_argument("--sudo", action="store_true", default=None, help="ssh: run commands through sudo")
    parser.add_argument(
        "--strict-host-key-checking",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="ssh: refuse hosts whose key is not in known_hosts (default: on; --no-... accepts unknown keys)",
    )
    parser.add_argument(
        "--image", help="docker: node image tag (default: the one `ratchet image build` makes)"
    )
    parser.add_argument("--seed", type=int, help="seed of every random choice (default: random, recorded)")
    parser.add_argument("--bug", help="run the nodes with this planted bug (python -m vr.node --list-bugs)")
    parser.add_argument(
        "--recovery", type=float, metavar="S", help="how long to wait for recovery after healing"
    )
    parser.add_argument("--store", help="store directory (default: store)")
    parser.add_argument(
        "--keep-data",
        metavar="WHEN",
        help="keep node data files after the run: always, on-failure (default), never",
    )
    parser.add_argument("--replay", metavar="RUN_DIR", help="re-run a stored run's scenario with its seed")
    parser.add_argument("--no-progress", action="store_true", help="no live display (logs only)")
    parser.set_defaults(handler=handle)


def overrides_from_args(
    args: argparse.Namespace,
) -> tuple[dict[tuple[str, str], Any], dict[tuple[str, str], str]]:
    overrides: dict[tuple[str, str], Any] = {}
    flags: dict[tuple[str, str], str] = {}
    for attr, where in FLAG_KEYS.items():
        value = getattr(args, attr, None)
        if value is not None:
            overrides[where] = value
            flags[where] = "--" + attr.replace("_", "-")
    from core.scenario import parse_fault_list

    if args.nodes is not None:
        text = args.nodes.strip()
        if text.isdigit():
            overrides[("cluster", "nodes")] = int(text)
        else:
            hosts = parse_host_list(text)
            overrides[("cluster", "hosts")] = hosts
            overrides[("cluster", "nodes")] = len(hosts)
            flags[("cluster", "hosts")] = "--nodes"
        flags[("cluster", "nodes")] = "--nodes"
    if args.nemesis is not None:
        overrides[("nemesis", "faults")] = parse_fault_list(args.nemesis, flag="--nemesis")
        flags[("nemesis", "faults")] = "--nemesis"
    if args.grudges is not None:
        overrides[("nemesis", "grudges")] = parse_fault_list(args.grudges, flag="--grudges")
        flags[("nemesis", "grudges")] = "--grudges"
    return overrides, flags


def parse_host_list(text: str) -> list[str]:
    """``--nodes n1,n2,n3``: the hosts, in node order (validated with the scenario)."""
    hosts = [part.strip() for part in text.split(",")]
    if not all(hosts):
        raise BadInput(
            f"--nodes wants a replica count or hosts separated by commas (n1,n2,n3), not {text!r}.",
            where="--nodes",
        )
    return hosts


def resolve_test(args: argparse.Namespace) -> Any:
    """The validated Test for these arguments (BadInput otherwise). Probes only what the faults need."""
    from core.scenario import (
        Test,
        build_test,
        check_capabilities,
        merge_overrides,
        read_table,
        resolve_scenario_path,
    )
    from harness import capabilities

    if args.replay:
        from harness.store import read_test_json

        run_path = Path(args.replay)
        if not (run_path / "test.json").is_file():
            raise BadInput(f"{args.replay!r} is not a stored run (no test.json in it).", where="--replay")
        try:
            test = Test.from_json(read_test_json(run_path)["test"])
        except (KeyError, TypeError, ValueError, RecursionError) as exc:
            raise BadInput(
                f"cannot read the stored test: {exc}.", where=str(run_path / "test.json")
            ) from None
        if args.store:
            from dataclasses import replace

            test = replace(test, store_dir=args.store)
        from core.scenario import revalidate
        from vr.bugs import BUGS

        return revalidate(test, where=str(run_path / "test.json"), known_bugs=tuple(BUGS))
    path = resolve_scenario_path(args.scenario)
    overrides, flags = overrides_from_args(args)
    data = merge_overrides(read_table(path), overrides)
    from vr.bugs import BUGS

    # Validate the input first (exit 3), then ask the machine (namespaces: exit 2; a fault it
    # cannot inject: exit 3, the scenario asks for something this machine cannot do).
    test = build_test(
        data,
        source=str(path),
        seed_if_absent=random.SystemRandom().randrange(1 << 31),
        flag_names=flags,
        known_bugs=tuple(BUGS),
        check_store=True,
    )
    if test.cluster != "local":  # the home asks its own containers or hosts
        import clusters

        check_capabilities(test, clusters.probe(test), where=flags.get(("nemesis", "faults"), str(path)))
        return test
    namespaces = capabilities.probe_namespaces()
    if not namespaces.available:
        raise NoNamespaces(f"{namespaces.detail}. To enable: {namespaces.how_to_enable}")
    caps = {"signals": capabilities.probe_signals(), "namespaces": namespaces}
    if set(test.nemesis.faults) & {"partition", "primary-chain", "loss", "corrupt"}:
        caps["packet-filter"] = capabilities.probe_packet_filter()
    if "clock" in test.nemesis.faults:
        caps["libfaketime"] = capabilities.probe_faketime()
    if "messages" in test.nemesis.faults:
        caps["message-proxy"] = capabilities.probe_message_proxy()
    if set(test.nemesis.faults) & {"disk", "power-cut"}:
        caps["fuse"] = capabilities.probe_fuse()
    if "dm-flakey" in test.nemesis.faults:
        caps["dm-flakey"] = capabilities.probe_dm_flakey()
    check_capabilities(test, caps, where=flags.get(("nemesis", "faults"), str(path)))
    return test


class NoNamespaces(Exception):
    """This machine cannot give the run private namespaces (exit 2: nothing the scenario can fix)."""


def _error(paragraph: str) -> None:
    """One paragraph on stderr; a system message's ``[Errno 1]`` is text, not Rich markup."""
    from rich.console import Console
    from rich.text import Text

    Console(stderr=True, soft_wrap=True).print(Text("error: ", style="bold red") + Text(paragraph))


def handle(args: argparse.Namespace) -> int:
    try:
        test = resolve_test(args)
    except NoNamespaces as exc:
        _error(f"ratchet run needs private namespaces: {exc}")
        return 2
    from clusters import namespace
    from harness import session

    if test.cluster == "local":  # other homes' nodes live outside this machine's namespaces
        try:
            namespace.enter()
        except namespace.NamespaceUnavailable as exc:
            _error(f"{exc} (`ratchet doctor` shows what this machine can do)")
            return 2
    from harness.progress import HEARTBEAT_S

    terminal = sys.stderr.isatty()
    return session.execute(
        test,
        argv=recorded_argv(sys.argv, args),
        progress=not args.no_progress and terminal,
        heartbeat_s=None if terminal or args.no_progress else HEARTBEAT_S,
    )


def recorded_argv(argv: list[str], args: argparse.Namespace) -> list[str]:
    """The command line as test.json records it: ``--replay`` names the run directory itself.

    ``--replay store/latest`` would name another run tomorrow; the resolved
    directory is the run that was replayed, for good.
    """
    if not args.replay:
        return list(argv)
    target = str(Path(args.replay).resolve())
    out: list[str] = []
    replace_next = False
    for part in argv:
        if replace_next:
            out.append(target)
            replace_next = False
        elif part == "--replay":
            out.append(part)
            replace_next = True
        elif part.startswith("--replay="):
            out.append(f"--replay={target}")
        else:
            out.append(part)
    return out
