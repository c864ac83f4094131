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
- fuse, message-proxy, dm-flakey: refused with the reason (see :data:`NOT_ON_DOCKER`).
"""

from __future__ import annotations

import os
import secrets
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

from clusters.docker import image as img
from clusters.docker import labels as lab
from clusters.docker.cluster import client_from_env, ensure_image, proc_stat, vr_source
from clusters.docker.firewall import ContainerNft
from clusters.firewall import Drop, Endpoint, FirewallError
from core.capability import Capability

FAKETIME_LIBRARY = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
NOT_ON_DOCKER = {
    "fuse": (
        "disk and power-cut faults on docker nodes are not in this version: faultfs runs as the "
        "controller's child in the controller's mount namespace, and a FUSE mount made there does "
        "not reach a node container's bind mount",
        "use cluster.kind = 'local' for disk faults",
    ),
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
    with tempfile.TemporaryDirectory(prefix="ratchet-docker-probe-") as tmp:
        container = client.containers.run(
            tag,
            ["sleep", "infinity"],
            detach=True,
            init=True,
            name=f"ratchet-{run_id}",
            labels=lab.labels(run_id, "probe"),
            cap_add=["NET_ADMIN"],
            volumes=[*img.node_mounts(vr_source()), f"{tmp}:{tmp}:rw"],
            tmpfs=img.NODE_TMPFS,
            network_mode="none",
        )
        try:
            caps["signals"] = _signals(client, container)
            caps["packet-filter"] = _packet_filter(container)
            if "clock" in faults:
                caps["libfaketime"] = _faketime(container, Path(tmp))
        finally:
            container.remove(force=True, v=True)
    return caps
