"""Campaign throughput and detection: runs per hour, serial and side by side; time to detection per bug.

1. runs/hour: the same campaign (default ``nightly``, ``--seeds 1``) run serially and with
   ``--jobs 2``; prints wall time, runs, runs per hour and the outcomes of each.
2. selftest: ``ratchet selftest`` with ``--seeds N``; prints its per-bug lines (found in how many
   seeds, the first detecting run's length) as the time to detection per planted bug.

Each part runs real clusters (root or user namespaces). Bounded by the campaign's own size.

    python bench/campaign.py [--campaign nightly] [--seeds 1] [--selftest-seeds 2] [--skip-runs-per-hour]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def ratchet(*args: str) -> tuple[int, str, float]:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", *args], cwd=ROOT, capture_output=True, text=True, check=False
    )
    return proc.returncode, proc.stderr, time.monotonic() - started


def runs_per_hour(campaign: str, seeds: int, jobs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="ratchet-bench-campaign-") as store:
        code, err, wall_s = ratchet(
            "campaign", campaign, "--seeds", str(seeds), "--jobs", str(jobs), "--store", store
        )
        found = list(Path(store).glob("campaigns/*/*/campaign.json"))
        if not found:
            print(f"{campaign}: the campaign wrote no campaign.json (exit {code}):\n{err[-2000:]}")
            return
        document_path = found[0]
        document = json.loads(document_path.read_text())
        runs = [r for r in document["runs"] if r["verdict"] != "not-run"]
        run_s = sum(r["duration_s"] for r in runs)
        print(
            f"{campaign} --seeds {seeds} --jobs {jobs}: {len(runs)} runs in {wall_s:.0f} s wall "
            f"({run_s:.0f} s of runs) = {len(runs) / wall_s * 3600:.0f} runs/hour; "
            f"outcomes {document['counts']}; exit {code}"
        )
        if code not in (0, 1, 2):
            print(err[-2000:])


def selftest(seeds: int, jobs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="ratchet-bench-selftest-") as store:
        code, err, wall_s = ratchet("selftest", "--seeds", str(seeds), "--jobs", str(jobs), "--store", store)
        print(f"selftest --seeds {seeds} --jobs {jobs}: {wall_s:.0f} s wall, exit {code}")
        lines = err.splitlines()
        start = next((i for i, line in enumerate(lines) if line.strip() == "selftest"), len(lines))
        for line in lines[start + 1 :]:
            print("  " + line.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--campaign", default="nightly")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--selftest-seeds", type=int, default=2)
    parser.add_argument("--skip-runs-per-hour", action="store_true")
    parser.add_argument("--skip-selftest", action="store_true")
    args = parser.parse_args()
    if not args.skip_runs_per_hour:
        for jobs in (1, 2):
            runs_per_hour(args.campaign, args.seeds, jobs)
    if not args.skip_selftest:
        selftest(args.selftest_seeds, jobs=2)


if __name__ == "__main__":
    main()
