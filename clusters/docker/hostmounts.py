"""Host mounts that reach node containers: how disk faults work in the docker home.

faultfs (nemeses.disk) is a FUSE daemon the controller starts over a node's data
directory, in the controller's mount namespace. A local run's nodes share that
namespace; a docker node does not: its container bind-mounted the run directory
when it was created, before any faultfs mount existed. So for a run with disk
faults the run directory is made a mount of its own with *shared* propagation
(``mount --bind DIR DIR; mount --make-shared DIR``, on the host, in the docker
daemon's mount namespace) and each container mounts it ``rslave``: a faultfs
mount made later under it on the host appears in every container, and a node's
I/O on its data file goes through the controller's faultfs as a local node's does.
The node containers need no SYS_ADMIN and no /dev/fuse for that; the controller
needs root (it mounts on the host) and FUSE.

Teardown: the disk nemesis unmounts its faultfs daemons; :func:`release` then
stops any faultfs daemon still mounted under the run directory (SIGTERM: libfuse
unmounts and exits) and lazily unmounts whatever remains there, the run
directory's own bind last. A controller killed with SIGKILL leaves its daemons
and mounts; the node containers carry the run directory in a label
(:data:`LABEL`), so the next docker run or ``ratchet clean`` releases them when it
removes the dangling containers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

LABEL = "org.ratchet.host-mounts"  # on node containers of a disk run: the shared run directory
FAULTFS_MODULE = "nemeses.disk.faultfs"  # what a faultfs daemon's command line runs
RELEASE_WAIT_S = 5.0


class HostMountError(RuntimeError):
    """A host mount could not be made; the message says which and why."""


def _mount(*args: str) -> None:
    proc = subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30, check=False)
    if proc.returncode != 0:
        raise HostMountError(f"mount {' '.join(args)}: {proc.stderr.strip() or f'exit {proc.returncode}'}")


def share(directory: Path) -> None:
    """Make ``directory`` a mount point of its own with shared propagation (a bind onto itself)."""
    directory = Path(os.path.realpath(directory))
    if mounts_under(directory, exact=True) == []:
        _mount("--bind", str(directory), str(directory))
    try:
        _mount("--make-shared", str(directory))
    except HostMountError:
        _umount(directory)
        raise


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (``\\040``)."""
    return field.encode().decode("unicode_escape")


def mounts_under(directory: Path, *, exact: bool = False) -> list[tuple[str, str]]:
    """(mount point, fs type) of every mount at or under ``directory`` (only at it: ``exact``),
    deepest first: the order to unmount them in."""
    top = os.path.realpath(directory)
    found = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        fields = line.split(" ")
        point = _unescape(fields[4])
        fstype = fields[fields.index("-") + 1]
        if point == top or (not exact and point.startswith(top.rstrip("/") + "/")):
            found.append((point, fstype))
    return sorted(found, key=lambda m: m[0].count("/"), reverse=True)


def faultfs_daemons(directory: Path) -> list[int]:
    """Pids of faultfs daemons mounted (by their command line) at or under ``directory``."""
    top = os.path.realpath(directory).rstrip("/") + "/"
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [w.decode(errors="replace") for w in argv]
        if FAULTFS_MODULE not in words or "--mount" not in words:
            continue
        index = words.index("--mount") + 1
        if index < len(words) and (os.path.realpath(words[index]).rstrip("/") + "/").startswith(top):
            pids.append(int(entry.name))
    return pids


def _umount(point: Path | str) -> bool:
    proc = subprocess.run(
        ["umount", "-l", str(point)], capture_output=True, text=True, timeout=30, check=False
    )
    return proc.returncode == 0


def release(directory: Path) -> list[str]:
    """Stop faultfs daemons under ``directory`` and unmount everything there, its own bind last;
    returns what was done (teardown record lines)."""
    done = []
    started = faultfs_daemons(directory)
    for pid in started:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    pids = started
    deadline = time.monotonic() + RELEASE_WAIT_S
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if not _gone(p)]
        time.sleep(0.05)
    for pid in pids:  # did not go on SIGTERM (an operation it could not finish)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if started:
        killed = f" ({len(pids)} with SIGKILL)" if pids else ""
        done.append(f"stopped {len(started)} faultfs daemon(s) under {directory}{killed}")
    for point, fstype in mounts_under(directory):
        if _umount(point):
            done.append(f"unmounted {fstype} at {point}")
    return done


def _gone(pid: int) -> bool:
    """Exited (a zombie not yet reaped by its parent counts: its mount is gone with it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
