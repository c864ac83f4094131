"""Run inside a run namespace (``python -m clusters.namespace -- python netprobe.py MODE``).

Proves the local cluster's faults on plain real processes, independent of VR:
each "node" is a tiny TCP echo server started through ``LocalCluster.spawn``
on the node's address, and "can A reach B" is measured by a probe process that
connects to B from A's address (as a VR node dials its peers) and expects its
bytes echoed. Prints one JSON object with what it saw.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from clusters.local import LocalCluster
from core.cluster import ClusterNodes
from nemeses import grudges
from nemeses.faults import KillNemesis, LossNemesis, PartitionNemesis, PauseNemesis

ECHO = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(16)
while True:
    c, _ = s.accept()
    c.settimeout(0.3)
    try:
        c.sendall(c.recv(64))
    except OSError:
        pass
    c.close()
"""

PROBE = """
import socket, sys
ok = 0
for _ in range(int(sys.argv[3])):
    try:
        c = socket.create_connection(
            (sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[4]), source_address=(sys.argv[5], 0)
        )
        c.settimeout(float(sys.argv[4])); c.sendall(b"ping"); ok += c.recv(8) == b"ping"; c.close()
    except OSError:
        pass
print(ok)
"""


class EchoSystem(ClusterNodes):
    """The smallest System: echo servers as nodes (enough for pause/kill/primary)."""

    name = "echo"

    def __init__(self, cluster: LocalCluster, workdir: Path) -> None:
        self.cluster, self.workdir = cluster, workdir

    def start(self, node: str) -> None:
        n = self.cluster.node(node)
        self.cluster.spawn(
            node, [sys.executable, "-c", ECHO, n.host, str(n.port)], output_path=self.workdir / f"{node}.out"
        )

    def setup(self) -> None:
        for node in self.node_names():
            self.start(node)
        time.sleep(0.4)

    def primary(self) -> str | None:
        return self.node_names()[0]


def reach(cluster: LocalCluster, src: str, dst: str, *, tries: int = 1, timeout_s: float = 0.4) -> int:
    """How many of ``tries`` echo round trips from ``src``'s address to ``dst`` succeed."""
    target = cluster.node(dst)
    argv = [sys.executable, "-c", PROBE, target.host, str(target.port), str(tries), str(timeout_s)]
    proc = subprocess.run(
        [*argv, cluster.node(src).host], capture_output=True, text=True, timeout=30, check=True
    )
    return int(proc.stdout.strip())


def matrix(cluster: LocalCluster, **kw: float) -> dict[str, list[str]]:
    """node -> sorted nodes it can reach."""
    names = cluster.names()
    return {a: [b for b in names if b != a and reach(cluster, a, b, **kw) > 0] for a in names}  # type: ignore[arg-type]


def partitions(nodes: int, shapes: list[str]) -> dict[str, object]:
    cluster = LocalCluster(node_count=nodes)
    work = Path(tempfile.mkdtemp())
    system = EchoSystem(cluster, work)
    system.setup()
    out: dict[str, object] = {"before": matrix(cluster), "shapes": {}}
    for shape in shapes:
        nemesis = PartitionNemesis(
            system=system,
            firewall=cluster.firewall,
            endpoints=cluster.endpoints(),
            shapes=[shape],
            rng=random.Random(7),
        )
        value = nemesis.start()
        during = matrix(cluster)
        installed = cluster.firewall.installed("partition")
        healed = nemesis.stop()
        after = matrix(cluster)
        expected = grudges.hears({k: frozenset(v) for k, v in value["grudge"].items()}, cluster.names())
        out["shapes"][shape] = {  # type: ignore[index]
            "value": value,
            "during": during,
            "after": after,
            "rules": installed,
            "healed": healed,
            "expected": {a: sorted(expected.successors(a)) for a in cluster.names()},
        }
    out["backend"] = cluster.firewall.backend
    out["removed_table"] = cluster.firewall.teardown()
    out["table_left"] = not cluster.firewall.ruleset_empty_of_ours()
    cluster.stop_all()
    out["leftover"] = cluster.leftover_processes()
    return out


def loss() -> dict[str, object]:
    cluster = LocalCluster(node_count=2)
    system = EchoSystem(cluster, Path(tempfile.mkdtemp()))
    system.setup()
    before = reach(cluster, "n1", "n2", tries=20, timeout_s=1.0)
    nemesis = LossNemesis(
        firewall=cluster.firewall, endpoints=cluster.endpoints(), fraction=0.6, rng=random.Random(3)
    )
    value = nemesis.start()
    during = reach(cluster, "n1", "n2", tries=20, timeout_s=0.2)
    nemesis.stop()
    time.sleep(0.5)  # let the echo server drop connections half-lost during the fault
    after = reach(cluster, "n1", "n2", tries=20, timeout_s=1.0)
    removed = cluster.firewall.teardown()
    cluster.stop_all()
    return {
        "before": before,
        "during": during,
        "after": after,
        "value": value,
        "removed_table": removed,
        "leftover": cluster.leftover_processes(),
    }


def processes() -> dict[str, object]:
    cluster = LocalCluster(node_count=3)
    system = EchoSystem(cluster, Path(tempfile.mkdtemp()))
    system.setup()
    out: dict[str, object] = {}
    pause = PauseNemesis(system=system, specs=["one"], rng=random.Random(5))
    value = pause.start()
    target = value["targets"][0]
    other = next(n for n in cluster.names() if n != target)
    state = Path(f"/proc/{cluster.pid(target)}/stat").read_text().split()[2]
    out["pause"] = {
        "value": value,
        "state": state,
        "reach_during": reach(cluster, other, target, timeout_s=0.3),
    }
    out["pause"]["stop"] = pause.stop()  # type: ignore[index]
    out["pause"]["reach_after"] = reach(cluster, other, target)  # type: ignore[index]
    kill = KillNemesis(system=system, specs=["primary"], rng=random.Random(5))
    old_pid = cluster.pid("n1")
    value = kill.start()
    out["kill"] = {
        "value": value,
        "running_during": cluster.is_running("n1"),
        "reach_during": reach(cluster, "n2", "n1", timeout_s=0.3),
    }
    stop = kill.stop()
    time.sleep(0.4)
    out["kill"].update(
        {
            "stop": stop,
            "new_pid_differs": cluster.pid("n1") != old_pid,  # type: ignore[attr-defined]
            "reach_after": reach(cluster, "n2", "n1"),
        }
    )
    cluster.stop_all()
    out["leftover"] = cluster.leftover_processes()
    return out


def hold() -> None:
    """Start nodes and a rule, report the namespace, then wait to be killed."""
    cluster = LocalCluster(node_count=2)
    system = EchoSystem(cluster, Path(tempfile.mkdtemp()))
    system.setup()
    PartitionNemesis(
        system=system,
        firewall=cluster.firewall,
        endpoints=cluster.endpoints(),
        shapes=["one"],
        rng=random.Random(1),
    ).start()
    print(
        json.dumps(
            {
                "netns": os.stat("/proc/self/ns/net").st_ino,
                "mntns": os.stat("/proc/self/ns/mnt").st_ino,
                "pids": [cluster.pid(n) for n in cluster.names()],
            }
        ),
        flush=True,
    )
    signal.pause()


def main() -> None:
    mode = sys.argv[1]
    if mode == "partitions":
        result = partitions(int(sys.argv[2]), sys.argv[3].split(","))
    elif mode == "loss":
        result = loss()
    elif mode == "processes":
        result = processes()
    elif mode == "hold":
        hold()
        return
    else:
        raise SystemExit(f"unknown mode {mode}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
