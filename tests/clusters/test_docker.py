"""The docker home, against a real docker engine: image, containers, nft partitions, signals, teardown.

Claims (default suite, bounded; about a minute in all on an idle machine):
- the node image is built from Debian packages only, cached (a second build reuses it), and a
  node sees python3, nft and libfaketime but not the host's /usr/local;
- a 3-node cluster provisions on its own bridge network, a VR cluster runs in it, a partition
  installed with nft inside the containers really cuts TCP between two nodes and the heal
  restores it, pause and kill reach the node process, and close() leaves no container or network;
- a node process's clock follows its libfaketime control file live (clock faults work in containers);
- a fault the containers cannot take (messages) is refused before anything starts (exit 3);
- a faultfs mounted on this host over a node's data directory after its container started is
  what the node's process writes through (an fsync rule fails its fsync); close() stops it;
- SIGINT to ``ratchet run --cluster docker`` removes the run's containers and network (and, with
  disk faults, its faultfs daemons and mounts);
- a SIGKILLed controller's containers and network are removed by the next docker run's check;
  ``ratchet clean`` removes dangling objects and keeps a live run's unless ``--all``;
- a run refuses to start over objects of its own run id.
Behind ``soak``: the 60 s partition+kill+pause scenario is valid, read-from-backup is found with
clients bound to nodes, 5- and 7-node clusters run valid, disk and power-cut faults run valid and
leave no mount, and a SIGKILLed disk run's faultfs daemons and mounts go with ``ratchet clean``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.clusters.docker_engine import Engine

pytestmark = [pytest.mark.integration]

LABEL = "org.ratchet.managed=1"


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    found = Engine().start()
    yield found
    found.stop()


@pytest.fixture(scope="session")
def client(engine: Engine) -> Any:
    if engine.client is None:
        pytest.skip(engine.skip_reason or "no docker engine")
    return engine.client


@pytest.fixture(scope="session")
def node_image(client: Any) -> Any:
    """The cached node image, built once per session (0.7-1.5 s measured); skips, with docker's
    reason, where the engine answers but cannot run a container (e.g. no cgroups in a CI box)."""
    import docker.errors

    from clusters.docker import image

    built = image.build(client)
    try:
        client.containers.run(image.DEFAULT_IMAGE, ["true"], remove=True, volumes=["/usr:/usr:ro"])
    except docker.errors.DockerException as exc:
        pytest.skip(f"the docker engine cannot run a container here: {exc}")
    return built


def ratchet(*args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def objects_of(client: Any, run_id: str) -> tuple[list[str], list[str]]:
    wanted = {"label": [LABEL, f"org.ratchet.run={run_id}"]}
    containers = [c.name for c in client.containers.list(all=True, filters=wanted)]
    networks = [n.name for n in client.networks.list(filters=wanted)]
    return containers, networks


def test_image_is_cached_and_holds_debian_tools_only(client: Any, node_image: Any) -> None:
    from clusters.docker import image

    again = image.build(client)
    assert again.reused and again.id == node_image.id
    labels = client.images.get(image.DEFAULT_IMAGE).labels
    assert labels["org.ratchet.recipe"] == image.recipe_hash()
    out = client.containers.run(
        image.DEFAULT_IMAGE,
        ["sh", "-c", "python3 -c 'import vr.node' && nft --version && ls -A /usr/local | wc -l "
         "&& ls /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"],
        remove=True,
        volumes=image.node_mounts(Path(__file__).resolve().parents[2] / "vr"),
        tmpfs=image.NODE_TMPFS,
    ).decode()  # fmt: skip
    lines = out.split()
    assert "nftables" in out and lines[-2] == "0", out  # /usr/local masked: only Debian packages
    assert lines[-1].endswith("libfaketime.so.1")


def _connects(cluster: Any, src: str, dst: Any) -> bool:
    code, _ = cluster.exec_in(
        src,
        ["python3", "-c", f"import socket; socket.create_connection(('{dst.host}', {dst.port}), timeout=1)"],
    )
    return code == 0


def test_three_nodes_partition_pause_kill_and_close(client: Any, node_image: Any, tmp_path: Path) -> None:
    from clusters.docker import DockerCluster
    from clusters.firewall import Drop
    from systems.vr.system import VRSystem

    run_dir = tmp_path / "store" / "docker-test" / "run1"
    run_dir.mkdir(parents=True)
    cluster = DockerCluster(node_count=3, run_dir=run_dir)
    try:
        assert [n.host for n in cluster.nodes] == [str(cluster.subnet.network_address + i) for i in (2, 3, 4)]
        system = VRSystem(cluster, nodes_dir=run_dir / "nodes", bug=None, seed=7, client_timeout_s=1.0)
        system.setup()
        vr_client = system.open_client(process=0, seed=1)
        vr_client.write("k", 1)
        assert vr_client.read("k") == 1
        n1, n2 = cluster.node("n1").endpoint(), cluster.node("n2").endpoint()
        assert _connects(cluster, "n1", n2)
        cluster.firewall.apply("partition", [Drop(n1, n2), Drop(n2, n1)])
        assert sorted(cluster.firewall.installed("partition")) == ["n1->n2", "n2->n1"]
        assert not _connects(cluster, "n1", n2)  # real TCP, cut by nft in n1's container
        assert _connects(cluster, "n1", cluster.node("n3").endpoint())
        assert cluster.firewall.heal("partition")
        assert _connects(cluster, "n1", n2)
        primary = system.primary()
        assert primary is not None
        assert cluster.pause(primary) and cluster.is_paused(primary)
        assert cluster.resume(primary)
        pid = cluster.pid(primary)
        assert cluster.kill(primary) and not cluster.is_running(primary)
        assert cluster.exit_code(primary) == 128 + signal.SIGKILL
        system.start(primary)  # the same container: a restart recovers from the data on disk
        assert cluster.pid(primary) != pid
        assert system.wait_healthy(timeout_s=15)
        assert vr_client.read("k") == 1
        vr_client.close()
        system.teardown(keep_data=True)
        assert cluster.unexpected_exits() == []
    finally:
        lines = cluster.close()
    assert any("removed network" in line for line in lines), lines
    assert objects_of(client, cluster.run_id) == ([], [])
    assert (run_dir / "nodes" / "n1" / "node.log").stat().st_size > 0  # written through the bind mount


def test_clock_control_files_reach_a_node_process_live(client: Any, node_image: Any, tmp_path: Path) -> None:
    """libfaketime from the image's /usr, its control file through the bind-mounted run directory: a
    node process's clock follows the file while it runs (+1 h, then -1 h), as nemeses.clock sets it."""
    from clusters.docker import DockerCluster
    from nemeses.clock import ClockControl, find_libfaketime

    library = find_libfaketime()
    if library is None:
        pytest.skip("libfaketime is not installed on this host (apt-get install libfaketime faketime)")
    run_dir = tmp_path / "store" / "clock" / "run"
    run_dir.mkdir(parents=True)
    cluster = DockerCluster(node_count=1, run_dir=run_dir)
    try:
        control = ClockControl(run_dir / "clock", ["n1"], library=library)
        control.set("n1", offset_ms=3_600_000)
        output = run_dir / "nodes" / "n1" / "output.log"
        # select, not time.sleep: libfaketime 0.9.10 turns an offset clock_nanosleep into EINVAL
        script = "import select, time\nfor _ in range(40):\n    print(time.time(), flush=True)\n    select.select([], [], [], 0.05)\n"
        cluster.spawn("n1", [cluster.python, "-c", script], output_path=output, env=control.env("n1"))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and output.read_text().count("\n") < 5:
            time.sleep(0.05)
        control.set("n1", offset_ms=-3_600_000)
        while time.monotonic() < deadline and cluster.is_running("n1"):
            time.sleep(0.05)
        offsets = [float(line) - time.time() for line in output.read_text().split()]
        assert any(abs(o - 3600) < 60 for o in offsets), offsets[:5]
        assert any(abs(o + 3600) < 60 for o in offsets), offsets[-5:]
        assert cluster.exit_code("n1") == 0
    finally:
        cluster.close()


