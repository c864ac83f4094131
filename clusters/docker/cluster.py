"""Nodes in docker containers: one long-lived container per node on the run's own bridge network.

Provisioning (in :class:`DockerCluster`'s constructor): remove dangling objects of
crashed runs, refuse leftovers of this run's own id, make sure the node image is
there (:mod:`clusters.docker.image`), create the run's bridge network with a free
private /24 (:mod:`clusters.docker.network`) and start one container per node at a
static address, in parallel. A container is ``--init`` with ``sleep infinity`` as its
only job, labelled with the run id and its controller, with NET_ADMIN for its own
packet filter. A run with disk faults shares its run directory's mounts with the
containers (:mod:`clusters.docker.hostmounts`): the controller's faultfs over a node's
data directory reaches the node in its container, which needs no extra capability.

A node process is started with ``docker exec`` as ``sh -c 'exec "$@" >>output 2>&1'``:
the shell replaces itself with the node, so the exec's process *is* the node. Its
host pid (``exec_inspect``) is what pause (SIGSTOP), resume and kill signal, as the
local home does; the container, its network namespace and its firewall rules stay,
so a killed node restarts into the same machine, with a partition still in force.
Signalling by host pid needs the docker daemon on this machine, which the bind
mounts below need anyway; the probe checks it.

Files: the run directory is bind-mounted into every container at the same path, so
:meth:`DockerCluster.path` is the identity, node logs, data, clock control files and
events are written straight into the store, and :meth:`close` copies nothing; it
removes the containers (their filters go with their network namespaces) and the
network. Node processes run with the controller's uid and gid, so the store's files
stay the controller's; ``nft`` runs as root in the container.

Teardown when things go wrong: the session's teardown and ``close()`` run on Ctrl-C
and SIGTERM; a failure while provisioning removes what was made; an exception that
escapes before ``close()`` is covered by an ``atexit`` hook; a SIGKILLed controller's
objects are dangling and removed by the next docker run or ``ratchet clean``.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import logging
import os
import signal
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clusters.docker import hostmounts, leftovers, network
from clusters.docker import image as img
from clusters.docker import labels as lab
from clusters.docker.firewall import ContainerNft, DockerFirewall
from clusters.firewall import Endpoint
from core.errors import BadInput

logger = logging.getLogger(__name__)

PORT = 7100
STOP_GRACE_S = 3.0
SIGNAL_CONFIRM_S = 2.0
EXEC_START_S = 5.0
API_TIMEOUT_S = 60
PYCACHE = "/tmp/ratchet-pycache"  # vr/ is read-only in the node; byte code goes to the container's /tmp


def vr_source() -> Path:
    """The checkout's ``vr/`` package directory (bind-mounted read-only into every node)."""
    spec = importlib.util.find_spec("vr")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the vr package is not importable: pip install -e . in the checkout")
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def client_from_env() -> Any:
    """A docker SDK client, or BadInput saying how to get a reachable daemon."""
    import docker
    import docker.errors

    try:
        client = docker.from_env(timeout=API_TIMEOUT_S)
        client.ping()
    except docker.errors.DockerException as exc:
        raise BadInput(
            f"cluster.kind = 'docker' needs a reachable docker daemon on this machine ({exc}); "
            "install docker.io and start dockerd (or set DOCKER_HOST to a local daemon's socket)",
            where="cluster.kind",
        ) from None
    return client


def ensure_image(client: Any, tag: str | None) -> str:
    """The image nodes run: the given tag (must exist), or the cached default (built when missing)."""
    if tag and tag != img.DEFAULT_IMAGE:
        if img.find(client, tag) is None:
            raise BadInput(
                f"cluster.image = {tag!r} is not an image of the local docker daemon; "
                "build the default one with `ratchet image build` and leave cluster.image unset",
                where="cluster.image",
            )
        return tag
    try:
        built = img.build(client)
    except img.ImageError as exc:
        raise BadInput(f"the docker node image cannot be built: {exc}", where="cluster.kind") from None
    if not built.reused:
        logger.info("built node image %s in %.1f s", built.tag, built.seconds)
    return built.tag


def proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time) of a host process, None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return fields[0], fields[19]


@dataclass(frozen=True, slots=True)
class DockerNode:
    name: str
    index: int
    host: str
    port: int
    container: str

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def endpoint(self) -> Endpoint:
        return Endpoint(self.name, self.host, self.port)


@dataclass(slots=True)
class _Proc:
    exec_id: str
    pid: int
    start: str
    exit_code: int | None = None
    ended_by_us: bool = False
    output: Path = field(default_factory=Path)


