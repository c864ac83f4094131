"""What the harness itself costs. Prints figures; asserts nothing about time.

1. provision / teardown: time to start a 3-node local cluster until it is healthy
   (every node normal, one view), and to stop it (target: under 2 s each).
2. overhead, at each client count asked for (default 1 and 50): the runner driving
   the cluster (no faults, no rate limit) against the same number of threads calling
   their clients directly in a loop with the same op mix. The figure is CPU time of
   this process per op (the nodes are other processes, so the machine's load barely
   moves it), runner minus direct: what the generator interpreter, the history
   (append + flush) and the thread hand-offs add. Target: under 0.1 ms per op.
   The runner's CPU is counted over its main phase only (not node start-up, final
   reads or teardown). Wall time per op, ops/s and latency are printed beside it.

Every round runs each measurement once, the runner and the direct loop in turns
(alternating which goes first), and the summary gives the median and the spread
(min..max) over the rounds, with the load average before and after: one round on
a shared machine proves little.

Runs inside its own run namespace (like ``ratchet run``), so it needs root or
user namespaces. ``--system kv`` measures against the test KV server instead of
VR (useful to separate harness cost from the system's); ``--system null``
against a system in this process that answers at once (no nodes, no namespace):
the runner's own work per op with nothing else on the machine's clock, the
steadiest figure on a loaded machine, though without the cost of waking a
thread blocked on a socket.

    python bench/harness_overhead.py [--system vr|kv|null] [--seconds 5] [--rounds 5] [--clients 1,50]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "harness"))

KEYS = 8


class Ports:
    """A fresh base port for every cluster, so no run meets the last one's sockets."""

    def __init__(self, start: int = 7300) -> None:
        self._next = start

    def take(self) -> int:
        port, self._next = self._next, self._next + 10
        return port


def make_system(kind: str, cluster: Any, nodes_dir: Path) -> Any:
    if kind == "null":
        from nullsystem import NullSystem

        return NullSystem()
    if kind == "kv":
        from kvsystem import KVSystem

        return KVSystem(cluster, nodes_dir=nodes_dir, volatile=False, client_timeout_s=1.0)
    from systems.vr.system import VRSystem

    return VRSystem(cluster, nodes_dir=nodes_dir, bug=None, seed=1, client_timeout_s=1.0)


def provision(kind: str, repeat: int, ports: Ports) -> tuple[list[float], list[float], list[float]]:
    from clusters.local import LocalCluster

    ups, downs, removals = [], [], []
    for _ in range(repeat):
        cluster = LocalCluster(node_count=3, base_port=ports.take())
        workdir = Path(tempfile.mkdtemp(prefix="ratchet-bench-"))
        system = make_system(kind, cluster, workdir)
        started = time.monotonic()
        system.setup()
        ups.append(time.monotonic() - started)
        started = time.monotonic()
        system.teardown(keep_data=True)
        downs.append(time.monotonic() - started)
        assert not cluster.leftover_processes()
        started = time.monotonic()
        shutil.rmtree(workdir)
        removals.append(time.monotonic() - started)
    return ups, downs, removals