def test_faults_docker_nodes_cannot_take_are_refused_before_anything_starts(
    client: Any, node_image: Any, tmp_path: Path
) -> None:
    proc = ratchet("run", "default", "--cluster", "docker", "--nemesis", "messages", "--store", str(tmp_path))
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "message-proxy" in proc.stderr and "docker" in proc.stderr
    assert not (tmp_path / "default").exists()


# In n1's container, as the nodes' uid: write and fsync a file in the data directory; print the errno.
FSYNC_IN_NODE = (
    "import os, sys\n"
    "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)\n"
    "os.pwrite(fd, b'x' * 4096, 0)\n"
    "try:\n    os.fsync(fd)\n    print('fsync ok')\n"
    "except OSError as exc:\n    print('fsync errno', exc.errno)\n"
)


def test_disk_faults_reach_a_node_in_its_container_and_close_releases_them(
    client: Any, node_image: Any, tmp_path: Path
) -> None:
    """A faultfs the controller mounts on this host over n1's data directory (after the container
    exists) is what n1's process writes through: an EIO rule on fsync fails the container's fsync.
    close() stops the daemon the nemesis did not unmount and removes every mount under the run."""
    from clusters.docker import DockerCluster, hostmounts
    from nemeses.disk.control import Faultfs

    run = tmp_path / "store" / "disk" / "run"
    data = run / "nodes" / "n1" / "data"
    run.mkdir(parents=True)
    cluster = DockerCluster(node_count=1, run_dir=run, disk=True)
    fs = Faultfs(data, log_path=data.parent / "faultfs.jsonl", output_path=data.parent / "faultfs.log")
    try:
        cluster.make_dirs("n1", data)
        fs.mount()
        fs.add_rule(id="t", op="fsync", error="EIO", file="probe")
        output = data.parent / "output.log"
        cluster.spawn("n1", ["python3", "-c", FSYNC_IN_NODE, str(data / "probe")], output_path=output)
        deadline = time.monotonic() + 20
        while cluster.is_running("n1") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert output.read_text().split() == ["fsync", "errno", "5"], output.read_text()
        logged = [json.loads(line) for line in (data.parent / "faultfs.jsonl").read_text().splitlines()]
        assert [(e["fault"], e["op"], e["file"]) for e in logged if "fault" in e] == [("t", "fsync", "probe")]
        assert {"op": "fsync-dropped", "file": "probe", "offset": 0, "length": 4096}.items() <= logged[
            -1
        ].items()
    finally:
        lines = cluster.close()
        fs.unmount()  # reaps the daemon close() stopped
    assert f"stopped 1 faultfs daemon(s) under {run.resolve()}" in lines, lines
    assert any(line.startswith("unmounted ") and line.endswith(f" at {run.resolve()}") for line in lines)
    assert hostmounts.mounts_under(run) == [] and hostmounts.faultfs_daemons(run) == []
    assert (data / "probe").exists()  # the files stayed in the directory underneath


