"""Run a campaign's cells, each as its own ``ratchet run`` process, and record what each did.

Each run is a child process in a new session with its own store directory
(``<campaign>/runs/<cell id>/``): a run enters its own network, mount and PID
namespaces, so runs side by side (``--jobs``) share no port, file or rule,
and a child that crashes takes only its own cluster with it. A run's record
is read from the files the run wrote (results.json, test.json), never from
its terminal output.

Stopping is cooperative: on SIGINT/SIGTERM no new run starts and every
running child gets SIGINT, which makes it heal its faults, stop its nodes and
record the interruption; the campaign then writes what ran and what did not.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.campaigns.records import RunRecord, record_from_run_dir, skipped_record

CHILD_STOP_GRACE_S = 120.0  # after SIGINT, how long a run may take to heal and write its results


@dataclass(slots=True)
class Execution:
    """Shared state of one campaign execution (the signal handler only sets ``stop``)."""

    stop: threading.Event = field(default_factory=threading.Event)
    children: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    interrupted_by: str | None = None

    def interrupt(self, why: str) -> None:
        self.interrupted_by = self.interrupted_by or why
        self.stop.set()
        with self.lock:
            children = list(self.children.values())
        for child in children:
            if child.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGINT)


def ratchet_argv() -> list[str]:
    """How to start ``ratchet`` as a child: the same interpreter and the same code."""
    return [sys.executable, "-m", "harness.cli"]


def run_cell(cell: Any, campaign_dir: Path, execution: Execution) -> RunRecord:
    """Start one run, wait for it, and build its record from the files it wrote."""
    store = campaign_dir / "runs" / cell.id
    store.mkdir(parents=True, exist_ok=True)
    argv = [*ratchet_argv(), *cell.run_argv(store=store)]
    started = time.monotonic()
    with (store / "output.log").open("wb") as log:
        child = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        with execution.lock:
            execution.children[cell.id] = child
        if execution.stop.is_set():  # a stop that came while the child was starting
            os.killpg(child.pid, signal.SIGINT)
        try:
            code = _wait(child, execution)
        finally:
            with execution.lock:
                execution.children.pop(cell.id, None)
    return record_from_run_dir(
        cell, store=store, campaign_dir=campaign_dir, exit_code=code, duration_s=time.monotonic() - started
    )


def _wait(child: subprocess.Popen[bytes], execution: Execution) -> int:
    while True:
        try:
            return child.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            pass
        if execution.stop.is_set():
            try:
                return child.wait(timeout=CHILD_STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                return child.wait()


def execute(
    cells: Sequence[Any],
    *,
    campaign_dir: Path,
    jobs: int,
    time_budget_s: float | None,
    execution: Execution,
    on_record: Callable[[RunRecord], None],
    on_heartbeat: Callable[[int, int, float], None] | None = None,
    heartbeat_s: float = 10.0,
) -> list[RunRecord]:
    """Run the cells (at most ``jobs`` at once) until done, out of budget or stopped; matrix order kept."""
    started = time.monotonic()
    records: dict[int, RunRecord] = {}
    pending = list(cells)
    running: dict[Future[RunRecord], Any] = {}
    last_beat = started
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="campaign-run") as pool:
        while pending or running:
            budget_spent = time_budget_s is not None and time.monotonic() - started >= time_budget_s
            while pending and len(running) < jobs and not execution.stop.is_set() and not budget_spent:
                cell = pending.pop(0)
                running[pool.submit(run_cell, cell, campaign_dir, execution)] = cell
            if not running:
                break
            done, _ = wait(running, timeout=1.0, return_when=FIRST_COMPLETED)
            for future in done:
                cell = running.pop(future)
                record = future.result()
                records[cell.index] = record
                on_record(record)
            now = time.monotonic()
            if on_heartbeat is not None and now - last_beat >= heartbeat_s:
                last_beat = now
                on_heartbeat(len(records), len(running), now - started)
    why = "interrupted" if execution.stop.is_set() else "time budget spent"
    for cell in pending:
        records[cell.index] = skipped_record(cell, why=why)
    return [records[cell.index] for cell in cells]


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)
