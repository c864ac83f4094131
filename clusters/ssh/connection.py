"""One SSH login per host (paramiko): commands as argv, files over SFTP.

Every remote command is an argv list joined with :func:`shlex.join`, so no value
(a path, an address, an environment variable) is ever pasted into shell text;
the few shell scripts Ratchet runs on a host are constants that read their
values as positional parameters (``sh -c SCRIPT sh ARG...``). With ``sudo`` a
command becomes ``sudo -n -- ARGV``: never a password prompt, a refusal instead.

Host keys: with ``strict_host_keys`` (the default) an unknown or changed key is
refused (paramiko's RejectPolicy against the known_hosts file); only an explicit
opt-out accepts it, with a warning naming the fingerprint.
"""

from __future__ import annotations

import logging
import os
import shlex
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import paramiko

logger = logging.getLogger(__name__)

T = TypeVar("T")

CONNECT_TIMEOUT_S = 10.0
COMMAND_TIMEOUT_S = 30.0
SLOW_S = 2.0  # a command slower than this is logged (a loaded host, a stalled session)


class SSHError(RuntimeError):
    """A host could not be reached, refused us, or a command on it failed (the message says which)."""


@dataclass(frozen=True, slots=True)
class Login:
    """How to log in to the hosts (the ``[cluster]`` ssh keys)."""

    username: str = "root"
    port: int = 22
    private_key: str | None = None
    known_hosts: str | None = None
    strict_host_keys: bool = True
    sudo: bool = False

    def known_hosts_path(self) -> Path:
        return Path(self.known_hosts or "~/.ssh/known_hosts").expanduser()


@dataclass(frozen=True, slots=True)
class Result:
    argv: tuple[str, ...]
    code: int
    stdout: str
    stderr: str


