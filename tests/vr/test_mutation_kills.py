"""Checks written for the mutants the simulator and the other vr tests let survive (docs/mutation.md).

Each survivor was a replica that stayed safe and live by a worse path: it asked a peer for a
prepare it held intact, crawled a gap one prepare per round trip instead of asking for the
headers, waited for a heartbeat timeout instead of rejoining at the first prepare of a newer
view, or distrusted a head it could trust. No safety or liveness check sees those, so each
test scripts the situation and checks the path (with ``vr.testing.wiretap`` for the messages).
``tests/vr/test_mutation_kills_controls.py`` shows each one failing on its mutant.
"""

from __future__ import annotations

import dataclasses

from tests.vr.test_replica_scenarios import done, normal_primary, quiet_cluster, run_until
from vr.message import Command, decode_headers
from vr.replica import Replica, Status
from vr.superblock import SuperBlock
from vr.testing.cluster import SimCluster
from vr.testing.storage import wal_sectors
from vr.testing.wiretap import tap


def _primary_and_backup(cluster: SimCluster, *, commits: int) -> tuple[Replica, int]:
    run_until(
        cluster,
        lambda: (p := normal_primary(cluster)) is not None and p.commit_min >= commits,
        ticks_max=4000,
        what=f"{commits} commits",
    )
    primary = normal_primary(cluster)
    assert primary is not None
    return primary, (primary.replica + 1) % cluster.replica_count


def test_a_torn_header_over_an_intact_prepare_is_repaired_from_the_local_copy() -> None:
    """Only the redundant header of an op below the head is torn: the prepare is intact on disk.

    Recovery keeps the slot faulty (case E: the header cannot vouch that this is the slot's
    newest version), and once the hash chain names the op's checksum the replica repairs the
    slot from its own copy: it never asks a peer for that prepare.
    """
    cluster = quiet_cluster(requests=40)
    _, backup = _primary_and_backup(cluster, commits=12)
    victim = cluster.replicas[backup]
    assert victim is not None
    op = victim.op - 2
    assert op > victim.checkpoint_op + 1, (op, victim.checkpoint_op)
    cluster.crash(backup, power_loss=False)
    cluster.down_until[backup] = 10**9
    sectors = wal_sectors(cluster.layout, op)
    cluster.storages[backup].corrupt(sectors.header_offset, sectors.header_size)
    wiretap = tap(cluster.network)
    cluster.restart(backup)
    restarted = cluster.replicas[backup]
    assert restarted is not None
    assert restarted.journal.is_faulty(op) and restarted.journal.header_for_op(op) is None
    run_until(cluster, lambda: done(cluster) and cluster.converged(), ticks_max=4000, what="converged")
    repaired = [e for e in cluster.events if e[1] == backup and e[2] == "repaired_slot" and e[3]["op"] == op]
    assert repaired, "the torn slot was never repaired"
    asked = [s for s in wiretap.by(backup, Command.REQUEST_PREPARE) if s.message.header.op == op]
    assert not asked, f"asked a peer for op {op}, whose prepare was intact on its own disk"


def test_a_faulty_slot_at_the_checkpoints_next_op_leaves_the_head_certain() -> None:
    """The prepare of op checkpoint+1 rots (its header is intact); the head is well above it.

    That slot is also the slot of op checkpoint + slot_count + 1, one past what the ring may
    hold, so it can hide nothing newer: the head is certain (the replica comes back normal,
    not recovering_head) and recovery keeps its belief in op checkpoint+1 (faulty, to repair),
    never cutting it as a torn append.
    """
    cluster = quiet_cluster(requests=40)
    _, backup = _primary_and_backup(cluster, commits=8)
    victim = cluster.replicas[backup]
    assert victim is not None
    op = victim.checkpoint_op + 1
    assert op + 2 < victim.op < victim.checkpoint_op + cluster.layout.slot_count, (op, victim.op)
    believed = victim.journal.header_for_op(op)
    assert believed is not None
    cluster.crash(backup, power_loss=False)
    cluster.down_until[backup] = 10**9
    cluster.storages[backup].corrupt(wal_sectors(cluster.layout, op).prepare_offset, 256)
    cluster.restart(backup)
    restarted = cluster.replicas[backup]
    assert restarted is not None
    assert restarted.checkpoint_op + 1 == op
    assert restarted.journal.is_faulty(op)
    assert restarted.journal.header_for_op(op) == believed, "recovery dropped its belief in op checkpoint+1"
    assert restarted.status_name == Status.NORMAL, restarted.status_name
    run_until(cluster, lambda: done(cluster) and cluster.converged(), ticks_max=4000, what="converged")
    assert not restarted.journal.is_faulty(op)


