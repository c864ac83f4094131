"""Checks for mutants no seed can tell apart: one message or one call, and what must follow from it.

Each survivor here changed what a replica does with one input that the simulator's seeds
almost never produce (a checkpoint whose bytes hash right but do not parse, a vote sent to
a replica that does not lead its view, a prepare from a view the backup has not heard of,
a vote from a replica whose head is uncertain, a new-view log with a hole no vote can fill),
or state that only exists for an instant (the journal between format and the first open).
So each test builds that input and hands it to a real replica (from a running
``SimCluster``), or to the function, and checks the one consequence the protocol requires.
``tests/vr/test_mutation_kills_controls.py`` shows each one failing on its mutant.
"""

from __future__ import annotations

import dataclasses

from tests.vr.test_journal import LAYOUT, make_journal
from tests.vr.test_mutation_kills import _primary_and_backup
from tests.vr.test_replica_scenarios import done, quiet_cluster, run_until
from tests.vr.test_replica_view_change import Q3, chain, vote
from vr.journal import Journal
from vr.message import HEADER_SIZE, Command, Header, Message, checksum, make_message
from vr.replica import RECOVERING_HEAD_ATTEMPTS_MAX, Status, choose_new_view_log
from vr.testing.cluster import SIM_OPTIONS, FaultOptions, SimCluster
from vr.testing.network import NetworkOptions
from vr.testing.storage import wal_sectors
from vr.testing.wiretap import tap


def test_a_checkpoint_that_hashes_right_but_does_not_parse_is_dropped() -> None:
    """A state-sync checkpoint arrives whole, its checksum matches, and its first line is garbage.

    The replica must drop it as invalid and keep its state: a decoding error is bad input,
    never an exception out of ``on_message`` (which would take the whole node down).
    """
    cluster = quiet_cluster(requests=20)
    primary, backup = _primary_and_backup(cluster, commits=4)
    victim = cluster.replicas[backup]
    assert victim is not None
    data = b"not a checkpoint\n[]"  # three fields on the first line, not "op checksum"
    op = victim.commit_min + 10
    sync = make_message(
        command=Command.SYNC,
        cluster=victim.cluster,
        body=data,
        view=victim.view,
        replica=primary.replica,
        op=op,
        commit=op,
        request=0,
        extra=len(data),
        context=checksum(data),
    )
    before = (victim.commit_min, victim.op, victim.checkpoint_op)
    victim.on_message(sync)
    assert victim.counters["dropped"].get("sync-invalid") == 1, victim.counters["dropped"]
    assert (victim.commit_min, victim.op, victim.checkpoint_op) == before


def test_a_do_view_change_for_a_view_this_replica_does_not_lead_is_dropped() -> None:
    """Replica 2 gets a well-formed do-view-change for a newer view led by replica 0 or 1.

    Only the new view's primary collects votes. Any other replica drops the vote and stays
    where it is (normal, in its view): a vote is not a start-view-change, and must not pull
    its receiver into a view change.
    """
    cluster = quiet_cluster(requests=20)
    _primary_and_backup(cluster, commits=4)
    victim = cluster.replicas[2]
    assert victim is not None and victim.status_name == Status.NORMAL
    view = next(v for v in range(victim.view + 1, victim.view + 4) if v % 3 < 2)
    sender = next(i for i in range(3) if i != 2)
    own = victim._do_view_change_message()
    dvc = Message(own.header.replace(view=view, replica=sender), own.body)
    assert victim._decode_do_view_change(dvc).view == view  # well formed: only its address is wrong
    before = (victim.view, victim.status_name)
    victim.on_message(dvc)
    assert victim.counters["dropped"].get("dvc-not-primary") == 1, victim.counters["dropped"]
    assert (victim.view, victim.status_name) == before


def test_a_vote_says_on_the_wire_whether_its_head_is_uncertain() -> None:
    """A do-view-change carries head_uncertain as client=1; decoding must give it back.

    The new primary relies on it never to count an uncertain voter's silence above its head
    as a nack (docs/vr.md §2.5); a vote that lost the flag on the wire could cut a committed op.
    """
    cluster = quiet_cluster(requests=20)
    primary, backup = _primary_and_backup(cluster, commits=4)
    victim = cluster.replicas[backup]
    assert victim is not None
    own = victim._do_view_change_message()
    assert own.header.client == 0
    assert not primary._decode_do_view_change(own).head_uncertain
    uncertain = Message(own.header.replace(client=1), own.body)
    assert primary._decode_do_view_change(uncertain).head_uncertain


