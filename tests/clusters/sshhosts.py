"""Real SSH hosts for the ssh home's tests: sshd in network namespaces on a private bridge.

Layout (every name carries this process's pid, so concurrent test runs never meet):

- a "control" namespace holding the bridge (10.99.0.1/24): the controller runs there
  (the test process enters it with setns, ``ratchet run`` through ``ip netns exec``);
- one namespace per host, a veth pair to the bridge, address 10.99.0.<i+2>; its own
  sshd (a host key and an authorized key generated here), run inside its own mount
  namespace with a tmpfs over the remote directory, so each host has a private file
  tree there and the controller sees none of it (downloads are really downloads);
- real nft in each host namespace.

Nothing outside the namespaces created here is touched except ``/run/sshd``, the
privilege-separation directory sshd requires (created empty if missing).
``close()`` kills every process in the namespaces, deletes them, and is safe to
call after a partial setup.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

CLONE_NEWNET = 0x40000000
SUBNET = "10.99.0"
SSHD = "/usr/sbin/sshd"


def available() -> str | None:
    """Why these hosts cannot be built here (None: they can)."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, sshd)"
    for tool in ("ip", "nft", "ssh-keygen"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not Path(SSHD).exists():
        return "sshd is not installed (apt-get install openssh-server)"
    return None


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=20, check=check)


