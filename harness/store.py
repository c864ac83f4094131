"""Where a run's files go (contracts §6): ``store/<scenario>/<YYYYmmddTHHMMSS>/``.

``test.json`` holds everything needed to understand and replay the run: the
resolved scenario, the seed, the versions of Ratchet, Python and the kernel,
and the exact command line. ``store/latest`` points at the newest run (a
relative symlink, so the store can be moved or archived).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import BadInput
from core.paths import store_dir_problem  # noqa: F401  (re-exported: the CLI asks the store)
from core.scenario import Test, scenario_name_problem


@dataclass(frozen=True, slots=True)
class RunDir:
    path: Path

    @property
    def history(self) -> Path:
        return self.path / "history.jsonl"

    @property
    def results(self) -> Path:
        return self.path / "results.json"

    @property
    def test_json(self) -> Path:
        return self.path / "test.json"

    @property
    def nodes(self) -> Path:
        return self.path / "nodes"


def versions() -> dict[str, str]:
    try:
        from importlib.metadata import version

        ratchet = version("ratchet")
    except Exception:  # not installed as a distribution (running from a checkout)
        ratchet = "unknown"
    return {"ratchet": ratchet, "python": platform.python_version(), "kernel": platform.release()}


def create_run_dir(store: Path, scenario: str, *, now_s: float | None = None) -> RunDir:
    """A new ``store/<scenario>/<stamp>/`` (with ``nodes/``), and ``latest`` pointing at it.

    The scenario name is one path component (never ``..`` or absolute), so the run
    directory is always inside the store; a store that cannot be written is bad
    input, and the directories made before the failure are removed again.
    """
    problem = scenario_name_problem(scenario)
    if problem:
        raise BadInput(f"the scenario name {scenario!r} {problem}.", where="name")
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now_s if now_s is not None else time.time()))
    base = store / scenario
    made: list[Path] = [p for p in (base, *base.parents) if not p.exists() and not p.is_symlink()]
    try:
        base.mkdir(parents=True, exist_ok=True)
        path = base / stamp
        suffix = 1
        while True:
            try:
                path.mkdir()
                break
            except FileExistsError:
                suffix += 1
                path = base / f"{stamp}-{suffix}"
        made.insert(0, path)
        (path / "nodes").mkdir()
        made.insert(0, path / "nodes")
        point_latest(store, path)
    except OSError as exc:
        for directory in made:  # deepest first: nothing of a run that never started stays behind
            with contextlib.suppress(OSError):
                directory.rmdir()
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise BadInput(
            f"cannot create a run directory in the store {str(store)!r}: {exc.strerror}.", where="--store"
        ) from None
    return RunDir(path)


def point_latest(store: Path, run: Path) -> None:
    link = store / "latest"
    tmp = store / f".latest.{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(run.relative_to(store))
    try:
        os.replace(tmp, link)
    except OSError:
        tmp.unlink()  # `latest` is something a symlink cannot replace (a directory): leave no temporary
        raise


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)


def write_test_json(run: RunDir, test: Test, *, argv: list[str], extra: dict[str, Any] | None = None) -> None:
    data = {
        "test": test.to_json(),
        "seed": test.seed,
        "versions": versions(),
        "command_line": [sys.executable, *argv],
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **(extra or {}),
    }
    write_json(run.test_json, data)


def read_test_json(run_path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run_path / "test.json").read_text())
    return data
