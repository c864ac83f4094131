"""How often ``ratchet run`` finds each disk-fault planted bug, and how often the correct VR passes.

Usage: ``python bench/disk_bugs.py [--seeds 10] [--first-seed 1] [--only power-cut,corrupt-committed]``

For each (scenario, planted bug) pair below, runs ``ratchet run SCENARIO --seed s --bug BUG``
for ``--seeds`` seeds, then the same scenario without the bug on the same seeds, each
in a fresh temporary store, and prints one row per run (exit code, seconds) and a
summary per pair: found k/N (exit 1), false alarms k/N (the correct VR not exit 0).
Every run is bounded by the scenario's own time limit plus a hard timeout.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAIRS = (("power-cut", "ack-before-fsync"), ("corrupt-committed", "truncate-on-checksum-mismatch"))
RUN_TIMEOUT_S = 600


def run(scenario: str, seed: int, bug: str | None) -> tuple[int, float]:
    with tempfile.TemporaryDirectory(prefix="ratchet-disk-bugs-") as store:
        argv = [sys.executable, "-m", "harness.cli", "run", scenario, "--seed", str(seed), "--no-progress"]
        argv += ["--store", store] + (["--bug", bug] if bug else [])
        began = time.monotonic()
        proc = subprocess.run(
            argv, cwd=ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False
        )
        return proc.returncode, time.monotonic() - began


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--only", default="", help="comma-separated scenarios to run (default: all)")
    args = parser.parse_args()
    only = set(filter(None, args.only.split(",")))
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    for scenario, bug in PAIRS:
        if only and scenario not in only:
            continue
        found = alarms = 0
        for label, chosen in ((bug, bug), ("correct", None)):
            for seed in seeds:
                code, seconds = run(scenario, seed, chosen)
                print(f"{scenario:18} {label:30} seed {seed:3}  exit {code}  {seconds:6.1f} s", flush=True)
                if chosen and code == 1:
                    found += 1
                if not chosen and code != 0:
                    alarms += 1
        n = len(seeds)
        print(
            f"SUMMARY {scenario}: {bug} found in {found}/{n} seeds; correct VR not valid in {alarms}/{n} seeds"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
