"""The verdict of a finished run: its stored history, judged by the checkers.

Uses the checkers' entry point for a run directory (``checkers.check.check_run``),
the same one ``ratchet report`` uses, so the verdict a run prints and the one
a later report shows are computed the same way from the same file. The model
comes from ``test.json`` (``test.workload.model``: ``cas-register`` for the
register workload, ``list-append`` for the append workload, which
:mod:`checkers.append` judges); running out of the time budget gives
``unknown``, never ``true``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from checkers.check import check_run


def check(run_dir: Path) -> dict[str, Any]:
    results: dict[str, Any] = check_run(run_dir)
    results.setdefault("checkers", {})
    return results
