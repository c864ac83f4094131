"""Checker figures: the public corpus, and generated histories up to 1M ops. Printed, never asserted.

    python bench/checker.py            # corpus + 10k/100k/1M, 0% and 50% cas
    python bench/checker.py --quick    # corpus + 10k/100k only
    python bench/checker.py --big 1000000 --no-corpus --sizes   # the 1M-op EDN/JSONL cases only
    python bench/checker.py --general-readers ...   # the same with the general readers (for comparison)
    python bench/checker.py --startup --quick --no-corpus --sizes   # `ratchet check` start-up only

Corpus: every file in tests/data/corpus/MANIFEST.tsv read and checked (all
checkers, as ``ratchet check`` does) in this one process; total, median, max,
the slowest five with their op counts, and whether each verdict matched. Then
each folder again with one ``ratchet check`` process per file (as a directory
of logs is checked from a shell loop): total wall and CPU seconds.

Generated: linearizable histories (unique values, 8 keys, 10 processes, 5%
info) written as history.jsonl, then read and checked (every checker, as
``ratchet check`` runs them) in a fresh child process, so its peak RSS (and
its workers') is the check's own.

Big (``--big N``, default 100k and 1M): one history of N ops (unique values,
8 keys, 5% info, 50% cas) written as history.jsonl and as Jepsen EDN, each
valid and invalid (one read in the middle returns a value its key held twenty
writes earlier), read and checked in a child process: time and peak RSS.
``--general-readers`` turns off the fast JSONL decoder and the regular-shape
EDN reader in every process, for a before/after in one session.

Start-up (``--startup``): ``ratchet check`` (the console script beside this
Python) on a 10-op history, one process per check as a directory of logs is
checked: median and fastest wall time of N runs (hyperfine when installed,
else a loop here) beside a bare ``python -c pass``, with the load; and, when
valgrind is installed, the instructions one check executes (callgrind), a
figure the machine's load does not move.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CORPUS = REPO / "tests" / "data" / "corpus"


def use_general_readers() -> None:
    """Read with the standard library's JSON decoder and the general EDN reader only."""
    from checkers import history, readers

    history.FAST_DECODER_BYTES_MIN = 1 << 62
    readers.read_regular = lambda text: None  # type: ignore[assignment]


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
    knossos = [(t, name) for t, name, _ in timings if name.startswith("knossos")]
    read_s = 0.0
    for _, name in knossos:
        t0 = time.perf_counter()
        read_history(CORPUS / name)
        read_s += time.perf_counter() - t0
    print(
        f"  knossos: {len(knossos)} EDN files read and checked in {sum(t for t, _ in knossos) * 1e3:.0f} ms "
        f"(reading alone, again: {read_s * 1e3:.0f} ms)"
    )
    bench_corpus_processes(rows)


def bench_corpus_processes(rows: list[dict[str, str]]) -> None:
    """Each corpus folder checked as a directory of logs is: one `ratchet check` process per file."""
    ratchet = Path(sys.executable).with_name("ratchet")
    if not ratchet.is_file():
        print(f"  one process per file: no `ratchet` console script beside {sys.executable}")
        return
    folders: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        folders.setdefault(row["file"].split("/")[0], []).append(row)
    for folder, members in folders.items():
        wrong = 0
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        for row in members:
            proc = subprocess.run(
                [str(ratchet), "check", str(CORPUS / row["file"])],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=120,
                check=False,
            )
            wrong += (proc.returncode == 0) != (row["expected"] == "linearizable")
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        print(
            f"  {folder}: {len(members)} files, one `ratchet check` each: {wall:.2f} s wall, {cpu:.2f} CPU-s "
            f"({cpu / len(members) * 1e3:.0f} ms a file); verdicts wrong: {wrong}; load {os.getloadavg()[0]:.1f}"
        )


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


def check_one(path: str, general_readers: bool = False) -> None:
    """Child process: read and check one history, print figures as JSON."""
    from checkers.compose import check_history
    from checkers.history import read_history

    if general_readers:
        use_general_readers()

    c0 = _cpu_s()
    t0 = time.perf_counter()
    ops = read_history(path)
    t1 = time.perf_counter()
    c1 = _cpu_s()
    results = check_history(ops, model="cas-register", time_limit_s=600, memory_mb=2048)
    t2 = time.perf_counter()
    c2 = _cpu_s()
    result = results["checkers"]["linearizable"]
    self_mb = _peak_rss_mb()
    children_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "read_s": t1 - t0,
                "check_s": t2 - t1,
                "read_cpu_s": c1 - c0,
                "check_cpu_s": c2 - c1,
                "linearizable_s": result["seconds"],
                "valid": result["valid"],
                "methods": result["methods"],
                "self_peak_mb": self_mb,
                "worker_peak_mb": children_mb,
                "events": len(ops),
            }
        )
    )


