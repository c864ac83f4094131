"""The verdict of a run: its stored history judged by the checkers, merged into what the run recorded.

Uses the checkers' entry point for a run directory (``checkers.check.check_run``),
the same one ``ratchet report`` and ``ratchet check RUN_DIR`` use, so the verdict
a run prints and the one a later report shows are computed the same way from the
same file. The model comes from ``test.json`` (``test.workload.model``:
``cas-register`` for the register workload, ``list-append`` for the append
workload, which :mod:`checkers.append` judges); running out of the time budget
gives ``unknown``, never ``true``.

A history only says what clients saw; whether the run got to its end is known
only to the run itself (results.json: ``completed``, ``reason``). Re-checking
therefore merges: the checkers' entries are replaced, every other fact the run
recorded (reason, teardown, recovered, node_exits, elapsed_s, ...) is kept, and a
run that did not complete stays ``unknown`` whatever its history looks like. A
run directory with no results.json at all is a run whose controller never got
to write one (SIGKILL, a power loss): it did not finish either.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from checkers.check import DEFAULT_MODEL, check_run
from reports.run import CHECKING_FAILED, DID_NOT_FINISH, run_completed

RESULTS_NAME = "results.json"
RESERVE_NAME = ".reserve"  # space a run holds back so a full disk can still record its end (harness.session)


def check(run_dir: Path, *, model: str | None = None) -> dict[str, Any]:
    """The checkers' verdict on the stored history alone (raises HistoryFormatError if unreadable)."""
    results: dict[str, Any] = check_run(run_dir, model=model)
    results.setdefault("checkers", {})
    return results


def recorded(results_path: Path) -> dict[str, Any] | None:
    """What the run wrote in results.json; None when there is none (or it is not a JSON object)."""
    try:
        value = json.loads(results_path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # RecursionError: nested too deep to decode
        return None
    return value if isinstance(value, dict) else None


def merge(record: dict[str, Any] | None, fresh: dict[str, Any]) -> dict[str, Any]:
    """``fresh`` checker results merged into the run's ``record`` (None: the run wrote none).

    ``history_valid`` keeps what the checkers said of the recorded history, so a
    partial history's anomaly is still visible when the run's verdict is unknown.
    """
    merged: dict[str, Any] = (
        dict(record) if record is not None else {"completed": False, "reason": DID_NOT_FINISH}
    )
    merged["checkers"] = fresh.get("checkers", {})
    merged["history_valid"] = fresh.get("valid", "unknown")
    if run_completed(merged):
        merged["completed"] = True
        merged["valid"] = fresh.get("valid", "unknown")
        if str(merged.get("reason", "")).startswith(CHECKING_FAILED):
            del merged["reason"]
    else:
        merged["completed"] = False
        merged["valid"] = "unknown"
        merged.setdefault("reason", "the run did not complete")
    return merged


def is_run_dir(path: Path) -> bool:
    """A directory a run wrote: test.json is written before any node starts."""
    return (path / "test.json").is_file() and (path / "history.jsonl").is_file()


def recheck(run_dir: Path, *, model: str | None = None) -> dict[str, Any]:
    """Judge the stored history again and merge the verdict into the run's results.json content.

    A run that wrote no results.json also left its space reserve behind (its
    controller never reached the end that removes it): it is removed here.
    """
    record = recorded(run_dir / RESULTS_NAME)
    merged = merge(record, check(run_dir, model=model))
    if record is None:
        (run_dir / RESERVE_NAME).unlink(missing_ok=True)
    return merged


def model_of(run_dir: Path) -> str:
    """The model a stored run is judged by: ``test.workload.model`` in its test.json (cas-register if absent)."""
    try:
        data = json.loads((run_dir / "test.json").read_text(encoding="utf-8"))
        model = data["test"]["workload"]["model"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return DEFAULT_MODEL
    return model if isinstance(model, str) and model else DEFAULT_MODEL
