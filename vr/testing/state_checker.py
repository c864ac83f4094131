"""The simulator's oracle: committed prefixes agree, views never regress, replies match one execution.

Checks, after every step (docs/vr.md §3.3):

- **Canonical history.** Every op a replica executes must equal (by checksum) the op
  every other replica executed at that number, and hash-chain to the previous one.
- **Views.** A replica's view and log_view never go down, across restarts too.
- **Replies.** Replaying the canonical ops through a model of the KV store gives, for
  every (client, request), the one result the cluster may have replied; a reply must
  match it and name its op. A read answered outside the log (planted bugs) must match
  the model state at the op it claims.
- **Real time.** An op invoked after another op's reply arrived must be ordered after it.
- **At most once.** No (client, request) executes twice in the canonical history.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from vr.message import Message, decode_batch
from vr.state_machine import StateMachine, client_seq


class Violation(Exception):
    """An invariant of the replicated system was broken."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


@dataclass(slots=True)
class ObservedReply:
    client: int
    request: int
    op: int
    local: bool
    body: bytes
    invoked_tick: int
    replied_tick: int
    floor_op: int  # highest op of any reply received before this request was invoked
    key: str = ""


@dataclass(slots=True)
class StateChecker:
    cluster: int
    canonical: dict[int, Message] = field(default_factory=dict)
    executed_upto: int = 0  # canonical ops replayed into the model
    model: StateMachine = field(default_factory=StateMachine)
    results: dict[tuple[int, int], tuple[int, dict[str, Any]]] = field(default_factory=dict)
    kv_after: dict[int, dict[str, Any]] = field(default_factory=dict)
    pending_replies: list[ObservedReply] = field(default_factory=list)
    views: dict[int, tuple[int, int]] = field(default_factory=dict)
    max_replied_op: int = 0
    replies_checked: int = 0
    commits_seen: int = 0

    def __post_init__(self) -> None:
        self.kv_after[0] = {}

    # Hooks -----------------------------------------------------------------------------------

    def on_commit(self, replica: int, prepare: Message) -> None:
        """A replica executed ``prepare``; it must be the canonical op at that number."""
        self.commits_seen += 1
        header = prepare.header
        known = self.canonical.get(header.op)
        if known is None:
            previous = self.canonical.get(header.op - 1)
            if previous is not None and header.parent != previous.header.checksum:
                raise Violation(
                    "hash-chain",
                    f"replica {replica} executed op {header.op} whose parent does not chain to the "
                    f"canonical op {header.op - 1}",
                )
            self.canonical[header.op] = prepare
        elif known.header.checksum != header.checksum:
            raise Violation(
                "divergence",
                f"replica {replica} executed op {header.op} = {header.short()} but op {header.op} "
                f"was already executed as {known.header.short()}",
            )
        self._replay()

    def observe_view(self, replica: int, view: int, log_view: int) -> None:
        previous = self.views.get(replica)
        if previous is not None and (view < previous[0] or log_view < previous[1]):
            raise Violation(
                "view-regressed",
                f"replica {replica} went from view/log_view {previous} to {(view, log_view)}",
            )
        self.views[replica] = (view, log_view)

    def on_reply(self, reply: ObservedReply) -> None:
        if reply.local:
            if reply.op < reply.floor_op:
                raise Violation(
                    "stale-read",
                    f"client {reply.client} request {reply.request} read state at op {reply.op} but op "
                    f"{reply.floor_op} had already been acknowledged before the read was invoked",
                )
        elif reply.op <= reply.floor_op:
            raise Violation(
                "real-time",
                f"client {reply.client} request {reply.request} executed at op {reply.op}, not after "
                f"op {reply.floor_op} which was acknowledged before it was invoked",
            )
        self.max_replied_op = max(self.max_replied_op, reply.op)
        self.pending_replies.append(reply)
        self._check_replies()

    # Model -----------------------------------------------------------------------------------

    def _replay(self) -> None:
        while self.executed_upto + 1 in self.canonical:
            op = self.executed_upto + 1
            prepare = self.canonical[op]
            for index, request in enumerate(decode_batch(prepare.body, cluster=self.cluster)):
                key = (request.header.client, request.header.request)
                if key in self.results:
                    raise Violation(
                        "duplicate-execution",
                        f"client {key[0]} request {key[1]} executed at op {self.results[key][0]} and again "
                        f"at op {op}",
                    )
                if not self.model.clients.admits(*key):
                    continue  # an evicted session's request: replicas answer EVICTION, never run it
                result = self.model.execute(request.header.operation, request.body)
                self.model.clients.record(
                    client=key[0],
                    request=key[1],
                    request_checksum=request.header.checksum,
                    reply=b"",
                    seq=client_seq(op, index),
                )
                self.results[key] = (op, result)
            self.kv_after[op] = json.loads(json.dumps(self.model.kv))
            self.executed_upto = op
        self._check_replies()

    def _check_replies(self) -> None:
        still: list[ObservedReply] = []
        for reply in self.pending_replies:
            if reply.op > self.executed_upto:
                still.append(reply)
                continue
            body = json.loads(reply.body)
            if reply.local:
                state = self.kv_after.get(reply.op)
                if state is None:
                    still.append(reply)
                    continue
                # A local read replies with the value at the op it claims; compare the value.
                if state.get(reply.key) != body.get("value"):
                    raise Violation(
                        "stale-read",
                        f"client {reply.client} request {reply.request} read {reply.key!r} = "
                        f"{body.get('value')!r} claiming op {reply.op}, but the model has "
                        f"{state.get(reply.key)!r} there",
                    )
                self.replies_checked += 1
                continue
            expected = self.results.get((reply.client, reply.request))
            if expected is None:
                raise Violation(
                    "reply-without-execution",
                    f"client {reply.client} request {reply.request} got a reply at op {reply.op} but the "
                    f"canonical history executed it nowhere up to op {self.executed_upto}",
                )
            op, result = expected
            if op != reply.op or result != body:
                raise Violation(
                    "reply-mismatch",
                    f"client {reply.client} request {reply.request}: replied {body} at op {reply.op}, "
                    f"the canonical history executed it at op {op} with {result}",
                )
            self.replies_checked += 1
        self.pending_replies = still
