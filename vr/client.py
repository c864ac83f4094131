"""A synchronous VR client: one outstanding request, retried with the same bytes until answered.

The harness runs one ``Client`` per worker thread, so the client blocks; inside a
call it multiplexes non-blocking sockets to every replica with one selector, so a
dead or partitioned replica never stalls the others (a SYN into a partition would
otherwise block ``connect`` for the whole timeout).

The outcome of a call is one of three, and the difference is the point of the
module (contracts §3): a value (the op happened), ``RequestFailed`` (it did not
and never will: a cas mismatch the cluster answered, or a request refused before
one byte of it left this process), or ``RequestIndeterminate`` (it may or may not
have happened: the deadline passed or connections died after the request was
sent). Retries resend the *same bytes* (same client id, request number and
checksum), so a replica's client table executes the request at most once however
many copies arrive; a reply is accepted only if it names this client, this
request number and this request's checksum (in ``context``).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import random
import selectors
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from vr.bus import Address, configure_socket, parse_address, parse_peers
from vr.message import (
    CLIENT_REPLICA,
    HEADER_SIZE,
    PREPARE_SIZE_MAX,
    ZERO_CHECKSUM,
    Command,
    InvalidMessage,
    Message,
    Operation,
    checksum,
    decode_header,
    make_message,
)

# A request travels inside one prepare (contracts §1), so it must fit one WAL slot with the prepare's header.
REQUEST_SIZE_MAX = PREPARE_SIZE_MAX - HEADER_SIZE
DEADLINE_TIMEOUTS = 5  # default overall deadline of a call, in per-attempt timeouts
RECEIVE_CHUNK_BYTES = 1 << 16
# json.dumps with any non-default argument builds a new encoder per call; a client encodes per op.
_REQUEST_ENCODER = json.JSONEncoder(separators=(",", ":"))


class ClientError(Exception):
    """Base of the two outcomes that are not a value."""


class RequestFailed(ClientError):
    """The request did not take effect and never will (Jepsen ``fail``)."""

    def __init__(self, error: str, *, value: Any = None) -> None:
        super().__init__(error if value is None else f"{error} (value={value!r})")
        self.error = error
        self.value = value


class RequestIndeterminate(ClientError):
    """The request may or may not take effect (Jepsen ``info``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class _Frame:
    data: bytes
    tag: bytes  # the request checksum this frame carries (for "was anything sent?")
    offset: int = 0


class _Channel:
    """A non-blocking connection to one replica, with frame-aware send and receive buffers."""

    def __init__(self, replica: int, address: Address, selector: selectors.BaseSelector) -> None:
        self.replica = replica
        self.address = address
        self._selector = selector
        self.sock: socket.socket | None = None
        self.connected = False
        self.outgoing: list[_Frame] = []
        self.incoming = bytearray()
        self.sent_tags: set[bytes] = set()
        self.error: str | None = None
        self.connect_started_s = 0.0
        self._events = 0  # what the selector watches for this socket (skip no-op epoll_ctl calls)

    def connect(self) -> None:
        if self.sock is not None:
            return
        try:
            infos = socket.getaddrinfo(self.address.host, self.address.port, type=socket.SOCK_STREAM)
            family, kind, proto, _, sockaddr = infos[0]
            sock = socket.socket(family, kind, proto)
        except OSError as error:
            self.error = f"connect {self.address}: {error}"
            return
        sock.setblocking(False)
        configure_socket(sock)
        code = sock.connect_ex(sockaddr)
        self.sock = sock
        self.connect_started_s = time.monotonic()
        self.connected = False
        if code not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
            self.close(f"connect {self.address}: errno {code}")
            return
        self._events = selectors.EVENT_READ | selectors.EVENT_WRITE
        self._selector.register(sock, self._events, self)

    def queue(self, data: bytes, tag: bytes, *, connect_timeout_s: float) -> None:
        stalled = time.monotonic() - self.connect_started_s > connect_timeout_s
        if self.sock is not None and not self.connected and stalled:
            # A SYN into a partition is retried by the kernel for minutes; start afresh instead.
            self.close(f"connect {self.address}: no answer within {connect_timeout_s:.1f}s")
        if any(frame.tag == tag and frame.offset == 0 for frame in self.outgoing):
            return  # that copy has not even left yet; a second one adds nothing
        self.outgoing.append(_Frame(data, tag))
        self.connect()
        if self.connected:
            self._send_some()

    def forget_unsent(self) -> None:
        """Drop frames not yet started (a previous call's); a half-sent one must finish to keep framing."""
        if self.outgoing:
            self.outgoing = [frame for frame in self.outgoing if frame.offset > 0]
        self.sent_tags.clear()

    def on_event(self, mask: int) -> list[Message]:
        if self.sock is None:
            return []
        if mask & selectors.EVENT_WRITE:
            if not self.connected:
                code = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code != 0:
                    self.close(f"connect {self.address}: errno {code}")
                    return []
                self.connected = True
            self._send_some()
        if mask & selectors.EVENT_READ and self.sock is not None:
            return self._receive()
        return []

    def _send_some(self) -> None:
        assert self.sock is not None
        while self.outgoing:
            frame = self.outgoing[0]
            try:
                written = self.sock.send(memoryview(frame.data)[frame.offset :])
            except BlockingIOError:
                break
            except OSError as error:
                self.close(f"send to {self.address}: {error}")
                return
            if written > 0:
                self.sent_tags.add(frame.tag)
            frame.offset += written
            if frame.offset < len(frame.data):
                break
            self.outgoing.pop(0)
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if self.outgoing else 0)
        if events != self._events:  # a request that went out whole changes nothing: no syscall
            self._selector.modify(self.sock, events, self)
            self._events = events

    def _receive(self) -> list[Message]:
        assert self.sock is not None
        try:
            data = self.sock.recv(RECEIVE_CHUNK_BYTES)
        except BlockingIOError:
            return []
        except OSError as error:
            self.close(f"receive from {self.address}: {error}")
            return []
        if not data:
            self.close(f"{self.address} closed the connection")
            return []
        self.incoming += data
        return self._frames()

    def _frames(self) -> list[Message]:
        messages: list[Message] = []
        while len(self.incoming) >= HEADER_SIZE:
            try:
                header = decode_header(self.incoming[:HEADER_SIZE])
            except InvalidMessage as error:
                self.close(f"invalid message from {self.address}: {error}")
                return messages
            if len(self.incoming) < header.size:
                break
            body = bytes(self.incoming[HEADER_SIZE : header.size])
            del self.incoming[: header.size]
            if checksum(body) != header.checksum_body:
                self.close(f"invalid message from {self.address}: body-checksum")
                return messages
            messages.append(Message(header, body))
        return messages

    def close(self, reason: str) -> None:
        self.error = reason
        if self.sock is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(self.sock)
            self.sock.close()
        self.sock = None
        self.connected = False
        self.outgoing = []
        self.incoming = bytearray()


