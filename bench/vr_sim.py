"""How fast the deterministic simulation runs, and how soon its generic swarm finds each planted bug.

Prints figures; asserts nothing.

``python bench/vr_sim.py [--seeds N] [--first S]``: seeds per second and simulated ticks per
second over N consecutive seeds (one tick is 10 ms of simulated time, so ticks/s over 100 is
the speed-up over real time), and how long the client-history check took of that.

``python bench/vr_sim.py --detect [--bug NAME ...] [--seeds-max 1000]``: for each planted bug,
the generic simulator (the same per-seed swarm of fault probabilities every seed draws, with the
swarm's later regimes: flapping partitions, partitions that cut off the primary, wall-clock
jumps, crowds of clients; and no fault mix tuned for the bug) runs seeds from ``--first`` with
the bug switched on until one breaks an invariant (a checker violation or a replica assertion;
a stall alone does not count) or ``--seeds-max`` seeds have passed. Per bug it prints the seeds
to detection, what found it, the wall time, and whether the same seed passes with the bug off
(the finding is the bug's).

Both run the simulator's default, the swarm; ``--no-swarm`` leaves its later regimes out (each
seed's configuration from before they were the default).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vr.bugs import BUGS, parse_bugs
from vr.testing.sim import run_seed

LIVENESS_TICKS_BUGGY = 300  # only safety counts as detection, so a stalled buggy seed need not wait long


def speed(first: int, count: int, *, swarm: bool = True) -> None:
    ticks = replies = commits = failures = 0
    started = time.perf_counter()
    cpu_started = time.process_time()
    for seed in range(first, first + count):
        result = run_seed(seed, swarm=swarm)
        ticks += result.ticks
        replies += result.replies
        commits += result.stats.get("commits", 0)
        failures += 0 if result.ok else 1
    wall_s = time.perf_counter() - started
    cpu_s = time.process_time() - cpu_started
    print(
        f"seeds:               {count} (from {first}, swarm {'on' if swarm else 'off'}), failures: {failures}"
    )
    print(f"wall time:           {wall_s:.2f} s (cpu {cpu_s:.2f} s)")
    print(f"seeds per second:    {count / wall_s:.1f}")
    print(
        f"ticks per second:    {ticks / wall_s:,.0f}  ({ticks:,} simulated ticks = {ticks / 100:,.0f} s simulated)"
    )
    print(f"speed-up vs real:    {ticks / 100 / wall_s:,.0f}x")
    print(f"client replies/s:    {replies / wall_s:,.0f}")
    print(f"committed ops/s:     {commits / wall_s:,.0f}")


def detect(names: list[str], first: int, seeds_max: int, *, swarm: bool = True) -> int:
    """Seeds to detection per bug under the generic swarm; returns how many bugs were not found."""
    missed = 0
    regimes = "" if swarm else " without its later regimes (--no-swarm)"
    print(
        f"generic swarm{regimes}, seeds from {first}, at most {seeds_max} per bug"
        " (safety only: violation/assertion)"
    )
    print(f"{'bug':32} {'seeds':>6} {'found by':44} {'wall s':>7}  control")
    total_started = time.perf_counter()
    for name in names:
        bugs = frozenset({name})
        started = time.perf_counter()
        found = None
        stalls = 0
        for seed in range(first, first + seeds_max):
            result = run_seed(
                seed, bugs=bugs, profile=frozenset(), liveness_ticks_max=LIVENESS_TICKS_BUGGY, swarm=swarm
            )
            if result.outcome in ("violation", "assertion"):
                found = result
                break
            stalls += result.outcome == "liveness"
        wall_s = time.perf_counter() - started
        if found is None:
            missed += 1
            print(f"{name:32} {'>' + str(seeds_max):>6} {f'not found ({stalls} stalls)':44} {wall_s:7.1f}  -")
            continue
        clean = run_seed(found.seed, profile=frozenset(), swarm=swarm)
        what = f"{found.outcome}: {found.detail}"[:44]
        control = "passes without the bug" if clean.ok else f"ALSO FAILS without: {clean.outcome}"
        print(f"{name:32} {found.seed - first + 1:>6} {what:44} {wall_s:7.1f}  {control}")
        print(f"{'':32} reproduce: {found.reproduce()}")
    print(
        f"total wall time: {time.perf_counter() - total_started:.1f} s; bugs not found: {missed} of {len(names)}"
    )
    return missed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=100, help="seeds for the speed figure")
    parser.add_argument("--first", type=int, default=1)
    parser.add_argument("--detect", action="store_true", help="seeds-to-detection per planted bug")
    parser.add_argument("--bug", action="append", default=None, help="only these bugs (default: all)")
    parser.add_argument("--seeds-max", type=int, default=1000, help="give up on a bug after this many seeds")
    parser.add_argument(
        "--swarm",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the swarm's later fault regimes (default: on, as in the simulator; --no-swarm: off)",
    )
    args = parser.parse_args()
    if args.detect:
        try:
            names = sorted(parse_bugs(args.bug)) if args.bug else sorted(BUGS)
        except ValueError as error:
            print(error, file=sys.stderr)
            return 3
        detect(names, args.first, args.seeds_max, swarm=args.swarm)
        return 0
    speed(args.first, args.seeds, swarm=args.swarm)
    return 0


if __name__ == "__main__":
    sys.exit(main())
