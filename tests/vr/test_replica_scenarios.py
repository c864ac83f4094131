"""Deterministic replica scenarios: scripted partitions, crashes and corruption on the simulator.

Each test names the situation, states its claim in the docstring, drives the real
``Replica`` code through ``SimCluster`` with no random faults (only the scripted ones),
and checks the claim. The state checker runs after every step in all of them, so any
divergence, lost acknowledged write, duplicate execution or view regression fails the
test by raising.
"""

from __future__ import annotations

from collections.abc import Callable

from vr.message import Command, make_message
from vr.replica import Replica, Status
from vr.testing.cluster import SIM_LAYOUT, FaultOptions, SimCluster
from vr.testing.network import NetworkOptions
from vr.testing.storage import wal_sectors


def quiet_cluster(
    *, seed: int = 1, replica_count: int = 3, client_count: int = 2, requests: int = 20
) -> SimCluster:
    cluster = SimCluster(
        seed=seed,
        replica_count=replica_count,
        client_count=client_count,
        network=NetworkOptions(),
        faults=FaultOptions(flush_delay_ticks_max=1),
    )
    cluster.network.auto_partitions = False
    cluster.requests_max = requests
    return cluster


def run_until(cluster: SimCluster, predicate: Callable[[], bool], *, ticks_max: int, what: str) -> None:
    deadline = cluster.now + ticks_max
    while cluster.now < deadline:
        cluster.step()
        if predicate():
            return
    states = [None if r is None else (r.status_name, r.view, r.op, r.commit_min) for r in cluster.replicas]
    raise AssertionError(f"gave up after {ticks_max} ticks waiting for: {what}; replicas={states}")


def alive(cluster: SimCluster) -> list[Replica]:
    return [r for r in cluster.replicas if r is not None]


def normal_primary(cluster: SimCluster) -> Replica | None:
    candidates = [
        r for r in alive(cluster) if r.status_name == Status.NORMAL and r.replica == r.view % r.replica_count
    ]
    return max(candidates, key=lambda r: r.view, default=None)


def replies(cluster: SimCluster) -> int:
    return sum(c.completed for c in cluster.clients)


def done(cluster: SimCluster) -> bool:
    return cluster.requests_issued >= cluster.requests_max and cluster.pending_requests() == 0


def take_a_backup_down(cluster: SimCluster) -> tuple[Replica, int]:
    """After the first replies, crash one backup and keep it down; (the primary, the backup)."""
    run_until(cluster, lambda: replies(cluster) >= 3, ticks_max=1000, what="3 replies")
    primary = normal_primary(cluster)
    assert primary is not None
    backup = (primary.replica + 2) % cluster.replica_count
    cluster.crash(backup, power_loss=False)
    cluster.down_until[backup] = 10**9
    return primary, backup


def bring_back_until_converged(cluster: SimCluster, backup: int, *, ticks_max: int) -> Replica:
    """Restart the backup and run until every request is answered and the replicas agree."""
    cluster.restart(backup)
    run_until(cluster, lambda: done(cluster) and cluster.converged(), ticks_max=ticks_max, what="converged")
    restarted = cluster.replicas[backup]
    assert restarted is not None
    assert restarted.commit_min == cluster.checker.executed_upto
    return restarted


def test_normal_operation_three_replicas_commit_and_reply() -> None:
    """Every request completes, replies match one sequential execution, and all replicas converge."""
    cluster = quiet_cluster(requests=30)
    run_until(
        cluster, lambda: done(cluster) and cluster.converged(), ticks_max=2000, what="30 replies, converged"
    )
    assert replies(cluster) == 30
    assert cluster.checker.replies_checked == 30
    assert {r.commit_min for r in alive(cluster)} == {cluster.checker.executed_upto}
    assert len({r.view for r in alive(cluster)}) == 1
    # A formatted cluster starts with replica 0 stepping down from view 0 (a restarted primary
    # never resumes its view, and a fresh one cannot tell it is fresh): one view change, no more.
    assert all(r.view == 1 for r in alive(cluster))


