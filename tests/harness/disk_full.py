"""Run ``ratchet run`` with its store on a small tmpfs and fill that disk while the run is in its main phase.

``python tests/harness/disk_full.py MOUNT SIZE OUT [ratchet run flags...]``, started under
``unshare --mount --propagation private`` (root), so the tmpfs exists only in that mount
namespace. Once the history holds a few dozen ok ops and a fault has started, a filler
file takes every free byte of the tmpfs; the run then meets ENOSPC as a real full disk
gives it. When the run has ended, the store (without the nodes' data files) is copied to
OUT on the real disk with the run's stderr and exit code (OUT/outcome.json), and the
tmpfs is unmounted.
"""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

WAIT_FOR_OPS_S = 60.0
RUN_TIMEOUT_S = 120.0


def fill(path: Path) -> int:
    """Write until the disk says ENOSPC; returns the bytes written."""
    written = 0
    with path.open("wb", buffering=0) as handle:
        for chunk_bytes in (1 << 20, 4096, 512, 1):
            chunk = b"\0" * chunk_bytes
            while True:
                try:
                    written += handle.write(chunk) or 0
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    return written


def main() -> int:
    mount, size, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    flags = sys.argv[4:]
    mount.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], check=True)
    try:
        store = mount / "store"
        proc = subprocess.Popen(
            [sys.executable, "-m", "harness.cli", "run", *flags, "--store", str(store)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        history = store / "latest" / "history.jsonl"
        deadline = time.monotonic() + WAIT_FOR_OPS_S
        filled = None
        while time.monotonic() < deadline and proc.poll() is None:
            if history.exists():
                text = history.read_text(errors="replace")
                if text.count('"ok"') > 40 and '"start-' in text:
                    filled = fill(mount / "filler")
                    break
            time.sleep(0.1)
        _, err = proc.communicate(timeout=RUN_TIMEOUT_S)
        run = (store / "latest").resolve()
        shutil.copytree(run, out / "run", ignore=shutil.ignore_patterns("data"), symlinks=True)
        (out / "outcome.json").write_text(
            json.dumps({"rc": proc.returncode, "stderr": err, "filled_bytes": filled, "run": str(run)})
        )
    finally:
        subprocess.run(["umount", "--lazy", str(mount)], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
