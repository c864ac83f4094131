"""Deterministic cluster simulation from one seed: ``python -m vr.testing.sim --seed N``.

The seed picks the whole configuration (swarm testing: cluster size, clients, network
loss/duplication/delay, partition rate, crash and corruption rates, fsync latency, and the
later regimes: flapping partitions, partitions that cut off the primary, wall-clock jumps,
crowds of clients; ``--no-swarm`` leaves those out), then drives a **safety phase** (faults on, until ``requests_max`` requests were
issued and answered or a tick budget runs out) and a **liveness phase** (every fault
healed, every replica restarted: the cluster must converge and every pending request
must complete). The state checker runs after every step; at the end the clients'
history is judged by ``checkers/`` (linearizability for the registers, the list-append
checker for the lists), which share no code with the replica (``vr/testing/history.py``).
A failing seed prints ``reproduce: python -m vr.testing.sim --seed N`` and replays exactly;
``--history PATH`` writes that seed's history for ``ratchet check``.

Exit codes: 0 passed, 1 safety violation, 2 liveness failure, 3 replica assertion
(an invariant the replica itself checks), 4 bad arguments.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import random
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from vr.bugs import BUGS, parse_bugs
from vr.quorums import REPLICA_COUNT_MAX
from vr.testing.cluster import SIM_LAYOUT, SIM_OPTIONS, FaultOptions, SimCluster
from vr.testing.convergence import check_replicas_converged
from vr.testing.history import ClientHistory, HistoryViolation
from vr.testing.network import NetworkOptions
from vr.testing.state_checker import Violation

_Options = TypeVar("_Options", NetworkOptions, FaultOptions, "SimConfig")

SAFETY_TICKS_MAX = 4000
LIVENESS_TICKS_MAX = 3000
STALL_TICKS_MAX = 1500  # safety phase gives up after this long without a reply


@dataclass(frozen=True, slots=True)
class SimConfig:
    seed: int
    replica_count: int
    client_count: int
    requests_max: int
    network: NetworkOptions
    faults: FaultOptions
    slot_count: int = 32
    pipeline_max: int = 4
    prepare_nagle: bool = True


@dataclass(slots=True)
class SimResult:
    seed: int
    bugs: frozenset[str]
    outcome: str  # "ok" | "violation" | "liveness" | "assertion"
    detail: str = ""
    ticks: int = 0
    replies: int = 0
    stats: dict[str, int] = field(default_factory=dict)
    config: SimConfig | None = None
    profile: frozenset[str] = frozenset()
    overrides: tuple[tuple[str, float], ...] = ()
    history: ClientHistory | None = None  # what the clients saw (docs/contracts.md §4)
    swarm: bool = True  # the swarm's later fault regimes were on (see _swarm_extras)
    replicas: int | None = None  # replica count forced over the seed's (--replicas)

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    @property
    def exit_code(self) -> int:
        return {"ok": 0, "violation": 1, "liveness": 2, "assertion": 3}[self.outcome]

    def reproduce(self) -> str:
        bugs = "".join(f" --bug {b}" for b in sorted(self.bugs))
        if self.profile != self.bugs:
            bugs += "".join(f" --profile {b}" for b in sorted(self.profile)) or " --profile none"
        flags = "".join(f" --{_FLAGS[name]} {value}" for name, value in self.overrides)
        swarm = "" if self.swarm else " --no-swarm"
        replicas = "" if self.replicas is None else f" --replicas {self.replicas}"
        return f"python -m vr.testing.sim --seed {self.seed}{replicas}{swarm}{bugs}{flags}"


# FaultOptions a person may force from the command line (to hammer one fault), and their flags.
_FLAGS = {
    "power_cut_probability": "power-cuts",
    "corrupt_probability": "corruption",
    "misdirect_probability": "misdirects",
    "superblock_corrupt_probability": "superblock-rot",
}


def config_for_seed(seed: int, *, profile: frozenset[str] = frozenset(), swarm: bool = True) -> SimConfig:
    """Draw the whole configuration from the seed, tilted toward the faults that expose the
    bugs named in ``profile`` (the same profile runs with and without the bug switched on).

    ``swarm`` (the default) adds the later fault regimes of ``_swarm_extras`` and crowds of
    clients, to profile-free seeds only; ``swarm=False`` (``--no-swarm``) gives a seed the
    configuration it had before they existed, so a seed found then still replays."""
    bugs = profile
    rng = random.Random(seed ^ 0x5EED)
    replica_count = rng.choice([3, 3, 3, 5]) if not bugs else 3
    network = NetworkOptions(
        loss_probability=rng.choice([0.0, 0.01, 0.05, 0.1]),
        duplicate_probability=rng.choice([0.0, 0.02, 0.1]),
        delay_min_ticks=rng.randint(1, 2),
        delay_mean_ticks=rng.randint(2, 6),
        partition_probability=rng.choice([0.0, 0.002, 0.005, 0.01]),
        heal_probability=rng.choice([0.01, 0.02, 0.05]),
        partition_asymmetric_probability=rng.choice([0.0, 0.3]),
    )
    faults = FaultOptions(
        crash_probability=rng.choice([0.0, 0.0005, 0.002, 0.004]),
        power_loss_probability=rng.choice([0.0, 0.5, 1.0]),
        restart_after_ticks_max=rng.choice([20, 100, 300]),
        corrupt_probability=rng.choice([0.0, 0.0, 0.002, 0.01]),
        flush_delay_ticks_max=rng.randint(0, 4),
        clock_jump_probability=0.0,
        read_error_probability=rng.choice([0.0, 0.0, 0.005, 0.02]),
        # Its own stream, so adding it left every other seed's configuration as it was.
        power_cut_probability=random.Random(seed ^ 0xC07).choice([0.0, 0.0, 0.01, 0.03]) if not bugs else 0.0,
        misdirect_probability=random.Random(seed ^ 0x3157).choice([0.0, 0.0, 0.002, 0.01])
        if not bugs
        else 0.0,
        superblock_corrupt_probability=random.Random(seed ^ 0x5B).choice([0.0, 0.0, 0.002, 0.01])
        if not bugs
        else 0.0,
    )
    if swarm and not bugs:
        network, faults = _swarm_extras(seed, network, faults)
    if "ack-before-fsync" in bugs:
        faults = _replace(
            faults,
            crash_probability=0.01,
            power_loss_probability=1.0,
            flush_delay_ticks_max=6,
            crash_max_down=3,
        )
    if "truncate-on-checksum-mismatch" in bugs:
        faults = _replace(
            faults, corrupt_probability=0.01, crash_probability=0.006, power_loss_probability=0.0
        )
        network = _replace(network, partition_probability=0.01)
    if "lease-read-wall-clock" in bugs:
        faults = _replace(faults, clock_jump_probability=0.05)
        network = _replace(network, partition_probability=0.02, heal_probability=0.01)
    if "read-from-backup" in bugs:
        network = _replace(network, partition_probability=0.01, loss_probability=0.05)
    if "dvc-highest-op" in bugs:
        # Partitions that re-form almost as soon as they heal: an isolated old primary (with
        # its uncommitted suffix) votes in the next view change before it learns the last one.
        network = _replace(
            network, partition_probability=0.3, heal_probability=0.01, partition_asymmetric_probability=0.0
        )
        faults = _replace(faults, crash_probability=0.002)
    if "stale-view-votes" in bugs:
        network = _replace(network, partition_probability=0.01, duplicate_probability=0.1)
        faults = _replace(faults, crash_probability=0.003)
    if "duplicate-prepare-no-checksum" in bugs:
        # Frequent view changes (partitions, crashes) leave backups with start-view headers whose
        # prepares they still need; the bug acks those on sight instead of writing them.
        network = _replace(
            network,
            partition_probability=0.05,
            heal_probability=0.03,
            loss_probability=0.05,
            duplicate_probability=0.1,
        )
        faults = _replace(faults, crash_probability=0.01, power_loss_probability=0.0, corrupt_probability=0.0)
    if "no-client-table" in bugs:
        network = _replace(network, loss_probability=0.1, duplicate_probability=0.1)
    slot_count, pipeline_max = (
        (32, 8 if "dvc-highest-op" in bugs else 4)
        if bugs
        else rng.choice([(32, 4), (32, 2), (64, 8), (64, 1)])
    )
    client_count = rng.randint(1, 4)
    if swarm and not bugs:
        # A crowd (a quarter of the seeds, its own stream): 5 to 8 clients, so a primary holds
        # more requests in flight when it is cut off.
        crowd = random.Random(seed ^ 0xC40D)
        if crowd.random() < 0.25:
            client_count = crowd.randint(5, 8)
    return SimConfig(
        seed=seed,
        slot_count=slot_count,
        pipeline_max=pipeline_max,
        # Half the seeds prepare eagerly (a deep pipeline of small batches, as before prepare_nagle
        # existed), and so do the bug profiles, which were tuned on deep pipelines. Its own stream:
        # adding it left every other part of a seed's configuration as it was.
        prepare_nagle=random.Random(seed ^ 0x4A61E).random() < 0.5 if not bugs else False,
        replica_count=replica_count,
        client_count=client_count,
        requests_max=rng.randint(20, 60),
        network=network,
        faults=faults,
    )


def _swarm_extras(
    seed: int, network: NetworkOptions, faults: FaultOptions
) -> tuple[NetworkOptions, FaultOptions]:
    """Fault regimes the swarm added later, each from its own stream of the seed (so adding one left
    every other part of a seed's configuration as it was), and none aimed at a particular bug.

    - Flapping partitions (half the seeds): partitions that form again within a few ticks of
      healing, so view changes start before the last one has reached everyone and replicas
      with stale logs keep voting.
    - Partitions that cut off the current primary (every seed; one of three partition shapes).
    - Wall-clock jumps (half the seeds, at two rates): a replica's clock steps back; the
      correct protocol never reads it, so only code that trusts wall time can notice.
    """
    flap = random.Random(seed ^ 0xF1A9)
    if flap.random() < 0.5:
        network = _replace(
            network,
            partition_probability=flap.choice([0.05, 0.1, 0.3]),
            heal_probability=flap.choice([0.01, 0.02, 0.05]),
        )
    network = _replace(network, isolate_primary=True)
    clock = random.Random(seed ^ 0xC10C)
    faults = _replace(faults, clock_jump_probability=clock.choice([0.0, 0.0, 0.01, 0.05]))
    return network, faults


def _replace(options: _Options, **changes: Any) -> _Options:
    return dataclasses.replace(options, **changes)


def run_seed(
    seed: int,
    *,
    bugs: frozenset[str] = frozenset(),
    profile: frozenset[str] | None = None,
    log: Callable[[str], None] | None = None,
    liveness_ticks_max: int = LIVENESS_TICKS_MAX,
    power_cut_probability: float | None = None,
    corrupt_probability: float | None = None,
    misdirect_probability: float | None = None,
    superblock_corrupt_probability: float | None = None,
    swarm: bool = True,
    replica_count: int | None = None,
) -> SimResult:
    """Run one seed; ``profile`` (default: ``bugs``) picks the fault mix, the probabilities override it;
    ``replica_count`` replaces the seed's cluster size (3 or 5), the rest of its draw unchanged."""
    config = config_for_seed(seed, profile=bugs if profile is None else profile, swarm=swarm)
    if replica_count is not None:
        config = _replace(config, replica_count=replica_count)
    forced = {
        "power_cut_probability": power_cut_probability,
        "corrupt_probability": corrupt_probability,
        "misdirect_probability": misdirect_probability,
        "superblock_corrupt_probability": superblock_corrupt_probability,
    }
    overrides = tuple((name, value) for name, value in forced.items() if value is not None)
    if overrides:
        config = _replace(config, faults=_replace(config.faults, **dict(overrides)))
    logging.getLogger("vr").setLevel(logging.DEBUG if log is not None else logging.CRITICAL)
    result = SimResult(
        seed=seed,
        bugs=bugs,
        outcome="ok",
        config=config,
        profile=bugs if profile is None else profile,
        overrides=overrides,
        swarm=swarm,
        replicas=replica_count,
    )
    cluster: SimCluster | None = None
    try:
        cluster = SimCluster(
            seed=seed,
            replica_count=config.replica_count,
            client_count=config.client_count,
            network=config.network,
            faults=config.faults,
            bugs=bugs,
            log=log,
            layout=dataclasses.replace(SIM_LAYOUT, slot_count=config.slot_count),
            options=dataclasses.replace(
                SIM_OPTIONS, pipeline_max=config.pipeline_max, prepare_nagle=config.prepare_nagle
            ),
        )
        cluster.requests_max = config.requests_max
        progress_tick, replies = 0, 0
        while cluster.now < SAFETY_TICKS_MAX:
            cluster.step()
            if cluster.requests_issued >= cluster.requests_max and cluster.pending_requests() == 0:
                break
            completed = sum(c.completed for c in cluster.clients)
            if completed != replies:
                progress_tick, replies = cluster.now, completed
            elif cluster.now - progress_tick > STALL_TICKS_MAX:
                break  # no progress under faults: go heal and see whether the cluster recovers
        cluster.heal()
        deadline = cluster.now + liveness_ticks_max
        while cluster.now < deadline:
            cluster.step()
            if cluster.pending_requests() == 0 and cluster.converged():
                break
        else:
            result.outcome = "liveness"
            result.detail = _liveness_detail(cluster)
        check_replicas_converged(cluster.replicas)
        cluster.history.check()  # a wrong answer outranks a stall
    except (Violation, HistoryViolation) as violation:
        result.outcome = "violation"
        result.detail = str(violation)
    except AssertionError as error:
        result.outcome = "assertion"
        result.detail = "".join(traceback.format_exception_only(type(error), error)).strip()
        if log is not None:
            log(traceback.format_exc())
    if cluster is not None:
        result.ticks = cluster.now
        result.replies = cluster.checker.replies_checked + len(cluster.checker.pending_replies)
        result.history = cluster.history
        result.stats = {**cluster.stats, **cluster.network.stats, "commits": cluster.checker.executed_upto}
    return result


def _liveness_detail(cluster: SimCluster) -> str:
    parts = [f"pending_requests={cluster.pending_requests()}"]
    for i, replica in enumerate(cluster.replicas):
        if replica is None:
            parts.append(f"r{i}=down")
        else:
            parts.append(
                f"r{i}={replica.status_name} view={replica.view} op={replica.op} "
                f"commit_min={replica.commit_min} commit_max={replica.commit_max}"
            )
    return "; ".join(parts)


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a probability between 0 and 1")
    return value


def _replica_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= REPLICA_COUNT_MAX:
        raise argparse.ArgumentTypeError(
            f"{value} replicas: the cluster size must be 1 to {REPLICA_COUNT_MAX}"
        )
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vr.testing.sim", description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=None, help="the seed to run (default: random)")
    parser.add_argument("--seeds", type=int, default=1, help="run this many consecutive seeds from --seed")
    parser.add_argument("--bug", action="append", default=[], help=f"planted bug: {', '.join(BUGS)}")
    parser.add_argument(
        "--profile",
        action="append",
        default=None,
        help="fault mix tuned for this bug (default: the --bug ones; none: the generic swarm's)",
    )
    parser.add_argument(
        "--power-cuts",
        type=_probability,
        default=None,
        help="per-flush probability that the power goes mid-flush (torn writes); overrides the seed's",
    )
    parser.add_argument(
        "--corruption",
        type=_probability,
        default=None,
        help="per-tick probability of corrupting one committed WAL entry (atlas-limited)",
    )
    parser.add_argument(
        "--misdirects",
        type=_probability,
        default=None,
        help="per-tick probability that a replica's next prepare write lands in another slot",
    )
    parser.add_argument(
        "--superblock-rot",
        type=_probability,
        default=None,
        help="per-tick probability of rotting one superblock copy of one replica (one per open)",
    )
    parser.add_argument(
        "--swarm",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the swarm's later fault regimes: flapping partitions, partitions that cut off the "
        "primary, wall-clock jumps, crowds of 5-8 clients (default: on; --no-swarm turns them off, "
        "giving each seed the configuration it had before they existed)",
    )
    parser.add_argument(
        "--replicas",
        type=_replica_count,
        default=None,
        help="cluster size, replacing the seed's (3 or 5; the rest of its draw unchanged)",
    )
    parser.add_argument("--verbose", action="store_true", help="print the fault trace")
    parser.add_argument(
        "--history",
        default=None,
        metavar="PATH",
        help="write the seed's client history here as history.jsonl (one seed only; `ratchet check` reads it)",
    )
    args = parser.parse_args(argv)
    try:
        bugs = parse_bugs(args.bug)
        profile = (
            None
            if args.profile is None
            else frozenset()
            if args.profile == ["none"]
            else parse_bugs(args.profile)
        )
    except ValueError as error:
        print(error, file=sys.stderr)
        return 4
    if args.history is not None and args.seeds != 1:
        print("--history writes one seed's history: run it with one seed (no --seeds)", file=sys.stderr)
        return 4
    first = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
    worst = 0
    for seed in range(first, first + args.seeds):
        log = (lambda line: print(line, file=sys.stderr)) if args.verbose else None
        result = run_seed(
            seed,
            bugs=bugs,
            profile=profile,
            log=log,
            power_cut_probability=args.power_cuts,
            corrupt_probability=args.corruption,
            misdirect_probability=args.misdirects,
            superblock_corrupt_probability=args.superblock_rot,
            swarm=args.swarm,
            replica_count=args.replicas,
        )
        line = f"seed={seed} outcome={result.outcome} ticks={result.ticks} replies={result.replies}"
        print(line + (f" detail={result.detail}" if result.detail else ""))
        if args.history is not None and result.history is not None:
            try:
                with open(args.history, "w", encoding="utf-8") as file:
                    file.write(result.history.to_jsonl())
            except OSError as error:
                print(f"cannot write the history to {args.history}: {error.strerror}", file=sys.stderr)
                return 4
        if not result.ok:
            print(f"reproduce: {result.reproduce()}")
            worst = max(worst, result.exit_code)
    return worst


if __name__ == "__main__":
    sys.exit(main())
