"""Checker figures: the public corpus, and generated histories up to 1M ops. Printed, never asserted.

    python bench/checker.py            # corpus + 10k/100k/1M, 0% and 50% cas
    python bench/checker.py --quick    # corpus + 10k/100k only

Corpus: every file in tests/data/corpus/MANIFEST.tsv read and checked (all
checkers, as ``ratchet check`` does) in this one process; total, median, max,
the slowest five with their op counts, and whether each verdict matched.

Generated: linearizable histories (unique values, 8 keys, 10 processes, 5%
info) written as history.jsonl, then read and checked (every checker, as
``ratchet check`` runs them) in a fresh child process, so its peak RSS (and
its workers') is the check's own.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CORPUS = REPO / "tests" / "data" / "corpus"


def bench_corpus() -> None:
    from checkers.compose import check_history
    from checkers.history import read_history

    with (CORPUS / "MANIFEST.tsv").open(newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file, delimiter="\t", quoting=csv.QUOTE_NONE))
    timings: list[tuple[float, str, int]] = []
    wrong = []
    started = time.perf_counter()
    for row in rows:
        t0 = time.perf_counter()
        ops = read_history(CORPUS / row["file"])
        result = check_history(ops, model=row["model"], time_limit_s=60)
        timings.append((time.perf_counter() - t0, row["file"], int(row["ops"])))
        if result["valid"] is not (row["expected"] == "linearizable"):
            wrong.append(row["file"])
    total = time.perf_counter() - started
    seconds = [t for t, _, _ in timings]
    print(
        f"corpus: {len(rows)} files in {total:.2f} s (one process); median {statistics.median(seconds) * 1e3:.1f} ms, "
        f"max {max(seconds) * 1e3:.1f} ms; verdicts wrong: {len(wrong)} {wrong or ''}"
    )
    for t, name, op_count in sorted(timings, reverse=True)[:5]:
        print(f"  {t * 1e3:7.1f} ms  {op_count:5d} ops  {name}")


def write_generated(path: Path, op_count: int, cas_fraction: float) -> float:
    from checkers.generate import linearizable_history

    t0 = time.perf_counter()
    ops = linearizable_history(
        random.Random(op_count),
        op_count=op_count,
        keys=8,
        processes=10,
        info_fraction=0.05,
        cas_fraction=cas_fraction,
    )
    with path.open("w", encoding="utf-8") as file:
        for op in ops:
            file.write(json.dumps(op.to_json(), separators=(",", ":")) + "\n")
    return time.perf_counter() - t0


def check_one(path: str) -> None:
    """Child process: read and check one history, print figures as JSON."""
    from checkers.compose import check_history
    from checkers.history import read_history

    t0 = time.perf_counter()
    ops = read_history(path)
    t1 = time.perf_counter()
    results = check_history(ops, model="cas-register", time_limit_s=600, memory_mb=2048)
    t2 = time.perf_counter()
    result = results["checkers"]["linearizable"]
    self_mb = _peak_rss_mb()
    children_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "read_s": t1 - t0,
                "check_s": t2 - t1,
                "linearizable_s": result["seconds"],
                "valid": result["valid"],
                "methods": result["methods"],
                "self_peak_mb": self_mb,
                "worker_peak_mb": children_mb,
                "events": len(ops),
            }
        )
    )


def _peak_rss_mb() -> float:
    """This process's own peak RSS (VmHWM). ru_maxrss would also count the
    bench parent's size at the fork that started us, which survives exec."""
    with open("/proc/self/status", encoding="ascii") as file:
        for line in file:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_generated(sizes: list[int]) -> None:
    with tempfile.TemporaryDirectory(prefix="ratchet-bench-") as tmp:
        for cas_fraction in (0.0, 0.5):
            for op_count in sizes:
                path = Path(tmp) / f"h-{op_count}-{cas_fraction}.jsonl"
                gen_s = write_generated(path, op_count, cas_fraction)
                proc = subprocess.run(
                    [sys.executable, __file__, "--one", str(path)],
                    capture_output=True,
                    text=True,
                    check=True,
                    timeout=1800,
                    cwd=REPO,
                )
                fig = json.loads(proc.stdout.strip().splitlines()[-1])
                print(
                    f"generated {op_count:>9,} ops, {int(cas_fraction * 100):2d}% cas: read {fig['read_s']:6.2f} s + "
                    f"check {fig['check_s']:6.2f} s (linearizable {fig['linearizable_s']:6.2f} s) = "
                    f"{fig['read_s'] + fig['check_s']:6.2f} s; peak "
                    f"{fig['self_peak_mb']:.0f} MB (workers' RSS {fig['worker_peak_mb']:.0f} MB at most, "
                    "mostly pages shared with it by fork); "
                    f"valid={fig['valid']} via {','.join(fig['methods'])} (generated in {gen_s:.1f} s)"
                )
                path.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="skip the 1M-op histories")
    parser.add_argument("--sizes", type=int, nargs="+", metavar="N", help="only these generated sizes")
    parser.add_argument("--no-corpus", action="store_true", help="skip the corpus")
    parser.add_argument("--one", metavar="PATH", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        check_one(args.one)
        return
    print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}")
    if not args.no_corpus:
        bench_corpus()
    bench_generated(args.sizes or ([10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000]))


if __name__ == "__main__":
    main()
