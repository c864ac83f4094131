"""What faultfs costs and how fast its faults go in and out: figures printed, nothing asserted.

Usage: ``python bench/faultfs.py [--mib 64] [--fsyncs 300] [--seconds 6] [--rounds 2] [--clients 50]``

Runs itself inside a fresh run namespace (private mount + network + PID), so every mount
and node it makes disappears with it. Three parts:

1. Filesystem: sequential write (128 KiB pwrites, then one fsync), sequential read, 4 KiB
   pwrite + fdatasync latency (p50/p99), on the bare directory and on faultfs over it.
2. VR: a 3-node cluster, ``--clients`` closed-loop writers for ``--seconds``, once on bare
   data directories and once with faultfs mounted over each (no rule active), alternated
   for ``--rounds`` rounds in the same process; ops/s of each and the ratio of medians.
3. Inject and heal: per disk mode, the time for faultfs to take a rule and to clear it;
   a power cut with dirty data; one layout-aimed corruption of a stopped node's file.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.vr_throughput import CLUSTER, HOSTS, Nodes, free_port, run_cell, wait_for_primary
from clusters import namespace
from nemeses.disk.control import Faultfs
from nemeses.disk.corrupt import apply_to_file, damaged, read_file
from nemeses.disk.nemesis import DISK_MODES, rule_for
from vr.layout import Layout

CHUNK = 128 * 1024


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def fs_figures(directory: Path, *, mib: int, fsyncs: int) -> dict[str, float]:
    path = directory / "bench.dat"
    data = os.urandom(CHUNK)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        began = time.perf_counter()
        for i in range(mib * 1024 * 1024 // CHUNK):
            os.pwrite(fd, data, i * CHUNK)
        os.fsync(fd)
        write_s = time.perf_counter() - began
        began = time.perf_counter()
        for i in range(mib * 1024 * 1024 // CHUNK):
            os.pread(fd, CHUNK, i * CHUNK)
        read_s = time.perf_counter() - began
        samples = []
        page = os.urandom(4096)
        for i in range(fsyncs):
            os.pwrite(fd, page, (i % 1024) * 4096)
            began = time.perf_counter()
            os.fdatasync(fd)
            samples.append((time.perf_counter() - began) * 1000)
    finally:
        os.close(fd)
        path.unlink()
    return {
        "write_mb_s": mib / write_s,
        "read_mb_s": mib / read_s,
        "fsync_ms_p50": percentile(samples, 0.5),
        "fsync_ms_p99": percentile(samples, 0.99),
    }


def part_filesystem(root: Path, args: argparse.Namespace) -> None:
    bare = root / "bare"
    bare.mkdir()
    mounted = root / "faultfs"
    fs = Faultfs(mounted, log_path=root / "fs.jsonl", output_path=root / "fs.log")
    fs.mount()
    try:
        rows = {"bare disk": fs_figures(bare, mib=args.mib, fsyncs=args.fsyncs)}
        rows["faultfs"] = fs_figures(mounted, mib=args.mib, fsyncs=args.fsyncs)
    finally:
        fs.unmount()
    print(f"1. filesystem ({args.mib} MiB sequential, {args.fsyncs} x 4 KiB pwrite + fdatasync)")
    print(f"   {'':<10} {'write MB/s':>10} {'read MB/s':>10} {'fsync p50 ms':>12} {'fsync p99 ms':>12}")
    for label, row in rows.items():
        print(
            f"   {label:<10} {row['write_mb_s']:>10.1f} {row['read_mb_s']:>10.1f} "
            f"{row['fsync_ms_p50']:>12.3f} {row['fsync_ms_p99']:>12.3f}"
        )
    bare_row, ffs_row = rows["bare disk"], rows["faultfs"]
    print(
        f"   faultfs / bare: write x{ffs_row['write_mb_s'] / bare_row['write_mb_s']:.2f}, "
        f"read x{ffs_row['read_mb_s'] / bare_row['read_mb_s']:.2f}, "
        f"fsync p50 x{ffs_row['fsync_ms_p50'] / bare_row['fsync_ms_p50']:.2f}",
        flush=True,
    )


def start_nodes(root: Path) -> Nodes:
    """bench.vr_throughput's three nodes, in data directories that may already exist (mounted)."""
    peers = ",".join(f"{host}:{free_port(host)}" for host in HOSTS)
    processes = []
    for replica in range(len(HOSTS)):
        directory = root / f"node{replica}"
        directory.mkdir(exist_ok=True)
        argv = [
            sys.executable, "-m", "vr.node", "--id", str(replica), "--peers", peers,
            "--data", str(directory), "--cluster", str(CLUSTER), "--format",
            "--log", str(root / f"node{replica}.log"), "--tick-ms", "10", "--seed", str(replica + 1),
        ]  # fmt: skip
        processes.append(subprocess.Popen(argv, stdin=subprocess.DEVNULL))
    return Nodes(root, peers, processes)


