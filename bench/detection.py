"""Detection power per planted bug: the generic simulator's seeds-to-detection and ``ratchet run``'s hits.

Prints figures; asserts nothing. Two columns per planted bug (vr/bugs.py):

- **simulator**: the generic swarm (``python -m vr.testing.sim --profile none``: per-seed fault
  probabilities, no mix tuned for the bug) runs seeds from ``--first`` with the bug on until one
  breaks an invariant (checker violation or replica assertion; a stall alone does not count) or
  ``--sim-seeds-max`` seeds passed: the seeds it took and the detecting seed.
- **ratchet run**: every ``[[run]]`` entry of the shipped selftest campaign
  (scenarios/campaigns/selftest.toml) that names the bug, run as the campaign runs it (one
  ``ratchet run`` child per seed, same flags) on ``--run-seeds`` seeds: found/seeds (a run counts
  as found when its verdict is an anomaly; the checker whose finding the anomaly names is counted,
  e.g. ``by assertions 5, linearizable 1``), and with ``--control`` the correct build on the same
  entry and seeds (false alarms/seeds).

``python bench/detection.py [--bug NAME ...] [--sim-only | --run-only] [--run-seeds 4] [--control]``.
Bounded: at most ``--sim-seeds-max`` simulator seeds per bug and ``--run-seeds`` runs per entry
(each run is itself bounded by its scenario's time limit and recovery); ``--time-budget S`` stops
starting runs after S seconds (what was not run is printed as such). Real runs need what
``ratchet run`` needs (root or user namespaces, nft); ``ratchet doctor`` says.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.campaigns.execute import Execution, run_cell
from harness.campaigns.shipped import load
from harness.campaigns.spec import Cell, RunSpec
from harness.commands.selftest import checker_of
from vr.bugs import BUGS, parse_bugs
from vr.testing.sim import run_seed

LIVENESS_TICKS_BUGGY = 300  # only safety counts as detection, so a stalled buggy seed need not wait long


@dataclass(slots=True)
class SimFigure:
    seeds: int | None  # seeds run until detection; None: not found within the bound
    detecting_seed: int | None
    what: str
    wall_s: float


@dataclass(slots=True)
class RunFigure:
    entry: str
    found: int
    ran: int
    seeds: list[int]
    detecting: list[int]
    control_alarms: int | None = None
    control_ran: int = 0
    wall_s: float = 0.0
    found_by: dict[str, int] = field(default_factory=dict)  # checker whose finding made the anomaly


def simulate(bug: str, first: int, seeds_max: int) -> SimFigure:
    started = time.perf_counter()
    for seed in range(first, first + seeds_max):
        result = run_seed(
            seed, bugs=frozenset({bug}), profile=frozenset(), liveness_ticks_max=LIVENESS_TICKS_BUGGY
        )
        if result.outcome in ("violation", "assertion"):
            what = f"{result.outcome}: {result.detail}"
            return SimFigure(seed - first + 1, seed, what, time.perf_counter() - started)
    return SimFigure(None, None, "not found", time.perf_counter() - started)


def entry_label(run: RunSpec) -> str:
    flags = " ".join(f"{key}={value}" for key, value in run.overrides.items())
    return run.scenario + (f" ({flags})" if flags else "")


def run_entry(
    run: RunSpec, seeds: list[int], workdir: Path, deadline: float, found_by: dict[str, int] | None = None
) -> tuple[int, int, list[int]]:
    """(found, ran, detecting seeds) for one selftest entry; stops starting runs past the deadline.

    ``found_by`` (when given) counts, per checker, the runs whose anomaly it reported first."""
    found, ran, detecting = 0, 0, []
    execution = Execution()
    for seed in seeds:
        if time.monotonic() > deadline:
            break
        record = run_cell(Cell(0, run, seed), workdir, execution)
        ran += 1
        if record.verdict == "anomaly":
            found += 1
            detecting.append(seed)
            if found_by is not None:
                name = checker_of(record.anomaly or record.reason)
                found_by[name] = found_by.get(name, 0) + 1
    return found, ran, detecting


def real_runs(bug: str, args: argparse.Namespace, deadline: float) -> list[RunFigure]:
    campaign = load("selftest")
    figures = []
    seeds = [args.run_seed_base + i for i in range(args.run_seeds)]
    for run in campaign.runs:
        if run.bug != bug:
            continue
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="ratchet-detection-", dir=args.workdir) as work:
            found_by: dict[str, int] = {}
            found, ran, detecting = run_entry(run, seeds, Path(work), deadline, found_by)
            figure = RunFigure(entry_label(run), found, ran, seeds, detecting, found_by=found_by)
            if args.control:
                correct = RunSpec(scenario=run.scenario, overrides=run.overrides, tag=run.tag)
                alarms, control_ran, _ = run_entry(correct, seeds, Path(work), deadline)
                figure.control_alarms, figure.control_ran = alarms, control_ran
        figure.wall_s = time.perf_counter() - started
        figures.append(figure)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bug", action="append", default=None, help="only these bugs (default: all)")
    parser.add_argument("--first", type=int, default=1, help="first simulator seed")
    parser.add_argument("--sim-seeds-max", type=int, default=1000, help="simulator seeds per bug at most")
    parser.add_argument("--run-seeds", type=int, default=4, help="ratchet run seeds per selftest entry")
    parser.add_argument("--run-seed-base", type=int, default=1, help="first ratchet run seed")
    parser.add_argument("--control", action="store_true", help="also run the correct build on each entry")
    parser.add_argument(
        "--time-budget", type=float, default=None, metavar="S", help="stop starting runs after S s"
    )
    parser.add_argument(
        "--workdir", default=None, help="where run stores go (default: a temporary directory)"
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--sim-only", action="store_true")
    which.add_argument("--run-only", action="store_true")
    args = parser.parse_args()
    try:
        names = sorted(parse_bugs(args.bug)) if args.bug else sorted(BUGS)
    except ValueError as error:
        print(error, file=sys.stderr)
        return 3
    if args.run_seeds < 1 or args.sim_seeds_max < 1:
        print("--run-seeds and --sim-seeds-max must be at least 1", file=sys.stderr)
        return 3
    deadline = time.monotonic() + (args.time_budget if args.time_budget is not None else float("inf"))
    with open("/proc/loadavg", encoding="ascii") as load_file:
        print(f"load at start: {load_file.read().split()[:3]}")
    print(f"{'bug':30} {'simulator (generic swarm)':44} ratchet run (selftest entry: found/seeds)")
    for name in names:
        sim = None if args.run_only else simulate(name, args.first, args.sim_seeds_max)
        if sim is None:
            sim_text = "-"
        elif sim.seeds is None:
            sim_text = f"not found in {args.sim_seeds_max} seeds"
        else:
            sim_text = f"{sim.seeds} seeds (seed {sim.detecting_seed}, {sim.wall_s:.0f} s)"
        figures = [] if args.sim_only else real_runs(name, args, deadline)
        if args.sim_only:
            runs_text = ["-"]
        elif not figures:
            runs_text = ["no selftest entry"]
        else:
            runs_text = []
            for f in figures:
                text = f"{f.entry}: {f.found}/{f.ran}"
                if f.detecting:
                    by = ", ".join(f"{name} {count}" for name, count in sorted(f.found_by.items()))
                    text += f" (seeds {','.join(map(str, f.detecting))}; by {by})"
                if f.control_alarms is not None:
                    text += f"; correct build: {f.control_alarms} alarms/{f.control_ran}"
                text += f"; {f.wall_s:.0f} s"
                if f.ran < len(f.seeds):
                    text += f"; {len(f.seeds) - f.ran} not run (time budget)"
                runs_text.append(text)
        print(f"{name:30} {sim_text:44} {runs_text[0]}")
        for extra in runs_text[1:]:
            print(f"{'':30} {'':44} {extra}")
        if sim is not None and sim.seeds is not None:
            print(f"{'':30} simulator found it by {sim.what[:100]}")
        sys.stdout.flush()
    with open("/proc/loadavg", encoding="ascii") as load_file:
        print(f"load at end: {load_file.read().split()[:3]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
