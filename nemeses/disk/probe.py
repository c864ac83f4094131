"""``python -m nemeses.disk.probe``: can faultfs mount here and do what a run asks of it?

Run inside a fresh run namespace (harness.capabilities): mounts faultfs over a temporary
directory, writes and fsyncs one page, writes a second one, cuts the power and checks
that exactly the unsynced page is gone, then unmounts. Prints one line; exit 0 if all
of it worked.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from nemeses.disk.control import Faultfs, FaultfsError


def probe() -> str:
    with tempfile.TemporaryDirectory(prefix="ratchet-faultfs-probe-") as tmp:
        data = Path(tmp) / "data"
        fs = Faultfs(data, log_path=Path(tmp) / "faultfs.jsonl", output_path=Path(tmp) / "faultfs.log")
        fs.mount()
        try:
            fd = os.open(data / "probe", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                os.pwrite(fd, b"s" * 4096, 0)
                os.fsync(fd)
                os.pwrite(fd, b"u" * 4096, 4096)
            finally:
                os.close(fd)
            fs.power_cut()
            survived = (data / "probe").read_bytes()
        finally:
            fs.unmount()
        if survived != b"s" * 4096:
            raise FaultfsError(f"a power cut left {len(survived)} bytes, expected exactly the synced 4096")
    return "faultfs mounts, passes writes through, and a power cut drops exactly the unsynced page"


def main() -> int:
    try:
        print(probe())
    except ImportError as exc:
        print(f"the FUSE binding is missing ({exc}): pip install mfusepy", file=sys.stderr)
        return 1
    except (OSError, FaultfsError) as exc:
        print(f"faultfs does not work here: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
