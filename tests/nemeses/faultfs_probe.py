"""Run inside a fresh run namespace by tests/nemeses/test_disk_faultfs.py; prints one JSON line.

``lose-unsynced``: a writer process writes and fsyncs, the probe copies the file (the
state at the last fsync), the writer writes more without fsync and is SIGKILLed, the
power is cut; the file must equal the copy, byte for byte.
``rules``: EIO on fsync, ENOSPC on a write range, a stall until cleared, a bad request,
the injection log, and data left in place after the unmount.
``eio-node``: a one-node VR cluster on faultfs: EIO on fsync; the node must not ack a
write, must exit (not spin), and must come back healthy once the fault is cleared.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from nemeses.disk.control import Faultfs, FaultfsError, mounted_at

WRITER = r"""
import os, random, sys
path, seed = sys.argv[1], int(sys.argv[2])
rng = random.Random(seed)
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
for _ in range(40):
    os.pwrite(fd, rng.randbytes(rng.choice([512, 4096, 8192, 10000])), rng.randrange(0, 1 << 20))
os.fsync(fd)
print("synced", flush=True)
sys.stdin.readline()
for _ in range(40):
    os.pwrite(fd, rng.randbytes(rng.choice([512, 4096, 8192, 10000])), rng.randrange(0, 1 << 20))
