"""The verdict of a finished run: its stored history, judged by the checkers.

Uses the checkers' entry point for a run directory (``checkers.check.check_run``),
the same one ``ratchet report`` uses, so the verdict a run prints and the one
a later report shows are computed the same way from the same file. The model
comes from ``test.json`` (``test.workload.model``); running out of the time
budget gives ``unknown``, never ``true``.

The append workload is judged by :mod:`checkers.append` instead of a
linearizability model (its anomalies are found pairwise), beside the same
stats, perf and availability checkers, folded the same way (false > unknown > true).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _workload_name(run_dir: Path) -> str:
    try:
        data = json.loads((run_dir / "test.json").read_text(encoding="utf-8"))
        return str(data["test"]["workload"]["name"])
    except (OSError, ValueError, KeyError, TypeError):
        return "register"


def check_append_run(run_dir: Path) -> dict[str, Any]:
    from checkers.append import check_append_history
    from checkers.history import read_history

    return check_append_history(read_history(run_dir / "history.jsonl", "jsonl"))


def check(run_dir: Path) -> dict[str, Any]:
    if _workload_name(run_dir) == "append":
        return check_append_run(run_dir)
    from checkers.check import check_run

    results: dict[str, Any] = check_run(run_dir)
    results.setdefault("checkers", {})
    return results