def _cpu_s() -> float:
    """CPU seconds (user + system) of this process and of its finished workers: on a shared,
    loaded machine the figure that says what the check costs, beside the wall time."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    workers = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + workers.ru_utime + workers.ru_stime


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
                    f"{fig['read_s'] + fig['check_s']:6.2f} s wall, "
                    f"{fig['read_cpu_s'] + fig['check_cpu_s']:6.2f} CPU-s; peak "
                    f"{fig['self_peak_mb']:.0f} MB (workers' RSS {fig['worker_peak_mb']:.0f} MB at most, "
                    "mostly pages shared with it by fork); "
                    f"valid={fig['valid']} via {','.join(fig['methods'])} (generated in {gen_s:.1f} s)"
                )
                path.unlink()


def _stale_read(ops: list, lag_writes: int = 20) -> list:
    """The history with one ok read, about halfway, returning a value its key held ``lag_writes`` writes before."""
    from checkers.history import Op

    written: dict = {}
    for position in range(len(ops) // 2, len(ops)):
        op = ops[position]
        if op.type == "ok" and op.f == "read" and len(written.get(op.key, ())) > lag_writes:
            stale = written[op.key][-lag_writes - 1]
            if stale != op.value:
                changed = list(ops)
                changed[position] = Op(
                    op.index, op.time_ns, op.process, op.type, op.f, op.key, stale, op.error, op.node
                )
                return changed
        if op.type == "ok" and op.f == "write":
            written.setdefault(op.key, []).append(op.value)
        elif op.type == "ok" and op.f == "cas":
            written.setdefault(op.key, []).append(op.value[1])
    raise RuntimeError("no read to make stale")


def bench_big(sizes: list[int], general_readers: bool) -> None:
    from checkers.generate import linearizable_history
    from checkers.readers import write_edn

    with tempfile.TemporaryDirectory(prefix="ratchet-bench-") as tmp:
        for op_count in sizes:
            t0 = time.perf_counter()
            valid = linearizable_history(
                random.Random(op_count),
                op_count=op_count,
                keys=8,
                processes=10,
                info_fraction=0.05,
                cas_fraction=0.5,
            )
            histories = {"valid": valid, "invalid": _stale_read(valid)}
            gen_s = time.perf_counter() - t0
            for verdict, ops in histories.items():
                for fmt in ("jsonl", "edn"):
                    path = Path(tmp) / f"h-{op_count}-{verdict}.{fmt}"
                    if fmt == "edn":
                        write_edn(ops, path)
                    else:
                        with path.open("w", encoding="utf-8") as file:
                            for op in ops:
                                file.write(json.dumps(op.to_json(), separators=(",", ":")) + "\n")
                    command = [sys.executable, __file__, "--one", str(path)]
                    proc = subprocess.run(
                        command + (["--general-readers"] if general_readers else []),
                        capture_output=True,
                        text=True,
                        check=True,
                        timeout=3600,
                        cwd=REPO,
                    )
                    fig = json.loads(proc.stdout.strip().splitlines()[-1])
                    print(
                        f"big {op_count:>9,} ops {fmt:5s} {verdict:7s}: read {fig['read_s']:6.2f} s + check "
                        f"{fig['check_s']:6.2f} s = {fig['read_s'] + fig['check_s']:6.2f} s wall, "
                        f"{fig['read_cpu_s'] + fig['check_cpu_s']:6.2f} CPU-s (read {fig['read_cpu_s']:.2f}); peak "
                        f"{fig['self_peak_mb']:.0f} MB (workers {fig['worker_peak_mb']:.0f} MB); valid={fig['valid']}"
                        f"; load {os.getloadavg()[0]:.1f}"
                        f"{' (general readers)' if general_readers else ''} (generated in {gen_s:.1f} s)"
                    )
                    path.unlink()


def _ten_op_history(path: Path) -> None:
    """Five writes by five processes, each completed: the smallest history worth checking."""
    lines = []
    for process in range(5):
        for op_type in ("invoke", "ok"):
            lines.append(
                {
                    "index": len(lines),
                    "time_ns": len(lines) * 1000,
                    "process": process,
                    "type": op_type,
                    "f": "write",
                    "key": "k",
                    "value": process,
                }
            )
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")


def _wall_ms(command: list[str], runs: int) -> tuple[float, float, str]:
    """(median, fastest) wall ms of ``runs`` runs after 3 warm-ups, and what measured it."""
    if shutil.which("hyperfine"):
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            subprocess.run(
                ["hyperfine", "-N", "-w", "3", "-r", str(runs), "--export-json", out.name, " ".join(command)],
                capture_output=True,
                check=True,
                timeout=600,
            )
            times = json.loads(Path(out.name).read_text(encoding="utf-8"))["results"][0]["times"]
        return statistics.median(times) * 1e3, min(times) * 1e3, "hyperfine"
    times = []
    for i in range(runs + 3):
        t0 = time.perf_counter()
        subprocess.run(command, capture_output=True, check=True, timeout=60)
        if i >= 3:
            times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3, min(times) * 1e3, "a loop"


def _instructions(command: list[str]) -> int | None:
    """Instructions executed by ``command`` (valgrind's callgrind), None without valgrind."""
    if not shutil.which("valgrind"):
        return None
    proc = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *command],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    for line in proc.stderr.splitlines():
        if "Collected :" in line:
            return int(line.split(":")[-1])
    return None


