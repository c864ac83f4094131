"""Cost of each cluster home: provision and teardown, ops/s at 50 clients, partition inject and heal.

Usage: ``python bench/homes.py [--homes local,docker,ssh] [--sizes 3,5] [--seconds 5] [--repeats 5]``

For each home (one row of :data:`HOMES`: how to make its cluster, and how to run a
measurement process in it) and each size (``--sizes``: 3 and 5 nodes unless told, e.g.
``--sizes 3,5,7``) this prints:

- provision: the cluster made (containers, network, ...) and a VR cluster on it healthy;
  ``cluster_s`` is the home's own part, ``healthy_s`` until every node is normal in one view;
- teardown: the nodes stopped and the home released (``close()``);
and, on 3 nodes:
- ops/s with 50 closed-loop clients writing for ``--seconds`` (threads of one process,
  so the Python client is part of the figure in every home alike; the ratio to the local
  home, measured in the same invocation, is what compares homes);
- partition inject and heal: the mean time of ``firewall.apply`` of "n1 cut off both ways"
  (read back included) and of ``firewall.heal``, over ``--repeats``.

Each home is measured in a process of its own: the local home must live in private
namespaces (clusters.namespace), which would hide a docker bridge. Prints the load
average beside the figures. Nothing is asserted; every step is bounded.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CLIENTS = 50
SIZES = (1, 3, 5, 7, 9)  # what `ratchet run --nodes` accepts
HEALTHY_TIMEOUT_S = 30.0


def make_local(nodes: int, run_dir: Path) -> Any:
    from clusters.local import LocalCluster

    return LocalCluster(node_count=nodes)


def make_docker(nodes: int, run_dir: Path) -> Any:
    from clusters.docker import DockerCluster

    return DockerCluster(node_count=nodes, run_dir=run_dir)


SSH_HOSTS_ENV = "RATCHET_BENCH_SSH_HOSTS"


def make_ssh(nodes: int, run_dir: Path) -> Any:
    """The ssh home on the first ``nodes`` test hosts that :func:`in_ssh_control` made (sshd in network
    namespaces, tests/clusters/sshhosts.py); this process already runs in their control namespace."""
    from clusters.ssh.cluster import SSHCluster
    from clusters.ssh.connection import Login

    hosts = json.loads(os.environ[SSH_HOSTS_ENV])
    login = Login(username="root", private_key=hosts["key"], known_hosts=hosts["known_hosts"])
    return SSHCluster(
        hosts["addresses"][:nodes], login, run_dir=run_dir, remote_dir=hosts["remote_dir"], keep_data="never"
    )


def in_ssh_control(argv: list[str], count: int) -> list[str]:
    """Make ``count`` sshd hosts (closed when this process exits) and run ``argv`` in their control
    namespace: host set-up stays out of the ssh home's provision figure."""
    import atexit

    from tests.clusters.sshhosts import SSHHosts, available

    reason = available()
    if reason:
        raise RuntimeError(f"ssh test hosts unavailable: {reason}")
    workdir = Path(tempfile.mkdtemp(prefix="ratchet-bench-sshhosts-"))
    hosts = SSHHosts(count, workdir).start()
    atexit.register(hosts.close)
    described = {
        "addresses": hosts.addresses,
        "key": str(hosts.key),
        "known_hosts": str(hosts.known_hosts),
        "remote_dir": hosts.remote_dir,
    }
    return hosts.in_control("env", f"{SSH_HOSTS_ENV}={json.dumps(described)}", *argv)


def in_namespace(argv: list[str], count: int) -> list[str]:
    return [sys.executable, "-m", "clusters.namespace", "--", *argv]


def as_is(argv: list[str], count: int) -> list[str]:
    return argv


# home -> (make its cluster, wrap the measuring process's argv given the most nodes it will need).
HOMES: dict[str, tuple[Callable[[int, Path], Any], Callable[[list[str], int], list[str]]]] = {
    "local": (make_local, in_namespace),
    "docker": (make_docker, as_is),
    "ssh": (make_ssh, in_ssh_control),
}


def provision(home: str, nodes: int, root: Path) -> tuple[Any, Any, dict[str, float]]:
    from systems.vr.system import VRSystem

    run_dir = root / f"{home}-{nodes}" / "run"
    run_dir.mkdir(parents=True)
    began = time.monotonic()
    cluster = HOMES[home][0](nodes, run_dir)
    made = time.monotonic()
    system = VRSystem(cluster, nodes_dir=run_dir / "nodes", bug=None, seed=1, client_timeout_s=2.0)
    system.setup()
    healthy = time.monotonic()
    return cluster, system, {"cluster_s": made - began, "healthy_s": healthy - began}


def teardown(cluster: Any, system: Any) -> float:
    began = time.monotonic()
    system.teardown(keep_data=False)
    cluster.close()
    return time.monotonic() - began