def test_a_prepare_from_a_newer_view_makes_a_normal_backup_ask_for_the_start_view_at_once() -> None:
    """A normal backup gets a prepare whose view is newer than its own.

    The prepare proves the cluster moved on without it: it drops the prepare and asks the new
    view's primary for the start-view right away, not after a heartbeat timeout.
    """
    cluster = quiet_cluster(requests=20)
    primary, backup = _primary_and_backup(cluster, commits=4)
    victim = cluster.replicas[backup]
    assert victim is not None and victim.status_name == Status.NORMAL
    wiretap = tap(cluster.network)
    head = primary.journal.header_for_op(primary.op)
    assert head is not None
    # The cache of unexecuted prepares may be empty by now (all executed): read the head's prepare.
    template = primary.prepares.get(primary.op) or primary.journal.read_prepare(primary.op, head.checksum)
    assert template is not None
    view = next(v for v in range(victim.view + 1, victim.view + 4) if v % 3 != backup)  # led by a peer
    newer = Message(template.header.replace(view=view, op=victim.op + 1, replica=view % 3), template.body)
    victim.on_message(newer)
    asked = wiretap.by(backup, Command.REQUEST_START_VIEW)
    assert [s.target for s in asked] == [view % 3], [(s.target, s.message.header.view) for s in asked]
    assert victim.counters["dropped"].get("prepare-newer-view") == 1


def test_a_new_view_log_with_a_hole_keeps_the_ops_below_the_hole() -> None:
    """Every replica voted; the canonical logs hold ops 1..5 except op 4, which no vote has a header for.

    Op 4 cannot be restored and nobody can prove it uncommitted one way or the other by
    header, so the log ends below it, at op 3: ops 2 and 3, above the known commit (1) and
    held intact by every voter, may have been committed and must stay.
    """
    log = chain({1: 5, 2: 5, 3: 5, 4: 5, 5: 5})
    holed = {op: h for op, h in log.items() if op != 4}
    votes = [
        vote(replica, log_view=5, headers=holed, commit=1, head=5, faulty=frozenset({4}))
        for replica in range(3)
    ]
    chosen = choose_new_view_log(votes, replica_count=3, nack_quorum=Q3.nack)
    assert chosen is not None
    assert chosen.head == 3, chosen.head
    assert chosen.commit == 1


def test_a_freshly_formatted_journal_believes_what_a_recovery_of_its_disk_finds() -> None:
    """format() leaves the journal in memory as recover() would read it back from the same disk.

    In particular the root prepare at op 0 is physically present and intact (it is what a
    peer would be served, and what a repair of slot 0 may copy from). And the recovery report
    (shown by the harness) counts each slot once.
    """
    storage, formatted = make_journal(seed=3)
    root = Header.root(formatted.cluster)
    reopened = Journal(storage, LAYOUT, cluster=formatted.cluster, replica=0)
    recovery = reopened.recover(op_checkpoint=0, solo=False)
    # The report accounts for every slot exactly once, by case and by decision.
    assert sum(recovery.cases.values()) == LAYOUT.slot_count, recovery.cases
    assert sum(recovery.decisions.values()) == LAYOUT.slot_count, recovery.decisions
    for journal in (formatted, reopened):
        assert journal.holds_intact(0, root.checksum)
        assert journal.header_for_op(0) == root
        assert journal.op_max() == 0
        assert not journal.faulty_slots()


def test_a_prepare_of_this_view_is_taken_even_if_it_does_not_chain_to_a_head_from_an_older_view() -> None:
    """After a view change and before any new op, every head is from the old view.

    The new primary's first prepare names its head's checksum as parent. Only two ops of the
    *same* view must chain (one primary wrote both); a head from an older view may be a stale
    version the start-view only named by checksum, so the backup takes the prepare (the
    primary's view outranks its head, which the repair then fixes) instead of dropping it as a
    chain break. Here the parent names a version of the head nobody holds.
    """
    cluster = quiet_cluster(requests=12)
    old, _ = _primary_and_backup(cluster, commits=1)
    run_until(cluster, lambda: done(cluster) and cluster.converged(), ticks_max=4000, what="all requests")
    cluster.network.partition({old.replica})
    others = [r for r in cluster.replicas if r is not None and r.replica != old.replica]
    run_until(
        cluster,
        lambda: (
            all(r.view > old.view and r.status_name == Status.NORMAL for r in others)
            and len({r.view for r in others}) == 1
        ),
        ticks_max=2000,
        what="a new view among the other two",
    )
    primary = next(r for r in others if r.replica == r.view % 3)
    victim = next(r for r in others if r is not primary)
    head = victim.journal.header_for_op(victim.op)
    assert head is not None and head.view < victim.view, (head, victim.view)
    template = victim.journal.read_prepare(head.op, head.checksum)
    assert template is not None
    prepare = Message(
        template.header.replace(
            view=victim.view, op=victim.op + 1, replica=primary.replica, parent=bytes(range(16))
        ),
        template.body,
    )
    op = victim.op
    victim.on_message(prepare)
    assert victim.counters.get("chain_breaks", 0) == 0
    assert victim.op == op + 1 and victim.journal.header_for_op(op + 1) == prepare.header
    # The head is now of this view: a next op of this view that does not chain to it is dropped,
    # and every such break is counted (a correct primary never sends one).
    for attempt in (1, 2):
        broken = Message(
            template.header.replace(view=victim.view, op=op + 2, replica=primary.replica, parent=bytes(16)),
            template.body,
        )
        victim.on_message(broken)
        assert victim.op == op + 1
        assert victim.counters.get("chain_breaks", 0) == attempt


