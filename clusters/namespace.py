"""Put the rest of this process's life in private network, mount and PID namespaces.

A local run must leave nothing behind and never touch the host's firewall, even
when the controller is killed with SIGKILL. The kernel gives that for free: all
the run's processes (controller, nodes, ``nft``) live in a fresh PID namespace
whose init is the controller; when init dies the kernel SIGKILLs every process in
it, and the network namespace (with its firewall rules) and the mount namespace
(with any mounts) vanish with their last process.

:func:`enter` does ``unshare(2)`` (adding a user namespace with root mapped to
the caller when not root, like ``unshare --user --map-root-user``), then forks.
The child is PID 1 of the new PID namespace and carries on running the caller's
code. The original process becomes a guardian that only forwards SIGINT/SIGTERM
to the child and exits with the child's status; the child dies (PR_SET_PDEATHSIG)
if the guardian is killed, so ``kill -9`` of the pid a user sees takes the whole
run with it. We use the syscalls (ctypes) rather than the ``unshare`` binary
because util-linux's unshare blocks SIGTERM in its waiting parent, so a plain
``kill`` of the run would be ignored.

``python -m clusters.namespace -- CMD ARGS`` runs a command that way (tests,
probes).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import os
import select
import signal
import socket
import struct
import sys
import threading

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REC = 16384
MS_PRIVATE = 1 << 18
PR_SET_PDEATHSIG = 1
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
IFREQ = "16sH22x"

ENV_MARK = "RATCHET_IN_NAMESPACE"


class NamespaceUnavailable(RuntimeError):
    """The kernel refused to create the namespaces; the message says what to do."""


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def inside() -> bool:
    """True in a process started by :func:`enter` (or its descendants)."""
    return os.environ.get(ENV_MARK) == "1"


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


def _write(path: str, text: str) -> None:
    with open(path, "w") as handle:
        handle.write(text)


def _unshare(libc: ctypes.CDLL) -> None:
    uid, gid = os.geteuid(), os.getegid()
    flags = CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWPID
    if uid != 0:
        flags |= CLONE_NEWUSER
    if libc.unshare(flags) != 0:
        code = ctypes.get_errno()
        how = (
            "Run as root, or enable unprivileged user namespaces "
            "(sysctl -w kernel.unprivileged_userns_clone=1 on Debian; user.max_user_namespaces > 0); "
            "inside a container, start it with --privileged (or --cap-add SYS_ADMIN,NET_ADMIN)."
        )
        raise NamespaceUnavailable(
            f"cannot create private network/mount/pid namespaces for the run: {os.strerror(code)}. {how}"
        )
    if uid != 0:
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"0 {uid} 1")
        _write("/proc/self/gid_map", f"0 {gid} 1")
    # Mounts made during the run must not propagate back to the host.
    _check(libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "make / private")


def bring_loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        current = fcntl.ioctl(sock, SIOCGIFFLAGS, struct.pack(IFREQ, b"lo", 0))
        flags = struct.unpack(IFREQ, current)[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack(IFREQ, b"lo", flags | IFF_UP))


def _child_setup(libc: ctypes.CDLL, guard_read: int) -> None:
    _check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")
    # The guardian may have died before prctl: its end of the pipe is then closed.
    readable, _, _ = select.select([guard_read], [], [], 0)
    if readable:
        os._exit(137)
    try:
        _check(libc.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None), "mount /proc")
    except OSError as exc:  # /proc of the host still works for our own children's pids? no: say so.
        raise NamespaceUnavailable(f"cannot mount /proc in the run's PID namespace: {exc}") from exc
    bring_loopback_up()
    # Our own process group: a Ctrl-C at the terminal reaches the guardian only, which forwards it
    # once; the run's helper commands (nft, checkers) are never interrupted by it mid-way.
    os.setpgid(0, 0)
    os.environ[ENV_MARK] = "1"


def _guard(child: int) -> int:
    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signum)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, forward)
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except ChildProcessError:
            return 2
        except InterruptedError:
            continue
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def enter() -> None:
    """Returns in PID 1 of fresh namespaces; the calling process waits and exits with its status.

    Must be called while the process has a single thread (before any worker starts).
    """
    if inside():
        return
    if threading.active_count() != 1:
        raise RuntimeError("clusters.namespace.enter() must run before any thread is started")
    libc = _libc()
    _unshare(libc)
    guard_read, guard_write = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    child = os.fork()
    if child == 0:
        os.close(guard_write)
        _child_setup(libc, guard_read)
        return
    os.close(guard_read)
    code = _guard(child)
    os._exit(code if code >= 0 else 128 - code)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print("usage: python -m clusters.namespace -- CMD [ARGS...]", file=sys.stderr)
        return 3
    try:
        enter()
    except NamespaceUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # As PID 1 we must stay alive to keep the namespace; run the command as our child.
    pid = os.fork()
    if pid == 0:
        try:
            os.execvp(argv[0], argv)
        except OSError as exc:
            print(f"error: cannot run {argv[0]}: {exc}", file=sys.stderr)
            os._exit(127)

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    while True:
        try:
            waited, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 2
        except OSError as exc:
            if exc.errno == errno.EINTR:
                continue
            raise
        if waited == pid:
            return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
