"""What the harness itself costs. Prints figures; asserts nothing about time.

1. provision / teardown: time to start a 3-node local cluster until it is healthy
   (every node normal, one view), and to stop it (target: under 2 s each).
2. throughput: the most ops/s the runner drives with 50 client threads and no
   rate limit (no faults), and the per-op latency it records.
3. overhead: one client thread through the runner vs the same client called
   directly in a loop; the difference per op is what the generator interpreter,
   the history (append + flush) and the thread hand-offs add. As wall time (which
   the system's own latency and the machine's load swamp on a busy machine) and
   as this process's CPU time per op (the nodes are other processes).

Runs inside its own run namespace (like ``ratchet run``), so it needs root or
user namespaces. ``--system kv`` measures against the test KV server instead of
VR (useful to separate harness cost from the system's).

    python bench/harness_overhead.py [--system vr|kv] [--seconds 10] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "harness"))


def make_system(kind: str, cluster: Any, nodes_dir: Path) -> Any:
    if kind == "kv":
        from kvsystem import KVSystem

        return KVSystem(cluster, nodes_dir=nodes_dir, volatile=False, client_timeout_s=1.0)
    from systems.vr.system import VRSystem

    return VRSystem(cluster, nodes_dir=nodes_dir, bug=None, seed=1, client_timeout_s=1.0)


def provision(kind: str, repeat: int) -> tuple[list[float], list[float], list[float]]:
    from clusters.local import LocalCluster

    ups, downs, removals = [], [], []
    for i in range(repeat):
        cluster = LocalCluster(node_count=3, base_port=7300 + 10 * i)
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


def drive(kind: str, *, concurrency: int, seconds: float, port: int) -> dict[str, float]:
    from checkers.history import read_history
    from clusters.local import LocalCluster
    from core.scenario import NemesisSpec, WorkloadSpec
    from harness.runner import Recorder, Runner
    from nemeses import packages
    from workloads import register

    workdir = Path(tempfile.mkdtemp(prefix="ratchet-bench-"))
    cluster = LocalCluster(node_count=3, base_port=port)
    system = make_system(kind, cluster, workdir / "nodes")
    package = packages.build(
        NemesisSpec(),
        system=system,
        firewall=cluster.firewall,
        endpoints=cluster.endpoints(),
        rng=__import__("random").Random(1),
    )
    recorder = Recorder(workdir / "history.jsonl")
    spec = WorkloadSpec(rate_hz=0.0, keys=8)
    runner = Runner(
        system=system,
        package=package,
        recorder=recorder,
        firewall=cluster.firewall,
        concurrency=concurrency,
        seed=1,
        time_limit_s=seconds,
        recovery_s=5,
        client_generator=register.generator(spec),
    )
    cpu_before = _cpu_s()
    outcome = runner.run()
    cpu_s = _cpu_s() - cpu_before
    recorder.close()
    ops = read_history(workdir / "history.jsonl")
    invokes = {(op.process, op.index): op for op in ops if op.type == "invoke"}
    pending: dict[Any, Any] = {}
    latencies = []
    ok = 0
    completed = 0
    for op in ops:
        if op.is_nemesis:
            continue
        if op.type == "invoke":
            pending[op.process] = op
        elif op.process in pending:
            latencies.append((op.time_ns - pending.pop(op.process).time_ns) / 1e6)
            ok += op.type == "ok"
            completed += 1
    del invokes
    return {
        "ok_per_s": ok / seconds,
        "ops_per_s": completed / seconds,
        "latency_ms_mean": statistics.fmean(latencies) if latencies else float("nan"),
        "latency_ms_p99": sorted(latencies)[int(0.99 * (len(latencies) - 1))] if latencies else float("nan"),
        "completed": float(outcome.completed),
        "cpu_ms_per_op": 1000 * cpu_s / max(completed, 1),
    }


def direct(kind: str, *, seconds: float, port: int) -> dict[str, float]:
    from clusters.local import LocalCluster
    from workloads import register

    cluster = LocalCluster(node_count=3, base_port=port)
    system = make_system(kind, cluster, Path(tempfile.mkdtemp(prefix="ratchet-bench-")))
    system.setup()
    from core import generator as gen
    from core.scenario import WorkloadSpec

    # The same op mix the runner drives (its generator, simulated), called directly.
    planned = gen.simulate(
        gen.clients(gen.limit(20_000, register.generator(WorkloadSpec(rate_hz=0.0)))), seed=1, concurrency=1
    )
    ops = [op for op in planned if op["type"] == "invoke"]
    client = system.open_client(process=0, seed=1)
    count = 0
    started = time.monotonic()
    cpu_before = _cpu_s()
    try:
        while time.monotonic() - started < seconds and count < len(ops):
            register.invoke(client, ops[count])
            count += 1
    finally:
        cpu_s = _cpu_s() - cpu_before
        client.close()
        system.teardown(keep_data=False)
    elapsed = time.monotonic() - started
    return {
        "ops_per_s": count / elapsed,
        "latency_ms_mean": 1000 * elapsed / max(count, 1),
        "cpu_ms_per_op": 1000 * cpu_s / max(count, 1),
    }


def _cpu_s() -> float:
    """CPU seconds of this process (the runner or the direct loop, and the client; the nodes are
    other processes): what the harness adds per op, as the machine's load does not move it."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", choices=("vr", "kv"), default="vr")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from clusters import namespace

    namespace.enter()
    ups, downs, removals = provision(args.system, args.repeat)
    print(
        f"system={args.system} nodes=3 repeat={args.repeat}; load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    print(f"provision_s   median={statistics.median(ups):.3f} max={max(ups):.3f}  (target < 2 s)")
    print(
        f"teardown_s    median={statistics.median(downs):.3f} max={max(downs):.3f}  (target < 2 s; stop nodes)"
    )
    print(f"data_removal_s median={statistics.median(removals):.3f} (deleting the data dirs of a valid run)")
    many = drive(args.system, concurrency=50, seconds=args.seconds, port=7400)
    print(
        f"runner 50 clients: ok_per_s={many['ok_per_s']:.0f} latency_ms_mean={many['latency_ms_mean']:.2f} "
        f"latency_ms_p99={many['latency_ms_p99']:.2f}"
    )
    one = drive(args.system, concurrency=1, seconds=args.seconds / 2, port=7500)
    raw = direct(args.system, seconds=args.seconds / 2, port=7600)
    per_op_ms = 1000 / max(one["ops_per_s"], 1e-9) - 1000 / max(raw["ops_per_s"], 1e-9)
    print(f"runner 1 client:  ops_per_s={one['ops_per_s']:.0f} latency_ms_mean={one['latency_ms_mean']:.3f}")
    print(f"direct 1 client:  ops_per_s={raw['ops_per_s']:.0f} latency_ms_mean={raw['latency_ms_mean']:.3f}")
    print(
        f"harness overhead per op (1 client, wall time per op through the runner minus direct): "
        f"{per_op_ms:.3f} ms (target < 0.1 ms); load {os.getloadavg()[0]:.1f}"
    )
    print(
        f"harness CPU per op (this process: runner + client vs client alone): "
        f"{one['cpu_ms_per_op']:.3f} - {raw['cpu_ms_per_op']:.3f} = "
        f"{one['cpu_ms_per_op'] - raw['cpu_ms_per_op']:.3f} ms; at 50 clients {many['cpu_ms_per_op']:.3f} ms per op"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
