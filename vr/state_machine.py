"""The replicated state: a key-value store plus the client table, advanced only by committed ops.

Every operation, reads included, goes through the log (docs/vr.md §1.7): the replica
executes committed prepares in op order and this module turns each request in a
prepare's batch into a reply. Nothing here reads a clock or draws randomness, so
every replica that executes the same ops reaches byte-identical ``snapshot()``s.

The client table (docs/vr.md §1.6) lives here because it is replicated state: it is
updated only by execution, rebuilt by replay after a restart, and saved in the
checkpoint snapshot with the store, so at-most-once survives view changes,
restarts and state transfer alike. It holds at most ``clients_max`` clients:
a new client evicts the one least recently executed (by ``seq``, the position
of its last request in the log, so every replica evicts the same one). An
evicted client's next request cannot be told from a retry of one already
executed, so the replica answers it with EVICTION instead of executing it,
and the client treats that as an unknown outcome and starts a new session.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vr.message import Operation

CLIENTS_MAX = 4096  # clients remembered for at-most-once; part of the state machine's definition
_BATCH_SLOTS = 1 << 16  # requests one prepare can hold, at most (for ``client_seq``)


def client_seq(op: int, index: int) -> int:
    """Where a request executed: its prepare's op, then its place in that prepare's batch."""
    assert 0 <= index < _BATCH_SLOTS, index
    return op * _BATCH_SLOTS + index


class ClientEntry:
    """The latest executed request of one client, and the reply it got.

    ``reply`` is the full encoded REPLY message, resent verbatim to a retrying client. It may
    be given as a function that builds it: a backup executes every op but sends no reply, and
    most stored replies are never read again (the client's next request replaces them), so a
    backup stores the recipe and the bytes are built only if a retry, a checkpoint or a digest
    asks for them. Same bytes either way: the recipe is a pure function of executed state.
    """

    __slots__ = ("_reply", "request", "request_checksum", "seq")

    def __init__(
        self, request: int, request_checksum: bytes, reply: bytes | Callable[[], bytes], seq: int = 0
    ) -> None:
        self.request = request
        self.request_checksum = request_checksum
        self._reply = reply
        self.seq = seq  # where in the log it executed (op and place in the batch): eviction order

    @property
    def reply(self) -> bytes:
        reply = self._reply
        if not isinstance(reply, bytes):
            reply = self._reply = reply()
        return reply

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ClientEntry):
            return NotImplemented
        return (self.request, self.request_checksum, self.reply, self.seq) == (
            other.request,
            other.request_checksum,
            other.reply,
            other.seq,
        )

    __hash__ = None  # type: ignore[assignment]  # mutable (the reply is filled in once)

    def __repr__(self) -> str:
        return f"ClientEntry(request={self.request}, seq={self.seq})"


class ClientTable:
    """client id -> latest executed request (at most once per (client, request number))."""

    def __init__(self, clients_max: int = CLIENTS_MAX) -> None:
        assert clients_max >= 1, clients_max
        self.clients_max = clients_max
        self._entries: dict[int, ClientEntry] = {}  # ascending seq: the first is evicted first

    def get(self, client: int) -> ClientEntry | None:
        return self._entries.get(client)

    def record(
        self,
        *,
        client: int,
        request: int,
        request_checksum: bytes,
        reply: bytes | Callable[[], bytes],
        seq: int = 0,
    ) -> int | None:
        """Remember a client's latest executed request; returns the client evicted to make room."""
        previous = self._entries.pop(client, None)
        assert previous is None or previous.request < request, (client, previous, request)
        assert previous is None or previous.seq <= seq, (client, previous, seq)
        evicted = None
        if previous is None and len(self._entries) >= self.clients_max:
            evicted = next(iter(self._entries))
            del self._entries[evicted]
        self._entries[client] = ClientEntry(request, request_checksum, reply, seq)
        return evicted

    def admits(self, client: int, request: int) -> bool:
        """False for a session we evicted: a client we do not know starts at request 1."""
        return request == 1 or client in self._entries

    def forget(self, client: int) -> None:
        """Drop a client's entry (planted bug no-client-table only: it re-executes duplicates)."""
        self._entries.pop(client, None)

    def __len__(self) -> int:
        return len(self._entries)

    def to_json(self) -> list[list[Any]]:
        return [
            [client, e.request, e.request_checksum.hex(), base64.b64encode(e.reply).decode("ascii"), e.seq]
            for client, e in sorted(self._entries.items())
        ]

    @classmethod
    def from_json(cls, rows: list[list[Any]], clients_max: int = CLIENTS_MAX) -> ClientTable:
        table = cls(clients_max)
        entries = []
        for row in rows:
            client, request, request_checksum, reply = row[:4]
            seq = int(row[4]) if len(row) > 4 else 0
            entry = ClientEntry(int(request), bytes.fromhex(request_checksum), base64.b64decode(reply), seq)
            entries.append((seq, int(client), entry))
        for _, client, entry in sorted(entries, key=lambda item: item[:2]):
            table._entries[client] = entry
        return table


class StateMachine:
    """A key-value store: read, write, cas (fails cleanly with the current value), append (lists)."""

    def __init__(self, clients_max: int = CLIENTS_MAX) -> None:
        self.kv: dict[str, Any] = {}
        self.clients = ClientTable(clients_max)

    def execute(self, operation: int, body: bytes) -> dict[str, Any]:
        """Apply one request; returns the reply body as a dict. Bad bodies get an error reply."""
        error, value = self._apply(operation, body)
        if error is None:
            return {"ok": True, "value": value}
        return {"ok": False, "error": error, "value": value}

    def execute_encoded(self, operation: int, body: bytes) -> bytes:
        """``encode_reply_body(self.execute(operation, body))``, byte for byte, built directly.

        The replica's hot path: most replies are ``{"ok":true,"value":null}`` (a constant), and
        the others are the fixed keys in sorted order around the encoded value, so no dict is
        built and no keys are sorted per op (tests/vr/test_state_machine.py compares the two).
        """
        error, value = self._apply(operation, body)
        if error is None:
            if value is None:
                return _REPLY_OK_NULL
            return b'{"ok":true,"value":' + _encode_value(value) + b"}"
        return b'{"error":' + _encode_value(error) + b',"ok":false,"value":' + _encode_value(value) + b"}"

    def _apply(self, operation: int, body: bytes) -> tuple[str | None, Any]:
        """(error or None, value): the one definition of what each operation does."""
        try:
            request = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return "bad-request", None
        if not isinstance(request, dict):
            return "bad-request", None
        key = request.get("key")
        if not isinstance(key, str):
            return "bad-request", None
        kv = self.kv
        if operation == Operation.WRITE:
            kv[key] = request.get("value")
            return None, None
        if operation == Operation.READ:
            return None, kv.get(key)
        if operation == Operation.CAS:
            current = kv.get(key)
            if current != request.get("old"):
                return "cas-mismatch", current
            kv[key] = request.get("new")
            return None, None
        if operation == Operation.APPEND:
            current = kv.get(key)
            if current is None:
                current = []
            if not isinstance(current, list):
                return "not-a-list", current
            kv[key] = [*current, request.get("value")]
            return None, None
        return "bad-operation", None

    def snapshot(self) -> bytes:
        """Deterministic bytes of the whole state (sorted keys) for checkpoints and state sync."""
        return json.dumps(
            {"kv": self.kv, "clients": self.clients.to_json()}, sort_keys=True, separators=(",", ":")
        ).encode("utf-8")

    def digest(self) -> StateDigest:
        """Hashes of the state as it is now, for comparing replicas at the same op (contracts §3).

        Computed on demand (a whole serialization), never per op: the harness asks at quiet
        points. ``kv`` and ``clients`` are hashed apart so a mismatch says which part differs.
        """
        return StateDigest(
            kv=_hash(_canonical(self.kv)),
            clients=_hash(_canonical(self.clients.to_json())),
            keys=len(self.kv),
        )

    def key_hashes(self) -> dict[str, str]:
        """key -> short hash of its value: two replicas' maps name the keys whose values differ."""
        return {key: _hash(_canonical(value))[:KEY_HASH_HEX] for key, value in self.kv.items()}

    @classmethod
    def restore(cls, data: bytes, clients_max: int = CLIENTS_MAX) -> StateMachine:
        state = json.loads(data.decode("utf-8"))
        machine = cls(clients_max)
        machine.kv = dict(state["kv"])
        machine.clients = ClientTable.from_json(state["clients"], clients_max)
        return machine


KEY_HASH_HEX = 16  # 64 bits per key: enough to tell two values apart, small enough to send


@dataclass(frozen=True, slots=True)
class StateDigest:
    """What two replicas that executed the same ops must agree on (hex blake2b-128)."""

    kv: str
    clients: str
    keys: int

    def to_json(self) -> dict[str, Any]:
        return {"kv": self.kv, "clients": self.clients, "keys": self.keys}


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def encode_reply_body(result: dict[str, Any]) -> bytes:
    return json.dumps(result, sort_keys=True, separators=(",", ":")).encode("utf-8")


_REPLY_OK_NULL = encode_reply_body({"ok": True, "value": None})


def _encode_value(value: Any) -> bytes:
    """One JSON value exactly as ``encode_reply_body`` writes it inside the reply object."""
    if value is None:
        return b"null"
    if type(value) is int:  # not bool (an int subclass that JSON writes as true/false)
        return str(value).encode("ascii")
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode("utf-8")
