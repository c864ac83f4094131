"""One run, start to finish, inside the run's namespaces: store, cluster, runner, verdict, report.

Order matters and is the point of this module: the store and ``test.json``
exist before any node starts (a run that dies early still says what it was);
signals are turned into a stop request before any thread starts; teardown runs
inside the runner whatever happens; the verdict is computed after the nodes are
stopped; reports are rendered last and a failure there is reported beside the
verdict. Node data directories are deleted when the run is valid and kept
(for the report and for debugging) otherwise.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
import os
import random
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

import clusters
import workloads
from core.cluster import Cluster
from core.errors import EXIT_UNKNOWN, exit_code_for_validity
from core.scenario import Test
from harness import verdict
from harness.convergence import ConvergenceMonitor
from harness.retention import should_delete_data
from harness.runner import INTERRUPTED, Outcome, Recorder, Runner, RunState
from harness.store import RunDir, create_run_dir, write_json, write_test_json
from nemeses import packages

logger = logging.getLogger(__name__)


def _namespace_ids() -> dict[str, int]:
    """Inode numbers of the run's namespaces: tests (and curious users) can check they are gone."""
    return {kind: os.stat(f"/proc/self/ns/{kind}").st_ino for kind in ("net", "mnt", "pid")}


def _install_signal_handlers(runner: Runner, console: Console) -> None:
    def on_signal(signum: int, _frame: Any) -> None:
        if not runner.stop_event.is_set():
            console.print(
                f"[yellow]{signal.Signals(signum).name}: stopping; healing faults and stopping nodes "
                "(teardown always runs)[/]"
            )
        runner.stop(INTERRUPTED)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)


class _QuietFileHandler(logging.FileHandler):
    """ratchet.log on the store's disk: when that disk is full, losing log lines is fine, a traceback is not."""

    def handleError(self, record: logging.LogRecord) -> None:
        self.failed = getattr(self, "failed", 0) + 1


