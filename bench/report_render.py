"""Time to build a run report, and its size, for 1k, 10k and 100k-op histories (printed, never asserted).

Target (issue 6): 100,000 ops in under 10 s and under 20 MB. Runs are
synthetic (tests/reports/synth.py: seeded, with partition and kill windows, a
planted stale read, node logs and events) and written to a temporary store.

    python bench/report_render.py [--sizes 1000,10000,100000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere: tests.reports.synth

from reports.build import write_run_report
from tests.reports.synth import write_run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="op counts, comma-separated")
    parser.add_argument("--keep", help="write the runs under this directory and keep them")
    args = parser.parse_args()
    sizes = [int(part) for part in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="ratchet-bench-report-") as scratch:
        root = Path(args.keep) if args.keep else Path(scratch)
        print(
            f"{'ops':>8} {'history MB':>11} {'build s':>8} {'cpu s':>6} {'report MB':>10} {'plots MB':>9}"
            "  target (100k): < 10 s, < 20 MB; cpu s: this process only (the machine is shared)"
        )
        for size in sizes:
            run = write_run(root / "bench" / f"ops{size}", op_count=size, seed=size).run_dir
            started, started_cpu = time.perf_counter(), time.process_time()
            report = write_run_report(run)
            elapsed, cpu = time.perf_counter() - started, time.process_time() - started_cpu
            history_mb = (run / "history.jsonl").stat().st_size / 1e6
            report_mb = report.stat().st_size / 1e6
            plots_mb = sum(p.stat().st_size for p in run.glob("*.png")) / 1e6
            print(
                f"{size:>8} {history_mb:>11.1f} {elapsed:>8.2f} {cpu:>6.2f} {report_mb:>10.1f} {plots_mb:>9.2f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
