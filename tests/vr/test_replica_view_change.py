"""The new primary's choice of log from do-view-change votes (choose_new_view_log), case by case.

Each case is a small cluster history written out as votes: who holds which version of
which op in which view. The claims are docs/vr.md §1.5 rule 5 (highest (log_view, op) wins,
not highest op: bug #5) and its nack rules (cut only what a nack quorum proves
uncommitted; never on silence from an uncertain head; wait when nobody holds a copy).
"""

from __future__ import annotations

from vr.message import Command, Header, Operation, make_header
from vr.quorums import quorums
from vr.replica import DoViewChange, chain_contradicted, choose_new_view_log

CLUSTER = 3
Q3 = quorums(3)


def chain(view_by_op: dict[int, int], *, tag: int = 0) -> dict[int, Header]:
    """Headers for ops 1..n, each prepared in the given view, hash-chained from the root."""
    headers: dict[int, Header] = {}
    parent = Header.root(CLUSTER).checksum
    for op in sorted(view_by_op):
        header = make_header(
            command=Command.PREPARE,
            cluster=CLUSTER,
            body=b"batch-%d-%d" % (op, tag),
            op=op,
            view=view_by_op[op],
            parent=parent,
            operation=Operation.BATCH,
        )
        headers[op] = header
        parent = header.checksum
    return headers


def vote(
    replica: int,
    *,
    log_view: int,
    headers: dict[int, Header],
    commit: int,
    head: int | None = None,
    missing: frozenset[int] = frozenset(),
    faulty: frozenset[int] = frozenset(),
    uncertain: bool = False,
) -> DoViewChange:
    """A vote holding ``headers`` durably except ``missing`` (never written: nacked) and
    ``faulty`` (lost: neither present nor nacked)."""
    top = max(headers) if head is None else head
    ops = range(commit, top + 1)
    return DoViewChange(
        replica=replica,
        view=9,
        log_view=log_view,
        op=top,
        commit=commit,
        headers={op: headers.get(op) for op in ops},
        present=frozenset(op for op in ops if op in headers and op not in missing | faulty),
        nack=frozenset(op for op in ops if op not in faulty and (op not in headers or op in missing)),
        head_uncertain=uncertain,
    )


def test_highest_log_view_wins_over_highest_op() -> None:
    """Old primary (log_view 1) appended ops 3..6 alone; the majority (log_view 2) committed
    different ops 3..4. The new log must be the log_view-2 log, not the longer stale one."""
    stale = chain({1: 1, 2: 1, 3: 1, 4: 1, 5: 1, 6: 1}, tag=1)
    fresh = chain({1: 1, 2: 1, 3: 2, 4: 2})
    votes = [
        vote(0, log_view=1, headers=stale, commit=2),
        vote(1, log_view=2, headers=fresh, commit=4),
    ]
    chosen = choose_new_view_log(votes, replica_count=3, nack_quorum=Q3.nack)
    assert chosen is not None
    assert chosen.head == 4
    assert chosen.headers[4].checksum == fresh[4].checksum
    buggy = choose_new_view_log(votes, replica_count=3, nack_quorum=Q3.nack, highest_op_bug=True)
    assert buggy is not None and buggy.head == 6  # the planted bug resurrects the stale log


def test_uncommitted_suffix_held_by_one_replica_is_kept_when_not_disproven() -> None:
    """Ops above the known commit that the canonical voter holds and nobody nacks enough stay."""
    log = chain({1: 3, 2: 3, 3: 3})
    votes = [
        vote(0, log_view=3, headers=log, commit=1),
        vote(1, log_view=3, headers={k: v for k, v in log.items() if k <= 2}, commit=1),
    ]
    chosen = choose_new_view_log(votes, replica_count=3, nack_quorum=Q3.nack)
    assert chosen is not None
    assert chosen.head == 3
    assert chosen.commit == 1


def test_nack_quorum_cuts_an_op_only_one_replica_ever_wrote() -> None:
    """Op 3 is held by nobody who voted (its author never made it durable): two nacks prove it
    could not have committed, so the log is cut below it, and ops above go with it."""
    log = chain({1: 3, 2: 3, 3: 3, 4: 3})
    votes = [
        vote(0, log_view=3, headers=log, commit=1, missing=frozenset({3, 4})),
        vote(1, log_view=3, headers={k: v for k, v in log.items() if k <= 2}, commit=1),
    ]
    chosen = choose_new_view_log(votes, replica_count=3, nack_quorum=Q3.nack)
    assert chosen is not None
    assert chosen.head == 2


def test_faulty_copy_is_never_a_nack_so_the_primary_waits() -> None:
    """The only voter that held op 3 lost it to corruption (faulty): it must not count as a
    nack. With one nack and no copy the primary waits for the third replica's vote."""
    log = chain({1: 3, 2: 3, 3: 3})
    votes = [
        vote(0, log_view=3, headers=log, commit=1, faulty=frozenset({3})),
        vote(1, log_view=3, headers={k: v for k, v in log.items() if k <= 2}, commit=1),
    ]
    assert choose_new_view_log(votes, replica_count=3, nack_quorum=Q3.nack) is None
    third = vote(2, log_view=3, headers=log, commit=1)  # holds op 3: it survives
    chosen = choose_new_view_log([*votes, third], replica_count=3, nack_quorum=Q3.nack)
    assert chosen is not None and chosen.head == 3