@dataclass
class Host:
    """A logged-in host: ``run`` an argv, ``stream`` one whose output is read line by line, SFTP."""

    name: str  # as the user named it (--nodes)
    login: Login
    client: paramiko.SSHClient
    controller_address: str = ""  # the controller's address as the host sees it ($SSH_CONNECTION)
    address: str = ""  # the host's own address the controller reached
    facts: dict[str, str] = field(default_factory=dict)  # FACTS: tools and python3 on the host
    _sftp: paramiko.SFTPClient | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def label(self) -> str:
        return f"{self.name} ({self.address})" if self.address and self.address != self.name else self.name

    def command(self, argv: Sequence[str], *, sudo: bool | None = None) -> str:
        """The command line sent to the host: the argv quoted, behind ``sudo -n --`` when asked."""
        use_sudo = self.login.sudo if sudo is None else sudo
        return shlex.join(["sudo", "-n", "--", *argv] if use_sudo else list(argv))

    def run(
        self,
        argv: Sequence[str],
        *,
        sudo: bool | None = None,
        stdin: str | None = None,
        check: bool = True,
        timeout_s: float = COMMAND_TIMEOUT_S,
    ) -> Result:
        """Run ``argv`` on the host and wait for it; SSHError on a non-zero exit when ``check``."""
        line = self.command(argv, sudo=sudo)
        began = time.monotonic()
        try:
            channel = self._transport().open_session(timeout=CONNECT_TIMEOUT_S)
            channel.settimeout(timeout_s)
            channel.exec_command(line)
            if stdin is not None:
                channel.sendall(stdin.encode())
            channel.shutdown_write()
            out = channel.makefile("rb").read()  # stdout to EOF (bounded by the channel timeout)
            err = channel.makefile_stderr("rb").read()  # small: paramiko buffers it meanwhile
            code = channel.recv_exit_status()
            channel.close()
        except (OSError, paramiko.SSHException) as exc:
            raise SSHError(
                f"{self.label}: `{line}` failed after {time.monotonic() - began:.1f} s: {type(exc).__name__}: {exc}"
            ) from exc
        elapsed = time.monotonic() - began
        if elapsed > SLOW_S:
            logger.warning("%s: `%s` took %.1f s", self.label, line[:200], elapsed)
        result = Result(tuple(argv), code, out.decode(errors="replace"), err.decode(errors="replace"))
        if check and code != 0:
            raise SSHError(
                f"{self.label}: `{line}` exited {code}: {result.stderr.strip() or result.stdout.strip()}"
            )
        return result

    def stream(
        self, argv: Sequence[str], *, on_line: Callable[[str], None], on_end: Callable[[], None]
    ) -> paramiko.Channel:
        """Start ``argv`` and hand each stdout line to ``on_line`` from a reader thread; ``on_end``
        when the output ends (the command exited or the connection dropped)."""
        line = self.command(argv)
        channel = self._transport().open_session(timeout=CONNECT_TIMEOUT_S)
        channel.exec_command(line)
        channel.shutdown_write()

        def read() -> None:
            buffer = b""
            try:
                while True:
                    chunk = channel.recv(4096)
                    if not chunk:
                        break
                    buffer += chunk
                    while b"\n" in buffer:
                        text, buffer = buffer.split(b"\n", 1)
                        on_line(text.decode(errors="replace"))
            except (OSError, paramiko.SSHException) as exc:
                logger.warning("%s: reading `%s`: %s", self.label, line, exc)
            finally:
                channel.close()
                on_end()

        threading.Thread(target=read, name=f"ssh-{self.name}", daemon=True).start()
        return channel

    def _transport(self) -> paramiko.Transport:
        transport = self.client.get_transport()
        if transport is None or not transport.is_active():
            raise SSHError(f"{self.label}: the SSH connection is closed")
        return transport

    def sftp(self) -> paramiko.SFTPClient:
        with self._lock:
            if self._sftp is None:
                self._sftp = self.client.open_sftp()
            return self._sftp

    def upload_tree(self, local: Path, remote: str, *, skip: Callable[[Path], bool]) -> int:
        """Copy directory ``local`` to ``remote`` (created); returns the bytes sent."""
        sftp, sent = self.sftp(), 0
        sftp.mkdir(remote)
        for entry in sorted(local.iterdir()):
            if skip(entry):
                continue
            target = f"{remote}/{entry.name}"
            if entry.is_dir():
                sent += self.upload_tree(entry, target, skip=skip)
            elif entry.is_file():
                sftp.put(str(entry), target)
                sent += entry.stat().st_size
        return sent

    def download_tree(
        self, remote: str, local: Path, *, skip: Callable[[str], bool]
    ) -> list[tuple[str, int]]:
        """Copy ``remote`` (a directory) into ``local``; (relative path, bytes) of each file fetched."""
        sftp, fetched = self.sftp(), []
        local.mkdir(parents=True, exist_ok=True)
        for attr in sorted(sftp.listdir_attr(remote), key=lambda a: a.filename):
            source = f"{remote}/{attr.filename}"
            if skip(attr.filename):
                continue
            if stat.S_ISDIR(attr.st_mode or 0):
                fetched += [
                    (f"{attr.filename}/{name}", size)
                    for name, size in self.download_tree(source, local / attr.filename, skip=skip)
                ]
            elif stat.S_ISREG(attr.st_mode or 0):
                sftp.get(source, str(local / attr.filename))
                fetched.append((attr.filename, attr.st_size or 0))
        return fetched

    def download_tar(self, remote: str, local: Path, *, exclude: Sequence[str] = ()) -> list[str]:
        """Copy the tree ``remote`` into ``local`` as one tar stream (sparse data files stay sparse, and
        compress); the relative paths of the files extracted. ``exclude``: GNU tar patterns."""
        local.mkdir(parents=True, exist_ok=True)
        argv = ["tar", "-C", remote, "-cSzf", "-", *(f"--exclude={p}" for p in exclude), "."]
        line = self.command(argv)
        channel = self._transport().open_session(timeout=CONNECT_TIMEOUT_S)
        channel.settimeout(COMMAND_TIMEOUT_S)
        channel.exec_command(line)
        channel.shutdown_write()
        with tempfile.TemporaryFile() as listing, tempfile.TemporaryFile() as errors:
            extract = subprocess.Popen(
                ["tar", "-C", str(local), "-xzvf", "-"], stdin=subprocess.PIPE, stdout=listing, stderr=errors
            )
            assert extract.stdin is not None
            try:
                while chunk := channel.recv(1 << 16):
                    extract.stdin.write(chunk)
            except (OSError, paramiko.SSHException) as exc:
                extract.kill()
                raise SSHError(f"{self.label}: `{line}` failed: {type(exc).__name__}: {exc}") from exc
            finally:
                extract.stdin.close()
                extract.wait(timeout=COMMAND_TIMEOUT_S)
            listing.seek(0)
            errors.seek(0)
            names, err = listing.read(), errors.read()
        code = channel.recv_exit_status()
        remote_err = channel.makefile_stderr("rb").read().decode(errors="replace").strip()
        channel.close()
        if code != 0 or extract.returncode != 0:
            raise SSHError(
                f"{self.label}: downloading {remote}: remote tar exited {code} ({remote_err}), "
                f"local tar exited {extract.returncode} ({err.decode(errors='replace').strip()})"
            )
        paths = [n.removeprefix("./") for n in names.decode(errors="replace").splitlines()]
        return [p for p in paths if p and (local / p).is_file()]

    def close(self) -> None:
        with self._lock:
            if self._sftp is not None:
                self._sftp.close()
                self._sftp = None
        self.client.close()


