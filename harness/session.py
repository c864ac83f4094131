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

import workloads
from checkers.history import HistoryWriter
from clusters.local import LocalCluster
from harness import verdict
from harness.convergence import ConvergenceMonitor
from harness.errors import EXIT_UNKNOWN, exit_code_for_validity
from harness.retention import should_delete_data
from harness.runner import Outcome, Recorder, Runner, RunState
from harness.scenario import Test
from harness.store import RunDir, create_run_dir, write_json, write_test_json
from harness.vr_system import VRSystem
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
        runner.stop_event.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)


def _configure_logging(run: RunDir) -> None:
    handler = logging.FileHandler(run.path / "ratchet.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)


SystemFactory = Callable[[LocalCluster, RunDir, Test], Any]


def clock_control(cluster: LocalCluster, run: RunDir, test: Test) -> Any:
    """Per-node clock control files (nemeses.clock) when the scenario injects clock faults, else None."""
    if "clock" not in test.nemesis.faults:
        return None
    from nemeses.clock import ClockControl, find_libfaketime

    library = find_libfaketime()
    if library is None:  # validation refuses this first; a run started anyway says why
        raise RuntimeError("clock faults need libfaketime (apt-get install libfaketime faketime)")
    return ClockControl(
        run.path / "clock", cluster.names(), library=library, fake_monotonic=test.nemesis.clock_monotonic
    )


def vr_system(cluster: LocalCluster, run: RunDir, test: Test) -> VRSystem:
    return VRSystem(
        cluster,
        nodes_dir=run.nodes,
        bug=test.bug,
        seed=test.seed,
        client_timeout_s=test.workload.client_timeout_s,
        bind_clients_to_nodes=test.workload.clients == "nodes",
        clock=clock_control(cluster, run, test),
    )


def execute(
    test: Test,
    *,
    argv: list[str],
    progress: bool,
    console: Console | None = None,
    system_factory: SystemFactory = vr_system,
) -> int:
    """The whole run; returns the exit code. ``system_factory`` builds what runs on the nodes."""
    console = console or Console(stderr=True)
    run = create_run_dir(Path(test.store_dir), test.name)
    _configure_logging(run)
    cluster = LocalCluster(node_count=test.nodes)
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
    console.print(
        f"[bold]ratchet[/] {test.name}: {test.nodes} nodes, faults "
        f"{', '.join(test.nemesis.faults) or 'none'}, {test.time_limit_s:.0f} s, seed {test.seed}"
        f" -> {run.path}"
    )
    system = system_factory(cluster, run, test)

    package = packages.build(
        test.nemesis,
        system=system,
        firewall=cluster.firewall,
        endpoints=cluster.endpoints(),
        rng=random.Random(test.seed ^ 0x4E454D),
        clock=getattr(system, "clock", None),
    )
    writer = HistoryWriter(run.history)
    recorder = Recorder(writer)
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
    _install_signal_handlers(runner, console)
    display = None
    if progress:
        from harness.progress import Progress

        display = Progress(
            recorder=recorder,
            state=state,
            system=system,
            title=test.name,
            time_limit_s=test.time_limit_s,
            console=console,
        )
        display.start()
    started = time.monotonic()
    try:
        outcome = runner.run()
    finally:
        if display is not None:
            display.stop()
        recorder.close()
    leftovers = cluster.leftover_processes()
    crashes = cluster.unexpected_exits()
    return finish(
        run,
        test,
        outcome,
        leftovers=leftovers,
        elapsed_s=time.monotonic() - started,
        system=system,
        console=console,
        crashes=crashes,
    )


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
) -> int:
    teardown_errors = list(outcome.teardown_errors)
    if leftovers:
        teardown_errors.append(f"node processes still running after teardown: {leftovers}")
    if outcome.completed:
        try:
            results = verdict.check(run.path)
        except Exception as exc:  # the checker failing is reported as unknown, with the reason
            logger.exception("checking failed")
            results = {
                "valid": "unknown",
                "checkers": {},
                "reason": f"checking failed: {type(exc).__name__}: {exc}",
            }
    else:
        reason = "interrupted" if outcome.interrupted else (outcome.error or "the run did not complete")
        results = {"valid": "unknown", "checkers": {}, "reason": reason}
    results["teardown_errors"] = teardown_errors
    results["teardown"] = outcome.teardown
    results["recovered"] = outcome.recovered
    results["node_exits"] = crashes or []  # nodes that ended on their own: a crash is worth a look
    results["elapsed_s"] = round(elapsed_s, 3)
    write_json(run.results, results)
    valid = results["valid"]
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


def _print_summary(
    console: Console, run: RunDir, results: dict[str, Any], report_note: str | None, *, seed: int
) -> None:
    valid = results["valid"]
    style = {True: "bold green", False: "bold red"}.get(valid, "bold yellow")
    label = {True: "VALID", False: "ANOMALY"}.get(valid, "UNKNOWN")
    console.print(f"[{style}]{label}[/] {run.path}")
    if results.get("reason"):
        console.print(f"  reason: {results['reason']}")
    for name, checker in results.get("checkers", {}).items():
        console.print(
            f"  {name}: {checker.get('valid')}"
            + (f" ({checker['summary']})" if checker.get("summary") else "")
        )
    for line in results.get("teardown", []):
        console.print(f"  teardown: {line}", style="dim")
    if results.get("recovered") is False:
        console.print(
            "  [yellow]the cluster was not healthy again within the recovery time after the final heal[/]"
        )
    for exit_ in results.get("node_exits", []):
        console.print(
            f"  [yellow]node exited on its own:[/] {exit_['node']} pid {exit_['pid']} "
            f"exit code {exit_['exit_code']} (see nodes/{exit_['node']}/output.log)"
        )
    for error in results.get("teardown_errors", []):
        console.print(f"  [red]teardown error:[/] {error}")
    if report_note:
        console.print(f"  {report_note}")
    console.print(f"  reproduce: ratchet run --replay {run.path}   (same scenario, seed {seed})", style="dim")
