"""How fast the deterministic simulation runs: seeds per second and simulated ticks per second.

Prints figures; asserts nothing. ``python bench/vr_sim.py [--seeds N] [--first S]``.
One tick is 10 ms of simulated time, so ticks/s over 100 is the speed-up over real time.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vr.testing.sim import run_seed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--first", type=int, default=1)
    args = parser.parse_args()
    ticks = replies = commits = failures = 0
    started = time.perf_counter()
    cpu_started = time.process_time()
    for seed in range(args.first, args.first + args.seeds):
        result = run_seed(seed)
        ticks += result.ticks
        replies += result.replies
        commits += result.stats.get("commits", 0)
        failures += 0 if result.ok else 1
    wall_s = time.perf_counter() - started
    cpu_s = time.process_time() - cpu_started
    print(f"seeds:               {args.seeds} (from {args.first}), failures: {failures}")
    print(f"wall time:           {wall_s:.2f} s (cpu {cpu_s:.2f} s)")
    print(f"seeds per second:    {args.seeds / wall_s:.1f}")
    print(
        f"ticks per second:    {ticks / wall_s:,.0f}  ({ticks:,} simulated ticks = {ticks / 100:,.0f} s simulated)"
    )
    print(f"speed-up vs real:    {ticks / 100 / wall_s:,.0f}x")
    print(f"client replies/s:    {replies / wall_s:,.0f}")
    print(f"committed ops/s:     {commits / wall_s:,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
