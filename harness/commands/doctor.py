"""``ratchet doctor``: which faults this machine can inject, and how to enable the rest."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console
from rich.table import Table

ORDER = 30


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "doctor",
        help="which faults this machine can inject, and how to enable the rest",
        description="Probe namespaces, nftables/iptables, signals, libfaketime, FUSE and "
        "docker by actually trying them, then list each fault kind as available or not "
        "with what to do.",
    )
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from harness.capabilities import FAULT_NEEDS, fault_refusal, probe_all

    caps = probe_all()
    console = Console()
    table = Table(title="what this machine provides")
    for column in ("capability", "ok", "detail", "to enable"):
        table.add_column(column)
    for cap in caps.values():
        table.add_row(
            cap.name,
            "[green]yes[/]" if cap.available else "[red]no[/]",
            cap.detail,
            "" if cap.available else cap.how_to_enable,
        )
    console.print(table)
    faults = Table(title="faults on the local cluster")
    for column in ("fault", "injectable", "why not"):
        faults.add_column(column)
    injectable = 0
    for fault in FAULT_NEEDS:
        reason = fault_refusal(fault, caps)
        injectable += reason is None
        faults.add_row(fault, "[green]yes[/]" if reason is None else "[red]no[/]", reason or "")
    console.print(faults)
    if not caps["namespaces"].available:
        console.print(
            "[bold red]ratchet run cannot work here:[/] it needs private namespaces. "
            + caps["namespaces"].how_to_enable
        )
        return 2
    console.print(f"{injectable} of {len(FAULT_NEEDS)} fault kinds can be injected here.")
    return 0
