"""Whether a directory can hold Ratchet's store, asked before anything is created."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path


def store_dir_problem(store: str) -> str | None:
    """Why ``store`` cannot hold runs (in words, after "the store X"), or None when it can.

    Asked before anything starts, so a bad ``--store`` is refused with nothing
    created: an existing directory must accept a new entry, and a missing one
    needs its nearest existing ancestor to be a directory that does (both are
    tried with a temporary directory that is removed at once).
    """
    if not store.strip():
        return "is empty; give a directory (default: store)"
    if "\0" in store:
        return "contains a NUL byte"
    path = Path(store)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        if path.is_symlink():
            return f"is a symlink to {os.readlink(path)!r}, which does not exist"
        mode = None
    except NotADirectoryError:
        return "cannot be used: a part of the path before its last name is a file, not a directory"
    except OSError as exc:
        return f"cannot be used: {exc.strerror}"
    if mode is not None and not stat.S_ISDIR(mode):
        return "is a file, not a directory; give a directory (it is created when missing)"
    probe_dir = path
    while mode is None:
        probe_dir = probe_dir.parent
        try:
            mode = probe_dir.stat().st_mode
        except FileNotFoundError:
            continue
        except OSError as exc:
            return f"cannot be created: {str(probe_dir)!r} {exc.strerror}"
        if not stat.S_ISDIR(mode):
            return f"cannot be created: {str(probe_dir)!r} is a file, not a directory"
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".ratchet-probe-", dir=probe_dir))
    except OSError as exc:
        return f"cannot be written: creating a directory in {str(probe_dir)!r} fails ({exc.strerror})"
    return None
