"""``ratchet report STORE_DIR``: re-check a stored run's history and re-render its report.

Useful after the checkers or the report got better, or when a run's report
was never written (the controller was killed). The checkers' new entries are
merged into results.json (everything else the run recorded is kept, and a run
that did not complete stays unknown: see :mod:`harness.verdict`), then
report.html and the store's index.html are written again. Exit code as for a
run: 0 valid, 1 anomaly, 2 unknown.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from core.errors import BadInput, exit_code_for_validity

ORDER = 60
RUN_FILES = ("history.jsonl", "test.json", "results.json")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "report",
        help="re-check a stored run and re-render its report.html",
        description="Re-check STORE_DIR's history.jsonl with the checkers, rewrite results.json, "
        "report.html and the store's index.html. STORE_DIR is a run directory "
        "(store/<scenario>/<timestamp>), store/latest, or a store (its latest run).",
    )
    parser.add_argument("store_dir", metavar="STORE_DIR", help="a run directory, store/latest, or a store")
    parser.add_argument(
        "--no-check", action="store_true", help="keep results.json as it is; only re-render the report"
    )
    parser.set_defaults(handler=report)


def resolve_run_dir(given: str) -> Path:
    """The run directory STORE_DIR names: itself, the target of ``latest``, or a store's latest run."""
    path = Path(given)
    if not path.exists():
        raise BadInput(
            f"{given!r} does not exist. Pass a run directory such as store/<scenario>/<timestamp>, "
            "store/latest, or a store.",
            where="STORE_DIR",
        )
    path = path.resolve()
    if (
        path.is_dir()
        and not any((path / name).is_file() for name in RUN_FILES)
        and (path / "latest").exists()
    ):
        path = (path / "latest").resolve()
    if not path.is_dir() or not (path / "history.jsonl").is_file():
        raise BadInput(
            f"{given!r} is not a stored run: a run directory holds history.jsonl (with test.json and "
            "results.json). Pass store/<scenario>/<timestamp>, store/latest, or a store that has a latest run.",
            where="STORE_DIR",
        )
    return path


def recheck(run_dir: Path) -> dict[str, Any]:
    """Judge the stored history again, merged into what the run recorded; returns the new results.json.

    Every fact the run recorded (reason, teardown, recovered, node_exits,
    elapsed_s, ...) is kept and only the checkers' entries are replaced; a run
    that did not complete (or wrote no results.json) stays unknown.
    """
    from checkers.history import HistoryFormatError
    from harness import verdict
    from harness.store import write_json

    try:
        results = verdict.recheck(run_dir)
    except HistoryFormatError as exc:
        raise BadInput(
            f"the stored history cannot be read: {exc}. Nothing was re-checked; `--no-check` still "
            "re-renders the report from the stored results.json.",
            where=str(run_dir / "history.jsonl"),
        ) from None
    write_json(run_dir / "results.json", results)
    return results


def report(args: argparse.Namespace) -> int:
    from reports.build import SUMMARY_NAME, write_run_report
    from reports.index import write_index

    run_dir = resolve_run_dir(args.store_dir)
    if args.no_check:
        try:
            results = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):  # RecursionError: nested too deep to decode
            results = {"valid": "unknown"}
    else:
        results = recheck(run_dir)
    path = write_run_report(run_dir)
    store = run_dir.parent.parent
    if (store / "latest").exists() or (store / "index.html").exists():
        write_index(store)
    valid = results.get("valid", "unknown") if isinstance(results, dict) else "unknown"
    word = "valid" if valid is True else "anomaly" if valid is False else "unknown"
    try:  # the banner's line: why, or the anomaly in one sentence
        why = json.loads((run_dir / SUMMARY_NAME).read_text(encoding="utf-8")).get("reason")
    except (OSError, ValueError, AttributeError):
        why = None
    print(f"{path}  ({word}{': ' + why if why and valid is not True else ''})", file=sys.stderr)
    return exit_code_for_validity(valid)