def test_uncertain_head_is_not_a_nack_by_silence() -> None:
    """A recovering_head voter whose head looks lower than it may really be does not nack
    the ops above it; if it is the only newest-log voter the primary hears from everyone."""
    log = chain({1: 4, 2: 4, 3: 4})
    older = chain({1: 4, 2: 4})
    uncertain = vote(0, log_view=4, headers=older, commit=1, uncertain=True)
    behind = vote(1, log_view=2, headers=chain({1: 2}, tag=7), commit=1)
    assert choose_new_view_log([uncertain, behind], replica_count=3, nack_quorum=Q3.nack) is None
    holder = vote(2, log_view=4, headers=log, commit=1)
    chosen = choose_new_view_log([uncertain, behind, holder], replica_count=3, nack_quorum=Q3.nack)
    assert chosen is not None
    assert chosen.head == 3


def test_committed_ops_are_never_cut() -> None:
    """Everything at or below the highest commit any voter knows survives, whatever the nacks."""
    log = chain({1: 5, 2: 5, 3: 5, 4: 5})
    votes = [
        vote(0, log_view=5, headers=log, commit=4, missing=frozenset({3, 4})),
        vote(1, log_view=5, headers={k: v for k, v in log.items() if k <= 2}, commit=2),
    ]
    chosen = choose_new_view_log(votes, replica_count=3, nack_quorum=Q3.nack)
    assert chosen is not None
    assert chosen.head == 4
    assert chosen.commit == 4


def test_an_intact_copy_in_the_new_primarys_hand_counts_when_no_vote_can_say_present() -> None:
    """Seed 74's view change, as votes: op 3's header survives only on a replica whose prepare
    write was lost (faulty: neither present nor nack), the replica whose header sector was torn
    kept the prepare intact but has no header to vote with, and the third holds another version
    (one nack of two). No vote says "present", so without looking at its own disk the new
    primary waits forever; the torn-header replica, as the new primary, holds the copy in hand."""
    log = chain({1: 8, 2: 8, 3: 8})
    other = chain({1: 8, 2: 8, 3: 6}, tag=6)
    lost_write = vote(0, log_view=8, headers=log, commit=2, faulty=frozenset({3}), uncertain=True)
    torn_header = vote(
        1,
        log_view=8,
        headers={k: v for k, v in log.items() if k != 3},
        commit=2,
        head=3,
        faulty=frozenset({3}),
        uncertain=True,
    )
    older = vote(2, log_view=6, headers=other, commit=2)
    votes = [lost_write, torn_header, older]
    assert choose_new_view_log(votes, replica_count=3, nack_quorum=Q3.nack) is None
    wanted = (3, log[3].checksum)
    chosen = choose_new_view_log(
        votes, replica_count=3, nack_quorum=Q3.nack, in_hand=lambda op, checksum: (op, checksum) == wanted
    )
    assert chosen is not None
    assert chosen.head == 3 and chosen.headers[3].checksum == log[3].checksum
    # Another version in hand is no copy of the canonical one.
    elsewhere = choose_new_view_log(
        votes,
        replica_count=3,
        nack_quorum=Q3.nack,
        in_hand=lambda op, checksum: checksum == other[3].checksum,
    )
    assert elsewhere is None


def test_a_voter_whose_log_is_older_than_an_op_never_acked_it_even_with_an_uncertain_head() -> None:
    """Storage-stress seed 483: op 3 (view 6) exists only as the deposed primary's faulty copy.
    One voter holds the view-6 log up to op 2 and nacks op 3; the other's log is from view 5 and
    its head is uncertain. It cannot nack by silence, but it was never normal in view 6, and a
    replica acks only in a view its log is normal in: it never acked op 3, so op 3 is cut."""
    log = chain({1: 5, 2: 6, 3: 6})
    author = vote(0, log_view=6, headers=log, commit=1, faulty=frozenset({3}))
    holder = vote(1, log_view=6, headers={k: v for k, v in log.items() if k <= 2}, commit=1)
    older = vote(2, log_view=5, headers={1: log[1]}, commit=1, uncertain=True)
    assert choose_new_view_log([author, holder], replica_count=3, nack_quorum=Q3.nack) is None
    chosen = choose_new_view_log([author, holder, older], replica_count=3, nack_quorum=Q3.nack)
    assert chosen is not None
    assert chosen.head == 2


def test_a_header_the_chain_from_the_head_contradicts_is_named() -> None:
    """View 14 re-prepared ops 3..4 over view 13's; a replica holding view 13's op 3 beside view
    14's op 4 holds a header its own chain contradicts (sim seed 1352). A gap says nothing, and
    what the replica executed (at or below ``above``) is never named."""
    old = chain({1: 1, 2: 1, 3: 13})
    new = chain({1: 1, 2: 1, 3: 14, 4: 14, 5: 14})
    assert old[2] == new[2] and old[3].checksum != new[3].checksum
    assert chain_contradicted([new[1], new[2], new[3], new[4]], above=0) == set()
    assert chain_contradicted([new[1], new[2], old[3], new[4]], above=0) == {3}
    assert chain_contradicted([new[1], new[2], old[3], new[4]], above=3) == set()
    assert chain_contradicted([new[2], old[3], None, new[5]], above=0) == set()
    # Below a contradicted header the chain is unknown until the next held one: no guess.
    other = chain({1: 1, 2: 7})  # its op 2 follows op 1, but view 13's op 3 does not follow it
    assert chain_contradicted([new[1], other[2], old[3], new[4]], above=0) == {3}