def _start_run(store: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "run", "default", "--cluster", "docker", "--time-limit", "60",
         "--nemesis-interval", "1", "--no-progress", "--store", str(store), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip


def _wait_running(store: Path, proc: subprocess.Popen[str], *, ops: int) -> str:
    """The run id once its history has ``ops`` ok operations (nodes up, clients going)."""
    from clusters.docker.labels import run_id_for

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        history = store / "latest" / "history.jsonl"
        if history.exists() and history.read_text().count('"ok"') >= ops:
            return run_id_for((store / "latest").resolve())
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("the docker run did not get going within 60 s")


def test_sigint_removes_the_runs_containers_and_network(client: Any, node_image: Any, tmp_path: Path) -> None:
    """Disk faults too: the run's faultfs daemons and its shared run-directory mount go as well."""
    from clusters.docker import hostmounts

    proc = _start_run(tmp_path, "--nemesis", "partition,pause,kill,disk")
    run_id = _wait_running(tmp_path, proc, ops=5)
    containers, networks = objects_of(client, run_id)
    assert len(containers) == 3 and len(networks) == 1
    run = (tmp_path / "latest").resolve()
    assert len(hostmounts.faultfs_daemons(run)) == 3
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"no exit 60 s after SIGINT: {proc.communicate()[1][-3000:]}") from None
    assert proc.returncode == 2, err[-2000:]
    results = json.loads(((tmp_path / "latest").resolve() / "results.json").read_text())
    assert results["reason"] == "interrupted"
    assert any(line.startswith("removed containers") for line in results["teardown"]), results["teardown"]
    assert objects_of(client, run_id) == ([], [])
    assert hostmounts.mounts_under(run) == [] and hostmounts.faultfs_daemons(run) == []