def test_a_torn_header_over_a_never_written_slot_above_the_head_leaves_the_head_certain() -> None:
    """First lap of the ring: a slot above the head was never written (its prepare is the
    reserved entry format put there) and its redundant header is torn.

    No op was ever appended there, so it hides nothing: recovery cuts it as stale and the
    replica comes back normal with a certain head, not in recovering_head.
    """
    cluster = quiet_cluster(requests=12)
    _, backup = _primary_and_backup(cluster, commits=4)
    run_until(cluster, lambda: done(cluster) and cluster.converged(), ticks_max=4000, what="all requests")
    victim = cluster.replicas[backup]
    assert victim is not None
    op = victim.op + 3
    slot_count = cluster.layout.slot_count
    assert victim.checkpoint_op < op % slot_count == op < slot_count, (victim.checkpoint_op, op)
    cluster.crash(backup, power_loss=False)
    cluster.down_until[backup] = 10**9
    sectors = wal_sectors(cluster.layout, op)
    cluster.storages[backup].corrupt(sectors.header_offset, HEADER_SIZE)
    cluster.restart(backup)
    restarted = cluster.replicas[backup]
    assert restarted is not None
    assert restarted.journal.counters.get("stale_cut") == 1, restarted.journal.counters
    assert not restarted.journal.faulty_slots(), restarted.journal.faulty_slots()
    assert restarted.status_name == Status.NORMAL, restarted.status_name


def test_a_rotted_prepare_in_the_checkpoint_ops_slot_is_a_torn_append_of_the_last_op_the_ring_holds() -> None:
    """The checkpoint op's slot is also the slot of op checkpoint + slot_count, the last op the
    ring may hold. Its prepare rots while its header (of the checkpoint op, an older wrap)
    stays intact.

    Read for that last op, the slot looks exactly like a torn append (an older header over an
    unreadable prepare), and what it held before is in the snapshot: recovery cuts it, nothing
    stays faulty, and the replica comes back normal with a certain head.
    """
    cluster = quiet_cluster(requests=12)
    _, backup = _primary_and_backup(cluster, commits=4)
    run_until(cluster, lambda: done(cluster) and cluster.converged(), ticks_max=4000, what="all requests")
    victim = cluster.replicas[backup]
    assert victim is not None
    checkpoint = victim.checkpoint_op
    assert checkpoint < victim.op < checkpoint + cluster.layout.slot_count, (checkpoint, victim.op)
    cluster.crash(backup, power_loss=False)
    cluster.down_until[backup] = 10**9
    cluster.storages[backup].corrupt(wal_sectors(cluster.layout, checkpoint).prepare_offset, 256)
    cluster.restart(backup)
    restarted = cluster.replicas[backup]
    assert restarted is not None
    assert restarted.checkpoint_op == checkpoint
    recovered = [e[3] for e in cluster.events if e[1] == backup and e[2] == "recovered_from_disk"][-1]
    assert recovered["recovery"]["torn_ops"] == 1, recovered  # the one op: checkpoint + slot_count
    assert not restarted.journal.faulty_slots(), restarted.journal.faulty_slots()
    assert restarted.status_name == Status.NORMAL, restarted.status_name