print("written", flush=True)
sys.stdin.readline()
"""


def mount(tmp: Path) -> tuple[Faultfs, Path]:
    data = tmp / "data"
    fs = Faultfs(data, log_path=tmp / "faultfs.jsonl", output_path=tmp / "faultfs.log")
    fs.mount()
    return fs, data


def lose_unsynced(tmp: Path, seed: int) -> dict[str, Any]:
    fs, data = mount(tmp)
    path = data / "file"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), str(seed)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None and writer.stdin is not None
    assert writer.stdout.readline().strip() == "synced"
    at_fsync = path.read_bytes()
    writer.stdin.write("go\n")
    writer.stdin.flush()
    assert writer.stdout.readline().strip() == "written"
    before_cut = path.read_bytes()
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=10)
    cut = fs.power_cut(seed=seed)
    after_cut = path.read_bytes()
    fs.unmount()
    after_unmount = path.read_bytes()
    return {
        "changed_before_cut": before_cut != at_fsync,
        "equal_after_cut": after_cut == at_fsync,
        "equal_after_unmount": after_unmount == at_fsync,
        "size_at_fsync": len(at_fsync),
        "dropped_bytes": sum(c["dropped_bytes"] for c in cut),
        "log": [json.loads(line) for line in (tmp / "faultfs.jsonl").read_text().splitlines()],
    }


def rules(tmp: Path) -> dict[str, Any]:
    fs, data = mount(tmp)
    out: dict[str, Any] = {}
    fd = os.open(data / "f", os.O_RDWR | os.O_CREAT, 0o644)
    os.pwrite(fd, b"s" * 8192, 0)
    os.fsync(fd)
    fs.add_rule(id="sync", op="fsync", error="EIO", file="f")
    os.pwrite(fd, b"u" * 4096, 0)
    try:
        os.fsync(fd)
        out["fsync_errno"] = 0
    except OSError as exc:
        out["fsync_errno"] = exc.errno
    out["after_failed_fsync"] = os.pread(fd, 4096, 0)[:1].decode()  # the dirty page was dropped
    fs.clear(["sync"])
    os.fsync(fd)
    fs.add_rule(id="full", op="write", error="ENOSPC", file="f", offset_min=4096, offset_max=8192)
    os.pwrite(fd, b"a" * 4096, 0)  # outside the range: fine
    try:
        os.pwrite(fd, b"b" * 4096, 4096)
        out["enospc_errno"] = 0
    except OSError as exc:
        out["enospc_errno"] = exc.errno
    fs.clear()
    fs.add_rule(id="slow", op="fsync", error=None, stall_ms=-1, file="f")
    done = threading.Event()
    began = time.monotonic()
    thread = threading.Thread(target=lambda: (os.fsync(fd), done.set()), daemon=True)
    thread.start()
    out["stalled"] = not done.wait(0.5)
    fs.clear(["slow"])
    out["released"] = done.wait(10)
    out["stall_s"] = round(time.monotonic() - began, 3)
    try:
        fs.request("add", rule={"id": "x", "op": "frobnicate"})
        out["bad_request"] = None
    except FaultfsError as exc:
        out["bad_request"] = str(exc)
    os.close(fd)
    out["stats"] = fs.stats()
    out["mounted"] = mounted_at(data)
    fs.unmount()
    out["unmounted"] = mounted_at(data)
    out["content_after_unmount"] = (data / "f").read_bytes()[:1].decode()
    out["log"] = [json.loads(line) for line in (tmp / "faultfs.jsonl").read_text().splitlines()]
    return out


def eio_node(tmp: Path) -> dict[str, Any]:
    from vr.client import Client, ClientError

    fs, data = mount(tmp)
    peer = "127.0.0.2:7300"

    def start(*extra: str) -> subprocess.Popen[bytes]:
        argv = [
            sys.executable, "-m", "vr.node", "--id", "0", "--peers", peer, "--data", str(data),
            "--cluster", "5", "--log", str(tmp / "node.log"), "--events", str(tmp / "events.jsonl"),
            *extra,
        ]  # fmt: skip
        return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait_write(client: Client, key: str, deadline_s: float) -> bool:
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            try:
                client.write(key, 1)
                return True
            except ClientError:
                time.sleep(0.1)
        return False

    out: dict[str, Any] = {}
    node = start("--format")
    client = Client([peer], cluster=5, timeout_s=1.0, seed=1)
    out["healthy_before"] = wait_write(client, "k0", 20)
    fs.add_rule(id="eio", op="fsync", error="EIO", file="replica.vr")
    acked = False
    try:
        client.write("k1", 1)
        acked = True
    except ClientError as exc:
        out["write_error"] = type(exc).__name__
    out["acked_during_fault"] = acked
    try:
        out["exit_code"] = node.wait(timeout=15)
    except subprocess.TimeoutExpired:
        out["exit_code"] = None
        node.kill()
        node.wait()
    # Never crash-looping: nothing restarts it while the fault is active; it stays down.
    time.sleep(1.0)
    out["still_down"] = node.poll() is not None
    out["injected"] = fs.stats()["counts"]["injected"]
    fs.clear()
    client.close()
    node = start()
    client = Client([peer], cluster=5, timeout_s=1.0, seed=2)
    out["healthy_after"] = wait_write(client, "k2", 20)
    out["k0_after"] = client.read("k0") if out["healthy_after"] else None
    client.close()
    node.send_signal(signal.SIGTERM)
    out["clean_exit"] = node.wait(timeout=15)
    fs.unmount()
    log = (tmp / "node.log").read_text(errors="replace")
    out["log_names_fsync_eio"] = "Input/output error" in log or f"Errno {errno.EIO}" in log
    return out


def corrupt_repair(tmp: Path) -> dict[str, Any]:
    """Three nodes; stop a backup, damage three committed prepare slots, restart it: it must find
    them faulty, repair each from a peer, and say so in its counters and events."""
    import random

    from nemeses.disk.corrupt import apply_to_file, damaged, read_file
    from vr.client import Client, ClientError
    from vr.layout import Layout

    peers = ",".join(f"127.0.0.{i + 2}:7400" for i in range(3))
    procs: dict[int, subprocess.Popen[bytes]] = {}

    def start(i: int, *extra: str) -> None:
        node = tmp / f"n{i}"
        (node / "data").mkdir(parents=True, exist_ok=True)
        argv = [
            sys.executable, "-m", "vr.node", "--id", str(i), "--peers", peers, "--data", str(node / "data"),
            "--cluster", "6", "--log", str(node / "node.log"), "--events", str(node / "events.jsonl"), *extra,
        ]  # fmt: skip
        procs[i] = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    for i in range(3):
        start(i, "--format")
    client = Client(peers.split(","), cluster=6, timeout_s=1.0, seed=3)
    out: dict[str, Any] = {}
    try:
        written = 0
        deadline = time.monotonic() + 30
        while written < 30 and time.monotonic() < deadline:
            try:
                client.write(f"k{written}", written)
                written += 1
            except ClientError:
                time.sleep(0.1)
        out["written"] = written
        statuses = {i: client.status(i) for i in range(3)}
        primary = statuses[0]["primary"]
        target = next(i for i in range(3) if i != primary)
        commit = int(statuses[target]["commit"])
        procs[target].kill()
        procs[target].wait()
        layout, rng = Layout(), random.Random(5)
        path = tmp / f"n{target}" / "data" / "replica.vr"
        # Inside the log, not at its head: damage at the head is indistinguishable from a write torn
        # by the crash (VR.md), which recovery rightly truncates rather than reports.
        ops = [commit - 5, commit - 4, commit - 3]
        for op, kind in zip(ops, ("bitflip", "zero", "misdirect"), strict=True):
            extent = layout.extents_of_op(op)["prepare_header_sector"]
            current = read_file(path, extent.offset, extent.length)
            data = damaged(
                kind, extent, current=current, rng=rng, layout=layout,
                read_at=lambda o, n: read_file(path, o, n),
            )  # fmt: skip
            apply_to_file(path, extent.offset, data)
        out["corrupted_ops"] = ops
        start(target)
        deadline = time.monotonic() + 30
        counters: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                client.write("after", 1)
                counters = client.status(target).get("counters", {})
                if counters.get("repairs", 0) >= len(ops):
                    break
            except ClientError:
                pass
            time.sleep(0.2)
        out["counters"] = {k: counters.get(k) for k in ("repairs", "storage_faults")}
        out["reads"] = [client.read(f"k{i}") for i in range(written)]
        events = [json.loads(line) for line in (tmp / f"n{target}" / "events.jsonl").read_text().splitlines()]
        out["faulty_ops"] = sorted(
            {op for e in events if e.get("kind") == "storage_fault" for op in e.get("ops", [])}
        )
        out["repaired_ops"] = sorted({e["op"] for e in events if e.get("kind") == "repaired_slot"})
        from reports.nodes import storage_summary

        out["summary"] = storage_summary(events)
    finally:
        client.close()
        for proc in procs.values():
            proc.kill()
            proc.wait()
    return out


def main() -> int:
    what = sys.argv[1]
    with tempfile.TemporaryDirectory(prefix="faultfs-test-") as tmp:
        if what == "lose-unsynced":
            result = lose_unsynced(Path(tmp), int(sys.argv[2]))
        elif what == "rules":
            result = rules(Path(tmp))
        elif what == "eio-node":
            result = eio_node(Path(tmp))
        elif what == "corrupt-repair":
            result = corrupt_repair(Path(tmp))
        else:
            raise SystemExit(f"unknown probe {what!r}")
    print(json.dumps(result, default=repr))
    return 0


if __name__ == "__main__":
    sys.exit(main())