def _cpu_s() -> float:
    """CPU seconds of this process (every thread: the runner's and the clients'); the nodes are
    other processes."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class MainPhaseClock:
    """CPU and monotonic time when the runner starts and ends its first phase (the main one).

    Wraps the runner's ``interpret`` on the instance: no thread polling the phase,
    whose wake-ups would be counted as the runner's CPU.
    """

    def __init__(self, runner: Any) -> None:
        self.marks: dict[str, tuple[float, int]] = {}
        interpret = runner.interpret

        def timed(generator: Any, *, stop: Callable[[], bool]) -> bool:
            first = not self.marks
            if first:
                self.marks["main"] = (_cpu_s(), time.monotonic_ns())
            try:
                return interpret(generator, stop=stop)
            finally:
                if first:
                    self.marks["after"] = (_cpu_s(), time.monotonic_ns())

        runner.interpret = timed


def drive(kind: str, *, concurrency: int, seconds: float, port: int) -> dict[str, float]:
    """The runner with ``concurrency`` client threads for ``seconds``: its main phase's figures."""
    from checkers.history import read_history
    from clusters.local import LocalCluster
    from core.scenario import NemesisSpec, WorkloadSpec
    from harness.runner import Recorder, Runner
    from nemeses import packages
    from workloads import register

    workdir = Path(tempfile.mkdtemp(prefix="ratchet-bench-"))
    client_generator = register.generator(WorkloadSpec(rate_hz=0.0, keys=KEYS))
    if kind == "null":
        from nullsystem import NullSystem, null_runner

        runner = null_runner(
            workdir / "history.jsonl",
            system=NullSystem(),
            client_generator=client_generator,
            concurrency=concurrency,
            time_limit_s=seconds,
        )
    else:
        cluster = LocalCluster(node_count=3, base_port=port)
        system = make_system(kind, cluster, workdir / "nodes")
        package = packages.build(
            NemesisSpec(),
            system=system,
            firewall=cluster.firewall,
            endpoints=cluster.endpoints(),
            rng=random.Random(1),
        )
        runner = Runner(
            system=system,
            package=package,
            recorder=Recorder(workdir / "history.jsonl"),
            firewall=cluster.firewall,
            concurrency=concurrency,
            seed=1,
            time_limit_s=seconds,
            recovery_s=5,
            client_generator=client_generator,
        )
    recorder = runner.recorder
    clock = MainPhaseClock(runner)
    outcome = runner.run()
    recorder.close()
    (cpu_start, start_ns), (cpu_end, end_ns) = clock.marks["main"], clock.marks["after"]
    pending: dict[Any, int] = {}
    latencies = []
    completed = 0
    for op in read_history(workdir / "history.jsonl"):
        if op.is_nemesis or not start_ns <= op.time_ns <= end_ns:
            continue
        if op.type == "invoke":
            pending[op.process] = op.time_ns
        elif op.process in pending:
            latencies.append((op.time_ns - pending.pop(op.process)) / 1e6)
            completed += 1
    shutil.rmtree(workdir, ignore_errors=True)
    elapsed_s = (end_ns - start_ns) / 1e9
    return {
        "ops_per_s": completed / elapsed_s,
        "latency_ms": statistics.fmean(latencies) if latencies else float("nan"),
        "cpu_ms_per_op": 1000 * (cpu_end - cpu_start) / max(completed, 1),
        "completed": float(outcome.completed),
    }


def direct(kind: str, *, concurrency: int, seconds: float, port: int) -> dict[str, float]:
    """``concurrency`` threads, each calling its own client in a loop: the runner's op mix, no runner."""
    from clusters.local import LocalCluster
    from core import generator as gen
    from core.scenario import WorkloadSpec
    from workloads import register

    # The same op mix the runner drives (its generator, simulated), one list per thread.
    planned = gen.simulate(
        gen.clients(gen.limit(20_000, register.generator(WorkloadSpec(rate_hz=0.0, keys=KEYS)))),
        seed=1,
        concurrency=concurrency,
        max_ops=40_000,
    )
    plans: list[list[dict[str, Any]]] = [[] for _ in range(concurrency)]
    for op in planned:
        if op["type"] == "invoke":
            plans[int(op["process"]) % concurrency].append(op)
    workdir = Path(tempfile.mkdtemp(prefix="ratchet-bench-"))
    system = make_system(
        kind, None if kind == "null" else LocalCluster(node_count=3, base_port=port), workdir
    )
    system.setup()
    counts = [0] * concurrency
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    clients = [system.open_client(process=t, seed=t + 1) for t in range(concurrency)]
    deadline = time.monotonic() + seconds

    def loop(t: int) -> None:
        plan, client, spent = plans[t], clients[t], latencies[t]
        while time.monotonic() < deadline and counts[t] < len(plan):
            began = time.monotonic_ns()
            register.invoke(client, plan[counts[t]])
            spent.append((time.monotonic_ns() - began) / 1e6)
            counts[t] += 1

    threads = [threading.Thread(target=loop, args=(t,)) for t in range(concurrency)]
    started, cpu_before = time.monotonic(), _cpu_s()
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        cpu_s = _cpu_s() - cpu_before
        elapsed = time.monotonic() - started
        for client in clients:
            client.close()
        system.teardown(keep_data=False)
        shutil.rmtree(workdir, ignore_errors=True)
    count = sum(counts)
    every = [ms for spent in latencies for ms in spent]
    return {
        "ops_per_s": count / elapsed,
        "latency_ms": statistics.fmean(every) if every else float("nan"),
        "cpu_ms_per_op": 1000 * cpu_s / max(count, 1),
    }