def test_sigkilled_controller_leftovers_go_with_the_next_runs_check(
    client: Any, node_image: Any, tmp_path: Path
) -> None:
    from clusters.docker import DockerCluster

    proc = _start_run(tmp_path / "killed", "--nemesis", "partition")
    run_id = _wait_running(tmp_path / "killed", proc, ops=5)
    os.killpg(proc.pid, signal.SIGKILL)  # the controller and anything it started on this host
    proc.communicate(timeout=30)
    containers, networks = objects_of(client, run_id)
    assert len(containers) == 3 and len(networks) == 1  # nothing could clean up: they are dangling
    next_run = tmp_path / "store" / "next" / "run"
    next_run.mkdir(parents=True)
    cluster = DockerCluster(node_count=1, run_dir=next_run)
    try:
        assert objects_of(client, run_id) == ([], [])
        assert sorted(cluster.swept) == sorted(
            [f"removed container {name}" for name in containers] + [f"removed network {networks[0]}"]
        )
    finally:
        cluster.close()


def _labelled_network(client: Any, run_id: str, controller: str) -> Any:
    return client.networks.create(
        f"ratchet-{run_id}",
        driver="bridge",
        labels={"org.ratchet.managed": "1", "org.ratchet.run": run_id, "org.ratchet.controller": controller},
    )


def test_clean_removes_dangling_objects_and_keeps_live_ones(client: Any, node_image: Any) -> None:
    from clusters.docker.labels import controller_id

    dead_id = "not-this-boot:1:0"  # a controller of another boot: gone
    live_id = controller_id()  # this test process: alive
    dead = _labelled_network(client, f"test-clean-dead-{os.getpid()}", dead_id)
    live = _labelled_network(client, f"test-clean-live-{os.getpid()}", live_id)
    try:
        proc = ratchet("clean")
        assert proc.returncode == 0, proc.stderr
        assert f"removed network {dead.name}" in proc.stdout
        assert live.name not in proc.stdout
        assert [n.name for n in client.networks.list(names=[live.name])] == [live.name]
        # --all would take live runs' objects too; other runs may be live on this engine, so: dry run
        proc = ratchet("clean", "--all", "--dry-run")
        assert proc.returncode == 0 and live.name in proc.stdout and "would remove" in proc.stdout
        assert [n.name for n in client.networks.list(names=[live.name])] == [live.name]
    finally:
        for network in (dead, live):
            with contextlib.suppress(Exception):
                network.remove()


def test_a_run_refuses_to_start_over_its_own_run_id(client: Any, node_image: Any, tmp_path: Path) -> None:
    from clusters.docker import DockerCluster
    from clusters.docker.labels import controller_id, run_id_for
    from core.errors import BadInput

    run_dir = tmp_path / "scenario" / "stamp"
    run_dir.mkdir(parents=True)
    squatter = _labelled_network(client, run_id_for(run_dir), controller_id())
    try:
        with pytest.raises(BadInput, match="refusing to start over them"):
            DockerCluster(node_count=1, run_dir=run_dir)
    finally:
        squatter.remove()


