"""``ratchet campaign``: many scenarios x seeds, unattended, one exit code, JUnit and JSON for CI.

``ratchet campaign FILE|NAME [--seeds N] [--time-budget S] [--jobs J] [--shard I/N] [--store DIR]``
runs the matrix; ``ratchet campaign merge DIR... [--out DIR]`` joins the shards that CI runners
ran apart. The campaign directory is ``<store>/campaigns/<name>/<stamp>/``: campaign.json,
junit.xml, and each run's own store under ``runs/<cell id>/``.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from typing import Any

from rich.markup import escape

from core.errors import BadInput

ORDER = 15
HEARTBEAT_S = 15.0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "campaign",
        help="run scenarios x seeds unattended (CI): campaign.json, JUnit XML, one exit code",
        description="Run every scenario x seed of a campaign file (or a shipped campaign: nightly, smoke, "
        "selftest), each as its own `ratchet run`. `ratchet campaign merge DIR...` joins shards. "
        "Exit: 1 if a run found an anomaly (or missed a planted bug it expected), else 2 if a run was "
        "unknown or the campaign was interrupted, else 0; 3 for a bad campaign file.",
    )
    parser.add_argument(
        "target", nargs="+", metavar="CAMPAIGN", help="campaign file or name; or: merge DIR..."
    )
    count = parser.add_mutually_exclusive_group()
    count.add_argument("--seeds", type=int, metavar="N", help="seeds per run entry (overrides the file)")
    count.add_argument("--test-count", type=int, metavar="N", help="the same as --seeds (Jepsen's name)")
    parser.add_argument(
        "--seed-base", type=int, metavar="S", help="first seed (overrides the file; default 1)"
    )
    parser.add_argument("--time-budget", type=float, metavar="S", help="start no new run after S seconds")
    parser.add_argument("--jobs", type=int, default=1, metavar="J", help="runs side by side (default 1)")
    parser.add_argument("--shard", metavar="I/N", help="run only shard I of N (stable across machines)")
    parser.add_argument("--store", default="store", help="store directory (default: store)")
    parser.add_argument("--out", metavar="DIR", help="merge: where the merged campaign goes")
    parser.add_argument("--list", action="store_true", help="print the matrix (this shard's cells) and exit")
    parser.set_defaults(handler=handle)


def campaign_dir_for(store: Path, name: str, shard: tuple[int, int]) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    suffix = f"-shard{shard[0]}of{shard[1]}" if shard[1] > 1 else ""
    base = store / "campaigns" / name
    path = base / f"{stamp}{suffix}"
    n = 1
    while path.exists():
        n += 1
        path = base / f"{stamp}{suffix}-{n}"
    return path


def _console() -> Any:
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True, highlight=False)


def _line(record: Any) -> str:
    style = {"pass": "green", "fail": "bold red", "error": "yellow", "skipped": "dim"}[record.outcome]
    verdict = record.verdict.upper()
    what = f"{record.id}: [{style}]{verdict}[/]"
    if record.expect == "anomaly":
        what += " (bug found)" if record.verdict == "anomaly" else " (planted bug NOT found)"
    detail = record.anomaly or record.reason
    if detail:
        what += f" - {escape(detail)}"
    what += f"  ops {record.ok}/{record.fail}/{record.info} ok/fail/info, {record.duration_s:.0f} s"
    if record.outcome in ("fail", "error"):
        what += f"\n    reproduce: {escape(record.reproduce)}"
    return what


def _validate_numbers(args: argparse.Namespace) -> None:
    if args.jobs < 1 or args.jobs > 64:
        raise BadInput(f"--jobs must be from 1 to 64, not {args.jobs}.", where="--jobs")
    if args.time_budget is not None and not args.time_budget > 0:
        raise BadInput(
            f"--time-budget must be a number of seconds above 0, not {args.time_budget}.",
            where="--time-budget",
        )
    for flag, value in (("--seeds", args.seeds), ("--test-count", args.test_count)):
        if value is not None and value < 1:
            raise BadInput(f"{flag} must be at least 1, not {value}.", where=flag)


def handle(args: argparse.Namespace) -> int:
    if args.target[0] == "merge":
        return handle_merge(args.target[1:], out=args.out, store=Path(args.store))
    if len(args.target) != 1:
        raise BadInput(
            f"one campaign at a time (got {len(args.target)}: {' '.join(args.target)}); "
            "to join shards use `ratchet campaign merge DIR...`.",
            where="ratchet campaign",
        )
    _validate_numbers(args)
    from harness.campaigns.shipped import load
    from harness.campaigns.spec import parse_shard
    from harness.campaigns.spec import shard as take_shard

    shard = parse_shard(args.shard) if args.shard else (1, 1)
    campaign = load(args.target[0], seeds=args.seeds or args.test_count, seed_base=args.seed_base)
    if args.list:
        for cell in take_shard(campaign.matrix(), *shard):
            print(f"{cell.id}\t{' '.join(cell.run_argv(store=Path(args.store)))}")
        return 0
    code, _ = run_campaign(
        campaign,
        store=Path(args.store),
        jobs=args.jobs,
        shard=shard,
        time_budget_s=args.time_budget,
        console=_console(),
    )
    return code


def run_campaign(
    campaign: Any,
    *,
    store: Path,
    jobs: int,
    shard: tuple[int, int],
    time_budget_s: float | None,
    console: Any,
) -> tuple[int, Path]:
    """Run this shard of the campaign; the exit code and the campaign directory."""
    from harness.campaigns import artifacts
    from harness.campaigns.execute import Execution, execute
    from harness.campaigns.spec import shard as take_shard

    matrix = campaign.matrix()
    cells = take_shard(matrix, *shard)
    if store.exists() and not store.is_dir():
        raise BadInput("the store must be a directory; this is a file.", where=f"--store {store}")
    campaign_dir = campaign_dir_for(store, campaign.name, shard)
    campaign_dir.mkdir(parents=True)
    started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    execution = Execution()
    previous = {
        sig: signal.signal(sig, lambda signum, _f: execution.interrupt(signal.Signals(signum).name))
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    }
    console.print(
        f"[bold]ratchet campaign[/] {campaign.name}: {len(cells)} of {len(matrix)} runs"
        + (f" (shard {shard[0]}/{shard[1]})" if shard[1] > 1 else "")
        + f", {jobs} at a time -> {escape(str(campaign_dir))}"
    )

    def on_record(record: Any) -> None:
        console.print(_line(record))

    def on_heartbeat(done: int, running: int, elapsed_s: float) -> None:
        console.print(
            f"[dim]campaign {campaign.name}: {done}/{len(cells)} done, {running} running, {elapsed_s:.0f} s[/]"
        )

    try:
        records = execute(
            cells,
            campaign_dir=campaign_dir,
            jobs=jobs,
            time_budget_s=time_budget_s,
            execution=execution,
            on_record=on_record,
            on_heartbeat=on_heartbeat,
            heartbeat_s=HEARTBEAT_S,
        )
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    interrupted = execution.interrupted_by is not None
    document = artifacts.campaign_document(
        campaign=campaign,
        records=records,
        shard=shard,
        matrix_size=len(matrix),
        started_at=started_at,
        argv=sys.argv,
        interrupted=interrupted,
    )
    artifacts.write_artifacts(document, campaign_dir)
    _update_index(store, console)
    counts = document["counts"]
    console.print(
        f"[bold]campaign {campaign.name}[/]: {counts['pass']} passed, {counts['fail']} failed, "
        f"{counts['error']} unknown, {counts['skipped']} skipped"
        + (f" ({execution.interrupted_by}: stopped early)" if interrupted else "")
        + f"; exit {document['exit_code']}\n  {escape(str(campaign_dir / artifacts.CAMPAIGN_JSON))}"
        + f"\n  {escape(str(campaign_dir / artifacts.JUNIT_XML))}"
    )
    return int(document["exit_code"]), campaign_dir


def _update_index(store: Path, console: Any) -> None:
    try:
        from reports.campaigns import write_campaigns_index
        from reports.index import write_index

        write_campaigns_index(store)
        write_index(store)
    except Exception as exc:  # the index is a convenience: its failure is reported beside the result
        console.print(f"[yellow]index not updated:[/] {escape(f'{type(exc).__name__}: {exc}')}")


def handle_merge(dirs: list[str], *, out: str | None, store: Path) -> int:
    from harness.campaigns import artifacts

    if not dirs:
        raise BadInput("merge needs the campaign directories of the shards: ratchet campaign merge DIR...")
    paths = [Path(d) for d in dirs]
    for path in paths:
        if not path.is_dir():
            raise BadInput("not a directory.", where=str(path))
    first = artifacts.read_document(paths[0])
    out_dir = (
        Path(out)
        if out
        else campaign_dir_for(store, str(first["campaign"]), (1, 1)).with_name(
            time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-merged"
        )
    )
    merged = artifacts.merge(paths, out_dir)
    console = _console()
    _update_index(store, console)
    counts = merged["counts"]
    console.print(
        f"merged {len(paths)} shard(s) of {merged['campaign']}: {len(merged['runs'])} of {merged['matrix_size']} "
        f"runs ({counts['pass']} passed, {counts['fail']} failed, {counts['error']} unknown, "
        f"{counts['skipped']} skipped, {merged['missing_cells']} missing) -> {escape(str(out_dir))}; exit {merged['exit_code']}"
    )
    return int(merged["exit_code"])