def ops_per_s(system: Any, seconds: float) -> float:
    stop = threading.Event()
    counts = [0] * CLIENTS

    def worker(index: int) -> None:
        client = system.open_client(process=index, seed=index)
        try:
            n = 0
            while not stop.is_set():
                try:
                    client.write(f"k{index % 100}", n)
                    counts[index] += 1
                except Exception:
                    pass
                n += 1
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(CLIENTS)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join(timeout=10)
    return sum(counts) / (time.monotonic() - began)


def partition_times(cluster: Any, repeats: int) -> dict[str, float]:
    from clusters.firewall import Drop

    eps = cluster.endpoints()
    drops = [Drop(eps["n1"], eps[o]) for o in eps if o != "n1"] + [
        Drop(eps[o], eps["n1"]) for o in eps if o != "n1"
    ]
    inject, heal = [], []
    for _ in range(repeats):
        began = time.monotonic()
        cluster.firewall.apply("partition", drops)
        inject.append(time.monotonic() - began)
        began = time.monotonic()
        cluster.firewall.heal("partition")
        heal.append(time.monotonic() - began)
    cluster.firewall.teardown()
    return {"inject_s": sum(inject) / repeats, "heal_s": sum(heal) / repeats}


def measure(home: str, seconds: float, repeats: int, sizes: list[int]) -> dict[str, Any]:
    row: dict[str, Any] = {"home": home}
    with tempfile.TemporaryDirectory(prefix=f"ratchet-bench-{home}-") as tmp:
        for nodes in sizes:
            cluster, system, times = provision(home, nodes, Path(tmp))
            try:
                if nodes == 3:
                    row["ops_per_s"] = ops_per_s(system, seconds)
                    row.update(partition_times(cluster, repeats))
            finally:
                row[f"teardown_{nodes}_s"] = teardown(cluster, system)
            row[f"cluster_{nodes}_s"] = times["cluster_s"]
            row[f"healthy_{nodes}_s"] = times["healthy_s"]
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--homes", default="local,docker", help=f"comma-separated among {', '.join(HOMES)}")
    parser.add_argument("--seconds", type=float, default=5.0, help="write phase at 50 clients (s)")
    parser.add_argument("--repeats", type=int, default=5, help="partition inject/heal repetitions")
    parser.add_argument(
        "--sizes", default="3,5", help="cluster sizes, comma-separated (3 always: ops/s, partition)"
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)  # measure this home in this process, print JSON
    args = parser.parse_args()
    try:
        sizes = sorted({3, *(int(n) for n in args.sizes.split(",") if n.strip())})
    except ValueError:
        sizes = []
    if not sizes or not all(n in SIZES for n in sizes):
        print(f"error: --sizes {args.sizes!r}: cluster sizes among {SIZES}, comma-separated", file=sys.stderr)
        return 3
    if args.one:
        print(json.dumps(measure(args.one, min(args.seconds, 60.0), max(1, min(args.repeats, 50)), sizes)))
        return 0
    homes = [h.strip() for h in args.homes.split(",") if h.strip()]
    unknown = [h for h in homes if h not in HOMES]
    if unknown:
        print(f"error: unknown home(s) {unknown}; known: {', '.join(HOMES)}", file=sys.stderr)
        return 3
    rows = []
    for home in homes:
        argv = HOMES[home][1]([sys.executable, __file__, "--one", home, "--seconds", str(args.seconds),
                               "--repeats", str(args.repeats), "--sizes", ",".join(map(str, sizes))],
                              max(sizes))  # fmt: skip
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False,
                              cwd=Path(__file__).resolve().parent.parent)  # fmt: skip
        if proc.returncode != 0:
            print(f"{home}: failed (exit {proc.returncode}): {proc.stderr.strip()[-1500:]}", file=sys.stderr)
            continue
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    local = next((r["ops_per_s"] for r in rows if r["home"] == "local"), None)
    print(f"load average: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} (cores: {os.cpu_count()})")
    header = ["home"]
    for n in sizes:
        header += [f"prov{n} s", f"ready{n} s", f"down{n} s"]
    header += ["ops/s@50", "vs local", "inject s", "heal s"]
    print(" ".join(f"{h:>9}" for h in header))
    for r in rows:
        ratio = f"{r['ops_per_s'] / local:.2f}" if local else "-"
        cells = [r["home"]]
        for n in sizes:
            cells += [
                f"{r[f'cluster_{n}_s']:.2f}",
                f"{r[f'healthy_{n}_s']:.2f}",
                f"{r[f'teardown_{n}_s']:.2f}",
            ]
        cells += [f"{r['ops_per_s']:.0f}", ratio, f"{r['inject_s']:.3f}", f"{r['heal_s']:.3f}"]
        print(" ".join(f"{c:>9}" for c in cells))
    print("prov = the home's cluster made; ready = until VR is healthy on it (from the same start); "
          "down = nodes stopped and home released; inject/heal = partition isolating n1, both ways")  # fmt: skip
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