def test_a_backup_that_missed_prepares_fills_the_gap_by_header_requests() -> None:
    """A backup misses a run of prepares inside one view (lost on the wire, nothing else).

    The next prepare it gets names only its parent; the backup asks a peer for the headers of
    the gap and then for the prepares, several at once, and catches up within a few repair
    rounds, instead of following the chain back one prepare per round trip. The peers answer
    with the headers in the range asked for, no more.
    """
    cluster = quiet_cluster(client_count=4, requests=60)
    primary, backup = _primary_and_backup(cluster, commits=4)
    wiretap = tap(cluster.network)
    victim = cluster.replicas[backup]
    assert victim is not None
    start = victim.op
    gap = range(start + 1, start + 9)

    def lost(source: int, target: int, message: object) -> bool:
        header = message.header  # type: ignore[attr-defined]
        return target == backup and header.command == Command.PREPARE and header.op in gap

    wiretap.drop = lost
    run_until(cluster, lambda: victim.op > gap[-1], ticks_max=2000, what="a prepare past the gap")
    wiretap.drop = None
    since = cluster.now
    run_until(
        cluster,
        lambda: victim.commit_min >= gap[-1],
        ticks_max=60,
        what=f"the backup executes the gap {gap[0]}..{gap[-1]}",
    )
    asked = wiretap.by(backup, Command.REQUEST_HEADERS, since_tick=since - 5)
    answers = wiretap.to(backup, Command.HEADERS, since_tick=since - 5)
    assert asked and answers
    assert primary.view == victim.view
    # Peers answer with the headers asked for (ops in [commit, op] of a request), no more.
    low = min(s.message.header.commit for s in wiretap.by(backup, Command.REQUEST_HEADERS))
    high = max(s.message.header.op for s in wiretap.by(backup, Command.REQUEST_HEADERS))
    served = sorted(
        {h.op for s in wiretap.to(backup, Command.HEADERS) for h in decode_headers(s.message.body)}
    )
    assert served and low <= served[0] and served[-1] <= high, (low, high, served)


def test_a_backup_that_missed_a_view_change_rejoins_at_the_first_prepare_of_the_new_view() -> None:
    """Five replicas; the old primary and one backup are cut off while the other three change view.

    After the heal the backup hears nothing of the new view but its prepares (every other
    message of the new view to it is lost until then). The first such prepare is proof the
    view moved on: the backup asks the new primary for the start-view at once and is normal
    in the new view within a few round trips, not after its heartbeat timeout.
    """
    cluster = quiet_cluster(replica_count=5, client_count=3, requests=200)
    old, _ = _primary_and_backup(cluster, commits=4)
    old_view = old.view
    backup = next(
        i for i in range(5) if i != old.replica and i != (old_view + 1) % 5 and i != (old_view + 2) % 5
    )
    victim = cluster.replicas[backup]
    assert victim is not None
    wiretap = tap(cluster.network)
    first_prepare: list[int] = []

    def unheard(source: int, target: int, message: object) -> bool:
        header = message.header  # type: ignore[attr-defined]
        if target != backup or header.view <= old_view:
            return False
        if header.command == Command.PREPARE:
            first_prepare.append(cluster.now)
            return False
        return not first_prepare or header.command in (Command.COMMIT, Command.START_VIEW_CHANGE)

    wiretap.drop = unheard
    cluster.network.partition({old.replica, backup})
    others = [r for i, r in enumerate(cluster.replicas) if r is not None and i not in (old.replica, backup)]
    run_until(
        cluster,
        lambda: (
            all(r.view > old_view and r.status_name == Status.NORMAL for r in others)
            and len({r.view for r in others}) == 1
        ),
        ticks_max=2000,
        what="a new view among the other three",
    )
    new_view = others[0].view
    cluster.network.heal()
    run_until(
        cluster, lambda: bool(first_prepare), ticks_max=500, what="a prepare of the new view at the backup"
    )
    run_until(
        cluster,
        lambda: victim.view == new_view and victim.status_name == Status.NORMAL,
        ticks_max=30,
        what="the backup normal in the new view",
    )


def test_a_replica_restarted_in_a_view_newer_than_its_log_keeps_nothing_above_the_view_head() -> None:
    """On disk: a view newer than the log_view, and durable view headers that end below the journal's head.

    Opening such a replica takes the view headers' head as its head and must truncate every
    journal entry above it (docs/vr.md §2.3: the suffix past what it voted with is not its
    log). The state is written directly into the superblock (a vote whose headers ended at
    ``head``); the replica then rejoins the cluster and converges.
    """
    cluster = quiet_cluster(requests=40)
    _, backup = _primary_and_backup(cluster, commits=8)
    victim = cluster.replicas[backup]
    assert victim is not None
    head = victim.op - 3
    assert head > victim.commit_min - 4 and head > victim.checkpoint_op, (head, victim.commit_min)
    voted = tuple(
        h for op in range(head - 2, head + 1) if (h := victim.journal.header_for_op(op)) is not None
    )
    assert voted and voted[-1].op == head
    cluster.crash(backup, power_loss=False)
    cluster.down_until[backup] = 10**9
    superblock = SuperBlock(cluster.storages[backup], cluster.layout)
    state = superblock.open()
    assert state.log_view == state.view
    superblock.update(dataclasses.replace(state, view=state.view + 1, view_headers=voted))
    cluster.restart(backup)
    restarted = cluster.replicas[backup]
    assert restarted is not None
    assert restarted.op == head
    assert restarted.journal.op_max() == head, (restarted.journal.op_max(), head)
    run_until(cluster, lambda: done(cluster) and cluster.converged(), ticks_max=4000, what="converged")
