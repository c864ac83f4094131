"""The controller's side of faultfs: start a daemon over a directory, ask it things, unmount it.

:class:`Faultfs` owns one daemon process (``python -m nemeses.disk.faultfs``), started by
:meth:`Faultfs.mount` and waited for until the mount shows in ``/proc/self/mountinfo``
and the control socket answers. :meth:`Faultfs.unmount` sends SIGTERM: libfuse's own
handler unmounts and returns, and the daemon's ``destroy`` writes out what it still
caches (a clean unmount is not a power cut).

If the controller is SIGKILLed instead, nothing here runs: the daemon is a process of
the run's PID namespace and the kernel kills it when the namespace's init (the
controller) dies; the mount lives in the run's mount namespace and goes with it. The
node data under the mount is untouched, in the directory it was mounted over; only
what faultfs had cached and not yet fsynced is lost, which is what a power cut does.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

MOUNT_TIMEOUT_S = 10.0
UNMOUNT_TIMEOUT_S = 10.0
REQUEST_TIMEOUT_S = 30.0


class FaultfsError(RuntimeError):
    """faultfs refused a request or could not be started; the message says why."""


def mounted_at(path: Path) -> str | None:
    """The filesystem type mounted exactly at ``path`` (None: not a mount point)."""
    target = os.path.realpath(path)
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    found = None
    for line in lines:
        fields = line.split(" ")
        sep = fields.index("-")
        mount_point = fields[4].encode().decode("unicode_escape")
        if mount_point == target:
            found = fields[sep + 1]
    return found


class Faultfs:
    """One faultfs daemon mounted over one directory."""

    def __init__(self, directory: Path, *, log_path: Path, output_path: Path) -> None:
        self.directory = Path(directory)
        self.log_path = Path(log_path)
        self.output_path = Path(output_path)
        self.control_name = f"ratchet-faultfs-{os.getpid()}-{secrets.token_hex(6)}"
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._stream: Any = None

    @property
    def mounted(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def mount(self) -> None:
        if self.mounted:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        self.output_path.parent.mkdir(parents=True, exist_ok=True)
        argv = [
            sys.executable, "-m", "nemeses.disk.faultfs",
            "--mount", str(self.directory),
            "--control", self.control_name,
            "--log", str(self.log_path),
        ]  # fmt: skip
        with self.output_path.open("ab") as output:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        deadline = time.monotonic() + MOUNT_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                tail = self.output_path.read_text(errors="replace").strip().splitlines()[-3:]
                raise FaultfsError(
                    f"faultfs over {self.directory} exited with code {self._proc.returncode} before "
                    f"mounting: {' | '.join(tail) or 'no output'}"
                )
            if mounted_at(self.directory) == "fuse.faultfs":
                try:
                    self.request("ping")
                    return
                except (OSError, FaultfsError):
                    pass
            time.sleep(0.02)
        self.unmount()
        raise FaultfsError(f"faultfs did not mount over {self.directory} within {MOUNT_TIMEOUT_S:.0f} s")

    def request(self, cmd: str, **fields: Any) -> Any:
        """Send one control request; returns its value or raises FaultfsError with the reason."""
        if self._stream is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(REQUEST_TIMEOUT_S)
            sock.connect("\0" + self.control_name)
            self._sock, self._stream = sock, sock.makefile("rwb")
        try:
            self._stream.write(json.dumps({"cmd": cmd, **fields}).encode() + b"\n")
            self._stream.flush()
            line = self._stream.readline()
        except OSError:
            self._close_socket()
            raise
        if not line:
            self._close_socket()
            raise FaultfsError(f"faultfs over {self.directory} closed the control connection")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise FaultfsError(f"faultfs over {self.directory} refused {cmd}: {reply.get('error')}")
        return reply.get("value")

    def add_rule(self, **rule: Any) -> dict[str, Any]:
        return self.request("add", rule=rule)

    def clear(self, ids: list[str] | None = None) -> list[dict[str, Any]]:
        return self.request("clear", ids=ids)

    def power_cut(self, *, torn: bool = False, seed: int = 0) -> list[dict[str, Any]]:
        return self.request("power-cut", torn=torn, seed=seed)

    def corrupt(self, file: str, offset: int, data: bytes) -> dict[str, Any]:
        return self.request("corrupt", file=file, offset=offset, data_hex=data.hex())

    def stats(self) -> dict[str, Any]:
        return self.request("stats")

    def _close_socket(self) -> None:
        if self._stream is not None:
            with contextlib.suppress(OSError):
                self._stream.close()
        if self._sock is not None:
            self._sock.close()
        self._sock = self._stream = None

    def unmount(self) -> bool:
        """Clear every rule (stalled operations return), unmount, and reap the daemon; True if it ran."""
        proc = self._proc
        if proc is None:
            return False
        if proc.poll() is None:
            with contextlib.suppress(OSError, FaultfsError):
                self.request("clear")
        self._close_socket()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=UNMOUNT_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=UNMOUNT_TIMEOUT_S)
        if mounted_at(self.directory) is not None:
            subprocess.run(["umount", "-l", str(self.directory)], check=False, capture_output=True)
        self._proc = None
        return True


__all__ = ["Faultfs", "FaultfsError", "mounted_at"]