# -- soak: the proofs on docker, long real runs -------------------------------------


def _run_to_end(
    store: Path, *args: str, timeout_s: float = 600
) -> tuple[subprocess.CompletedProcess[str], dict]:
    proc = ratchet(
        "run", "--cluster", "docker", "--no-progress", "--store", str(store), *args, timeout_s=timeout_s
    )
    results = json.loads(((store / "latest").resolve() / "results.json").read_text())
    return proc, results


@pytest.mark.soak
def test_soak_partition_kill_pause_60s_is_valid(client: Any, node_image: Any, tmp_path: Path) -> None:
    proc, results = _run_to_end(
        tmp_path, "default", "--nemesis", "partition,kill,pause", "--time-limit", "60"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert results["valid"] is True and results["teardown_errors"] == []


@pytest.mark.soak
def test_soak_read_from_backup_is_found_with_clients_on_nodes(
    client: Any, node_image: Any, tmp_path: Path
) -> None:
    proc, results = _run_to_end(
        tmp_path, "default", "--bug", "read-from-backup", "--nemesis", "partition", "--clients", "nodes",
        "--nemesis-interval", "3", "--time-limit", "20", "--seed", "1",
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-3000:]
    first = results["checkers"]["linearizable"]["first_unlinearizable"]
    assert first["f"] == "read" and first["outcome"] == "ok"


@pytest.mark.soak
def test_soak_disk_and_power_cut_on_docker_nodes_are_valid_and_leave_no_mount(
    client: Any, node_image: Any, tmp_path: Path
) -> None:
    from clusters.docker import hostmounts

    proc, results = _run_to_end(
        tmp_path, "default", "--nemesis", "power-cut,disk", "--nemesis-interval", "2", "--time-limit", "12",
        "--seed", "4",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert results["valid"] is True and results["teardown_errors"] == []
    run = (tmp_path / "latest").resolve()
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    hits = sum(sum(op["value"]["hits"].values()) for op in history if op["f"] == "stop-disk" and op["value"])
    cuts = [
        op for op in history if op["f"] == "start-power-cut" and op["value"] and op["value"].get("killed")
    ]
    assert hits > 0 and cuts, "no disk fault reached a node"
    assert hostmounts.mounts_under(run) == [] and hostmounts.faultfs_daemons(run) == []


@pytest.mark.soak
def test_soak_sigkilled_disk_run_leaves_mounts_that_ratchet_clean_releases(
    client: Any, node_image: Any, tmp_path: Path
) -> None:
    from clusters.docker import hostmounts

    proc = _start_run(tmp_path, "--nemesis", "disk")
    run_id = _wait_running(tmp_path, proc, ops=20)
    os.killpg(proc.pid, signal.SIGKILL)  # the controller; its faultfs daemons have sessions of their own
    proc.communicate(timeout=30)
    run = (tmp_path / "latest").resolve()
    assert len(hostmounts.faultfs_daemons(run)) == 3
    assert [m for m in hostmounts.mounts_under(run) if m[1] == "fuse.faultfs"]
    cleaned = ratchet("clean")
    assert cleaned.returncode == 0, cleaned.stderr
    assert f"stopped 3 faultfs daemon(s) under {run}" in cleaned.stdout, cleaned.stdout
    assert hostmounts.mounts_under(run) == [] and hostmounts.faultfs_daemons(run) == []
    assert objects_of(client, run_id) == ([], [])


@pytest.mark.soak
@pytest.mark.parametrize("nodes", [5, 7])
def test_soak_bigger_clusters_are_valid(client: Any, node_image: Any, tmp_path: Path, nodes: int) -> None:
    proc, results = _run_to_end(
        tmp_path, "default", "--nodes", str(nodes), "--nemesis", "partition,kill,pause", "--time-limit", "20"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert results["valid"] is True
