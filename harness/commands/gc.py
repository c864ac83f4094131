"""``ratchet gc``: free the store of node data files no one will look at again.

Only each node's ``data`` directory is removed; histories, results, reports,
logs and node events stay, so every report still opens and every run can
still be re-checked and replayed from its seed.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from core.errors import BadInput

ORDER = 60


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "gc",
        help="remove node data files of old runs (histories, results, reports and logs are kept)",
        description="Remove the node data directories of runs beyond the newest --keep runs that still have "
        "data, or older than --older-than (e.g. 7d, 12h). Histories, results, reports and logs are kept.",
    )
    parser.add_argument("--store", default="store", help="store directory (default: store)")
    parser.add_argument(
        "--keep", type=int, metavar="N", help="keep the data of the newest N runs that have it"
    )
    parser.add_argument(
        "--older-than", metavar="AGE", help="remove the data of runs older than AGE (30m, 12h, 7d)"
    )
    parser.add_argument("--dry-run", action="store_true", help="say what would be removed, remove nothing")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape

    from harness.retention import delete_data, parse_age_s, plan

    if args.keep is None and args.older_than is None:
        raise BadInput("say what to keep: --keep N and/or --older-than AGE (e.g. --keep 20 --older-than 7d).")
    if args.keep is not None and args.keep < 0:
        raise BadInput(f"--keep must be 0 or more, not {args.keep}.", where="--keep")
    older_than_s = parse_age_s(args.older_than) if args.older_than is not None else None
    store = Path(args.store)
    if not store.is_dir():
        raise BadInput("no store here (not a directory).", where=f"--store {store}")
    console = Console(soft_wrap=True, highlight=False)
    doomed = plan(store, keep=args.keep, older_than_s=older_than_s)
    freed = 0
    for run in doomed:
        if not args.dry_run:
            delete_data(run)
        freed += run.bytes
        console.print(
            f"{'would remove' if args.dry_run else 'removed'} node data of {escape(str(run.run))} ({run.bytes / 1e6:.1f} MB)"
        )
    console.print(
        f"{len(doomed)} run(s), {freed / 1e6:.1f} MB {'would be ' if args.dry_run else ''}freed; "
        "histories, results, reports and logs kept"
    )
    return 0