def test_a_replica_in_recovering_head_calls_a_new_view_only_after_its_requests_went_unanswered() -> None:
    """A backup restarts with an uncertain head (both copies of a slot above its head lost) and
    no start-view reaches it.

    It asks for the start-view again at each timeout and calls a newer view only after
    ``RECOVERING_HEAD_ATTEMPTS_MAX`` rounds went unanswered: one lost answer must not make a
    restarting replica disrupt a healthy cluster with a view change.
    """
    cluster = quiet_cluster(requests=12)
    _, backup = _primary_and_backup(cluster, commits=4)
    run_until(cluster, lambda: done(cluster) and cluster.converged(), ticks_max=4000, what="all requests")
    victim = cluster.replicas[backup]
    assert victim is not None
    op = victim.op + 2
    assert op < cluster.layout.slot_count, op
    cluster.crash(backup, power_loss=False)
    cluster.down_until[backup] = 10**9
    sectors = wal_sectors(cluster.layout, op)
    cluster.storages[backup].corrupt(sectors.header_offset, HEADER_SIZE)
    cluster.storages[backup].corrupt(sectors.prepare_offset, 256)
    wiretap = tap(cluster.network)
    wiretap.drop = lambda source, target, message: (
        target == backup and message.header.command == Command.START_VIEW
    )
    cluster.restart(backup)
    restarted = cluster.replicas[backup]
    assert restarted is not None and restarted.status_name == Status.RECOVERING_HEAD
    run_until(
        cluster,
        lambda: bool(wiretap.by(backup, Command.START_VIEW_CHANGE)),
        ticks_max=4000,
        what="the restarted replica calls a new view",
    )
    called = wiretap.by(backup, Command.START_VIEW_CHANGE)[0].tick
    rounds = {s.tick for s in wiretap.by(backup, Command.REQUEST_START_VIEW) if s.tick <= called}
    assert len(rounds) >= RECOVERING_HEAD_ATTEMPTS_MAX, sorted(rounds)


def test_a_retransmitted_prepare_of_the_executed_op_is_dropped_as_committed() -> None:
    """A backup gets again the prepare of the op it executed last (commit_min): a retransmit.

    It is committed and executed, so there is nothing to install, repair or re-acknowledge:
    dropped as ``repair-committed``, with no other effect.
    """
    cluster = quiet_cluster(requests=12)
    _, backup = _primary_and_backup(cluster, commits=4)
    run_until(cluster, lambda: done(cluster) and cluster.converged(), ticks_max=4000, what="all requests")
    victim = cluster.replicas[backup]
    assert victim is not None and victim.status_name == Status.NORMAL
    executed = victim.journal.header_for_op(victim.commit_min)
    assert executed is not None
    prepare = victim.journal.read_prepare(executed.op, executed.checksum)
    assert prepare is not None
    before = (victim.op, victim.commit_min, victim.acked_op, dict(victim.counters["dropped"]))
    victim.on_message(prepare)
    assert victim.counters["dropped"].get("repair-committed", 0) == before[3].get("repair-committed", 0) + 1
    assert (victim.op, victim.commit_min, victim.acked_op) == before[:3]


def test_a_restarted_replica_knows_at_least_the_commit_its_newest_prepare_carries() -> None:
    """A backup of a cluster with ``pipeline_max = 1`` restarts (no power loss).

    Each prepare carries its primary's commit_max, so the restarted replica's commit_max is at
    least the commit in the newest header it holds (it reads the last few headers for it), not
    only what its superblock last recorded: it executes what it knows committed without
    waiting for the primary's next message.
    """
    cluster = SimCluster(
        seed=1,
        network=NetworkOptions(),
        faults=FaultOptions(flush_delay_ticks_max=1),
        options=dataclasses.replace(SIM_OPTIONS, pipeline_max=1),
    )
    cluster.network.auto_partitions = False
    cluster.requests_max = 12
    _, backup = _primary_and_backup(cluster, commits=6)
    victim = cluster.replicas[backup]
    assert victim is not None
    head = victim.journal.header_for_op(victim.op)
    assert head is not None and head.commit > victim.superblock.state.commit_max, (
        head.commit,
        victim.superblock.state.commit_max,
    )
    cluster.crash(backup, power_loss=False)
    cluster.down_until[backup] = 10**9
    cluster.restart(backup)
    restarted = cluster.replicas[backup]
    assert restarted is not None and restarted.op == head.op
    assert restarted.commit_max >= head.commit, (restarted.commit_max, head.commit)


def test_a_start_view_beyond_the_ring_makes_a_normal_backup_ask_for_the_checkpoint_at_once() -> None:
    """A normal backup gets a start-view of its own view whose head lies beyond what its ring
    can hold (it fell a whole ring behind).

    No header it could take would fit, so it asks the primary for its checkpoint (state sync)
    right away instead of waiting for the next commit message to tell it the same.
    """
    cluster = quiet_cluster(requests=12)
    primary, backup = _primary_and_backup(cluster, commits=4)
    victim = cluster.replicas[backup]
    assert victim is not None and victim.status_name == Status.NORMAL and victim.log_view == victim.view
    wiretap = tap(cluster.network)
    head = victim.op_prepare_max + 5
    start_view = make_message(
        command=Command.START_VIEW,
        cluster=victim.cluster,
        view=victim.view,
        replica=primary.replica,
        op=head,
        commit=head - 1,
        context=bytes(range(1, 17)),  # the head's checksum; its header is not sent
    )
    victim.on_message(start_view)
    asked = wiretap.by(backup, Command.REQUEST_SYNC)
    assert [s.target for s in asked] == [primary.replica], [(s.target, s.tick) for s in asked]