class Client:
    """One logical VR client (one client id, one outstanding request at a time).

    Without ``client_id`` the id is drawn from ``seed``: two clients built with the same seed
    share an id, and the second one's request numbers (restarting at 1) look stale to the
    cluster's client table. Give every client its own seed (or its own ``client_id``).
    """

    def __init__(
        self,
        peers: Sequence[str | Address] | str,
        *,
        cluster: int = 0,
        timeout_s: float = 1.0,
        client_id: int | None = None,
        seed: int | None = None,
        deadline_s: float | None = None,
        home: int | None = None,
    ) -> None:
        self.peers = parse_peers(peers) if isinstance(peers, str) else [_address(p) for p in peers]
        if home is not None and not 0 <= home < len(self.peers):
            raise ValueError(f"home={home} is not a replica index (0..{len(self.peers) - 1})")
        # Jepsen-style binding: every request goes first to this replica (a backup redirects it to
        # the primary), so a replica that wrongly answers by itself is asked too.
        self.home = home
        if timeout_s <= 0:
            raise ValueError(f"timeout_s={timeout_s} must be positive")
        self.cluster = cluster
        self.timeout_s = timeout_s
        self.deadline_s = deadline_s if deadline_s is not None else timeout_s * DEADLINE_TIMEOUTS
        self._rng = random.Random(seed)
        self.client_id = client_id if client_id is not None else self._rng.randrange(1, 1 << 64)
        if not 0 < self.client_id < 1 << 64:
            raise ValueError(f"client_id={self.client_id} must be a non-zero u64")
        self.view = 0
        self.request_number = 0
        self._parent = ZERO_CHECKSUM
        self._selector = selectors.DefaultSelector()
        self._channels = [_Channel(i, address, self._selector) for i, address in enumerate(self.peers)]
        self.retries = 0
        self.answered_by: int | None = None  # the replica whose reply completed the last request

    # public operations ----------------------------------------------------------------------

    def read(self, key: str) -> Any:
        return self._call(Operation.READ, {"key": key})

    def write(self, key: str, value: Any) -> Any:
        return self._call(Operation.WRITE, {"key": key, "value": value})

    def cas(self, key: str, old: Any, new: Any) -> Any:
        return self._call(Operation.CAS, {"key": key, "old": old, "new": new})

    def append(self, key: str, value: Any) -> Any:
        return self._call(Operation.APPEND, {"key": key, "value": value})

    @property
    def primary(self) -> int:
        """The replica this client believes is primary (``view % replica_count``)."""
        return self.view % len(self.peers)

    def status(self, replica: int, query: dict[str, Any] | None = None) -> dict[str, Any]:
        """Ask one replica for its status (contracts §3); raises RequestIndeterminate if it is silent.

        ``query`` (e.g. ``{"convergence": {"keys": True}}``) asks for more than the plain status.
        """
        if not 0 <= replica < len(self.peers):
            raise RequestFailed("bad-replica", value=replica)
        nonce = self._rng.randrange(1, 1 << 64)
        message = make_message(
            command=Command.STATUS_REQUEST,
            cluster=self.cluster,
            replica=CLIENT_REPLICA,
            client=self.client_id,
            request=nonce,
            body=json.dumps(query, separators=(",", ":")).encode() if query else b"",
        )
        tag = message.header.checksum
        channel = self._channels[replica]
        channel.forget_unsent()
        channel.queue(message.encode(), tag, connect_timeout_s=self.timeout_s)
        deadline = time.monotonic() + self.timeout_s
        while True:
            for reply in self._poll(deadline):
                header = reply.header
                if (
                    header.command == Command.STATUS_REPLY
                    and header.request == nonce
                    and header.context == tag
                ):
                    status: dict[str, Any] = json.loads(reply.body)
                    return status
            if time.monotonic() >= deadline:
                reason = channel.error or "no answer"
                raise RequestIndeterminate(f"status of replica {replica} timed out ({reason})")

    def close(self) -> None:
        for channel in self._channels:
            channel.close("client closed")
        self._selector.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # the request loop -----------------------------------------------------------------------

    def _call(self, operation: Operation, request_body: dict[str, Any]) -> Any:
        try:
            body = _REQUEST_ENCODER.encode(request_body).encode()
        except (TypeError, ValueError) as error:
            raise RequestFailed("unencodable", value=str(error)) from None
        if HEADER_SIZE + len(body) > REQUEST_SIZE_MAX:
            raise RequestFailed("too-large", value=HEADER_SIZE + len(body))
        self.request_number += 1
        message = make_message(
            command=Command.REQUEST,
            cluster=self.cluster,
            body=body,
            replica=CLIENT_REPLICA,
            operation=int(operation),
            client=self.client_id,
            request=self.request_number,
            parent=self._parent,
            view=self.view,
        )
        reply = self._exchange(message)
        self._parent = reply.header.checksum
        self.view = max(self.view, reply.header.view)
        return _result(reply)

    def _exchange(self, message: Message) -> Message:
        self.answered_by = None
        data = message.encode()
        tag = message.header.checksum
        for channel in self._channels:
            channel.forget_unsent()
        start = time.monotonic()
        deadline = start + self.deadline_s
        sent_to = self.primary if self.home is None else self.home
        self._channels[sent_to].queue(data, tag, connect_timeout_s=self.timeout_s)
        next_retry = start + self.timeout_s
        failed_over = False  # the believed primary refused or dropped us: try everyone at once, once
        while True:
            watch = None if failed_over else self._channels[sent_to]
            for reply in self._poll(min(deadline, next_retry), watch=watch):
                header = reply.header
                if header.client != self.client_id or header.request != message.header.request:
                    continue  # a late answer to an earlier request, or to someone else
                if header.command == Command.REPLY and header.context == tag:
                    self.answered_by = reply.header.replica
                    return reply
                if header.command == Command.EVICTION:
                    # The cluster forgot this session (client table full): the request may have
                    # run before the eviction, so the outcome is unknown; carry on as a new client.
                    self._new_session()
                    raise RequestIndeterminate(f"evicted from the client table ({_json_or_none(reply.body)})")
                if header.command == Command.REDIRECT and header.view >= self.view:
                    self.view = header.view  # "not me": a backup of our view, or a newer view
                    if self.primary != sent_to:
                        sent_to = self.primary
                        self._channels[sent_to].queue(data, tag, connect_timeout_s=self.timeout_s)
            now = time.monotonic()
            if now >= deadline:
                break
            if not failed_over and self._channels[sent_to].sock is None:
                failed_over = True
                next_retry = now  # a dead primary's refusal need not cost a whole timeout
            if now >= next_retry:
                self.retries += 1
                for channel in self._channels:
                    channel.queue(data, tag, connect_timeout_s=self.timeout_s)
                next_retry = now + self.timeout_s * (0.75 + 0.5 * self._rng.random())
        if any(tag in channel.sent_tags for channel in self._channels):
            errors = "; ".join(c.error for c in self._channels if c.error) or "no reply"
            # A new session: the next request must not depend on whether this one ever ran (a
            # cluster that never saw our request 1 would take request 2 for an evicted session).
            self._new_session()
            raise RequestIndeterminate(f"no reply within {self.deadline_s:.1f}s after sending ({errors})")
        errors = "; ".join(c.error for c in self._channels if c.error) or "nothing sent"
        self.request_number -= 1  # never sent: the number is free again
        raise RequestFailed("unavailable", value=errors)

    def _new_session(self) -> None:
        """Start over as a client the cluster has never seen (a fresh id, request numbers from 1)."""
        self.client_id = self._rng.randrange(1, 1 << 64)
        self.request_number = 0
        self._parent = ZERO_CHECKSUM

    def _poll(self, until: float, *, watch: _Channel | None = None) -> list[Message]:
        """Wait for socket events until ``until`` (monotonic s), the first message, or ``watch`` closing."""
        messages: list[Message] = []
        while not messages and not (watch is not None and watch.sock is None):
            remaining = until - time.monotonic()
            if remaining <= 0:
                break
            if not self._selector.get_map():
                time.sleep(min(remaining, 0.05))  # nothing open: every replica refused; wait a little
                continue
            for key, mask in self._selector.select(remaining):
                channel: _Channel = key.data
                messages.extend(channel.on_event(mask))
        return messages