def test_batching_many_clients_share_prepares() -> None:
    """With many concurrent clients the primary puts several requests in one prepare (group commit)."""
    cluster = quiet_cluster(client_count=12, requests=120)
    run_until(cluster, lambda: done(cluster) and cluster.converged(), ticks_max=3000, what="120 replies")
    primary = normal_primary(cluster)
    assert primary is not None
    assert replies(cluster) == 120
    assert primary.counters["prepares"] < 120, primary.counters


def test_view_change_old_primary_isolated_while_clients_write() -> None:
    """Isolating the primary from the other replicas forms a new view that keeps committing;
    after the heal the old primary joins the new view and converges on the same log."""
    cluster = quiet_cluster(requests=60)
    run_until(cluster, lambda: replies(cluster) >= 10, ticks_max=1000, what="10 replies in view 0")
    old = normal_primary(cluster)
    assert old is not None
    old_view = old.view
    cluster.network.partition({old.replica})
    before = replies(cluster)
    run_until(
        cluster,
        lambda: (
            (p := normal_primary(cluster)) is not None
            and p.view > old_view
            and replies(cluster) >= before + 10
        ),
        ticks_max=3000,
        what="a new view with 10 more replies",
    )
    cluster.network.heal()
    run_until(
        cluster, lambda: done(cluster) and cluster.converged(), ticks_max=3000, what="converged after heal"
    )
    rejoined = cluster.replicas[old.replica]
    assert rejoined is not None and rejoined.view > old_view and rejoined.status_name == Status.NORMAL
    assert rejoined.log_view == rejoined.view


def test_view_change_asymmetric_partition_primary_cannot_hear() -> None:
    """A primary that can send but not receive cannot commit; the others elect a new primary."""
    cluster = quiet_cluster(requests=40)
    run_until(cluster, lambda: replies(cluster) >= 5, ticks_max=1000, what="5 replies")
    old = normal_primary(cluster)
    assert old is not None
    others = {r for r in range(cluster.replica_count) if r != old.replica}
    cluster.network.partition(others, asymmetric=True)  # others -> old blocked; old -> others open
    run_until(
        cluster,
        lambda: (p := normal_primary(cluster)) is not None and p.replica != old.replica,
        ticks_max=3000,
        what="a primary other than the deaf one",
    )
    cluster.network.heal()
    run_until(cluster, lambda: done(cluster) and cluster.converged(), ticks_max=3000, what="converged")


def test_restart_backup_power_loss_recovers_from_own_disk() -> None:
    """A backup that loses power (unsynced writes dropped, in-flight ones torn) restarts from its
    own superblock and journal, repairs what it lost, and converges with no committed op lost."""
    cluster = quiet_cluster(requests=40)
    run_until(cluster, lambda: replies(cluster) >= 10, ticks_max=1000, what="10 replies")
    primary = normal_primary(cluster)
    assert primary is not None
    backup = (primary.replica + 1) % cluster.replica_count
    cluster.crash(backup, power_loss=True)
    cluster.down_until[backup] = cluster.now + 50
    run_until(cluster, lambda: cluster.replicas[backup] is not None, ticks_max=100, what="restart")
    run_until(cluster, lambda: done(cluster) and cluster.converged(), ticks_max=3000, what="converged")
    restarted = cluster.replicas[backup]
    assert restarted is not None and restarted.commit_min == cluster.checker.executed_upto


def test_restart_primary_power_loss_no_acknowledged_write_lost() -> None:
    """The primary loses power mid-stream; a new view forms; the old primary restarts, steps
    down, catches up; every acknowledged reply still matches the canonical history."""
    cluster = quiet_cluster(requests=50)
    run_until(cluster, lambda: replies(cluster) >= 15, ticks_max=1000, what="15 replies")
    primary = normal_primary(cluster)
    assert primary is not None
    cluster.crash(primary.replica, power_loss=True)
    cluster.down_until[primary.replica] = cluster.now + 300
    run_until(
        cluster,
        lambda: (p := normal_primary(cluster)) is not None and p.view > primary.view,
        ticks_max=2000,
        what="new primary",
    )
    run_until(cluster, lambda: done(cluster) and cluster.converged(), ticks_max=4000, what="converged")
    assert replies(cluster) == 50
    assert cluster.checker.replies_checked == 50