def bench_startup(runs: int) -> None:
    ratchet = Path(sys.executable).with_name("ratchet")
    if not ratchet.is_file():
        print(f"start-up: no `ratchet` console script beside {sys.executable} (pip install -e . first)")
        return
    # Bytecode as an installed copy has it (pip compiles it; PYTHONDONTWRITEBYTECODE would
    # otherwise leave an edited checkout compiling its changed modules on every run).
    packages = [str(REPO / name) for name in ("core", "checkers", "harness")]
    subprocess.run([sys.executable, "-m", "compileall", "-q", *packages], check=True, timeout=300)
    with tempfile.TemporaryDirectory(prefix="ratchet-bench-") as tmp:
        history = Path(tmp) / "h10.jsonl"
        _ten_op_history(history)
        check = [str(ratchet), "check", str(history)]
        bare = [sys.executable, "-c", "pass"]
        check_median, check_min, tool = _wall_ms(check, runs)
        load = os.getloadavg()[0]
        bare_median, bare_min, _ = _wall_ms(bare, runs)
        print(
            f"start-up: `ratchet check` on a 10-op history: median {check_median:.1f} ms, fastest "
            f"{check_min:.1f} ms ({runs} runs, {tool}); `python -c pass`: median {bare_median:.1f} ms, "
            f"fastest {bare_min:.1f} ms; load {load:.1f}"
        )
        check_ir, bare_ir = _instructions(check), _instructions(bare)
        if check_ir is not None and bare_ir is not None:
            print(
                f"  instructions (callgrind, load-independent): `ratchet check` {check_ir / 1e6:.0f} M, "
                f"`python -c pass` {bare_ir / 1e6:.0f} M"
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="skip the 1M-op histories")
    parser.add_argument(
        "--sizes", type=int, nargs="*", metavar="N", help="only these generated sizes (none: skip them)"
    )
    parser.add_argument("--no-corpus", action="store_true", help="skip the corpus")
    parser.add_argument(
        "--big",
        type=int,
        nargs="*",
        metavar="N",
        help="EDN and JSONL cases, valid and invalid (default 100k 1M)",
    )
    parser.add_argument(
        "--general-readers", action="store_true", help="read with the general JSON and EDN readers only"
    )
    parser.add_argument(
        "--startup",
        type=int,
        nargs="?",
        const=30,
        metavar="RUNS",
        help="`ratchet check` start-up on a 10-op history (default 30 runs)",
    )
    parser.add_argument("--one", metavar="PATH", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        check_one(args.one, args.general_readers)
        return
    if args.general_readers:
        use_general_readers()
    print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}; load {os.getloadavg()[0]:.1f}")
    if args.startup:
        bench_startup(args.startup)
    if not args.no_corpus:
        bench_corpus()
    if args.sizes != []:
        bench_generated(args.sizes or ([10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000]))
    if args.big is not None or not args.quick:
        bench_big(args.big or [100_000, 1_000_000], args.general_readers)


if __name__ == "__main__":
    main()
