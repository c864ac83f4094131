"""VR against etcd on the same machine, same load shape: ops/s, CPU per op, and the ratio, per round.

Usage: ``python bench/vs_etcd.py [--clients 1,10,50] [--rounds 5] [--seconds 6] [--workload write]``

Starts a 3-node VR cluster (as bench/vr_throughput.py does: fsync on) and a
3-member etcd cluster (Debian's ``etcd-server``; every member on its own
127.0.0.x, fsync on as etcd always does), then for each round and client count
runs the same closed-loop load against each, alternating which goes first, and
prints per-round ops/s, p50/p99 latency, CPU ms per op of the servers and of
the load generators, and VR/etcd. Same client count, same key count (1000),
same values (a random integer, ~10 bytes), same warm-up (one second before the
measured cells). etcd's load generator uses its v3 API through the gRPC
gateway (HTTP/JSON ``/v3/kv/put`` and ``/v3/kv/range``, linearizable reads),
one keep-alive connection per client spread over the members; VR's uses
``vr.client.Client``. Nothing is asserted; it says plainly when etcd is not
installed.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import multiprocessing
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

from vr_throughput import (  # noqa: E402
    KEY_COUNT,
    THREADS_PER_PROCESS_MAX,
    Nodes,
    free_port,
    run_cell,
    wait_for_primary,
)

HOSTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Etcd:
    root: Path
    clients: list[tuple[str, int]]
    processes: list[subprocess.Popen[bytes]]

    @classmethod
    def start(cls, root: Path) -> Etcd:
        peer_ports = [free_port(h) for h in HOSTS]
        client_ports = [free_port(h) for h in HOSTS]
        initial = ",".join(
            f"e{i}=http://{h}:{p}" for i, (h, p) in enumerate(zip(HOSTS, peer_ports, strict=True))
        )
        processes = []
        for i, host in enumerate(HOSTS):
            directory = root / f"etcd{i}"
            directory.mkdir()
            argv = [
                "etcd",
                "--name",
                f"e{i}",
                "--data-dir",
                str(directory / "data"),
                "--listen-peer-urls",
                f"http://{host}:{peer_ports[i]}",
                "--initial-advertise-peer-urls",
                f"http://{host}:{peer_ports[i]}",
                "--listen-client-urls",
                f"http://{host}:{client_ports[i]}",
                "--advertise-client-urls",
                f"http://{host}:{client_ports[i]}",
                "--initial-cluster",
                initial,
                "--initial-cluster-state",
                "new",
                "--initial-cluster-token",
                "ratchet-bench",
                "--log-level",
                "error",
            ]
            log = (directory / "etcd.log").open("wb")
            processes.append(subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log))
        return cls(root, list(zip(HOSTS, client_ports, strict=True)), processes)

    def wait_ready(self, *, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                status, _ = request(
                    http.client.HTTPConnection(*self.clients[0], timeout=2), "put", "ready", "1"
                )
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"etcd did not accept a write within {timeout_s} s (logs in {self.root})")

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def request(
    conn: http.client.HTTPConnection, op: str, key: str, value: str | None = None
) -> tuple[int, bytes]:
    if op == "put":
        path, body = "/v3/kv/put", {"key": _b64(key), "value": _b64(value or "")}
    else:
        path, body = "/v3/kv/range", {"key": _b64(key)}
    conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    return response.status, response.read()


def etcd_load_process(
    endpoints: list[tuple[str, int]],
    threads: int,
    seconds: float,
    read_fraction: float,
    seed: int,
    queue: Any,
) -> None:
    """One load-generator process: ``threads`` closed-loop etcd clients for ``seconds``."""
    latencies_ms: list[float] = []
    outcomes = {"ok": 0, "fail": 0, "info": 0}
    lock = threading.Lock()
    start_times = os.times()
    stop_at = time.monotonic() + seconds

    def worker(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        conn = http.client.HTTPConnection(*endpoints[(seed + index) % len(endpoints)], timeout=5)
        local: list[float] = []
        counts = {"ok": 0, "fail": 0, "info": 0}
        while time.monotonic() < stop_at:
            key = f"k{rng.randrange(KEY_COUNT)}"
            began = time.perf_counter()
            try:
                if rng.random() < read_fraction:
                    status, _ = request(conn, "range", key)
                else:
                    status, _ = request(conn, "put", key, str(rng.randrange(1 << 30)))
            except (OSError, http.client.HTTPException):
                counts["info"] += 1
                conn.close()
                continue
            if status != 200:
                counts["fail"] += 1
                continue
            local.append((time.perf_counter() - began) * 1000)
            counts["ok"] += 1
        conn.close()
        with lock:
            latencies_ms.extend(local)
            for name, count in counts.items():
                outcomes[name] += count

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    end_times = os.times()
    queue.put(
        {
            "latencies_ms": latencies_ms,
            "outcomes": outcomes,
            "cpu_s": end_times.user + end_times.system - start_times.user - start_times.system,
        }
    )


def etcd_cell(etcd: Etcd, *, clients: int, read_fraction: float, seconds: float, seed: int) -> dict[str, Any]:
    processes = max(1, -(-clients // THREADS_PER_PROCESS_MAX))
    shares = [clients // processes + (1 if i < clients % processes else 0) for i in range(processes)]
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    servers_before = sum(cpu_s(p.pid) for p in etcd.processes)
    workers = [
        context.Process(
            target=etcd_load_process,
            args=(etcd.clients, share, seconds, read_fraction, seed + 100 * i, queue),
        )
        for i, share in enumerate(shares)
    ]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=seconds + 60) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    servers_cpu_s = sum(cpu_s(p.pid) for p in etcd.processes) - servers_before
    latencies = sorted(x for r in results for x in r["latencies_ms"])
    ops = max(len(latencies), 1)
    return {
        "ops_per_s": len(latencies) / seconds,
        "latency_ms_p50": statistics.median(latencies) if latencies else float("nan"),
        "latency_ms_p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        if latencies
        else float("nan"),
        "servers_cpu_ms_per_op": 1000 * servers_cpu_s / ops,
        "loadgen_cpu_ms_per_op": 1000 * sum(r["cpu_s"] for r in results) / ops,
        "fail": sum(r["outcomes"]["fail"] for r in results),
        "info": sum(r["outcomes"]["info"] for r in results),
    }


def vr_cell(nodes: Nodes, *, clients: int, read_fraction: float, seconds: float, seed: int) -> dict[str, Any]:
    row = run_cell(nodes, clients=clients, read_fraction=read_fraction, seconds=seconds, seed=seed)
    return {
        "ops_per_s": row["ops_per_s"],
        "latency_ms_p50": row["latency_ms_p50"],
        "latency_ms_p99": row["latency_ms_p99"],
        "servers_cpu_ms_per_op": row["nodes_cpu_ms_per_op"],
        "loadgen_cpu_ms_per_op": row["loadgen_cpu_ms_per_op"],
        "fail": row["fail"],
        "info": row["info"],
    }


def line(system: str, clients: int, round_: int, row: dict[str, Any]) -> str:
    return (
        f"round {round_} {system:<4} {clients:>3} clients: {row['ops_per_s']:>7.0f} ops/s  "
        f"p50 {row['latency_ms_p50']:>6.2f} ms  p99 {row['latency_ms_p99']:>6.2f} ms  "
        f"servers {row['servers_cpu_ms_per_op']:.3f} ms/op  load generator {row['loadgen_cpu_ms_per_op']:.3f} ms/op  "
        f"fail {row['fail']} info {row['info']}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--clients", default="1,10,50")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--workload", choices=("write", "mixed"), default="write")
    parser.add_argument("--dir", default=None, help="where data files go (default: a fresh temp dir)")
    args = parser.parse_args()
    if shutil.which("etcd") is None:
        print("etcd is not installed here (apt-get install etcd-server): nothing to compare against.")
        return 0
    version = subprocess.run(
        ["etcd", "--version"], capture_output=True, text=True, check=False
    ).stdout.splitlines()
    read_fraction = {"write": 0.0, "mixed": 0.5}[args.workload]
    counts = [int(c) for c in args.clients.split(",")]
    root = Path(tempfile.mkdtemp(prefix="vs-etcd-", dir=args.dir))
    (root / "vr").mkdir()
    (root / "etcd").mkdir()
    nodes = Nodes.start(root / "vr", tick_ms=10, node_argv=[sys.executable, "-m", "vr.node"])
    etcd = Etcd.start(root / "etcd")
    ratios: dict[int, list[float]] = {c: [] for c in counts}
    try:
        wait_for_primary(nodes.peers, timeout_s=20)
        etcd.wait_ready(timeout_s=30)
        print(f"{version[0] if version else 'etcd'}; VR peers {nodes.peers}; {os.cpu_count()} cpus; "
              f"loadavg {os.getloadavg()[0]:.1f}; workload {args.workload}, {args.seconds:.0f} s a cell")  # fmt: skip
        vr_cell(nodes, clients=10, read_fraction=read_fraction, seconds=1.0, seed=1)  # warm-up, both alike
        etcd_cell(etcd, clients=10, read_fraction=read_fraction, seconds=1.0, seed=1)
        for round_ in range(1, args.rounds + 1):
            for clients in counts:
                seed = 1000 * round_ + clients
                order = ("vr", "etcd") if round_ % 2 else ("etcd", "vr")
                rows = {}
                for system in order:
                    cell = vr_cell if system == "vr" else etcd_cell
                    target = nodes if system == "vr" else etcd
                    rows[system] = cell(
                        target, clients=clients, read_fraction=read_fraction, seconds=args.seconds, seed=seed
                    )  # type: ignore[arg-type]
                    print(line(system, clients, round_, rows[system]), flush=True)
                ratio = (
                    rows["vr"]["ops_per_s"] / rows["etcd"]["ops_per_s"]
                    if rows["etcd"]["ops_per_s"]
                    else float("nan")
                )
                ratios[clients].append(ratio)
                print(f"round {round_} VR/etcd at {clients} clients: {ratio:.2f}x", flush=True)
        for clients, values in ratios.items():
            print(
                f"VR/etcd at {clients:>3} clients over {len(values)} rounds: median {statistics.median(values):.2f}x "
                f"(min {min(values):.2f}, max {max(values):.2f})"
            )
    finally:
        nodes.stop()
        etcd.stop()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