def test_repair_corrupted_committed_prepare_from_peers() -> None:
    """Bit rot in a committed WAL prepare on one backup is found at restart (faulty, never nacked)
    and repaired from a peer by (op, checksum)."""
    cluster = quiet_cluster(requests=40)
    run_until(cluster, lambda: replies(cluster) >= 12, ticks_max=1000, what="12 replies")
    primary = normal_primary(cluster)
    assert primary is not None
    backup = (primary.replica + 1) % cluster.replica_count
    victim = cluster.replicas[backup]
    assert victim is not None
    op = victim.commit_min
    assert op >= 2
    cluster.crash(backup, power_loss=False)
    sectors = wal_sectors(SIM_LAYOUT, op)
    cluster.storages[backup].corrupt(sectors.prepare_offset, 64)
    cluster.restart(backup)
    restarted = cluster.replicas[backup]
    assert restarted is not None
    assert restarted.journal.is_faulty(op), "corruption of a committed prepare must be detected"
    run_until(cluster, lambda: done(cluster) and cluster.converged(), ticks_max=3000, what="converged")
    assert not restarted.journal.is_faulty(op)
    assert restarted.counters["repairs"] >= 1
    kinds = {kind for _, replica, kind, _ in cluster.events if replica == backup}
    assert {"storage_fault", "repaired_slot", "recovered_from_disk"} <= kinds


def test_state_transfer_backup_down_longer_than_the_wal_ring() -> None:
    """A backup down while the cluster commits more ops than its WAL ring holds catches up by
    taking the primary's checkpoint snapshot (state sync) and then repairing the suffix."""
    cluster = quiet_cluster(client_count=3, requests=200)
    _, backup = take_a_backup_down(cluster)
    run_until(
        cluster,
        lambda: (p := normal_primary(cluster)) is not None and p.commit_min > 3 * SIM_LAYOUT.slot_count,
        ticks_max=20000,
        what="three rings of commits",
    )
    restarted = bring_back_until_converged(cluster, backup, ticks_max=6000)
    assert restarted.counters["state_transfers"] >= 1


def test_client_retry_executes_once_and_gets_the_same_reply() -> None:
    """The same request bytes sent again after execution get the cached reply, not a second execution."""
    cluster = quiet_cluster(client_count=1, requests=5)
    run_until(cluster, lambda: done(cluster) and cluster.converged(), ticks_max=1000, what="5 replies")
    primary = normal_primary(cluster)
    assert primary is not None
    client = cluster.clients[0]
    request = make_message(
        command=Command.REQUEST,
        cluster=cluster.cluster,
        body=b'{"key": "x", "value": 1}',
        client=client.client_id,
        request=client.request_number,
        operation=5,
        replica=255,
    )
    commits_before = primary.commit_min
    # The client's last request already executed: replay its exact bytes as a retry.
    last = primary.machine.clients.get(client.client_id)
    assert last is not None
    primary.on_message(request)  # different bytes, same number: refused
    assert primary.counters["dropped"].get("request-checksum-mismatch") == 1
    primary.outbox.clear()
    for _ in range(20):
        cluster.step()
    assert primary.commit_min == commits_before
    assert primary.machine.clients.get(client.client_id) == last


def test_garbage_is_dropped_and_counted_never_raised() -> None:
    """Messages from unknown senders, other clusters or with invalid bodies are counted drops."""
    cluster = quiet_cluster(requests=0)
    run_until(cluster, lambda: cluster.now > 5, ticks_max=10, what="boot")
    replica = cluster.replicas[1]
    assert replica is not None
    replica.on_message(make_message(command=Command.PREPARE_OK, cluster=cluster.cluster + 1, replica=0))
    replica.on_message(make_message(command=Command.PREPARE_OK, cluster=cluster.cluster, replica=200))
    replica.on_message(make_message(command=Command.PREPARE_OK, cluster=cluster.cluster, replica=1))
    replica.on_message(
        make_message(
            command=Command.DO_VIEW_CHANGE, cluster=cluster.cluster, replica=0, view=1, body=b"x" * 100
        )
    )
    replica.on_message(make_message(command=Command.REPLY, cluster=cluster.cluster, replica=0))
    dropped = replica.counters["dropped"]
    assert dropped.get("cluster") == 1
    assert dropped.get("sender") == 2
    assert sum(dropped.values()) >= 5