def vr_cell(root: Path, *, faultfs: bool, args: argparse.Namespace, seed: int) -> float:
    work = Path(tempfile.mkdtemp(prefix="cell-", dir=root))
    mounts = []
    if faultfs:
        for replica in range(len(HOSTS)):
            fs = Faultfs(
                work / f"node{replica}",
                log_path=work / f"fs{replica}.jsonl",
                output_path=work / f"fs{replica}.log",
            )
            fs.mount()
            mounts.append(fs)
    nodes = start_nodes(work)
    try:
        wait_for_primary(nodes.peers, timeout_s=60)
        row = run_cell(nodes, clients=args.clients, read_fraction=0.0, seconds=args.seconds, seed=seed)
    finally:
        nodes.stop()
        for fs in mounts:
            fs.unmount()
        shutil.rmtree(work, ignore_errors=True)
    return float(row["ops_per_s"])


def part_vr(root: Path, args: argparse.Namespace) -> None:
    print(f"2. VR, {args.clients} closed-loop writers, {args.seconds:.0f} s per cell, alternating")
    results: dict[bool, list[float]] = {False: [], True: []}
    for round_ in range(args.rounds):
        for faultfs in (False, True):
            ops = vr_cell(root, faultfs=faultfs, args=args, seed=round_ * 10 + int(faultfs))
            results[faultfs].append(ops)
            print(f"   round {round_ + 1} {'faultfs' if faultfs else 'bare':<8} {ops:8.0f} ops/s", flush=True)
    bare, ffs = statistics.median(results[False]), statistics.median(results[True])
    print(
        f"   median: bare {bare:.0f} ops/s, faultfs (no faults active) {ffs:.0f} ops/s, ratio {ffs / bare:.2f}"
    )


def timed_ms(action: object, repeats: int) -> tuple[float, float]:
    samples = []
    for _ in range(repeats):
        began = time.perf_counter()
        action()  # type: ignore[operator]
        samples.append((time.perf_counter() - began) * 1000)
    return statistics.median(samples), max(samples)


def part_inject(root: Path) -> None:
    print("3. inject and heal (median / max ms over 20)")
    mounted = root / "inject"
    fs = Faultfs(mounted, log_path=root / "inject.jsonl", output_path=root / "inject.log")
    fs.mount()
    layout, rng = Layout(), random.Random(1)
    try:
        for mode in DISK_MODES:
            rule = rule_for(mode, rule_id="bench", rng=rng, layout=layout)
            add = []
            clear = []
            for _ in range(20):
                began = time.perf_counter()
                fs.add_rule(**rule)
                add.append((time.perf_counter() - began) * 1000)
                began = time.perf_counter()
                fs.clear(["bench"])
                clear.append((time.perf_counter() - began) * 1000)
            print(
                f"   disk {mode:<10} inject {statistics.median(add):6.2f} / {max(add):6.2f}   "
                f"heal {statistics.median(clear):6.2f} / {max(clear):6.2f}"
            )
        path = mounted / "dirty.dat"
        cuts = []
        for _ in range(20):
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            for i in range(256):  # 1 MiB unsynced
                os.pwrite(fd, b"d" * 4096, i * 4096)
            os.close(fd)
            began = time.perf_counter()
            fs.power_cut(seed=1)
            cuts.append((time.perf_counter() - began) * 1000)
        print(
            f"   power-cut with 1 MiB unsynced: {statistics.median(cuts):6.2f} / {max(cuts):6.2f} (excl. kill/restart)"
        )
    finally:
        fs.unmount()
    data = root / "replica.vr"
    with data.open("wb") as handle:
        handle.truncate(layout.size_bytes)

    def corrupt_once() -> None:
        extent = layout.extents_of_op(rng.randrange(1, 1000))["prepare_header_sector"]
        current = read_file(data, extent.offset, extent.length)
        new = damaged(
            "bitflip",
            extent,
            current=current,
            rng=rng,
            layout=layout,
            read_at=lambda o, n: read_file(data, o, n),
        )
        apply_to_file(data, extent.offset, new)

    median, worst = timed_ms(corrupt_once, 20)
    print(
        f"   corrupt one committed slot of a stopped node's file: {median:6.2f} / {worst:6.2f} (excl. kill/restart)"
    )
    print("   dm-flakey: not measured here (this kernel has no device-mapper)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--fsyncs", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--skip-vr", action="store_true", help="only parts 1 and 3")
    args = parser.parse_args()
    if not namespace.inside():
        argv = [sys.executable, "-m", "clusters.namespace", "--", sys.executable, *sys.argv]
        return subprocess.run(argv, check=False, cwd=Path(__file__).resolve().parent.parent).returncode
    root = Path(tempfile.mkdtemp(prefix="faultfs-bench-"))
    try:
        print(f"cpus={os.cpu_count()} loadavg={os.getloadavg()[0]:.1f}")
        part_filesystem(root, args)
        if not args.skip_vr:
            part_vr(root, args)
        part_inject(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
