"""The wire and WAL format: a fixed 128-byte checksummed header followed by a body.

Every message on the network and every entry in the write-ahead log uses this one
format (docs/contracts.md §1). The header checksum is verified before the body is
even looked at, then the body checksum; anything that fails is dropped and counted
by a short reason string (the key of ``counters["dropped"]``). A node never crashes
on bytes from the network, so decoding raises only :class:`InvalidMessage`.

Ops are identified everywhere by ``(op, checksum)``: the header checksum names one
version of an op, and a prepare's ``parent`` chains it to the previous op's prepare.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

HEADER_SIZE = 128
MESSAGE_SIZE_MAX = 1024 * 1024
PREPARE_SIZE_MAX = 64 * 1024  # one WAL prepare slot
SECTOR_SIZE = 4096
PROTOCOL = 1
CLIENT_REPLICA = 255  # the `replica` field of messages sent by clients

CHECKSUM_SIZE = 16
ZERO_CHECKSUM = bytes(CHECKSUM_SIZE)

_HEADER_STRUCT = struct.Struct("<16s16s16s16sQIBBBBQQQQQQ")
assert _HEADER_STRUCT.size == HEADER_SIZE
# Header bytes 16..128: every field but the checksum, i.e. exactly what the header checksum covers.
_TAIL_STRUCT = struct.Struct("<16s16s16sQIBBBBQQQQQQ")
assert _TAIL_STRUCT.size == HEADER_SIZE - 16

_U64_MAX = (1 << 64) - 1


def checksum(data: bytes | bytearray | memoryview) -> bytes:
    """blake2b-128: the one checksum used for headers, bodies and the superblock."""
    return hashlib.blake2b(data, digest_size=CHECKSUM_SIZE).digest()


EMPTY_BODY_CHECKSUM = checksum(b"")


class InvalidMessage(Exception):
    """Bytes that are not a valid message; ``reason`` is the drop-counter key."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class Command(enum.IntEnum):
    """What a message is. RESERVED marks a WAL slot that was never written."""

    RESERVED = 0
    PING = 1
    PONG = 2
    REQUEST = 3
    PREPARE = 4
    PREPARE_OK = 5
    REPLY = 6
    COMMIT = 7
    START_VIEW_CHANGE = 8
    DO_VIEW_CHANGE = 9
    START_VIEW = 10
    REQUEST_START_VIEW = 11
    REQUEST_HEADERS = 12
    HEADERS = 13
    REQUEST_PREPARE = 14
    REQUEST_SYNC = 15
    SYNC = 16
    REDIRECT = 17
    STATUS_REQUEST = 18
    STATUS_REPLY = 19
    EVICTION = 20  # reply to a request the replica refuses (e.g. same number, different bytes)


_COMMAND_VALUES = frozenset(int(c) for c in Command)
_COMMAND_BY_VALUE: dict[int, Command] = {int(c): c for c in Command}


class Operation(enum.IntEnum):
    """The state-machine operation of a request; prepares carry ROOT, NOOP or BATCH."""

    NONE = 0
    ROOT = 1  # op 0: the fixed first entry of every log
    NOOP = 2  # a prepare with no requests (never sent by this replica today; reserved)
    BATCH = 3  # a prepare whose body is a batch of request messages
    READ = 4
    WRITE = 5
    CAS = 6
    APPEND = 7


_OPERATION_VALUES = frozenset(int(o) for o in Operation)
CLIENT_OPERATIONS = frozenset({Operation.READ, Operation.WRITE, Operation.CAS, Operation.APPEND})