def test_recovering_head_uncertain_head_waits_for_a_start_view() -> None:
    """A restarted backup with a faulty slot just above its head cannot know whether a newer op
    hides there: it enters recovering_head (no votes, no acks) until a start-view from the live
    primary proves its head, then rejoins as a normal backup and converges."""
    cluster = quiet_cluster(requests=80)
    run_until(
        cluster,
        lambda: (p := normal_primary(cluster)) is not None and p.commit_min > SIM_LAYOUT.slot_count + 4,
        ticks_max=4000,
        what="the WAL ring wrapped once",
    )
    primary = normal_primary(cluster)
    assert primary is not None
    backup = (primary.replica + 1) % cluster.replica_count
    victim = cluster.replicas[backup]
    assert victim is not None
    cluster.crash(backup, power_loss=False)
    above = victim.op + 1
    sectors = wal_sectors(SIM_LAYOUT, above)
    cluster.storages[backup].corrupt(sectors.prepare_offset, 64)
    cluster.storages[backup].corrupt(sectors.header_offset, sectors.header_size)
    cluster.restart(backup)
    restarted = cluster.replicas[backup]
    assert restarted is not None
    assert restarted.status_name == Status.RECOVERING_HEAD
    assert restarted.status()["status"] == "recovering_head"
    run_until(cluster, lambda: done(cluster) and cluster.converged(), ticks_max=4000, what="converged")
    assert restarted.status_name == Status.NORMAL


def test_events_name_every_recovery_path_a_run_exercised() -> None:
    """The event sink hears each kind the harness draws (contracts §3) when that path runs."""
    cluster = quiet_cluster(client_count=3, requests=150)
    run_until(cluster, lambda: replies(cluster) >= 5, ticks_max=1000, what="5 replies")
    primary = normal_primary(cluster)
    assert primary is not None
    backup = (primary.replica + 1) % cluster.replica_count
    cluster.crash(backup, power_loss=False)
    cluster.down_until[backup] = 10**9
    run_until(
        cluster,
        lambda: (p := normal_primary(cluster)) is not None and p.commit_min > 3 * SIM_LAYOUT.slot_count,
        ticks_max=20000,
        what="three rings of commits",
    )
    cluster.restart(backup)  # far behind: state transfer
    cluster.crash(primary.replica, power_loss=True)  # view change
    cluster.down_until[primary.replica] = cluster.now + 100
    run_until(cluster, lambda: done(cluster) and cluster.converged(), ticks_max=8000, what="converged")
    kinds = {kind for _, _, kind, _ in cluster.events}
    expected = {
        "view_change_started",
        "view_change_completed",
        "became_primary",
        "recovered_from_disk",
        "checkpoint",
        "state_transfer",
    }
    assert expected <= kinds, expected - kinds


def test_state_transfer_of_a_checkpoint_larger_than_one_message() -> None:
    """A checkpoint bigger than the largest message (1 MiB) crosses in pieces, is verified whole
    by its checksum, and installed: a lagging backup still catches up when the state is large."""
    import dataclasses
    import json

    from vr.message import CLIENT_REPLICA, MESSAGE_SIZE_MAX, Operation
    from vr.replica import ReplicaOptions

    cluster = SimCluster(
        seed=5,
        replica_count=3,
        client_count=2,
        network=NetworkOptions(),
        faults=FaultOptions(flush_delay_ticks_max=1),
        layout=dataclasses.replace(SIM_LAYOUT, prepare_size_max=64 * 1024, snapshot_size_max=4 * 1024 * 1024),
        options=ReplicaOptions(pipeline_max=4),
    )
    cluster.network.auto_partitions = False
    cluster.requests_max = 150
    primary, backup = take_a_backup_down(cluster)
    value = "v" * 50_000
    for k in range(40):  # 40 keys of 50 kB: about 2 MB of state
        request = make_message(
            command=Command.REQUEST,
            cluster=cluster.cluster,
            body=json.dumps({"key": f"big{k}", "value": f"{k}{value}"}).encode(),
            client=1_000_000 + k,
            request=1,
            operation=Operation.WRITE,
            replica=CLIENT_REPLICA,
        )
        cluster.network.send(
            source=cluster.clients[0].endpoint, target=primary.replica, message=request, now=cluster.now
        )
    run_until(
        cluster,
        lambda: (
            (p := normal_primary(cluster)) is not None
            and p.commit_min > 3 * SIM_LAYOUT.slot_count
            and len(p.checkpoint_data) > MESSAGE_SIZE_MAX
        ),
        ticks_max=40000,
        what="three rings of commits and a checkpoint over 1 MiB",
    )
    restarted = bring_back_until_converged(cluster, backup, ticks_max=20000)
    transfers = [e for e in cluster.events if e[1] == backup and e[2] == "state_transfer"]
    assert transfers, "the backup should have caught up by state sync"
    assert max(int(e[3]["size_bytes"]) for e in transfers) > MESSAGE_SIZE_MAX
    assert restarted.machine.kv.get("big39", "").startswith("39v")