def parallel(items: Sequence[str], work: Callable[[str], T]) -> dict[str, T]:
    """``work`` on every item at once (one thread each: hosts answer in parallel); the first error raised."""
    if not items:
        return {}
    with ThreadPoolExecutor(max_workers=len(items)) as pool:
        futures = {item: pool.submit(work, item) for item in items}
        return {item: future.result() for item, future in futures.items()}


def connect(name: str, login: Login) -> Host:
    """Log in to ``name``; SSHError with the reason (unknown host key, refused key, no route)."""
    client = paramiko.SSHClient()
    if login.strict_host_keys:
        path = login.known_hosts_path()
        if not path.is_file():
            raise SSHError(
                f"{name}: strict host key checking is on and the known_hosts file {path} does not exist; "
                "add the hosts' keys (ssh-keyscan -p PORT HOST >> FILE after checking the fingerprints) "
                "or opt out with --no-strict-host-key-checking"
            )
        client.load_host_keys(str(path))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
    else:
        known = login.known_hosts_path()
        if known.is_file():
            client.load_host_keys(str(known))
        client.set_missing_host_key_policy(paramiko.WarningPolicy())
    try:
        client.connect(
            name,
            port=login.port,
            username=login.username,
            key_filename=os.path.expanduser(login.private_key) if login.private_key else None,
            timeout=CONNECT_TIMEOUT_S,
            banner_timeout=CONNECT_TIMEOUT_S,
            auth_timeout=CONNECT_TIMEOUT_S,
            allow_agent=login.private_key is None,
            look_for_keys=login.private_key is None,
        )
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise SSHError(f"{name}: the host key changed ({exc}); refusing to log in") from exc
    except paramiko.SSHException as exc:
        client.close()
        hint = (
            f" (is {name}:{login.port} in {login.known_hosts_path()}? "
            "`ssh-keyscan` adds it; --no-strict-host-key-checking skips the check)"
            if "not found in known_hosts" in str(exc)
            else ""
        )
        raise SSHError(f"{name}: SSH login as {login.username!r} failed: {exc}{hint}") from exc
    except OSError as exc:
        client.close()
        raise SSHError(f"{name}:{login.port}: cannot connect: {exc}") from exc
    transport = client.get_transport()
    assert transport is not None
    transport.set_keepalive(5)
    host = Host(name, login, client)
    if not login.strict_host_keys:
        key = transport.get_remote_server_key()
        logger.warning(
            "%s: host key not checked (strict_host_keys = false): %s %s",
            name,
            key.get_name(),
            key.fingerprint,
        )
    facts = host.run(["sh", "-c", FACTS], sudo=False).stdout
    host.facts = dict(line.split("=", 1) for line in facts.splitlines() if "=" in line)
    where = host.facts.get("connection", "").split()
    if len(where) != 4:
        host.close()
        raise SSHError(
            f"{name}: cannot tell the addresses of the SSH connection ($SSH_CONNECTION is {where!r})"
        )
    host.controller_address, host.address = where[0], where[2]
    return host


# What the cluster needs to know of a host, in one command: the connection's addresses (the
# controller as the host sees it, the host's own), the packet filters and python3 it has.
FACTS = r"""
echo "connection=$SSH_CONNECTION"
echo "nft=$(command -v nft || PATH=/usr/sbin:/sbin:$PATH command -v nft)"
echo "iptables=$(command -v iptables || PATH=/usr/sbin:/sbin:$PATH command -v iptables)"
echo "python3=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)"
true
"""
