"""Ask every node for its executed prefix and state hashes, at quiet points and after the final heal.

Quiet points: whenever the last active fault has been healed during the main
phase and the cluster is healthy again. Clients keep running then, so nodes
are at different ops; the collector arms a probe a little ahead of the highest
executed op (``probe_op``: each node hashes its state when it executes exactly
that op) and polls until every node took it (bounded). After the final heal and
the final reads (no client running) it waits, bounded, until every node
executed the same op and compares the state there; the final snapshot records
whether they got there (``settled``) and, when they did not, whether the cluster
was healthy all the same (``healthy``): :mod:`checkers.catchup` judges that. When hashes differ it asks
again for per-key hashes (and, at the end, the values of the keys that differ),
so the report can name them.

Every snapshot is appended to ``convergence.json`` in the run directory as soon
as it is taken; :mod:`checkers.convergence` judges the file.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from checkers.convergence import FILE_NAME, differing_ops

logger = logging.getLogger(__name__)

WATCH_S = 0.2  # how often the monitor looks for a heal
HEALTHY_WAIT_S = 5.0
PROBE_WAIT_S = 8.0
FINAL_SETTLE_S = 10.0
RATE_SAMPLE_S = 0.25
PROBE_AHEAD_S = 0.5  # arm the probe about this far ahead of the fastest node
PROBE_AHEAD_OPS_MIN = 3
POLL_S = 0.1
STOP_JOIN_S = 3.0
VALUES_MAX = 32


class ConvergenceSource(Protocol):
    """What the system under test offers (VR: :meth:`systems.vr.system.VRSystem.convergence`)."""

    def convergence(self, query: dict[str, Any]) -> dict[str, dict[str, Any] | str]: ...
    def wait_healthy(self, *, timeout_s: float) -> bool: ...


def _commit_mins(reports: dict[str, dict[str, Any] | str]) -> dict[str, int]:
    return {n: int(r["commit_min"]) for n, r in reports.items() if isinstance(r, dict) and "commit_min" in r}


class ConvergenceMonitor:
    """Takes the snapshots for one run; the runner calls :meth:`final` before teardown."""

    def __init__(
        self,
        system: ConvergenceSource,
        *,
        run_dir: Path,
        active_faults: Callable[[], dict[str, Any]],
        phase: Callable[[], str],
    ) -> None:
        self.system = system
        self.path = run_dir / FILE_NAME
        self.active_faults = active_faults
        self.phase = phase
        self.snapshots: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._watch, name="convergence", daemon=True)

    # -- quiet points during the run ----------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=STOP_JOIN_S)  # a probe in flight notices the stop at its next poll

    def _watch(self) -> None:
        faulted: set[str] = set()
        while not self._stop.wait(WATCH_S):
            active = set(self.active_faults())
            if self.phase() != "main":
                faulted = active
                continue
            if faulted and not active:
                healed = ", ".join(sorted(faulted))
                try:
                    self.quiet_point(f"after healing {healed}")
                except Exception:  # a probe must never take the run down
                    logger.exception("convergence probe failed")
            faulted = active

    def quiet_point(self, label: str) -> None:
        """Probe a common op a little ahead of the fastest node, once the cluster is healthy."""
        if not self.system.wait_healthy(timeout_s=HEALTHY_WAIT_S) or self._stop.is_set():
            return
        started = time.monotonic()
        first = _commit_mins(self.system.convergence({}))
        if self._stop.wait(RATE_SAMPLE_S):
            return
        second = _commit_mins(self.system.convergence({}))
        if not second:
            return
        rate_per_s = max(0, max(second.values()) - max(first.values(), default=0)) / RATE_SAMPLE_S
        probe_op = max(second.values()) + max(PROBE_AHEAD_OPS_MIN, int(rate_per_s * PROBE_AHEAD_S))
        reports = self.system.convergence({"probe_op": probe_op})
        deadline = time.monotonic() + PROBE_WAIT_S
        while not self._stop.is_set() and time.monotonic() < deadline and not _probes_done(reports, probe_op):
            time.sleep(POLL_S)
            reports = self.system.convergence({})
        self._record(label, reports, probe_op=probe_op, started=started)

    # -- after the final heal -------------------------------------------------------------

    def final(self, stopped: Callable[[], bool]) -> None:
        """Stop watching; wait (bounded) until every node executed the same op, then compare."""
        self.stop()
        started = time.monotonic()
        deadline = started + FINAL_SETTLE_S
        reports = self.system.convergence({})
        while not stopped() and time.monotonic() < deadline:
            commits = _commit_mins(reports)
            if len(commits) >= 2 and len(set(commits.values())) == 1:
                break
            time.sleep(POLL_S)
            reports = self.system.convergence({})
        settle: dict[str, Any] = {"settle_s": FINAL_SETTLE_S}
        if not stopped():
            commits = _commit_mins(reports)
            settle["settled"] = len(commits) >= 2 and len(set(commits.values())) == 1
            if not settle["settled"]:  # a lag only means something in a cluster that is healthy again
                settle["healthy"] = self.system.wait_healthy(timeout_s=HEALTHY_WAIT_S)
        self._record("after the final heal", reports, probe_op=None, started=started, extra=settle)

    # -- recording --------------------------------------------------------------------------

    def _record(
        self,
        label: str,
        reports: dict[str, dict[str, Any] | str],
        *,
        probe_op: int | None,
        started: float,
        extra: dict[str, Any] | None = None,
    ) -> None:
        snapshot: dict[str, Any] = {
            "label": label,
            "time_ns": time.monotonic_ns(),
            "probe_op": probe_op,
            "nodes": reports,
            **(extra or {}),
        }
        if list(differing_ops(snapshot)):
            snapshot = self._with_keys(snapshot)
        snapshot["took_ms"] = int((time.monotonic() - started) * 1000)
        with self._lock:
            self.snapshots.append(snapshot)
            self._write()

    def _with_keys(self, snapshot: dict[str, Any]) -> dict[str, Any]:
        """Hashes differ: ask again with per-key hashes (and current values when nothing moves)."""
        detailed = self.system.convergence({"keys": True})
        if snapshot["probe_op"] is None:
            differing: set[str] = set()
            hashes = [
                r.get("state", {}).get("key_hashes") or {} for r in detailed.values() if isinstance(r, dict)
            ]
            for key in set().union(*(h.keys() for h in hashes)) if hashes else set():
                if len({h.get(key) for h in hashes}) > 1:
                    differing.add(key)
            if differing:
                wanted = sorted(differing)[:VALUES_MAX]
                valued = self.system.convergence({"keys": True, "values": wanted})
                detailed = {n: valued.get(n, r) for n, r in detailed.items()}
        merged = {
            n: detailed[n] if isinstance(detailed.get(n), dict) else r for n, r in snapshot["nodes"].items()
        }
        return {**snapshot, "nodes": merged}

    def _write(self) -> None:
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"snapshots": self.snapshots}, default=str), encoding="utf-8")
        tmp.replace(self.path)


def _probes_done(reports: dict[str, dict[str, Any] | str], probe_op: int) -> bool:
    for report in reports.values():
        if not isinstance(report, dict):
            continue
        probe = report.get("probes", {}).get(str(probe_op))
        if probe is None:
            return False
    return True