def test_client_table_evicts_the_least_recent_client_and_refuses_its_next_request() -> None:
    """With room for two clients and four clients writing, sessions are evicted all the time:
    an evicted session's next request is answered EVICTION (outcome unknown), never executed,
    the client carries on as a new session, and every replica keeps at most two clients."""
    from vr.replica import ReplicaOptions

    cluster = SimCluster(
        seed=9,
        replica_count=3,
        client_count=4,
        network=NetworkOptions(),
        faults=FaultOptions(flush_delay_ticks_max=1),
        options=ReplicaOptions(pipeline_max=4, clients_max=2),
    )
    cluster.network.auto_partitions = False
    cluster.requests_max = 120
    run_until(cluster, lambda: done(cluster) and cluster.converged(), ticks_max=20000, what="converged")
    assert cluster.stats["evictions"] > 0
    for replica in alive(cluster):
        assert len(replica.machine.clients) <= 2
        assert replica.counters.get("clients_evicted", 0) > 0
    snapshots = {r.machine.snapshot() for r in alive(cluster)}
    assert len(snapshots) == 1, "every replica evicted the same clients"


def test_prepare_nagle_holds_a_partial_batch_while_a_prepare_is_in_flight_for_a_whole_tick() -> None:
    """With prepare_nagle (the default), a primary with a prepare in flight does not start another
    for a batch that is not full: the request waits, growing the batch, until the pipeline drains
    or a whole tick has passed. Without it the primary prepares at once (a deeper pipeline of small batches)."""
    import json

    from vr.message import CLIENT_REPLICA, Message, Operation
    from vr.replica import ReplicaOptions

    def request(client: int, cluster: SimCluster) -> Message:
        return make_message(
            command=Command.REQUEST,
            cluster=cluster.cluster,
            body=json.dumps({"key": f"n{client}", "value": client}).encode(),
            client=client,
            request=1,
            operation=Operation.WRITE,
            replica=CLIENT_REPLICA,
        )

    for nagle in (True, False):
        cluster = SimCluster(
            seed=3,
            replica_count=3,
            client_count=1,
            network=NetworkOptions(),
            faults=FaultOptions(flush_delay_ticks_max=1),
            options=ReplicaOptions(pipeline_max=4, prepare_nagle=nagle),
        )
        cluster.network.auto_partitions = False
        cluster.requests_max = 3
        run_until(cluster, lambda c=cluster: done(c) and c.converged(), ticks_max=5000, what="converged")
        primary = normal_primary(cluster)
        assert primary is not None and not primary.pipeline
        # From here the test delivers by hand and never steps the cluster: no PrepareOk comes back.
        primary.on_message(request(2_000_001, cluster))
        primary.flush()
        assert len(primary.pipeline) == 1, "an empty pipeline prepares at once, Nagle or not"
        primary.on_message(request(2_000_002, cluster))
        primary.flush()
        if nagle:
            assert len(primary.pipeline) == 1 and len(primary.request_queue) == 1
            primary.tick()  # the request has not waited a whole tick yet
            assert len(primary.pipeline) == 1 and len(primary.request_queue) == 1
            primary.tick()
            assert len(primary.pipeline) == 2 and not primary.request_queue, "a whole tick later it goes"
        else:
            assert len(primary.pipeline) == 2 and not primary.request_queue
