"""The verdict of a finished run: its stored history, judged by the checkers.

Uses the checkers' entry point for a run directory (``checkers.check.check_run``),
the same one ``ratchet report`` uses, so the verdict a run prints and the one
a later report shows are computed the same way from the same file. The model
comes from ``test.json`` (``test.workload.model``); running out of the time
budget gives ``unknown``, never ``true``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def check(run_dir: Path) -> dict[str, Any]:
    from checkers.check import check_run

    results: dict[str, Any] = check_run(run_dir)
    results.setdefault("checkers", {})
    return results