class SSHHosts:
    """``count`` sshd hosts; ``addresses``, ``key``, ``known_hosts``, ``remote_dir`` for the cluster."""

    def __init__(self, count: int, workdir: Path) -> None:
        self.count, self.workdir = count, workdir
        prefix = f"rts{os.getpid()}"
        self.control = f"{prefix}c"
        self.names = [f"{prefix}h{i}" for i in range(count)]
        self.addresses = [f"{SUBNET}.{i + 2}" for i in range(count)]
        self.controller_address = f"{SUBNET}.1"
        self.remote_dir = str(workdir / "remote")  # a tmpfs of its own on each host
        self.key = workdir / "id_ed25519"
        self.known_hosts = workdir / "known_hosts"
        self._sshd: list[subprocess.Popen[bytes]] = []
        self._made: list[str] = []
        self._saved_netns: int | None = None

    # -- setup ----------------------------------------------------------------------

    def start(self) -> SSHHosts:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def _start(self) -> None:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        Path(self.remote_dir).mkdir(parents=True, exist_ok=True)
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key))
        (self.workdir / "authorized_keys").write_text(Path(f"{self.key}.pub").read_text())
        _run("ip", "netns", "add", self.control)
        self._made.append(self.control)
        _run("ip", "netns", "exec", self.control, "ip", "link", "set", "lo", "up")
        _run("ip", "netns", "exec", self.control, "ip", "link", "add", "br0", "type", "bridge")
        _run(
            "ip",
            "netns",
            "exec",
            self.control,
            "ip",
            "addr",
            "add",
            f"{self.controller_address}/24",
            "dev",
            "br0",
        )
        _run("ip", "netns", "exec", self.control, "ip", "link", "set", "br0", "up")
        known = []
        for i, (ns, address) in enumerate(zip(self.names, self.addresses, strict=True)):
            _run("ip", "netns", "add", ns)
            self._made.append(ns)
            _run("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
            _run(
                "ip",
                "netns",
                "exec",
                self.control,
                "ip",
                "link",
                "add",
                f"v{i}",
                "type",
                "veth",
                "peer",
                "eth0",
            )
            _run("ip", "netns", "exec", self.control, "ip", "link", "set", "eth0", "netns", ns)
            _run("ip", "netns", "exec", self.control, "ip", "link", "set", f"v{i}", "master", "br0", "up")
            _run("ip", "netns", "exec", ns, "ip", "addr", "add", f"{address}/24", "dev", "eth0")
            _run("ip", "netns", "exec", ns, "ip", "link", "set", "eth0", "up")
            host_key = self.workdir / f"host{i}_ed25519"
            _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key))
            config = self.workdir / f"sshd{i}.conf"
            config.write_text(
                "\n".join(
                    [
                        f"ListenAddress {address}:22",
                        f"HostKey {host_key}",
                        f"AuthorizedKeysFile {self.workdir / 'authorized_keys'}",
                        f"PidFile {self.workdir / f'sshd{i}.pid'}",
                        "PermitRootLogin prohibit-password",
                        "PasswordAuthentication no",
                        "KbdInteractiveAuthentication no",
                        "UsePAM no",
                        "StrictModes no",
                        "MaxSessions 100",
                        "MaxStartups 100",
                        "Subsystem sftp internal-sftp",
                        "",
                    ]
                )
            )
            # `ip netns exec` gives the command a mount namespace of its own (slave to the host's):
            # the tmpfs mounted there is this host's alone, and sshd's sessions inherit it.
            self._sshd.append(
                subprocess.Popen(
                    [
                        "ip",
                        "netns",
                        "exec",
                        ns,
                        "sh",
                        "-c",
                        'mount -t tmpfs -o size=256m tmpfs "$1" && exec "$2" -D -e -f "$3"',
                        "sh",
                        self.remote_dir,
                        SSHD,
                        str(config),
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=(self.workdir / f"sshd{i}.log").open("ab"),
                    start_new_session=True,
                )
            )
            public = Path(f"{host_key}.pub").read_text().split()
            known.append(f"{address} {public[0]} {public[1]}")
        self.known_hosts.write_text("\n".join(known) + "\n")
        for address in self.addresses:
            self._wait_listening(address)

    def _wait_listening(self, address: str) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            probe = _run(
                "ip", "netns", "exec", self.control, "bash", "-c", 'exec 3<>"/dev/tcp/$1/22"', "bash", address,
                check=False,
            )  # fmt: skip
            if probe.returncode == 0:
                return
            for proc in self._sshd:
                if proc.poll() is not None:
                    raise RuntimeError(f"sshd exited: {self.logs()}")
            time.sleep(0.05)
        raise RuntimeError(f"sshd on {address} not listening after 10 s: {self.logs()}")

    def logs(self) -> str:
        return " | ".join(
            p.read_text(errors="replace")[-500:] for p in sorted(self.workdir.glob("sshd*.log"))
        )

    # -- the controller's side ---------------------------------------------------------

    def enter_control(self) -> None:
        """Move this thread (and threads it starts later) into the control namespace."""
        libc = ctypes.CDLL(None, use_errno=True)
        self._saved_netns = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
        fd = os.open(f"/run/netns/{self.control}", os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns")
        finally:
            os.close(fd)

    def leave_control(self) -> None:
        if self._saved_netns is None:
            return
        libc = ctypes.CDLL(None, use_errno=True)
        try:
            if libc.setns(self._saved_netns, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
        finally:
            os.close(self._saved_netns)
            self._saved_netns = None

    def in_control(self, *argv: str) -> list[str]:
        """``argv`` run in the control namespace (for ``ratchet run`` as a subprocess)."""
        return ["ip", "netns", "exec", self.control, *argv]

    def on_host(self, i: int, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``argv`` in host ``i``'s network namespace (not its mount namespace: use ssh for files)."""
        return _run("ip", "netns", "exec", self.names[i], *argv, check=check)

    def in_host_mounts(self, i: int, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``argv`` inside host ``i``'s namespaces (network and mounts: its own remote_dir), as sshd has them."""
        pid = (self.workdir / f"sshd{i}.pid").read_text().strip()
        return _run("nsenter", "-t", pid, "-m", "-n", "--", *argv, check=check)

    def host_pids(self, i: int) -> list[int]:
        """Every process in host ``i``'s network namespace except its sshd listener."""
        out = _run("ip", "netns", "pids", self.names[i], check=False).stdout.split()
        sshd = {p.pid for p in self._sshd}
        return [int(p) for p in out if int(p) not in sshd]

    # -- teardown ----------------------------------------------------------------------

    def close(self) -> None:
        """Kill every process in our namespaces, delete them (the bridge and veths go with them)."""
        self.leave_control()
        for ns in self._made:
            for _ in range(3):
                pids = _run("ip", "netns", "pids", ns, check=False).stdout.split()
                if not pids:
                    break
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
                time.sleep(0.05)
        for proc in self._sshd:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
        for ns in reversed(self._made):
            _run("ip", "netns", "del", ns, check=False)
        self._made.clear()
        self._sshd.clear()
