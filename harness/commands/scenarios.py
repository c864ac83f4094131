"""``ratchet scenarios``: the named scenarios under scenarios/, one line each."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console
from rich.table import Table

from core.errors import BadInput

ORDER = 20


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "scenarios",
        help="list the named scenarios with one-line descriptions",
        description="List scenarios/*.toml: name, nodes, faults, length, description.",
    )
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from core.scenario import SCENARIO_DIR, build_test, read_table

    table = Table(title=f"scenarios in {SCENARIO_DIR}", show_lines=False)
    for column in ("name", "nodes", "faults", "time"):
        table.add_column(column, no_wrap=True)
    table.add_column("description")
    problems = []
    for path in sorted(SCENARIO_DIR.glob("*.toml")):
        try:
            test = build_test(read_table(path), source=str(path), seed_if_absent=0)
        except BadInput as exc:
            problems.append(exc.paragraph())
            continue
        table.add_row(
            path.stem,
            str(test.nodes),
            ",".join(test.nemesis.faults) or "none",
            f"{test.time_limit_s:.0f} s",
            test.description,
        )
    console = Console()
    console.print(table)
    console.print("run one with: ratchet run NAME   (or ratchet run path/to/file.toml)")
    if problems:
        raise BadInput("malformed scenario file(s): " + " | ".join(problems))
    return 0
