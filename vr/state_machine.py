"""The replicated state: a key-value store plus the client table, advanced only by committed ops.

Every operation, reads included, goes through the log (VR.md §1.7): the replica
executes committed prepares in op order and this module turns each request in a
prepare's batch into a reply. Nothing here reads a clock or draws randomness, so
every replica that executes the same ops reaches byte-identical ``snapshot()``s.

The client table (VR.md §1.6) lives here because it is replicated state: it is
updated only by execution, rebuilt by replay after a restart, and saved in the
checkpoint snapshot with the store, so at-most-once survives view changes,
restarts and state transfer alike.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from vr.message import Operation


@dataclass(frozen=True, slots=True)
class ClientEntry:
    """The latest executed request of one client, and the reply it got."""

    request: int
    request_checksum: bytes
    reply: bytes  # the full encoded REPLY message, resent verbatim to a retrying client


class ClientTable:
    """client id -> latest executed request (at most once per (client, request number))."""

    def __init__(self) -> None:
        self._entries: dict[int, ClientEntry] = {}

    def get(self, client: int) -> ClientEntry | None:
        return self._entries.get(client)

    def record(self, *, client: int, request: int, request_checksum: bytes, reply: bytes) -> None:
        previous = self._entries.get(client)
        assert previous is None or previous.request < request, (client, previous, request)
        self._entries[client] = ClientEntry(request, request_checksum, reply)

    def __len__(self) -> int:
        return len(self._entries)

    def to_json(self) -> list[list[Any]]:
        return [
            [client, e.request, e.request_checksum.hex(), base64.b64encode(e.reply).decode("ascii")]
            for client, e in sorted(self._entries.items())
        ]

    @classmethod
    def from_json(cls, rows: list[list[Any]]) -> ClientTable:
        table = cls()
        for client, request, request_checksum, reply in rows:
            table._entries[int(client)] = ClientEntry(
                int(request), bytes.fromhex(request_checksum), base64.b64decode(reply)
            )
        return table


class StateMachine:
    """A key-value store: read, write, cas (fails cleanly with the current value), append (lists)."""

    def __init__(self) -> None:
        self.kv: dict[str, Any] = {}
        self.clients = ClientTable()

    def execute(self, operation: int, body: bytes) -> dict[str, Any]:
        """Apply one request; returns the reply body as a dict. Bad bodies get an error reply."""
        try:
            request = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return {"ok": False, "error": "bad-request", "value": None}
        if not isinstance(request, dict) or not isinstance(request.get("key"), str):
            return {"ok": False, "error": "bad-request", "value": None}
        key: str = request["key"]
        if operation == Operation.READ:
            return {"ok": True, "value": self.kv.get(key)}
        if operation == Operation.WRITE:
            self.kv[key] = request.get("value")
            return {"ok": True, "value": None}
        if operation == Operation.CAS:
            current = self.kv.get(key)
            if current != request.get("old"):
                return {"ok": False, "error": "cas-mismatch", "value": current}
            self.kv[key] = request.get("new")
            return {"ok": True, "value": None}
        if operation == Operation.APPEND:
            current = self.kv.get(key)
            if current is None:
                current = []
            if not isinstance(current, list):
                return {"ok": False, "error": "not-a-list", "value": current}
            self.kv[key] = [*current, request.get("value")]
            return {"ok": True, "value": None}
        return {"ok": False, "error": "bad-operation", "value": None}

    def snapshot(self) -> bytes:
        """Deterministic bytes of the whole state (sorted keys) for checkpoints and state sync."""
        return json.dumps(
            {"kv": self.kv, "clients": self.clients.to_json()}, sort_keys=True, separators=(",", ":")
        ).encode("utf-8")

    @classmethod
    def restore(cls, data: bytes) -> StateMachine:
        state = json.loads(data.decode("utf-8"))
        machine = cls()
        machine.kv = dict(state["kv"])
        machine.clients = ClientTable.from_json(state["clients"])
        return machine


def encode_reply_body(result: dict[str, Any]) -> bytes:
    return json.dumps(result, sort_keys=True, separators=(",", ":")).encode("utf-8")
