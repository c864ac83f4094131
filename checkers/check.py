"""The checkers' entry point for a stored run directory (``store/<scenario>/<stamp>/``).

``ratchet report`` re-judges a stored run with this, so a report never shows a
verdict the stored history does not support. The model comes from
``test.json`` when the workload names one (``test.workload.model``), otherwise
``cas-register`` (Ratchet's register workload); the time budget is at least
``CHECK_BUDGET_S_MIN`` and at least the run's own length.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from checkers.assertions import check_run_dir as check_assertions
from checkers.catchup import check_run_dir as check_catchup
from checkers.compose import check_history, combine_validity
from checkers.convergence import check_run_dir
from checkers.coverage import coverage
from checkers.history import read_history

CHECK_BUDGET_S_MIN = 60.0
DEFAULT_MODEL = "cas-register"


def _test_settings(run_dir: Path) -> tuple[str, float]:
    try:
        data = json.loads((run_dir / "test.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # RecursionError: nested too deep to decode
        return DEFAULT_MODEL, CHECK_BUDGET_S_MIN
    test = data.get("test", {}) if isinstance(data, dict) else {}
    workload = test.get("workload", {}) if isinstance(test, dict) else {}
    model = workload.get("model") if isinstance(workload, dict) else None
    length_s = test.get("time_limit_s") if isinstance(test, dict) else None
    budget_s = (
        max(CHECK_BUDGET_S_MIN, float(length_s)) if isinstance(length_s, int | float) else CHECK_BUDGET_S_MIN
    )
    return (model if isinstance(model, str) else DEFAULT_MODEL), budget_s


def check_run(
    run_dir: str | Path, *, model: str | None = None, time_limit_s: float | None = None
) -> dict[str, Any]:
    """Read ``history.jsonl`` and run every checker: the content of a fresh ``results.json``.

    Raises :class:`~checkers.history.HistoryFormatError` for an unreadable history.
    """
    path = Path(run_dir)
    default_model, default_budget_s = _test_settings(path)
    ops = read_history(path / "history.jsonl", "jsonl")
    results = check_history(
        ops,
        model=model or default_model,
        time_limit_s=time_limit_s if time_limit_s is not None else default_budget_s,
    )
    results["coverage"] = coverage(ops, model=model or default_model)  # informative: never a verdict
    convergence = check_run_dir(path)  # the replicas compared directly, when the run asked them
    if convergence is not None:
        results["checkers"]["convergence"] = convergence
    assertions = check_assertions(path, ops)  # a node that failed its own invariant check
    if assertions is not None:
        results["checkers"]["assertions"] = assertions
    catchup = check_catchup(path)  # after the final heal, every replica executed the same op
    if catchup is not None:
        results["checkers"]["catch-up"] = catchup
    if convergence is not None or assertions is not None or catchup is not None:
        results["valid"] = combine_validity(c["valid"] for c in results["checkers"].values())
    return results