@dataclass(frozen=True, slots=True)
class Header:
    """One 128-byte header. Build with :func:`make_header`/:func:`make_message` so it is sealed."""

    checksum: bytes = ZERO_CHECKSUM
    checksum_body: bytes = EMPTY_BODY_CHECKSUM
    parent: bytes = ZERO_CHECKSUM
    context: bytes = ZERO_CHECKSUM
    cluster: int = 0
    size: int = HEADER_SIZE
    command: Command = Command.RESERVED
    replica: int = 0
    operation: int = 0
    protocol: int = PROTOCOL
    view: int = 0
    op: int = 0
    commit: int = 0
    client: int = 0
    request: int = 0
    extra: int = 0
    # The 128 bytes on the wire, kept only when they are known to be these fields with a correct
    # checksum (this header was sealed here, or received and its checksum verified), so encoding it
    # again (a request copied into a prepare, a reply stored and sent) is not a second pack and hash.
    # Empty otherwise. Not a field of the record: never compared, hashed, printed or copied by replace.
    _wire: bytes = field(default=b"", init=False, repr=False, compare=False)

    def _fields_after_checksum(self) -> tuple[Any, ...]:
        """Every field but the checksum, in wire order (the command stays an IntEnum: struct packs it)."""
        return (
            self.checksum_body,
            self.parent,
            self.context,
            self.cluster,
            self.size,
            self.command,
            self.replica,
            self.operation,
            self.protocol,
            self.view,
            self.op,
            self.commit,
            self.client,
            self.request,
            self.extra,
        )

    def _tail(self) -> bytes:
        return _TAIL_STRUCT.pack(*self._fields_after_checksum())

    def calculate_checksum(self) -> bytes:
        """The checksum these fields should carry: blake2b-128 of header bytes 16..128."""
        return checksum(self._tail())

    def sealed(self) -> Header:
        """A copy whose checksum field is correct for its other fields."""
        return _seal(self._fields_after_checksum())

    def valid_checksum(self) -> bool:
        return self.checksum == self.calculate_checksum()

    def encode(self) -> bytes:
        """The 128 bytes with the checksum computed (filled in) from the other fields."""
        if self._wire:
            return self._wire
        tail = self._tail()
        return checksum(tail) + tail

    def encode_raw(self) -> bytes:
        """The 128 bytes exactly as held, even an invalid checksum (a journal marking a slot faulty)."""
        if self._wire:
            return self._wire  # held only when the held checksum is the correct one
        return self.checksum + self._tail()

    def replace(self, **changes: object) -> Header:
        """A sealed copy with some fields changed."""
        return dataclasses.replace(self, **changes).sealed()  # type: ignore[arg-type]

    @property
    def body_size(self) -> int:
        return self.size - HEADER_SIZE

    @staticmethod
    def reserved(cluster: int, slot: int) -> Header:
        """The canonical header of a WAL slot that was never written (op = slot index)."""
        return Header(cluster=cluster, command=Command.RESERVED, op=slot, protocol=PROTOCOL).sealed()

    @staticmethod
    def root(cluster: int) -> Header:
        """The fixed prepare at op 0 that every log starts with (the hash chain's anchor)."""
        return Header(
            cluster=cluster,
            command=Command.PREPARE,
            operation=Operation.ROOT,
            op=0,
            view=0,
            commit=0,
            replica=0,
        ).sealed()

    def short(self) -> str:
        """A compact description for logs and assertion messages."""
        return (
            f"{self.command.name.lower()}(op={self.op} view={self.view} commit={self.commit} "
            f"replica={self.replica} checksum={self.checksum[:4].hex()})"
        )


# Building a Header through its generated __init__ costs a checked object.__setattr__ per field
# (it is frozen); headers are built several times per client op, so the codec fills the slots
# directly. Only this module does so, and only with values it packed or unpacked itself.
_FIELD_SETTERS = tuple(vars(Header)[f.name].__set__ for f in dataclasses.fields(Header) if f.init)
_set_command = vars(Header)["command"].__set__
_set_wire = vars(Header)["_wire"].__set__
_new_object = object.__new__


def _new_header(values: tuple[Any, ...], wire: bytes) -> Header:
    """A Header of the 16 field values in wire order (``command`` as an int or Command), and its
    128 wire bytes if (and only if) they are exactly these fields with a correct checksum, else b""."""
    header: Header = _new_object(Header)
    for set_field, value in zip(_FIELD_SETTERS, values):  # noqa: B905 (always 16: packed or unpacked here)
        set_field(header, value)
    _set_command(header, _COMMAND_BY_VALUE[values[6]])
    _set_wire(header, wire)
    return header


