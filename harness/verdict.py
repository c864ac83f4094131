"""The verdict of a finished run: read its history back and run the workload's checkers.

Reading the file (not an in-memory copy) means the verdict judges exactly what
was stored, which is what a report or a later ``ratchet check`` sees too. The
checker has a time budget; running out gives ``unknown``, never ``true``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from harness.scenario import Test
from workloads import register

logger = logging.getLogger(__name__)

CHECK_BUDGET_S_MIN = 60.0


def check(history_path: Path, *, test: Test) -> dict[str, Any]:
    from checkers.compose import check_history
    from checkers.history import read_history

    ops = read_history(history_path)
    budget_s = max(CHECK_BUDGET_S_MIN, test.time_limit_s)
    results = check_history(ops, model=register.MODEL, time_limit_s=budget_s)
    results.setdefault("checkers", {})
    return results