def _configure_logging(run: RunDir) -> None:
    handler = _QuietFileHandler(run.path / "ratchet.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)


SystemFactory = Callable[[Cluster, RunDir, Test], Any]


def vr_system(cluster: Cluster, run: RunDir, test: Test) -> Any:
    """The default system under test: Ratchet's own VR cluster (systems.vr)."""
    from systems import vr

    return vr.build(cluster, nodes_dir=run.nodes, clock_dir=run.path / "clock", test=test)


def console_for_stderr() -> Console:
    """Rich on stderr; without a terminal, lines are never wrapped at 80 columns (logs, CI, pipes)."""
    console = Console(stderr=True)
    if not console.is_terminal:
        console = Console(stderr=True, soft_wrap=True, width=max(console.width, 200))
    return console


RESERVE_NAME = verdict.RESERVE_NAME
RESERVE_BYTES = 2 << 20
NO_SPACE = "no space left on the store's disk"


def _reserve_space(run: RunDir) -> Path | None:
    """Hold back a little of the store's disk, so a disk that fills mid-run can still record its end.

    Released when a history write fails: the teardown's heals, results.json and
    the report then have room. None when the disk cannot spare it (the run goes on
    without a reserve).
    """
    path = run.path / RESERVE_NAME
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.posix_fallocate(fd, 0, RESERVE_BYTES)
        finally:
            os.close(fd)
        return path
    except OSError as exc:
        logger.warning("no space reserve for the run's end: %s", exc)
        path.unlink(missing_ok=True)
        return None


def _release(reserve: Path | None) -> None:
    if reserve is not None:
        reserve.unlink(missing_ok=True)


def _write_error_reason(exc: OSError) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"{NO_SPACE}: history.jsonl could not be written ({exc.strerror})"
    return f"history.jsonl could not be written: {exc}"


def execute(
    test: Test,
    *,
    argv: list[str],
    progress: bool,
    console: Console | None = None,
    system_factory: SystemFactory = vr_system,
    heartbeat_s: float | None = None,
) -> int:
    """The whole run; returns the exit code. ``system_factory`` builds what runs on the nodes.

    ``progress`` shows the live display (a terminal); ``heartbeat_s`` prints one
    status line that often instead (logs, CI).
    """
    console = console or console_for_stderr()
    run = create_run_dir(Path(test.store_dir), test.name)
    _configure_logging(run)
    cluster = clusters.create(test, run_dir=run.path)
    write_test_json(
        run,
        test,
        argv=argv,
        extra={
            "cluster": {
                "kind": cluster.kind,
                "nodes": {n.name: n.address for n in cluster.nodes},
                "firewall": cluster.firewall.backend,
            },
            "namespace": _namespace_ids(),
            "nemesis_package": {
                "kinds": list(test.nemesis.faults),
                "perf": [[kind, packages.COLOURS.get(kind, "#7f7f7f")] for kind in test.nemesis.faults],
            },
        },
    )
    reserve = _reserve_space(run)
    console.print(
        Text.assemble(
            ("ratchet", "bold"),
            f" {test.name}: {test.nodes} nodes, faults "
            f"{', '.join(test.nemesis.faults) or 'none'}, {test.time_limit_s:.0f} s, seed {test.seed}"
            f" -> {run.path}",
        )
    )
    system = system_factory(cluster, run, test)

    package = packages.build(
        test.nemesis,
        system=system,
        firewall=cluster.firewall,
        endpoints=cluster.endpoints(),
        rng=random.Random(test.seed ^ 0x4E454D),
        clock=getattr(system, "clock", None),
        messages=getattr(system, "messages", None),
    )
    runner_box: list[Runner] = []

    def on_write_error(exc: OSError) -> None:
        _release(reserve)  # room for the heals, results.json and the report
        reason = _write_error_reason(exc)
        logger.error("%s", reason)
        if runner_box:
            runner_box[0].stop(reason)

    recorder = Recorder(run.history, on_write_error=on_write_error)
    state = RunState()
    monitor = (
        ConvergenceMonitor(
            system, run_dir=run.path, active_faults=lambda: state.active_faults, phase=lambda: state.phase
        )
        if hasattr(system, "convergence")
        else None
    )
    runner = Runner(
        system=system,
        package=package,
        recorder=recorder,
        firewall=cluster.firewall,
        concurrency=test.concurrency,
        seed=test.seed,
        time_limit_s=test.time_limit_s,
        recovery_s=test.recovery_s,
        client_generator=workloads.by_name(test.workload.name).generator(test.workload),
        state=state,
        workload=workloads.by_name(test.workload.name),
        convergence=monitor,
    )
    runner_box.append(runner)
    _install_signal_handlers(runner, console)
    display: Any = None
    if progress or heartbeat_s:
        from harness.progress import Heartbeat, Progress

        if progress:
            display = Progress(
                recorder=recorder,
                state=state,
                system=system,
                title=test.name,
                time_limit_s=test.time_limit_s,
                console=console,
            )
        else:
            display = Heartbeat(recorder=recorder, state=state, console=console, every_s=heartbeat_s or 5.0)
        display.start()
    started = time.monotonic()
    try:
        outcome = runner.run()
    finally:
        if display is not None:
            display.stop()
        recorder.close()
        _release(reserve)
    leftovers = cluster.leftover_processes()
    crashes = cluster.unexpected_exits()
    outcome = _close_cluster(cluster, outcome)
    record_assertions(run, system)
    return finish(
        run,
        test,
        outcome,
        leftovers=leftovers,
        elapsed_s=time.monotonic() - started,
        system=system,
        console=console,
        crashes=crashes,
        history_dropped=recorder.dropped,
    )


def _close_cluster(cluster: Cluster, outcome: Outcome) -> Outcome:
    """Release the nodes' home (node files copied back, containers, remote processes and rules
    removed); what was done joins the teardown record, a failure its errors, never the verdict."""
    try:
        closed, errors = cluster.close(), []
    except Exception as exc:
        logger.exception("closing the cluster")
        closed, errors = [], [f"closing the {cluster.kind} cluster: {type(exc).__name__}: {exc}"]
    return dataclasses.replace(
        outcome,
        teardown=[*outcome.teardown, *closed],
        teardown_errors=[*outcome.teardown_errors, *errors],
    )


def record_assertions(run: RunDir, system: Any) -> None:
    """Write ``assertions.json``: the nodes' own invariant failures, read from their logs once they
    stopped (and, on remote clusters, once their files were copied back); the checkers judge it."""
    read = getattr(system, "assertion_failures", None)
    if read is None:
        return
    from checkers.assertions import FILE_NAME

    try:
        failures = read()
    except Exception as exc:  # an unreadable log leaves the checker unknown, never silently valid
        logger.exception("reading the nodes' assertions failed")
        document: dict[str, Any] = {"error": f"{type(exc).__name__}: {exc}"}
    else:
        document = {"nodes": list(system.node_names()), "failures": failures}
    try:
        write_json(run.path / FILE_NAME, document)
    except OSError:
        logger.exception("%s not written", FILE_NAME)


def finish(
    run: RunDir,
    test: Test,
    outcome: Outcome,
    *,
    leftovers: list[int],
    elapsed_s: float,
    system: Any,
    console: Console,
    crashes: list[dict[str, Any]] | None = None,
    history_dropped: int = 0,
) -> int:
    teardown_errors = list(outcome.teardown_errors)
    if leftovers:
        teardown_errors.append(f"node processes still running after teardown: {leftovers}")
    if outcome.completed:
        try:
            results = verdict.check(run.path)
            results["history_valid"] = results["valid"]
        except Exception as exc:  # the checker failing is reported as unknown, with the reason
            logger.exception("checking failed")
            results = {
                "valid": "unknown",
                "checkers": {},
                "reason": f"checking failed: {type(exc).__name__}: {exc}",
            }
    else:
        reason = INTERRUPTED if outcome.interrupted else (outcome.error or "the run did not complete")
        results = {"valid": "unknown", "checkers": {}, "reason": reason}
    results["completed"] = outcome.completed
    results["teardown_errors"] = teardown_errors
    results["teardown"] = outcome.teardown
    results["recovered"] = outcome.recovered
    results["node_exits"] = crashes or []  # nodes that ended on their own: a crash is worth a look
    results["elapsed_s"] = round(elapsed_s, 3)
    if history_dropped:
        results["history_dropped"] = history_dropped  # ops the full disk kept out of history.jsonl
    valid = results["valid"]
    try:
        write_json(run.results, results)
    except OSError as exc:
        logger.exception("results.json not written")
        results.setdefault("teardown_errors", []).append(f"results.json could not be written: {exc}")
    if should_delete_data(test.keep_data, valid):
        for node in system.node_names():
            data = system.node_files(node)["data"]
            if data.exists():
                shutil.rmtree(data)
    report_note = _render_reports(run)
    _print_summary(console, run, results, report_note, seed=test.seed)
    code = exit_code_for_validity(valid)
    return code if outcome.completed or valid is not True else EXIT_UNKNOWN


def _render_reports(run: RunDir) -> str | None:
    try:
        from reports.build import write_run_report
    except ImportError:
        return None
    try:
        path = write_run_report(run.path)
    except Exception as exc:  # a report failure is reported beside the verdict, never instead of it
        logger.exception("report failed")
        return f"report failed: {type(exc).__name__}: {exc}"
    try:
        from reports.index import write_index

        write_index(run.path.parent.parent)
    except ImportError:
        pass
    except Exception as exc:
        logger.exception("index failed")
        return f"report written to {path}; index failed: {type(exc).__name__}: {exc}"
    return f"report: {path}"


def _headline(run: RunDir, results: dict[str, Any]) -> str | None:
    """The report banner's one line (report.json ``reason``): the same words on the terminal and the page.

    For an anomaly it is the anomaly in one sentence (what, which key, which
    node answered, when, under which faults); for a run that did not complete,
    why. Computed again from results.json when the report could not be written.
    """
    try:
        reason = json.loads((run.path / "report.json").read_text(encoding="utf-8")).get("reason")
        if isinstance(reason, str) and reason:
            return reason
    except (OSError, ValueError, AttributeError):
        pass
    from reports.run import unfinished_reason

    return unfinished_reason(results) or (str(results["reason"]) if results.get("reason") else None)


def _print_summary(
    console: Console, run: RunDir, results: dict[str, Any], report_note: str | None, *, seed: int
) -> None:
    """The verdict and what to do next. History values reach the console as plain text, never as markup."""
    valid = results["valid"]
    style = {True: "bold green", False: "bold red"}.get(valid, "bold yellow")
    label = {True: "VALID", False: "ANOMALY"}.get(valid, "UNKNOWN")
    console.print(Text.assemble((label, style), f" {run.path}"))
    headline = _headline(run, results)
    if headline and valid is not True:
        console.print(Text(f"  {headline}", style="bold" if valid is False else ""))
    for name, checker in results.get("checkers", {}).items():
        console.print(
            Text(
                f"  {name}: {checker.get('valid')}"
                + (f" ({checker['summary']})" if checker.get("summary") else "")
            )
        )
    for line in results.get("teardown", []):
        console.print(Text(f"  teardown: {line}", style="dim"))
    if results.get("recovered") is False:
        console.print(
            Text(
                "  the cluster was not healthy again within the recovery time after the final heal",
                style="yellow",
            )
        )
    for exit_ in results.get("node_exits", []):
        console.print(
            Text.assemble(
                ("  node exited on its own:", "yellow"),
                f" {exit_['node']} pid {exit_['pid']} exit code {exit_['exit_code']}"
                f" (see nodes/{exit_['node']}/output.log)",
            )
        )
    for error in results.get("teardown_errors", []):
        console.print(Text.assemble(("  teardown error:", "red"), f" {error}"))
    if report_note:
        console.print(Text(f"  {report_note}"))
    console.print(
        Text(f"  reproduce: ratchet run --replay {run.path}   (same scenario, seed {seed})", style="dim")
    )
