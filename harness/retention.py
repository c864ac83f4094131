"""Store retention: node data files are the bulk of a run and are only needed to investigate it.

A run keeps its history, results, reports, logs and events forever; what
``ratchet gc`` (and a run's ``keep_data`` setting) removes is each node's
``data`` directory (the replica's data file, ~100 MB a node). Runs are found
wherever a ``test.json`` is, so runs inside campaign directories count too.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from core.errors import BadInput
from core.scenario import KEEP_DATA  # noqa: F401  (re-exported)

_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_AGE_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_age_s(text: str) -> float:
    """``"7d"``, ``"12h"``, ``"30m"``, ``"90s"``, ``"2w"`` -> seconds."""
    match = _AGE.match(text)
    if not match:
        raise BadInput(
            f"--older-than wants a number and a unit (s, m, h, d, w), e.g. 7d or 12h, not {text!r}.",
            where="--older-than",
        )
    return float(match.group(1)) * _AGE_S[match.group(2)]


def should_delete_data(keep_data: str, valid: object) -> bool:
    """A finished run's node data: kept always, only when the run did not pass, or never."""
    if keep_data == "always":
        return False
    if keep_data == "never":
        return True
    return valid is True


@dataclass(frozen=True, slots=True)
class RunData:
    run: Path
    data_dirs: tuple[Path, ...]
    started_s: float
    bytes: int


def _size(path: Path) -> int:
    total = 0
    for entry in path.rglob("*"):
        try:
            if entry.is_file() and not entry.is_symlink():
                total += entry.stat().st_blocks * 512
        except OSError:
            continue
    return total


def runs_with_data(store: Path) -> Iterator[RunData]:
    """Every run under the store that still has node data, with when it started."""
    for test_json in store.rglob("test.json"):
        run = test_json.parent
        if any(part.startswith(".") for part in run.relative_to(store).parts):
            continue
        nodes = run / "nodes"
        data_dirs = tuple(sorted(p for p in nodes.glob("*/data") if p.is_dir() and not p.is_symlink()))
        if data_dirs:
            yield RunData(run, data_dirs, test_json.stat().st_mtime, sum(_size(d) for d in data_dirs))


def plan(
    store: Path, *, keep: int | None, older_than_s: float | None, now_s: float | None = None
) -> list[RunData]:
    """The runs whose data goes: beyond the newest ``keep`` runs with data, or older than the age."""
    now_s = time.time() if now_s is None else now_s
    runs = sorted(runs_with_data(store), key=lambda r: r.started_s, reverse=True)
    doomed = []
    for position, run in enumerate(runs):
        too_many = keep is not None and position >= keep
        too_old = older_than_s is not None and now_s - run.started_s > older_than_s
        if too_many or too_old:
            doomed.append(run)
    return doomed


def delete_data(run: RunData) -> None:
    for directory in run.data_dirs:
        shutil.rmtree(directory)