def spread(values: list[float], digits: int = 3) -> str:
    """``median (min..max)``."""
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}..{max(values):.{digits}f})"


def measure(
    kind: str, clients: list[int], rounds: int, seconds: float, ports: Ports
) -> dict[int, list[tuple[dict[str, float], dict[str, float]]]]:
    """Per client count, one (runner, direct) pair of figures per round."""
    results: dict[int, list[tuple[dict[str, float], dict[str, float]]]] = {c: [] for c in clients}
    for r in range(rounds):
        for c in clients:
            runs: dict[str, Callable[[], dict[str, float]]] = {
                "runner": lambda c=c: drive(kind, concurrency=c, seconds=seconds, port=ports.take()),
                "direct": lambda c=c: direct(kind, concurrency=c, seconds=seconds, port=ports.take()),
            }
            order = ["runner", "direct"] if r % 2 == 0 else ["direct", "runner"]
            got = {name: runs[name]() for name in order}
            run, raw = got["runner"], got["direct"]
            results[c].append((run, raw))
            print(
                f"round {r + 1}/{rounds} clients={c:<3} "
                f"runner {run['cpu_ms_per_op']:.3f} ms cpu/op {run['ops_per_s']:.0f} ops/s | "
                f"direct {raw['cpu_ms_per_op']:.3f} ms cpu/op {raw['ops_per_s']:.0f} ops/s | "
                f"overhead {run['cpu_ms_per_op'] - raw['cpu_ms_per_op']:.3f} ms cpu/op; "
                f"load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", choices=("vr", "kv", "null"), default="vr")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each measured run")
    parser.add_argument("--rounds", type=int, default=5, help="runner and direct runs per client count")
    parser.add_argument("--clients", default="1,50", help="client counts, comma-separated")
    parser.add_argument("--provision", type=int, default=3, help="cluster start/stop timings (0: skip)")
    args = parser.parse_args()
    clients = [int(c) for c in args.clients.split(",")]
    from clusters import namespace

    if args.system == "null":
        args.provision = 0
    else:
        namespace.enter()
    ports = Ports()
    load_before = os.getloadavg()
    print(
        f"system={args.system} nodes=3 rounds={args.rounds} seconds={args.seconds} on {os.cpu_count()} cores"
    )
    if args.provision:
        ups, downs, removals = provision(args.system, args.provision, ports)
        print(f"provision_s    {spread(ups)}  (target < 2 s)")
        print(f"teardown_s     {spread(downs)}  (target < 2 s; stop nodes)")
        print(f"data_removal_s {spread(removals)}  (deleting the data dirs of a valid run)")
    results = measure(args.system, clients, args.rounds, args.seconds, ports)
    print(
        f"load average before {load_before[0]:.1f} {load_before[1]:.1f}, "
        f"after {os.getloadavg()[0]:.1f} {os.getloadavg()[1]:.1f} (1, 5 min)"
    )
    print("median (min..max) over rounds:")
    for c, pairs in results.items():
        overhead = [run["cpu_ms_per_op"] - raw["cpu_ms_per_op"] for run, raw in pairs]
        wall = [
            1000 / max(run["ops_per_s"], 1e-9) * c - 1000 / max(raw["ops_per_s"], 1e-9) * c
            for run, raw in pairs
        ]
        print(
            f"clients={c:<3} harness CPU per op {spread(overhead)} ms (target < 0.1); "
            f"runner {spread([run['cpu_ms_per_op'] for run, _ in pairs])}, "
            f"direct {spread([raw['cpu_ms_per_op'] for _, raw in pairs])} ms cpu/op"
        )
        print(
            f"            ops/s runner {spread([run['ops_per_s'] for run, _ in pairs], 0)}, "
            f"direct {spread([raw['ops_per_s'] for _, raw in pairs], 0)}; "
            f"latency ms runner {spread([run['latency_ms'] for run, _ in pairs], 2)}, "
            f"direct {spread([raw['latency_ms'] for _, raw in pairs], 2)}; "
            f"wall per op per client, runner - direct {spread(wall)} ms"
        )
        if not all(run["completed"] for run, _ in pairs):
            print(f"            (a runner run at clients={c} did not complete every phase)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