def make_header(
    *,
    command: Command,
    cluster: int,
    body: bytes = b"",
    parent: bytes = ZERO_CHECKSUM,
    context: bytes = ZERO_CHECKSUM,
    replica: int = 0,
    operation: int = 0,
    protocol: int = PROTOCOL,
    view: int = 0,
    op: int = 0,
    commit: int = 0,
    client: int = 0,
    request: int = 0,
    extra: int = 0,
) -> Header:
    """A sealed header with ``size`` and ``checksum_body`` filled in for ``body``."""
    return _seal(
        (
            checksum(body),
            parent,
            context,
            cluster,
            HEADER_SIZE + len(body),
            command,
            replica,
            operation,
            protocol,
            view,
            op,
            commit,
            client,
            request,
            extra,
        )
    )


def _seal(fields_after_checksum: tuple[Any, ...]) -> Header:
    """A header from every field but the checksum (wire order), packed and hashed once."""
    tail = _TAIL_STRUCT.pack(*fields_after_checksum)
    value = checksum(tail)
    return _new_header((value, *fields_after_checksum), value + tail)


@dataclass(frozen=True, slots=True)
class Message:
    """A header and its body; ``header.size == 128 + len(body)`` always."""

    header: Header
    body: bytes = b""

    def encode(self) -> bytes:
        return self.header.encode() + self.body

    @property
    def command(self) -> Command:
        return self.header.command


def make_message(*, command: Command, cluster: int, body: bytes = b"", **fields: Any) -> Message:
    """A message whose header is sealed with the body's size and checksum."""
    if HEADER_SIZE + len(body) > MESSAGE_SIZE_MAX:
        raise ValueError(f"message of {HEADER_SIZE + len(body)} bytes exceeds {MESSAGE_SIZE_MAX}")
    return Message(make_header(command=command, cluster=cluster, body=body, **fields), body)


def root_prepare(cluster: int) -> Message:
    """The op-0 prepare every formatted journal holds."""
    return Message(Header.root(cluster), b"")


def decode_header(buf: bytes | bytearray | memoryview, *, cluster: int | None = None) -> Header:
    """Parse and validate 128 header bytes (checksum, protocol, command, size, cluster if given).

    Raises InvalidMessage with reason ``truncated``, ``header-checksum``, ``protocol``,
    ``command``, ``size`` or ``cluster``.
    """
    if len(buf) < HEADER_SIZE:
        raise InvalidMessage("truncated", f"{len(buf)} bytes, a header is {HEADER_SIZE}")
    raw = bytes(buf[:HEADER_SIZE])
    if checksum(memoryview(raw)[CHECKSUM_SIZE:]) != raw[:CHECKSUM_SIZE]:
        raise InvalidMessage("header-checksum")
    values = _HEADER_STRUCT.unpack(raw)
    if values[9] != PROTOCOL:
        raise InvalidMessage("protocol", f"protocol {values[9]}, expected {PROTOCOL}")
    if values[6] not in _COMMAND_VALUES:
        raise InvalidMessage("command", f"unknown command {values[6]}")
    size = values[5]
    if size < HEADER_SIZE or size > MESSAGE_SIZE_MAX:
        raise InvalidMessage("size", f"size {size} outside [{HEADER_SIZE}, {MESSAGE_SIZE_MAX}]")
    if cluster is not None and values[4] != cluster:
        raise InvalidMessage("cluster", f"cluster {values[4]}, expected {cluster}")
    return _new_header(values, raw)  # the checksum was verified: these are its exact wire bytes


def decode_header_unchecked(buf: bytes | bytearray | memoryview) -> Header:
    """Parse 128 bytes without validation (for journals inspecting possibly-corrupt slots)."""
    if len(buf) < HEADER_SIZE:
        raise InvalidMessage("truncated", f"{len(buf)} bytes, a header is {HEADER_SIZE}")
    values = _HEADER_STRUCT.unpack_from(buf)
    command = values[6]
    if command not in _COMMAND_VALUES:
        raise InvalidMessage("command", f"unknown command {command}")
    return _new_header(values, b"")  # unverified: no wire bytes, encode() recomputes the checksum


