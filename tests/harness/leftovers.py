"""What a run can leave behind on the host, for tests that assert it left nothing."""

from __future__ import annotations

import os
from pathlib import Path


def netns_users(inode: int) -> list[int]:
    """Pids of the processes still inside the network namespace with this inode (none: it is gone)."""
    users = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.stat(entry / "ns" / "net").st_ino == inode:
                    users.append(int(entry.name))
            except OSError:
                continue  # the process exited while we looked
    return users
