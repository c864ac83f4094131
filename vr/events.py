"""The node's event log: one JSON object per line, flushed as it happens.

The harness draws view changes on the run's timeline and shows which recovery
paths a run exercised from these lines (contracts §3), so each line carries
both clocks: ``mono_ns`` orders events within one node even across wall-clock
faults, and ``wall_ns`` lines nodes up against each other and the history.
A line is flushed (not fsynced) as soon as it is written: a SIGKILL must not
eat the events that explain why it was sent, but the log is evidence, not
replicated state, so it never costs the replica an fsync.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import IO, Any

logger = logging.getLogger(__name__)

# Keys the writer owns; a replica event that reused one would silently lose data.
RESERVED_KEYS = frozenset({"mono_ns", "wall_ns", "replica", "kind"})


class EventLog:
    """Writes ``emit(kind, **fields)`` calls as JSON lines to a file (or nowhere).

    With ``path=None`` events still go to the ``key=value`` logger, so a node
    run without ``--events`` keeps the same story in its log.
    """

    def __init__(
        self,
        path: str | None,
        *,
        replica: int,
        mono_ns: Callable[[], int] = time.monotonic_ns,
        wall_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self._replica = replica
        self._mono_ns = mono_ns
        self._wall_ns = wall_ns
        self._file: IO[str] | None = None
        self.count = 0
        if path is not None:
            self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 (owned; closed in close())

    def emit(self, kind: str, **fields: Any) -> None:
        """Record one event; the replica's only way to tell the outside world what it did."""
        clash = RESERVED_KEYS.intersection(fields)
        assert not clash, f"event field names clash with the envelope: {sorted(clash)}"
        record: dict[str, Any] = {
            "mono_ns": self._mono_ns(),
            "wall_ns": self._wall_ns(),
            "replica": self._replica,
            "kind": kind,
        }
        record.update(fields)
        self.count += 1
        logger.info("event=%s replica=%d %s", kind, self._replica, _key_values(fields))
        if self._file is not None:
            self._file.write(json.dumps(record, sort_keys=False, default=_json_fallback) + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _key_values(fields: dict[str, Any]) -> str:
    return " ".join(f"{key}={_compact(value)}" for key, value in fields.items())


def _compact(value: Any) -> str:
    if isinstance(value, bytes):
        return value.hex()
    text = str(value)
    return text if " " not in text else json.dumps(text)


def _json_fallback(value: Any) -> Any:
    """Checksums are bytes; write them as hex so the line stays valid JSON."""
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    if isinstance(value, tuple):
        return list(value)
    return str(value)