class DockerCluster:
    """One container per node on a per-run bridge network; the node is a ``docker exec`` in it."""

    kind = "docker"
    python = img.NODE_PYTHON

    def __init__(
        self,
        *,
        node_count: int,
        run_dir: Path,
        image: str | None = None,
        disk: bool = False,
        client: Any = None,
    ) -> None:
        self.run_dir = run_dir.resolve()
        self.run_id = lab.run_id_for(self.run_dir)
        self.client = client or client_from_env()
        self._disk = disk
        self._containers: dict[str, Any] = {}
        self._network: Any = None
        self._procs: dict[str, _Proc] = {}
        self._all: list[tuple[str, _Proc]] = []
        self._paused: set[str] = set()
        self._closed = False
        self.provision_s = 0.0
        self.swept: list[str] = []
        started = time.monotonic()
        self._prepare()
        self.image = ensure_image(self.client, image)
        atexit.register(self._at_exit)
        self._previous_sigterm = _sigterm_raises()
        try:
            if disk:
                hostmounts.share(self.run_dir)
            self._provision(node_count)
        except BaseException:
            self._remove_all()
            raise
        self.provision_s = time.monotonic() - started

    # -- provisioning -------------------------------------------------------------

    def _prepare(self) -> None:
        """Sweep dangling objects of crashed runs; refuse to start over this run id's own."""
        stale = leftovers.find(self.client)
        stale.images = []  # untagged layers are `ratchet clean`'s business, not a run's
        if stale:
            self.swept = leftovers.remove(self.client, stale)
            logger.warning("removed leftovers of crashed docker runs: %s", "; ".join(self.swept))
        own = leftovers.find(self.client, run_id=self.run_id)
        if own:
            raise BadInput(
                f"docker objects of run {self.run_id} already exist ({own.describe()}), created by a "
                "controller that is still running; refusing to start over them (`ratchet clean --all` "
                "removes them)",
                where="cluster.kind",
            )

    def _provision(self, node_count: int) -> None:
        import docker.errors

        taken = network.host_routes() + network.docker_subnets(self.client)
        net_name = f"ratchet-{self.run_id}"
        for attempt, subnet in enumerate(network.candidates(self.run_id, taken)):
            ipam = docker.types.IPAMConfig(
                pool_configs=[docker.types.IPAMPool(subnet=str(subnet), gateway=network.gateway(subnet))]
            )
            try:
                self._network = self.client.networks.create(
                    net_name, driver="bridge", ipam=ipam, labels=lab.labels(self.run_id, "network")
                )
                break
            except docker.errors.APIError as exc:
                if attempt + 1 >= network.ATTEMPTS or "overlap" not in str(exc).lower():
                    raise
        else:
            raise RuntimeError(f"no free /24 in {network.POOL} for the run's network")
        self.subnet = subnet
        self.gateway = network.gateway(subnet)
        self.nodes: tuple[DockerNode, ...] = tuple(
            DockerNode(f"n{i + 1}", i, network.node_address(subnet, i), PORT, f"{net_name}-n{i + 1}")
            for i in range(node_count)
        )
        self._by_name = {n.name: n for n in self.nodes}
        with ThreadPoolExecutor(max_workers=min(8, node_count)) as pool:
            for node, container in zip(self.nodes, pool.map(self._start_container, self.nodes), strict=True):
                self._containers[node.name] = container
        self.firewall = DockerFirewall(
            {n.name: ContainerNft(n.name, self._root_exec(n.name)) for n in self.nodes},
            by_address={n.host: n.name for n in self.nodes},
            gateway=self.gateway,
        )

    def _start_container(self, node: DockerNode) -> Any:
        api = self.client.api
        # rslave: a faultfs the controller mounts later under the run directory reaches the node.
        propagation = ",rslave" if self._disk else ""
        binds = [*img.node_mounts(vr_source()), f"{self.run_dir}:{self.run_dir}:rw{propagation}"]
        host_config = api.create_host_config(
            binds=binds,
            tmpfs=img.NODE_TMPFS,
            init=True,
            cap_add=["NET_ADMIN"],
            network_mode=self._network.name,
        )
        disk_label = {hostmounts.LABEL: str(self.run_dir)} if self._disk else {}
        created = api.create_container(
            self.image,
            command=["sleep", "infinity"],
            name=node.container,
            hostname=node.name,
            labels={**lab.labels(self.run_id, "node"), "org.ratchet.node": node.name, **disk_label},
            host_config=host_config,
            networking_config=api.create_networking_config(
                {self._network.name: api.create_endpoint_config(ipv4_address=node.host)}
            ),
        )
        container = self.client.containers.get(created["Id"])
        self._containers[node.name] = container  # removed on failure even before start returns
        container.start()
        return container

    def _root_exec(self, name: str) -> Any:
        def run(argv: Sequence[str]) -> tuple[int, str]:
            result = self._containers[name].exec_run(list(argv), user="root")
            return result.exit_code, result.output.decode(errors="replace")

        return run

    # -- nodes ----------------------------------------------------------------------

    def node(self, name: str) -> DockerNode:
        return self._by_name[name]

    def names(self) -> tuple[str, ...]:
        return tuple(n.name for n in self.nodes)

    def path(self, name: str, local: Path) -> str:
        """The run directory is bind-mounted at its own path: a run file is where it is."""
        return str(local)

    def make_dirs(self, name: str, local: Path) -> None:
        local.mkdir(parents=True, exist_ok=True)

    def exec_in(self, name: str, argv: Sequence[str], *, user: str = "root") -> tuple[int, str]:
        """Run a command in node ``name``'s container and wait: (exit code, output)."""
        result = self._containers[name].exec_run(list(argv), user=user)
        return result.exit_code, result.output.decode(errors="replace")

    def spawn(
        self, name: str, argv: Sequence[str], *, output_path: Path, env: Mapping[str, str] | None = None
    ) -> int:
        """Start ``argv`` as node ``name``'s process in its container; returns its host pid."""
        if name not in self._by_name:
            raise KeyError(f"no node named {name!r} in {self.names()}")
        if self.is_running(name):
            raise RuntimeError(f"{name} is already running (pid {self._procs[name].pid})")
        output_path.parent.mkdir(parents=True, exist_ok=True)
        output_path.touch()
        api = self.client.api
        environment = {"PYTHONPATH": img.VR_IN_NODE, "PYTHONPYCACHEPREFIX": PYCACHE, **(env or {})}
        exec_id = api.exec_create(
            self._containers[name].id,
            ["sh", "-c", 'exec "$@" >>"$0" 2>&1', str(output_path), *argv],
            stdout=False,
            stderr=False,
            environment=environment,
            workdir=img.VR_IN_NODE,
            user=f"{os.getuid()}:{os.getgid()}",
        )["Id"]
        api.exec_start(exec_id, detach=True)
        deadline = time.monotonic() + EXEC_START_S
        while True:
            info = api.exec_inspect(exec_id)
            pid = int(info.get("Pid") or 0)
            stat = proc_stat(pid) if pid else None
            if stat is not None or (pid and not info.get("Running")):
                break
            if not info.get("Running") and info.get("ExitCode") is not None:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name}: docker exec did not start within {EXEC_START_S} s")
            time.sleep(0.01)
        proc = _Proc(exec_id, pid, stat[1] if stat else "", output=output_path)
        if stat is None:
            proc.exit_code = info.get("ExitCode")
        self._procs[name] = proc
        self._all.append((name, proc))
        self._paused.discard(name)
        logger.info("node=%s container=%s pid=%d started", name, self.node(name).container, pid)
        return pid

    def _alive(self, proc: _Proc) -> bool:
        if proc.exit_code is not None or not proc.pid:
            return False
        stat = proc_stat(proc.pid)
        return stat is not None and stat[1] == proc.start and stat[0] != "Z"

    def pid(self, name: str) -> int | None:
        proc = self._procs.get(name)
        return proc.pid if proc is not None and self._alive(proc) else None

    def is_running(self, name: str) -> bool:
        return self.pid(name) is not None

    def exit_code(self, name: str) -> int | None:
        proc = self._procs.get(name)
        if proc is None or self._alive(proc):
            return None
        return self._exit_code(proc)

    def _exit_code(self, proc: _Proc) -> int | None:
        """The exec's exit code once docker has seen it end (waits briefly for the daemon)."""
        if proc.exit_code is not None:
            return proc.exit_code
        deadline = time.monotonic() + SIGNAL_CONFIRM_S
        while time.monotonic() < deadline:
            info = self.client.api.exec_inspect(proc.exec_id)
            if not info.get("Running") and info.get("ExitCode") is not None:
                proc.exit_code = int(info["ExitCode"])
                return proc.exit_code
            time.sleep(0.01)
        return None

    def is_paused(self, name: str) -> bool:
        return name in self._paused

    def _signal(self, name: str, signum: int) -> int | None:
        pid = self.pid(name)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
        return pid

    def _wait_state(self, name: str, pid: int, *, stopped: bool) -> None:
        deadline = time.monotonic() + SIGNAL_CONFIRM_S
        while time.monotonic() < deadline:
            stat = proc_stat(pid)
            if stat is None or (stat[0] == "T") == stopped:
                return
            time.sleep(0.002)
        raise RuntimeError(
            f"{name} (pid {pid}) did not {'stop' if stopped else 'continue'} within {SIGNAL_CONFIRM_S} s"
        )

    def pause(self, name: str) -> bool:
        pid = self._signal(name, signal.SIGSTOP)
        if pid is None:
            return False
        self._paused.add(name)
        self._wait_state(name, pid, stopped=True)
        return True

    def resume(self, name: str) -> bool:
        self._paused.discard(name)
        pid = self._signal(name, signal.SIGCONT)
        if pid is None:
            return False
        self._wait_state(name, pid, stopped=False)
        return True

    def _wait_gone(self, proc: _Proc, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while self._alive(proc):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def kill(self, name: str, *, wait: bool = True) -> bool:
        """SIGKILL the node process; True if it was running. ``wait=False`` only sends the signal."""
        proc = self._procs.get(name)
        if proc is None or not self._alive(proc):
            return False
        proc.ended_by_us = True
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        if not wait:
            return True
        if not self._wait_gone(proc, STOP_GRACE_S):
            raise RuntimeError(f"{name} (pid {proc.pid}) still alive {STOP_GRACE_S} s after SIGKILL")
        self._paused.discard(name)
        logger.info("node=%s pid=%d killed", name, proc.pid)
        return True

    def stop(self, name: str) -> None:
        proc = self._procs.get(name)
        if proc is None or not self._alive(proc):
            return
        if name in self._paused:
            self.resume(name)
        proc.ended_by_us = True
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        if not self._wait_gone(proc, STOP_GRACE_S):
            self.kill(name)

    def stop_all(self) -> list[str]:
        running = [n for n in self.names() if self.is_running(n)]
        for name in running:
            if name in self._paused:
                self.resume(name)
            self._procs[name].ended_by_us = True
            self._signal(name, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for name in running:
            if not self._wait_gone(self._procs[name], max(0.05, deadline - time.monotonic())):
                self.kill(name)
        self._paused.clear()
        return running

    def leftover_processes(self) -> list[int]:
        return [p.pid for p in self._procs.values() if self._alive(p)]

    def unexpected_exits(self) -> list[dict[str, int | str]]:
        exits: list[dict[str, int | str]] = []
        for name, proc in self._all:
            if proc.ended_by_us or self._alive(proc):
                continue
            code = self._exit_code(proc)
            exits.append({"node": name, "pid": proc.pid, "exit_code": -1 if code is None else code})
        return exits

    def endpoints(self) -> dict[str, Endpoint]:
        return {n.name: n.endpoint() for n in self.nodes}

    # -- teardown ------------------------------------------------------------------------

    def _remove_all(self) -> list[str]:
        """Remove this run's containers and network (whatever exists of them); what was removed."""
        import docker.errors

        done: list[str] = []
        with ThreadPoolExecutor(max_workers=8) as pool:
            names = list(pool.map(self._remove_container, list(self._containers.values())))
        removed = [n for n in names if n]
        if removed:
            done.append(f"removed containers {', '.join(removed)}")
        self._containers.clear()
        if self._network is not None:
            try:
                self._network.remove()
                done.append(f"removed network {self._network.name}")
            except docker.errors.NotFound:
                pass
            self._network = None
        if self._disk:
            done.extend(hostmounts.release(self.run_dir))
        return done

    @staticmethod
    def _remove_container(container: Any) -> str | None:
        import docker.errors

        try:
            container.remove(force=True, v=True)
            return str(container.name)
        except docker.errors.NotFound:
            return None

    def close(self) -> list[str]:
        """Stop what still runs, remove the containers (their filters go with them) and the network.
        Node files were written through the bind-mounted run directory: nothing to copy."""
        if self._closed:
            return []
        self._closed = True
        started = time.monotonic()
        done = [f"node files bind-mounted at {self.run_dir}: nothing to copy"]
        if any(self._alive(p) for p in self._procs.values()):
            done.append(f"stopped {', '.join(self.stop_all())}")
        firewall = getattr(self, "firewall", None)
        if firewall is not None:
            firewall.close()
        done.extend(self._remove_all())
        atexit.unregister(self._at_exit)
        _restore_sigterm(self._previous_sigterm)
        self.teardown_s = time.monotonic() - started
        return done

    def _at_exit(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


def _sigterm_raises() -> Any:
    """Until the session installs its own handler, SIGTERM ends the controller with SystemExit, so
    the atexit hook removes what was already provisioned (the default action would leave it)."""

    def on_term(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    try:
        previous = signal.getsignal(signal.SIGTERM)
        if previous in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, on_term)
        return previous
    except ValueError:  # not the main thread: leave signals alone
        return None


def _restore_sigterm(previous: Any) -> None:
    with contextlib.suppress(ValueError, TypeError):
        current = signal.getsignal(signal.SIGTERM)
        if previous is not None and getattr(current, "__name__", "") == "on_term":
            signal.signal(signal.SIGTERM, previous)
