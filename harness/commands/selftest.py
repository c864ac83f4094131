"""``ratchet selftest``: the harness proves it still finds bugs.

Runs the shipped ``selftest`` campaign: each planted bug with the scenario
that should expose it, on several seeds, and the correct cluster on the same
scenarios. Prints, per bug, found / not found, in how many seeds and how long
the first detecting run took; and whether the correct cluster raised a false
alarm. Exit 0 only if every bug was found in at least one of its seeds and no
correct run was an anomaly.

Every planted bug of ``vr/bugs.py`` has an entry, except those in
:data:`NOT_END_TO_END`, each with the reason a real run does not reach it
reliably; the summary names them, so a reader never takes silence for coverage.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import Any

from core.errors import EXIT_ANOMALY, EXIT_UNKNOWN, EXIT_VALID, BadInput

ORDER = 16

# Planted bugs the selftest campaign leaves out, and why (docs/vr.md §4, "End to end"). Empty
# since every planted bug has a real-run fault shape that finds it; a bug added to vr/bugs.py
# goes either into scenarios/campaigns/selftest.toml or here, with its reason.
NOT_END_TO_END: dict[str, str] = {}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "selftest",
        help="prove the harness still finds every planted bug (and raises no false alarm)",
        description="Run the shipped selftest campaign: each planted bug with the scenario that exposes it, "
        "and the correct cluster on the same scenarios. Exit 1 if a bug is missed in every seed or the "
        "correct cluster is called anomalous, 2 if a run could not complete, else 0.",
    )
    parser.add_argument("--seeds", type=int, metavar="N", help="seeds per entry (default: the campaign's)")
    parser.add_argument("--bug", action="append", metavar="NAME", help="only this planted bug (repeatable)")
    parser.add_argument("--jobs", type=int, default=1, metavar="J", help="runs side by side (default 1)")
    parser.add_argument("--store", default="store", help="store directory (default: store)")
    parser.set_defaults(handler=handle)


def checker_of(anomaly: str) -> str:
    """The checker an anomaly sentence starts with (``catch-up found an anomaly: ...`` -> catch-up)."""
    head = str(anomaly or "").split(":", 1)[0].strip()
    return head.removesuffix(" found an anomaly").split(" ", 1)[0] or "?"


def summarize(records: list[Any]) -> tuple[list[str], int]:
    """Lines of the per-bug summary and the exit code: a bug counts as found if any seed found it."""
    lines: list[str] = []
    code = EXIT_VALID
    by_entry: dict[tuple[str, str | None], list[Any]] = {}
    for record in records:
        by_entry.setdefault((record.scenario, record.bug), []).append(record)
    for (scenario, bug), entry in by_entry.items():
        ran = [r for r in entry if r.verdict != "not-run"]
        anomalies = [r for r in ran if r.verdict == "anomaly"]
        unknown = [r for r in ran if r.verdict == "unknown"]
        if bug:
            if anomalies:
                first = anomalies[0]
                by = sorted({checker_of(r.anomaly or r.reason) for r in anomalies})
                lines.append(
                    f"found     {bug} by {scenario}: {len(anomalies)} of {len(ran)} seeds; first at seed "
                    f"{first.seed} in {first.duration_s:.0f} s (found by {', '.join(by)})"
                )
            else:
                lines.append(f"MISSED    {bug} by {scenario}: 0 of {len(ran)} seeds ({len(unknown)} unknown)")
                code = EXIT_ANOMALY if not unknown else max(code, EXIT_UNKNOWN)
        elif anomalies:
            lines.append(
                f"FALSE ALARM correct cluster on {scenario}: {len(anomalies)} of {len(ran)} seeds "
                f"(reproduce: {anomalies[0].reproduce})"
            )
            code = EXIT_ANOMALY
        else:
            lines.append(
                f"no alarm  correct cluster on {scenario}: {len(ran) - len(unknown)} of {len(ran)} valid"
            )
            if unknown and code == EXIT_VALID:
                code = EXIT_UNKNOWN
    return lines, code


def handle(args: argparse.Namespace) -> int:
    from harness.campaigns.shipped import load
    from harness.commands.campaign import _console, run_campaign

    if args.seeds is not None and args.seeds < 1:
        raise BadInput(f"--seeds must be at least 1, not {args.seeds}.", where="--seeds")
    campaign = load("selftest", seeds=args.seeds)
    if args.bug:
        known = {r.bug for r in campaign.runs if r.bug}
        unknown = sorted(set(args.bug) - known)
        if unknown:
            why = "".join(f" {b}: {NOT_END_TO_END[b]}." for b in unknown if b in NOT_END_TO_END)
            raise BadInput(
                f"no selftest entry for {', '.join(unknown)}; covered: {', '.join(sorted(known))}.{why}",
                where="--bug",
            )
        scenarios = {
            (r.scenario, tuple(sorted(r.overrides.items()))) for r in campaign.runs if r.bug in args.bug
        }
        runs = tuple(
            r
            for r in campaign.runs
            if r.bug in args.bug
            or (r.bug is None and (r.scenario, tuple(sorted(r.overrides.items()))) in scenarios)
        )
        campaign = replace(campaign, runs=runs)
    console = _console()
    store = Path(args.store)
    campaign_code, campaign_dir = run_campaign(
        campaign, store=store, jobs=args.jobs, shard=(1, 1), time_budget_s=None, console=console
    )
    from harness.campaigns.artifacts import read_document
    from harness.campaigns.records import RunRecord

    records = [RunRecord.from_json(r) for r in read_document(campaign_dir)["runs"]]
    lines, code = summarize(records)
    console.print("[bold]selftest[/]")
    for line in lines:
        console.print("  " + line, markup=False)
    for bug, why in NOT_END_TO_END.items():
        if not args.bug or bug in args.bug:
            console.print(
                f"  not run   {bug}: {why} (the simulator covers it: bench/detection.py)", markup=False
            )
    if campaign_code == EXIT_UNKNOWN and code == EXIT_VALID:
        code = EXIT_UNKNOWN
    return code
