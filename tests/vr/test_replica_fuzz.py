"""Handlers never raise on well-formed but nonsensical messages: they drop them and count why.

Checksums are valid (so the codec lets them through) but every field is drawn at random
around the replica's own state: wrong views, wrong senders, ops from nowhere, garbage
bodies and header lists. The replica may react (a higher view starts a view change) but
must not raise, and must keep the cluster safe: the state checker still runs afterwards.
"""

from __future__ import annotations

import random

from vr.message import Command, Header, Message, Operation, encode_headers, make_message
from vr.replica import Replica
from vr.testing.cluster import FaultOptions, SimCluster
from vr.testing.network import NetworkOptions


def _random_message(rng: random.Random, replica: Replica) -> Message:
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
        replica=rng.randrange(4),
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


def test_random_messages_are_dropped_or_handled_never_raised() -> None:
    dropped_total = 0
    for seed in range(12):
        rng = random.Random(seed)
        cluster = SimCluster(seed=seed, network=NetworkOptions(), faults=FaultOptions())
        cluster.network.auto_partitions = False
        cluster.requests_max = 30
        for _ in range(150):
            cluster.step()
        for _ in range(200):
            replica = cluster.replicas[rng.randrange(cluster.replica_count)]
            assert replica is not None
            replica.on_message(_random_message(rng, replica))
            replica.flush()
        for _ in range(300):
            cluster.step()  # the checker keeps checking the cluster the fuzz disturbed
        dropped_total += sum(sum(r.counters["dropped"].values()) for r in cluster.replicas if r is not None)
    assert dropped_total > 500
