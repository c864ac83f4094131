"""Real SSH hosts for the ssh home's tests: sshd in network namespaces on a private bridge.

Layout (every name carries this process's pid, so concurrent test runs never meet):

- a "control" namespace holding the bridge (10.99.0.1/24): the controller runs there
  (the test process enters it with setns, ``ratchet run`` through ``ip netns exec``);
- one namespace per host, a veth pair to the bridge, address 10.99.0.<i+2>; its own
  sshd (a host key and an authorized key generated here), run inside its own mount
  namespace with a tmpfs over the remote directory, so each host has a private file
  tree there and the controller sees none of it (downloads are really downloads);
- real nft in each host namespace;
- with ``user=NAME``, the login is a non-root account with passwordless sudo instead of
  root: each host's mount namespace gets its own /etc/passwd, /etc/shadow and /etc/group
  (copies with NAME added) and its own /etc/sudoers.d granting NAME ``NOPASSWD: ALL``, bound
  over the real ones there only; the remote directory, NAME's home and the authorized key
  live on a tmpfs over /mnt in that namespace (the pytest directory is root's alone, so a
  non-root login could not reach anything under it).

Nothing outside the namespaces created here is touched except ``/run/sshd``, the
privilege-separation directory sshd requires (created empty if missing), and, with
``user``, whatever sudo itself keeps under /run/sudo.
``close()`` kills every process in the namespaces, deletes them, and is safe to
call after a partial setup.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

CLONE_NEWNET = 0x40000000
SUBNET = "10.99.0"
_INSTANCES = itertools.count()  # several sets of hosts may live at once in one test process
SSHD = "/usr/sbin/sshd"
USER_UID = 4242  # the non-root login's uid and gid (``user=``), unused on a stock system
USER_MOUNT = "/mnt"  # tmpfs in each host's mount namespace: remote dir, home, authorized key

# Run by root in a host's fresh mount namespace, before sshd: a private tmpfs over the remote
# directory (root login) or over /mnt with the non-root account's files bound over /etc.
# Positional: remote_dir, sshd, sshd config, workdir, user ("" for root), uid.
HOST_SETUP = r"""
set -e
if [ -z "$5" ]; then
  mount -t tmpfs -o size=256m tmpfs "$1"
else
  mount -t tmpfs -o size=256m,mode=755 tmpfs /mnt
  mkdir -p "$1" /mnt/home /mnt/keys
  chmod 1777 "$1"
  chown "$6:$6" /mnt/home
  cp "$4/authorized_keys" /mnt/keys/authorized_keys
  chmod 644 /mnt/keys/authorized_keys
  for f in passwd shadow group; do mount --bind "$4/etc/$f" "/etc/$f"; done
  mount --bind "$4/etc/sudoers.d" /etc/sudoers.d
fi
exec "$2" -D -e -f "$3"
"""


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


def sudo_available() -> str | None:
    """Why a non-root login with sudo cannot be set up here (None: it can)."""
    reason = available()
    if reason:
        return reason
    if shutil.which("sudo") is None or not Path("/etc/sudoers.d").is_dir():
        return "sudo is not installed (apt-get install sudo)"
    if not Path(USER_MOUNT).is_dir():
        return f"{USER_MOUNT} does not exist to mount the non-root login's files on"
    return None


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=20, check=check)


class SSHHosts:
    """``count`` sshd hosts; ``addresses``, ``key``, ``known_hosts``, ``remote_dir``, ``username``
    for the cluster. ``user``: log in as this non-root account with passwordless sudo."""

    def __init__(self, count: int, workdir: Path, *, user: str | None = None) -> None:
        self.count, self.workdir = count, workdir
        self.user = user
        self.username = user or "root"
        instance = next(_INSTANCES)
        prefix = f"rts{os.getpid()}" + (f"x{instance}" if instance else "")
        self.control = f"{prefix}c"
        self.names = [f"{prefix}h{i}" for i in range(count)]
        self.addresses = [f"{SUBNET}.{i + 2}" for i in range(count)]
        self.controller_address = f"{SUBNET}.1"
        # a tmpfs of its own on each host (with ``user``: on the tmpfs over /mnt, reachable by the user)
        self.remote_dir = f"{USER_MOUNT}/remote" if user else str(workdir / "remote")
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
        if self.user is None:
            Path(self.remote_dir).mkdir(parents=True, exist_ok=True)
        else:
            self._write_account_files(self.user)
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key))
        (self.workdir / "authorized_keys").write_text(Path(f"{self.key}.pub").read_text())
        keys = f"{USER_MOUNT}/keys/authorized_keys" if self.user else self.workdir / "authorized_keys"
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
                        f"AuthorizedKeysFile {keys}",
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
            # the tmpfs and bind mounts made there are this host's alone, and sshd's sessions inherit them.
            self._sshd.append(
                subprocess.Popen(
                    [
                        *("ip", "netns", "exec", ns, "sh", "-c", HOST_SETUP, "sh", self.remote_dir, SSHD),
                        *(str(config), str(self.workdir), self.user or "", str(USER_UID)),
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

    def _write_account_files(self, user: str) -> None:
        """Copies of /etc/passwd, shadow and group with ``user`` added, and a sudoers.d granting it
        passwordless sudo: bound over the real ones in each host's mount namespace only."""
        etc = self.workdir / "etc"
        (etc / "sudoers.d").mkdir(parents=True)
        home = f"{USER_MOUNT}/home"
        passwd = Path("/etc/passwd").read_text().splitlines()
        group = Path("/etc/group").read_text().splitlines()
        for table, lines in (("passwd", passwd), ("group", group)):
            if any(entry.split(":", 1)[0] == user for entry in lines):
                raise RuntimeError(f"{user} already exists in /etc/{table}: pick another test login name")
        passwd.append(f"{user}:x:{USER_UID}:{USER_UID}::{home}:/bin/sh")
        group.append(f"{user}:x:{USER_UID}:")
        # No copy of the real shadow (no hashes leave /etc): every account gets "*", no password
        # at all, which is not "locked" ("!"), so sshd still takes the user's key.
        shadow = [f"{entry.split(':', 1)[0]}:*:19000:0:99999:7:::" for entry in passwd]
        for name, lines, mode in (
            ("passwd", passwd, 0o644),
            ("group", group, 0o644),
            ("shadow", shadow, 0o640),
        ):
            path = etc / name
            path.write_text("\n".join(lines) + "\n")
            path.chmod(mode)
        grant = etc / "sudoers.d" / "ratchet-test"
        grant.write_text(f"{user} ALL=(ALL:ALL) NOPASSWD: ALL\n")
        grant.chmod(0o440)
        (etc / "sudoers.d").chmod(0o755)

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