def _address(peer: str | Address) -> Address:
    return peer if isinstance(peer, Address) else parse_address(peer)


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _result(reply: Message) -> Any:
    try:
        answer = json.loads(reply.body)
    except ValueError:
        raise RequestIndeterminate("reply body is not JSON") from None
    if not isinstance(answer, dict) or "ok" not in answer:
        raise RequestIndeterminate(f"reply body has no 'ok': {answer!r}")
    if answer["ok"] is True:
        return answer.get("value")
    raise RequestFailed(str(answer.get("error", "failed")), value=answer.get("value"))


# --- the CLI --------------------------------------------------------------------------------

EXIT_OK, EXIT_FAIL, EXIT_INDETERMINATE, EXIT_USAGE = 0, 1, 2, 3


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)


def _parse_value(text: str) -> Any:
    """CLI values are JSON when they parse as JSON (``5``, ``[1]``, ``"x"``), else plain strings."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _parser() -> _Parser:
    parser = _Parser(
        prog="python -m vr.client",
        description="Run one operation against a VR cluster and print the outcome as JSON.",
        epilog="Exit status: 0 ok, 1 failed (did not happen), 2 indeterminate (may have happened), 3 bad usage.",
    )
    parser.add_argument("--peers", required=True, help="H:P,H:P,H:P in replica-index order")
    parser.add_argument("--cluster", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=1.0, help="seconds per attempt before retrying")
    parser.add_argument("--deadline", type=float, default=None, help="seconds for the whole call")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    commands.add_parser("read").add_argument("key")
    write = commands.add_parser("write")
    write.add_argument("key")
    write.add_argument("value")
    cas = commands.add_parser("cas")
    cas.add_argument("key")
    cas.add_argument("old")
    cas.add_argument("new")
    append = commands.add_parser("append")
    append.add_argument("key")
    append.add_argument("value")
    status = commands.add_parser("status")
    status.add_argument("--replica", type=int, default=None, help="one replica index (default: all)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        peers = parse_peers(args.peers)
        if args.timeout <= 0:
            raise _UsageError(f"--timeout {args.timeout} must be a positive number of seconds")
        if args.command == "status" and args.replica is not None and not 0 <= args.replica < len(peers):
            raise _UsageError(
                f"--replica {args.replica} is outside 0..{len(peers) - 1} for {len(peers)} peers"
            )
    except (_UsageError, ValueError) as error:
        print(
            f"error: {error}. Usage: python -m vr.client --peers H:P,H:P,H:P [--cluster N] "
            "read KEY | write KEY VALUE | cas KEY OLD NEW | append KEY VALUE | status [--replica I].",
            file=sys.stderr,
        )
        return EXIT_USAGE
    with Client(peers, cluster=args.cluster, timeout_s=args.timeout, deadline_s=args.deadline) as client:
        if args.command == "status":
            return _print_status(client, args.replica)
        try:
            if args.command == "read":
                value = client.read(args.key)
            elif args.command == "write":
                value = client.write(args.key, _parse_value(args.value))
            elif args.command == "cas":
                value = client.cas(args.key, _parse_value(args.old), _parse_value(args.new))
            else:
                value = client.append(args.key, _parse_value(args.value))
        except RequestFailed as failure:
            print(json.dumps({"ok": False, "error": failure.error, "value": failure.value}))
            return EXIT_FAIL
        except RequestIndeterminate as unknown:
            print(json.dumps({"ok": None, "indeterminate": unknown.reason}))
            return EXIT_INDETERMINATE
        print(json.dumps({"ok": True, "value": value}))
        return EXIT_OK


def _print_status(client: Client, replica: int | None) -> int:
    targets = [replica] if replica is not None else list(range(len(client.peers)))
    answers: list[dict[str, Any]] = []
    for target in targets:
        try:
            answers.append(client.status(target))
        except RequestIndeterminate as silent:
            answers.append({"replica": target, "error": silent.reason})
    print(json.dumps(answers[0] if replica is not None else answers, indent=2))
    return EXIT_OK if all("error" not in answer for answer in answers) else EXIT_INDETERMINATE


if __name__ == "__main__":
    sys.exit(main())
