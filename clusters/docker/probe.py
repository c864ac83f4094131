"""What docker nodes can do for a scenario's faults, asked of a throwaway container before the run.

The probe container is a node container in all but name (same image, mounts and
capabilities; labelled ``role=probe``; removed at the end, and dangling if the
controller dies meanwhile). In it:

- signals: a ``docker exec``'d process is stopped, continued and killed by its host pid
  (which needs the daemon on this machine: the pid is looked up in this host's /proc);
- packet-filter: nft applies, reads back, heals and removes a partition and a loss rule
  through the same code a run uses (:class:`clusters.docker.firewall.ContainerNft`);
- libfaketime (only when clock faults are asked): a preloaded python3 in the container
  reads its clock through a control file in a bind-mounted directory, +1 h then -1 h;
- fuse (only when disk or power-cut faults are asked): the probe's directory is shared
  with the container as a run directory is (:mod:`clusters.docker.hostmounts`), a real
  faultfs daemon mounts on this host under it, and a process in the container with the
  nodes' uid writes, fsyncs and reads a file through it (so: root, /dev/fuse, the FUSE
  binding, and mount propagation into containers, all at once);
- message-proxy, dm-flakey: refused with the reason (see :data:`NOT_ON_DOCKER`).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from clusters.docker import hostmounts
from clusters.docker import image as img
from clusters.docker import labels as lab
from clusters.docker.cluster import client_from_env, ensure_image, proc_stat, vr_source
from clusters.docker.firewall import ContainerNft
from clusters.firewall import Drop, Endpoint, FirewallError
from core.capability import Capability

FAKETIME_LIBRARY = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
DISK_FAULTS = ("disk", "power-cut")
FUSE_HOW = (
    "run the controller as root on the docker daemon's machine, with /dev/fuse, fuse3 and mfusepy "
    "(faultfs runs on this host); or use cluster.kind = 'local' for disk faults"
)
FUSE_MOUNT_S = 10.0
# In the container, as the nodes' uid: write, fsync and read back a file through the faultfs mount.
FUSE_CHECK = r"""
import os, sys
path = sys.argv[1]
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
os.pwrite(fd, b"ratchet-probe", 0)
os.fsync(fd)
back = os.pread(fd, 13, 0)
os.close(fd)
point = os.path.dirname(path)
fstype = [l.split(" - ")[1].split()[0] for l in open("/proc/self/mountinfo") if l.split()[4] == point]
print(fstype[-1] if fstype else "none", back.decode())
"""
NOT_ON_DOCKER = {
    "message-proxy": (
        "the message proxy redirects replica links with nft nat in the controller's own network "
        "namespace, which the nodes of a docker run do not share",
        "use cluster.kind = 'local' for message faults",
    ),
    "dm-flakey": (
        "dm-flakey needs loop and device-mapper devices, which node containers are not given",
        "use cluster.kind = 'local' for dm-flakey",
    ),
}


def _exec(container: Any, argv: list[str], **kwargs: Any) -> tuple[int, str]:
    result = container.exec_run(argv, **kwargs)
    return result.exit_code, result.output.decode(errors="replace")


def _signals(client: Any, container: Any) -> Capability:
    api = client.api
    exec_id = api.exec_create(container.id, ["sh", "-c", "exec sleep 60"], stdout=False, stderr=False)["Id"]
    api.exec_start(exec_id, detach=True)
    deadline = time.monotonic() + 5
    pid = 0
    while time.monotonic() < deadline and not (pid and proc_stat(pid)):
        pid = int(api.exec_inspect(exec_id).get("Pid") or 0)
        time.sleep(0.01)
    if not pid or proc_stat(pid) is None:
        return Capability(
            "signals", False, f"the pid of a process in a container ({pid}) is not in this host's /proc",
            "run the controller on the machine of the docker daemon (a remote DOCKER_HOST cannot be signalled)",
        )  # fmt: skip
    states = []
    for signum, want in ((signal.SIGSTOP, "T"), (signal.SIGCONT, "S")):
        os.kill(pid, signum)
        until = time.monotonic() + 2
        while time.monotonic() < until and (stat := proc_stat(pid)) and (stat[0] == "T") != (want == "T"):
            time.sleep(0.005)
        states.append((proc_stat(pid) or ("gone",))[0])
    os.kill(pid, signal.SIGKILL)
    if states[0] != "T" or states[1] == "T":
        return Capability("signals", False, f"SIGSTOP/SIGCONT did not take effect (states {states})")
    return Capability(
        "signals", True, "SIGSTOP/SIGCONT/SIGKILL reach a docker exec'd node process by its host pid"
    )


def _packet_filter(container: Any) -> Capability:
    nft = ContainerNft("probe", lambda argv: _exec(container, list(argv), user="root"))
    a, b = Endpoint("a", "10.213.255.2", 7100), Endpoint("b", "10.213.255.3", 7100)
    clients = Endpoint("clients", "10.213.255.1", None)
    try:
        nft.apply("partition", [Drop(a, b), Drop(a, clients)])
        nft.apply("loss", [Drop(a, b, 0.3)])
        if not (nft.heal("partition") and nft.heal("loss")):
            raise FirewallError("healing did not find the chains just applied")
        nft.teardown()
        if not nft.ruleset_empty_of_ours():
            raise FirewallError("rules left after teardown")
    except FirewallError as exc:
        return Capability("packet-filter", False, str(exc), "the node container needs NET_ADMIN and nftables")
    return Capability(
        "packet-filter", True, "nft applies, reads back and removes address rules inside a node container"
    )


def _faketime(container: Any, shared: Path) -> Capability:
    how = "apt-get install libfaketime faketime on this host (its /usr is the nodes')"
    control = shared / "probe.faketime"
    shifts = []
    for offset_s in (3600, -3600):
        control.write_text(f"{offset_s:+d}.000000 x1\n")
        env = {
            "LD_PRELOAD": FAKETIME_LIBRARY,
            "FAKETIME_TIMESTAMP_FILE": str(control),
            "FAKETIME_NO_CACHE": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            "FAKETIME_DISABLE_SHM": "1",
        }
        code, out = _exec(container, ["python3", "-c", "import time; print(time.time())"], environment=env)
        try:
            shifts.append(float(out.split()[-1]) - time.time())
        except (ValueError, IndexError):
            return Capability(
                "libfaketime", False, f"python3 with libfaketime in a node failed: {out.strip()}", how
            )
        if code != 0 or abs(shifts[-1] - offset_s) > 60:
            return Capability(
                "libfaketime", False, f"clock shifts in a node were {shifts}, wanted +-3600 s", how
            )
    return Capability(
        "libfaketime",
        True,
        f"a node's time.time() follows its control file in the bind-mounted run directory "
        f"(+1 h, -1 h; measured {shifts[0]:+.0f} s, {shifts[1]:+.0f} s)",
    )


def _fuse(container: Any, shared: Path) -> Capability:
    """A real faultfs daemon on this host mounted under ``shared`` (the container's rslave bind);
    a process in the container reads and writes through it."""
    data = shared / "data"
    data.mkdir()
    output = shared.parent / "faultfs.log"
    with output.open("ab") as out:
        daemon = subprocess.Popen(
            [sys.executable, "-m", hostmounts.FAULTFS_MODULE, "--mount", str(data),
             "--control", f"ratchet-docker-probe-{os.getpid()}-{secrets.token_hex(4)}"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + FUSE_MOUNT_S
        while hostmounts.mounts_under(data, exact=True) != [(str(data), "fuse.faultfs")]:
            if daemon.poll() is not None or time.monotonic() > deadline:
                tail = " | ".join(output.read_text(errors="replace").strip().splitlines()[-3:])
                return Capability(
                    "fuse", False, f"faultfs did not mount on this host: {tail or 'no output'}", FUSE_HOW
                )
            time.sleep(0.02)
        code, out = _exec(
            container, ["python3", "-c", FUSE_CHECK, str(data / "probe")], user=f"{os.getuid()}:{os.getgid()}"
        )
        if code != 0 or out.split()[:2] != ["fuse.faultfs", "ratchet-probe"]:
            return Capability(
                "fuse", False,
                f"a faultfs mount made on this host did not reach a node container (the container saw "
                f"{out.strip()[-300:] or 'nothing'}); the docker daemon must share this machine's mounts",
                FUSE_HOW,
            )  # fmt: skip
    finally:
        hostmounts.release(shared)
        with contextlib.suppress(subprocess.TimeoutExpired):
            daemon.wait(timeout=5)
    return Capability(
        "fuse",
        True,
        "faultfs mounted on this host under a shared run directory reaches a node container: "
        "written, fsynced and read back through it as the nodes' uid",
    )


def _fuse_refusal() -> Capability | None:
    """Why disk faults cannot work before trying (None: try)."""
    if os.geteuid() != 0:
        return Capability(
            "fuse", False,
            "disk faults on docker nodes mount faultfs on this host over the run directory the "
            "containers share, which needs root",
            FUSE_HOW,
        )  # fmt: skip
    if not os.path.exists("/dev/fuse"):
        return Capability("fuse", False, "/dev/fuse is missing on this host", FUSE_HOW)
    return None


def probe(*, image: str | None, faults: tuple[str, ...]) -> dict[str, Capability]:
    client = client_from_env()
    tag = ensure_image(client, image)
    caps = {
        "namespaces": Capability(
            "namespaces", True, "each node is a container: its own network, mount and pid namespaces"
        )
    }
    for name, (detail, how) in NOT_ON_DOCKER.items():
        caps[name] = Capability(name, False, detail, how)
    run_id = f"probe-{os.getpid()}-{secrets.token_hex(3)}"
    disk = bool(set(DISK_FAULTS) & set(faults))
    refusal = _fuse_refusal() if disk else None
    if refusal is not None:
        caps["fuse"] = refusal
    share = disk and refusal is None
    with tempfile.TemporaryDirectory(prefix="ratchet-docker-probe-") as tmp:
        shared = Path(tmp) / "run"
        shared.mkdir()
        extra_labels: dict[str, str] = {}
        if share:
            try:
                hostmounts.share(shared)
                extra_labels = {hostmounts.LABEL: str(shared)}
            except hostmounts.HostMountError as exc:
                caps["fuse"] = Capability("fuse", False, f"cannot share a run directory: {exc}", FUSE_HOW)
                share = False
        try:
            container = client.containers.run(
                tag,
                ["sleep", "infinity"],
                detach=True,
                init=True,
                name=f"ratchet-{run_id}",
                labels={**lab.labels(run_id, "probe"), **extra_labels},
                cap_add=["NET_ADMIN"],
                volumes=[*img.node_mounts(vr_source()), f"{shared}:{shared}:rw{',rslave' if share else ''}"],
                tmpfs=img.NODE_TMPFS,
                network_mode="none",
            )
            try:
                caps["signals"] = _signals(client, container)
                caps["packet-filter"] = _packet_filter(container)
                if "clock" in faults:
                    caps["libfaketime"] = _faketime(container, shared)
                if share:
                    caps["fuse"] = _fuse(container, shared)
            finally:
                container.remove(force=True, v=True)
        finally:
            if share:
                hostmounts.release(shared)
    return caps