def decode_message(buf: bytes | bytearray | memoryview, *, cluster: int) -> Message:
    """Parse and validate one whole message (exactly ``header.size`` bytes).

    Reasons: ``truncated``, ``header-checksum``, ``protocol``, ``command``, ``size``,
    ``cluster``, ``body-checksum``.
    """
    header = decode_header(buf, cluster=cluster)
    if len(buf) < header.size:
        raise InvalidMessage("truncated", f"{len(buf)} bytes, header says {header.size}")
    if len(buf) > header.size:
        raise InvalidMessage("size", f"{len(buf)} bytes, header says {header.size}")
    body = bytes(buf[HEADER_SIZE : header.size])
    if checksum(body) != header.checksum_body:
        raise InvalidMessage("body-checksum")
    return Message(header, body)


def encode_headers(headers: Iterable[Header]) -> bytes:
    """A body carrying a list of headers (HEADERS, DO_VIEW_CHANGE, START_VIEW)."""
    return b"".join(h.encode_raw() for h in headers)


def decode_headers(body: bytes, *, cluster: int | None = None) -> list[Header]:
    """Inverse of :func:`encode_headers`; every header must be valid (else InvalidMessage)."""
    if len(body) % HEADER_SIZE != 0:
        raise InvalidMessage("headers-size", f"{len(body)} bytes is not a multiple of {HEADER_SIZE}")
    return [
        decode_header(body[i : i + HEADER_SIZE], cluster=cluster) for i in range(0, len(body), HEADER_SIZE)
    ]


def split_batch(body: bytes) -> list[Message]:
    """Split a prepare body that already passed its own checksum into its request messages.

    The prepare's body checksum covers every byte of every request, so the requests are not
    re-verified one by one (that is :func:`decode_batch`, for bytes of unknown origin).
    """
    messages: list[Message] = []
    offset = 0
    length = len(body)
    unpack_from = _HEADER_STRUCT.unpack_from
    while offset < length:
        assert offset + HEADER_SIZE <= length, "prepare batch framing is corrupt"
        values = unpack_from(body, offset)
        if values[6] not in _COMMAND_VALUES:
            raise InvalidMessage("command", f"unknown command {values[6]}")
        end = offset + values[5]
        assert values[5] >= HEADER_SIZE and end <= length, "prepare batch framing is corrupt"
        messages.append(Message(_new_header(values, b""), body[offset + HEADER_SIZE : end]))
        offset = end
    return messages


def encode_batch(requests: Sequence[Message]) -> bytes:
    """A prepare body: the full request messages, concatenated.

    A request received off the wire keeps its verified header bytes, so it is copied, not re-sealed.
    """
    parts: list[bytes] = []
    for message in requests:
        parts.append(message.header.encode())
        parts.append(message.body)
    return b"".join(parts)


def decode_batch(body: bytes, *, cluster: int) -> list[Message]:
    """Split a prepare body back into its request messages (each fully validated)."""
    messages: list[Message] = []
    offset = 0
    while offset < len(body):
        header = decode_header(body[offset : offset + HEADER_SIZE], cluster=cluster)
        end = offset + header.size
        if end > len(body):
            raise InvalidMessage("batch-truncated")
        messages.append(decode_message(body[offset:end], cluster=cluster))
        offset = end
    return messages


def validate_u64(name: str, value: int) -> None:
    """Raise ValueError for a field that would not fit its u64 slot (programmer input checks)."""
    if not 0 <= value <= _U64_MAX:
        raise ValueError(f"{name}={value} does not fit in a u64")


__all__ = [
    "CHECKSUM_SIZE",
    "CLIENT_OPERATIONS",
    "CLIENT_REPLICA",
    "EMPTY_BODY_CHECKSUM",
    "HEADER_SIZE",
    "MESSAGE_SIZE_MAX",
    "PREPARE_SIZE_MAX",
    "PROTOCOL",
    "SECTOR_SIZE",
    "ZERO_CHECKSUM",
    "Command",
    "Header",
    "InvalidMessage",
    "Message",
    "Operation",
    "checksum",
    "decode_batch",
    "decode_header",
    "decode_header_unchecked",
    "decode_headers",
    "decode_message",
    "encode_batch",
    "encode_headers",
    "make_header",
    "make_message",
    "root_prepare",
    "split_batch",
]
