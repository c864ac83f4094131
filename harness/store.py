"""Where a run's files go (contracts §6): ``store/<scenario>/<YYYYmmddTHHMMSS>/``.

``test.json`` holds everything needed to understand and replay the run: the
resolved scenario, the seed, the versions of Ratchet, Python and the kernel,
and the exact command line. ``store/latest`` points at the newest run (a
relative symlink, so the store can be moved or archived).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.scenario import Test


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
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now_s if now_s is not None else time.time()))
    base = store / scenario
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
    (path / "nodes").mkdir()
    point_latest(store, path)
    return RunDir(path)


def point_latest(store: Path, run: Path) -> None:
    link = store / "latest"
    tmp = store / f".latest.{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(run.relative_to(store))
    os.replace(tmp, link)


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
