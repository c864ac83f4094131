"""Handlers never raise on well-formed but nonsensical messages: they drop them and count why.

Checksums are valid (so the codec lets them through) but every field is drawn at random
around the replica's own state: wrong views, wrong senders, ops from nowhere, garbage
bodies and header lists. The replica may react (a higher view starts a view change) but
must not raise. Safety is asserted only against senders outside the cluster: VR tolerates
crashed members, not lying ones, so a message forged in a member's name may mislead it.
"""

from __future__ import annotations

import contextlib
import random

from vr.message import Command, Header, Message, Operation, encode_headers, make_message
from vr.replica import Replica
from vr.testing.cluster import FaultOptions, SimCluster
from vr.testing.network import NetworkOptions
from vr.testing.state_checker import Violation


def _random_message(rng: random.Random, replica: Replica, *, sender: int) -> Message:
    kind = rng.random()
    if kind < 0.3:
        body = b""
    elif kind < 0.6:
        body = rng.randbytes(rng.randrange(1, 400))
    else:
        headers = [
            Header.reserved(1, rng.randrange(50))
            if rng.random() < 0.3
            else make_message(
                command=Command.PREPARE,
                cluster=1,
                op=rng.randrange(60),
                view=rng.randrange(5),
                operation=Operation.BATCH,
            ).header
            for _ in range(rng.randrange(1, 6))
        ]
        body = encode_headers(headers)
    return make_message(
        command=rng.choice(list(Command)),
        cluster=1,
        body=body,
        replica=sender,
        view=rng.choice([0, replica.view, replica.view + 1, rng.randrange(10)]),
        op=rng.choice([0, replica.op, replica.op + 1, rng.randrange(100)]),
        commit=rng.choice([0, replica.commit_min, rng.randrange(100)]),
        operation=rng.randrange(9),
        client=rng.choice([0, 5]),
        request=rng.randrange(3),
        extra=rng.randrange(4),
        parent=rng.randbytes(16),
        context=rng.randbytes(16),
    )


def _fuzz(seed: int, *, senders: range) -> tuple[SimCluster, random.Random]:
    """A quiet cluster that served some requests, then 200 random messages claiming to come from
    ``senders``, each handed to a random replica and flushed (its invariants run there)."""
    rng = random.Random(seed)
    cluster = SimCluster(seed=seed, network=NetworkOptions(), faults=FaultOptions())
    cluster.network.auto_partitions = False
    cluster.requests_max = 30
    for _ in range(150):
        cluster.step()
    for _ in range(200):
        replica = cluster.replicas[rng.randrange(cluster.replica_count)]
        assert replica is not None
        replica.on_message(_random_message(rng, replica, sender=rng.choice(senders)))
        replica.flush()
    return cluster, rng


def _dropped(cluster: SimCluster) -> int:
    return sum(sum(r.counters["dropped"].values()) for r in cluster.replicas if r is not None)


def test_random_messages_claiming_to_be_members_are_dropped_or_handled_never_raised() -> None:
    """Messages that claim a member as sender reach every handler and must never make one raise.

    They may break safety, and the test allows that: VR trusts its members (it tolerates crashes,
    not lies), so a forged start-view "from the primary of view 7" is indistinguishable from a
    real one, and a replica that installs it can later win a view change with a log no quorum
    ever held (seed 4 does exactly that). What must hold is that the replicas keep running and
    keep their own invariants while the cluster reacts to the forgeries.
    """
    dropped_total = 0
    for seed in range(12):
        cluster, _ = _fuzz(seed, senders=range(4))
        with contextlib.suppress(Violation):
            for _ in range(300):
                cluster.step()  # the reactions to the forgeries run too (view changes, repairs)
        dropped_total += _dropped(cluster)
    assert dropped_total > 500


def test_random_messages_from_outside_the_cluster_leave_it_safe() -> None:
    """From a sender that is not a member (replica index 3 of 3), nonsense is dropped and the
    cluster stays safe: the state checker keeps checking the cluster the fuzz disturbed."""
    dropped_total = 0
    for seed in range(12):
        cluster, _ = _fuzz(seed, senders=range(3, 4))
        for _ in range(300):
            cluster.step()
        dropped_total += _dropped(cluster)
    assert dropped_total > 500
