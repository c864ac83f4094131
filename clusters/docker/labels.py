"""The labels Ratchet puts on every container, network and image it creates, and who owns them.

Everything a docker run creates carries ``org.ratchet.managed=1`` and its run id,
plus the identity of the controller process that created it (boot id, pid, start
time). A controller killed with SIGKILL cannot clean up after itself; the next run
and ``ratchet clean`` find its objects by label and know they are dangling because
that controller no longer exists, without ever touching a live run's objects.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

MANAGED = "org.ratchet.managed"
RUN = "org.ratchet.run"
ROLE = "org.ratchet.role"  # node | probe | image
CONTROLLER = "org.ratchet.controller"  # boot-id:pid:start-time of the process that created it
RECIPE = "org.ratchet.recipe"  # images: the recipe hash the cached image was built from

_NAME_UNSAFE = re.compile(r"[^a-zA-Z0-9_.-]+")


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def _start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat (clock ticks since boot): with the pid, a process's identity."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def controller_id(pid: int | None = None) -> str:
    pid = os.getpid() if pid is None else pid
    return f"{_boot_id()}:{pid}:{_start_time(pid) or '?'}"


def controller_alive(value: str | None) -> bool:
    """Whether the controller that labelled an object still runs (on this machine, since this boot)."""
    if not value:
        return False
    boot, _, rest = value.partition(":")
    pid_text, _, start = rest.partition(":")
    if boot != _boot_id() or not pid_text.isdigit():
        return False
    return _start_time(int(pid_text)) == start


def labels(run_id: str, role: str) -> dict[str, str]:
    return {MANAGED: "1", RUN: run_id, ROLE: role, CONTROLLER: controller_id()}


def dangling(object_labels: Mapping[str, str] | None) -> bool:
    """A Ratchet object whose creating controller is gone (crashed, SIGKILLed, machine rebooted)."""
    found = object_labels or {}
    return found.get(MANAGED) == "1" and not controller_alive(found.get(CONTROLLER))


def run_id_for(run_dir: Path) -> str:
    """A docker-name-safe id of the run: ``<scenario>-<stamp>`` of its store directory."""
    run_dir = run_dir.resolve()
    return _NAME_UNSAFE.sub("-", f"{run_dir.parent.name}-{run_dir.name}").strip("-.")[:60] or "run"
