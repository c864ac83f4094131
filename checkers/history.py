"""The history a run records: one op per event, and the operations they pair into.

A history is what the checkers judge, so it is the one format every part agrees
on (docs/contracts.md §4). The harness appends :class:`Op` records with a
:class:`HistoryWriter` as they happen (each line flushed, so the file is
readable while the run goes on and after the writer is killed);
:func:`read_history` reads Ratchet's ``history.jsonl``, Jepsen's EDN and
Porcupine's etcd logs into the same records; :func:`pair` turns invocations and
completions into :class:`Operation` intervals, the unit a linearizability check
works on.

Pairing follows Jepsen's rule: an invocation is completed by the next
completion from the same process. ``fail`` means the op definitely did not take
effect, so it is removed; ``info`` (or no completion at all) means it may have
taken effect at any time after its invocation, or never, so it stays open to
the end of the history. Nemesis ops are not client operations and are left out.
"""

from __future__ import annotations

import collections
import functools
import gc
import itertools
import json
import os
import time
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from types import TracebackType

from checkers.record import record

TYPE_CHECKING = False  # typing is for type checkers only: importing it slows every `ratchet check`
if TYPE_CHECKING:
    from typing import IO, Any, Literal

    Outcome = Literal["ok", "info"]

OP_TYPES = ("invoke", "ok", "fail", "info")
COMPLETION_TYPES = ("ok", "fail", "info")
NEMESIS_PROCESS = "nemesis"
FORMATS = ("jsonl", "edn", "porcupine")
# How deep a value may nest (lists in lists). Real values are an [old new] pair or a
# list of appended numbers; the bound keeps a hostile file from exhausting the stack.
VALUE_DEPTH_MAX = 100


class HistoryFormatError(ValueError):
    """A history that cannot be read. The message names the file and line when known."""

    def __init__(
        self, message: str, *, path: str | os.PathLike[str] | None = None, line: int | None = None
    ) -> None:
        self.reason = message
        self.path = None if path is None else str(path)
        self.line = line
        where = ""
        if self.path is not None:
            where = f"{self.path}:{line}: " if line is not None else f"{self.path}: "
        elif line is not None:
            where = f"line {line}: "
        super().__init__(where + message)


class GcPaused:
    """``with GcPaused():`` the cyclic garbage collector does not run inside the block.

    Reading and checking a long history allocate millions of small objects and
    free almost none, so every collection the allocations trigger scans them
    all and finds nothing: a quarter of a 1M-op check. A history holds no
    reference cycles, so nothing is lost; reference counting still frees what
    the block drops. A collector that was already off stays off.

    On the way out, what the block allocated and kept is moved to the oldest
    generation as a whole (a freeze and an unfreeze: two list splices). Left in
    the youngest, the first allocation after the block would start a
    collection of it all (0.7 s after reading a 1M-op history) that finds
    nothing; in the oldest it waits for the next full collection, as it would
    once it had survived the young ones. Garbage cycles made in the block are
    still collected then. Skipped while something else holds objects frozen
    (the unfreeze would release them too).
    """

    __slots__ = ("_was_enabled",)

    def __enter__(self) -> None:
        self._was_enabled = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc: object) -> None:
        if self._was_enabled:
            if gc.get_freeze_count() == 0:
                gc.freeze()
                gc.unfreeze()
            gc.enable()


def freeze(value: Any, depth: int = 0) -> Any:
    """Lists become tuples (recursively) so values can be hashed and compared as states."""
    if isinstance(value, list | tuple):
        if depth >= VALUE_DEPTH_MAX:
            raise HistoryFormatError(f"a value nests lists deeper than {VALUE_DEPTH_MAX} levels")
        return tuple(freeze(v, depth + 1) for v in value)
    return value


def decode_torn_tail(raw: bytes) -> str | None:
    """The text of a last line cut mid-write, or None when it is not text at all.

    A cut can split a multi-byte character, so up to 3 undecodable bytes at the
    very end are dropped; anything else that is not UTF-8 was never written as text.
    """
    for cut in range(4):
        try:
            return raw[: len(raw) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
    return None


def warn_torn(path: str | os.PathLike[str], line: int, size: int, reason: str) -> None:
    """Say on stderr (the checkers' logger) that a torn last line was left out."""
    import logging  # here: only a torn history has something to say while it is read

    logging.getLogger(__name__).warning(
        "%s:%d: the last line is torn (%d bytes with no newline at the end, %s): a crashed writer or "
        "a full disk leaves this; it is left out and the %d line(s) before it are checked",
        path,
        line,
        size,
        reason,
        line - 1,
    )


@record(init=False)
class Op:
    """One event of a history: an invocation or a completion (contracts §4).

    Frozen, but built by :meth:`__init__` through the slots' own descriptors:
    a frozen dataclass's generated ``__init__`` costs three times as much, and
    a 1M-op history builds two million of these.
    """

    index: int
    time_ns: int
    process: int | str
    type: str
    f: str
    key: Any = None
    value: Any = None
    error: str | None = None
    node: str | None = None

    def __init__(
        self,
        index: int,
        time_ns: int,
        process: int | str,
        type: str,
        f: str,
        key: Any = None,
        value: Any = None,
        error: str | None = None,
        node: str | None = None,
    ) -> None:
        _op_index(self, index)
        _op_time_ns(self, time_ns)
        _op_process(self, process)
        _op_type(self, type)
        _op_f(self, f)
        _op_key(self, key)
        _op_value(self, value)
        _op_error(self, error)
        _op_node(self, node)

    @property
    def is_nemesis(self) -> bool:
        return not isinstance(self.process, int)

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "time_ns": self.time_ns,
            "process": self.process,
            "type": self.type,
            "f": self.f,
            "key": self.key,
            "value": self.value,
            "error": self.error,
            "node": self.node,
        }

    @staticmethod
    def from_json(d: Any) -> Op:
        """Validate one decoded JSON object; raise HistoryFormatError naming the bad field."""
        if not isinstance(d, dict):
            raise HistoryFormatError(f"expected a JSON object per line, got {type(d).__name__}")
        for name in ("index", "time_ns", "process", "type", "f"):
            if name not in d:
                raise HistoryFormatError(
                    f"field {name!r} is missing (an op needs index, time_ns, process, type, f)"
                )
        unknown = set(d) - set(Op.__match_args__)
        if unknown:
            raise HistoryFormatError(
                f"unknown field(s) {sorted(unknown)}; accepted: {list(Op.__match_args__)}"
            )
        index, time_ns, process = d["index"], d["time_ns"], d["process"]
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise HistoryFormatError(f"field 'index' must be a non-negative integer, got {index!r}")
        if not isinstance(time_ns, int) or isinstance(time_ns, bool):
            raise HistoryFormatError(f"field 'time_ns' must be an integer (nanoseconds), got {time_ns!r}")
        if isinstance(process, bool) or not isinstance(process, int | str):
            raise HistoryFormatError(f"field 'process' must be an integer or \"nemesis\", got {process!r}")
        op_type = d["type"]
        if op_type not in OP_TYPES:
            raise HistoryFormatError(f"field 'type' must be one of {list(OP_TYPES)}, got {op_type!r}")
        f = d["f"]
        if not isinstance(f, str) or not f:
            raise HistoryFormatError(f"field 'f' must be a non-empty string, got {f!r}")
        error, node = d.get("error"), d.get("node")
        if error is not None and not isinstance(error, str):
            raise HistoryFormatError(f"field 'error' must be a string or null, got {error!r}")
        if node is not None and not isinstance(node, str):
            raise HistoryFormatError(f"field 'node' must be a string or null, got {node!r}")
        return Op(
            index, time_ns, process, op_type, f, freeze(d.get("key")), freeze(d.get("value")), error, node
        )


_OP_SETTERS = tuple(
    Op.__dict__[name].__set__
    for name in ("index", "time_ns", "process", "type", "f", "key", "value", "error", "node")
)
_op_index, _op_time_ns, _op_process, _op_type, _op_f, _op_key, _op_value, _op_error, _op_node = _OP_SETTERS


def ops_from_columns(*columns: Sequence[Any]) -> list[Op]:
    """Ops from their fields' columns (index, time_ns, process, type, f, key, value, error,
    node; equal lengths, values as :class:`Op` takes them).

    Each field is set on every op by one loop in C (a map over the slot's setter),
    with no Python frame per op: 40% less than calling :class:`Op` per op, on
    the two million a 1M-op history has.
    """
    if len(columns) != len(_OP_SETTERS) or len({len(column) for column in columns}) > 1:
        raise ValueError("ops_from_columns takes 9 columns of one length")
    ops: list[Op] = list(map(object.__new__, itertools.repeat(Op, len(columns[0]))))
    for setter, column in zip(_OP_SETTERS, columns, strict=True):
        collections.deque(map(setter, ops, column), maxlen=0)
    return ops


@record(init=False)
class Operation:
    """An invocation paired with its completion: the interval a check places the op in.

    ``call``/``ret`` are positions in the event order (the history's list order,
    which is real-time order); ``ret`` is None for an open-ended (``info``) op.
    ``call_ns``/``return_ns`` are the recorded times, for reports. Built like
    :class:`Op`, through the slots' descriptors (one per client op).
    """

    id: int
    process: int | str
    f: str
    key: Any
    value_in: Any
    value_out: Any
    outcome: Outcome
    call: int
    ret: int | None
    call_ns: int
    return_ns: int | None
    invoke_index: int
    complete_index: int | None

    def __init__(
        self,
        id: int,
        process: int | str,
        f: str,
        key: Any,
        value_in: Any,
        value_out: Any,
        outcome: Outcome,
        call: int,
        ret: int | None,
        call_ns: int,
        return_ns: int | None,
        invoke_index: int,
        complete_index: int | None,
    ) -> None:
        _on_id(self, id)
        _on_process(self, process)
        _on_f(self, f)
        _on_key(self, key)
        _on_value_in(self, value_in)
        _on_value_out(self, value_out)
        _on_outcome(self, outcome)
        _on_call(self, call)
        _on_ret(self, ret)
        _on_call_ns(self, call_ns)
        _on_return_ns(self, return_ns)
        _on_invoke_index(self, invoke_index)
        _on_complete_index(self, complete_index)

    @property
    def open_ended(self) -> bool:
        return self.ret is None


(
    _on_id,
    _on_process,
    _on_f,
    _on_key,
    _on_value_in,
    _on_value_out,
    _on_outcome,
    _on_call,
    _on_ret,
    _on_call_ns,
    _on_return_ns,
    _on_invoke_index,
    _on_complete_index,
) = (Operation.__dict__[name].__set__ for name in Operation.__match_args__)


PairedEvent = tuple[int, Op, int | None, Op | None]


def pair_events(ops: Iterable[Op]) -> list[PairedEvent]:
    """(call position, invocation, completion position, completion) for every client op.

    The raw pairing under :func:`pair`, keeping ``fail`` completions (perf and
    stats count them). A completion is None when the op never completed (or was
    superseded by the same process's next invocation). Sorted by call position.
    """
    pending: dict[int | str, tuple[int, Op]] = {}
    done: list[tuple[int, Op, int | None, Op | None]] = []
    for position, op in enumerate(ops):
        if type(op.process) is not int:  # nemesis (inlined: a hot loop)
            continue
        if op.type == "invoke":
            previous = pending.pop(op.process, None)
            if previous is not None:
                done.append((previous[0], previous[1], None, None))
            pending[op.process] = (position, op)
            continue
        started = pending.pop(op.process, None)
        if started is None:
            raise HistoryFormatError(
                f"op index {op.index}: a {op.type!r} completion for process {op.process!r} "
                f"has no invocation before it"
            )
        if started[1].f != op.f:
            raise HistoryFormatError(
                f"op index {op.index}: completion f={op.f!r} does not match its invocation "
                f"(index {started[1].index}) f={started[1].f!r}"
            )
        done.append((started[0], started[1], position, op))
    for position, op in pending.values():
        done.append((position, op, None, None))
    done.sort(key=lambda item: item[0])
    return done


def pair(
    ops: Iterable[Op], *, events: list[PairedEvent] | None = None, keys: Container[Any] | None = None
) -> list[Operation]:
    """Pair each invocation with the next completion from the same process (Jepsen's rule).

    ``fail`` completions remove their invocation; ``info`` completions, and
    invocations never completed, become open-ended operations. A second
    invocation while one is outstanding means the first crashed (open-ended).
    Reads' output is the completion's value (a read invocation's value is
    ignored); other ops keep the invocation's value as input. With ``keys``,
    only the operations on those keys, with the ids the whole pairing gives them.
    """
    result: list[Operation] = []
    append = result.append
    next_id = 0
    for call, invoke, ret, completion in pair_events(ops) if events is None else events:
        if completion is not None and completion.type == "fail":
            continue
        op_id = next_id
        next_id += 1
        if keys is not None and invoke.key not in keys:
            continue
        # positional arguments, in the fields' order: this runs once per client op
        value_in = None if invoke.f == "read" else invoke.value
        if completion is None:
            append(
                Operation(
                    op_id,
                    invoke.process,
                    invoke.f,
                    invoke.key,
                    value_in,
                    None,
                    "info",
                    call,
                    None,
                    invoke.time_ns,
                    None,
                    invoke.index,
                    None,
                )
            )
            continue
        ok = completion.type == "ok"
        append(
            Operation(
                op_id,
                invoke.process,
                invoke.f,
                invoke.key,
                value_in,
                completion.value if ok else None,
                "ok" if ok else "info",
                call,
                ret if ok else None,
                invoke.time_ns,
                completion.time_ns,
                invoke.index,
                completion.index,
            )
        )
    return result


class HistoryWriter:
    """Append ops to ``history.jsonl``, one JSON line each, flushed at once.

    Flushing hands each line to the kernel, so a reader sees it immediately and
    it survives a SIGKILL of the writer (pass ``fsync=True`` to survive a power
    loss too, at a cost per op). ``append`` takes an :class:`Op` or a dict; a
    dict without ``index`` gets the next index, without ``time_ns`` the
    monotonic clock. Appends from several threads are serialized (a lock per
    writer), so lines never interleave and indices stay in file order.
    """

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = False) -> None:
        import threading  # here, not at the top: reading a history never needs them
        from pathlib import Path

        self.path = Path(path)
        self._fsync = fsync
        self._file: IO[str] | None = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        self._next_index = 0
        self._lock = threading.Lock()

    def append(self, op_or_dict: Op | dict[str, Any]) -> Op:
        with self._lock:
            if self._file is None:
                raise ValueError(f"HistoryWriter for {self.path} is closed")
            if isinstance(op_or_dict, Op):
                op = op_or_dict
            else:
                d = dict(op_or_dict)
                d.setdefault("index", self._next_index)
                d.setdefault("time_ns", time.monotonic_ns())
                op = Op.from_json(d)
            self._next_index = max(self._next_index, op.index + 1)
            self._file.write(json.dumps(op.to_json(), separators=(",", ":")) + "\n")
            self._file.flush()
            if self._fsync:
                os.fsync(self._file.fileno())
            return op

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self) -> HistoryWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def read_jsonl(path: str | os.PathLike[str]) -> list[Op]:
    """Ratchet's own format (see :func:`read_jsonl_lines`)."""
    return read_jsonl_lines(path)[0]


def _not_json(constant: str) -> Any:
    raise HistoryFormatError(f"{constant} is not a JSON value (JSON has no NaN or Infinity)")


# NaN would never equal itself as a register value, so a read of it could never be
# linearized: the history is refused instead of judged. One decoder, built once.
_DECODER = json.JSONDecoder(parse_constant=_not_json)


# Below this size the standard library reads a file about as fast, and importing msgspec
# would cost a short ``ratchet check`` more than it saves.
FAST_DECODER_BYTES_MIN = 256 * 1024


@functools.cache
def _fast_decoder() -> tuple[Callable[[str], Any], tuple[type[Exception], ...]]:
    """msgspec's decoder of a well-typed history.jsonl line (one C call, no dict on the way).

    Any line it refuses (bad JSON, a wrong type, an unknown field, NaN) is decoded
    again by the standard library and checked field by field, so the error it gets
    is the same as ever; one it accepts decodes to the same values (big integers
    stay integers). Returns the decode function and the exceptions of a refusal.
    """
    from typing import Any

    import msgspec

    line = msgspec.defstruct(  # built here, not in a class body: its types are evaluated now
        "_Line",
        [
            ("index", int),
            ("time_ns", int),
            ("process", int | str),
            ("type", str),
            ("f", str),
            ("key", Any, None),
            ("value", Any, None),
            ("error", str | None, None),
            ("node", str | None, None),
        ],
        forbid_unknown_fields=True,
    )
    return msgspec.json.Decoder(line).decode, (msgspec.DecodeError, msgspec.ValidationError)


# Bytes per bulk decode: big enough that the per-call cost vanishes, small enough that the
# decoded rows of one chunk (freed once they are ops) never weigh on the peak.
BULK_CHUNK_BYTES = 8 << 20


@functools.cache
def _bulk_decoder() -> tuple[Callable[[bytes], list[Any]], tuple[type[Exception], ...]]:
    """msgspec's decoder of whole chunks of well-formed history.jsonl lines (one C call per chunk).

    Stricter than :func:`_fast_decoder`: every rule :meth:`Op.from_json` checks is a
    type or a constraint here, so a chunk it accepts holds only lines the field-by-field
    reader accepts with the same values. Anything else is refused and the file is read
    line by line, which names the bad line.

    A key or value decodes as ``Any`` would decode it, except that an array comes as
    a tuple (arrays inside it still lists): what :func:`freeze` makes of it when none
    of its items is an array, the common case, with no pass over it in Python.
    """
    from typing import Annotated, Any, Literal

    import msgspec

    value = None | bool | int | float | str | tuple[Any, ...] | dict[str, Any]
    row = msgspec.defstruct(  # built here, not in a class body: its types are evaluated now
        "_Row",
        [
            ("index", Annotated[int, msgspec.Meta(ge=0)]),
            ("time_ns", int),
            ("process", int | str),
            ("type", Literal["invoke", "ok", "fail", "info"]),
            ("f", Annotated[str, msgspec.Meta(min_length=1)]),
            ("key", value, None),
            ("value", value, None),
            ("error", str | None, None),
            ("node", str | None, None),
        ],
        forbid_unknown_fields=True,
        gc=False,
    )
    return msgspec.json.Decoder(row).decode_lines, (msgspec.DecodeError, msgspec.ValidationError)


def _flat_arrays(data: bytes, keys: list[Any], values: list[Any]) -> bool:
    """True when no decoded key or value holds an array inside it (so nothing is left to freeze).

    Every JSON array is one ``[`` byte of the text; a ``[`` in a string is one more.
    So when the chunk has exactly as many ``[`` bytes as the key and value columns
    have tuples (their top-level arrays), no array sits inside another or inside a
    map. Two counts in C instead of a look into every tuple: on a history of cas
    ops, where half the values are ``[old, new]`` pairs, that look was a sixth of
    the read.
    """
    tuples = list(map(type, keys)).count(tuple) + list(map(type, values)).count(tuple)
    return data.count(b"[") == tuples


def _read_jsonl_bulk(path: str | os.PathLike[str]) -> tuple[list[Op], list[int]] | None:
    """A big, well-formed history.jsonl read in chunks; None for anything else.

    None (the caller then reads line by line) for a refused line, a blank line
    (line numbers would shift), a last line with no newline (maybe torn), a
    value nested too deep: the careful reader decides those, and says why.
    """
    decode_lines, refused = _bulk_decoder()
    ops: list[Op] = []
    carry = b""
    with open(path, "rb") as file:
        while chunk := file.read(BULK_CHUNK_BYTES):
            data = carry + chunk if carry else chunk
            cut = data.rfind(b"\n") + 1
            data, carry = data[:cut], data[cut:]
            if not data:
                continue
            try:
                rows = decode_lines(data)
            except refused:
                return None
            if len(rows) != data.count(b"\n"):
                return None
            keys = [row.key for row in rows]
            values = [row.value for row in rows]
            if not _flat_arrays(data, keys, values):
                try:  # a tuple holding a list (an array in an array) is frozen all the way down
                    for column in (keys, values):
                        for i in [
                            i
                            for i, item in enumerate(column)
                            if type(item) is tuple and list in map(type, item)
                        ]:
                            column[i] = freeze(column[i])
                except HistoryFormatError:
                    return None
            ops += ops_from_columns(
                [row.index for row in rows],
                [row.time_ns for row in rows],
                [row.process for row in rows],
                [row.type for row in rows],
                [row.f for row in rows],
                keys,
                values,
                [row.error for row in rows],
                [row.node for row in rows],
            )
    if carry:
        return None
    return ops, list(range(1, len(ops) + 1))


def read_jsonl_lines(path: str | os.PathLike[str]) -> tuple[list[Op], list[int]]:
    """Ops and the line each came from. A blank line is skipped.

    The writer appends whole lines, so a last line with no newline that does not
    parse is one it was writing when it died (or the disk filled): it is left out
    with a warning. Any other malformed line is a :class:`HistoryFormatError`.
    A file that is not all UTF-8 is read again as bytes, to name the line (or to
    find that only the torn last line was cut inside a character). A big file
    is first decoded in bulk (:func:`_read_jsonl_bulk`), then line by line if
    that refuses it.
    """
    fast = False
    try:
        with open(path, encoding="utf-8") as file:
            fast = os.fstat(file.fileno()).st_size >= FAST_DECODER_BYTES_MIN
            if fast:
                bulk = _read_jsonl_bulk(path)
                if bulk is not None:
                    return bulk
            return _parse_jsonl(path, enumerate(file, start=1), fast=fast)
    except UnicodeDecodeError:
        with open(path, "rb") as file:
            return _parse_jsonl(path, _utf8_lines(path, file), fast=fast)


def _utf8_lines(path: str | os.PathLike[str], file: IO[bytes]) -> Iterator[tuple[int, str]]:
    """(line number, text) of a binary file; a line that is not UTF-8 is a HistoryFormatError,
    except a torn last line cut inside a character, which comes back without the cut bytes."""
    for line_number, raw in enumerate(file, start=1):
        try:
            yield line_number, raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            tail = decode_torn_tail(raw) if not raw.endswith(b"\n") else None
            if tail is None or not tail.lstrip().startswith("{"):
                raise HistoryFormatError(
                    f"not UTF-8 text ({exc.reason} at column {exc.start + 1}); a history.jsonl holds "
                    "one JSON object per line",
                    path=path,
                    line=line_number,
                ) from None
            yield line_number, tail


class _Refused(Exception):
    """The fast decoder is not in use: every line goes through the standard library."""


def _refuse(line: str) -> Any:
    raise _Refused


def _parse_jsonl(
    path: str | os.PathLike[str], numbered: Iterable[tuple[int, str]], *, fast: bool
) -> tuple[list[Op], list[int]]:
    ops: list[Op] = []
    lines: list[int] = []
    decode, refused = _fast_decoder() if fast else (_refuse, (_Refused,))
    for line_number, line in numbered:
        try:
            row = decode(line)
        except refused:
            pass
        else:
            if row.index >= 0 and row.type in _OP_TYPE_SET and row.f:
                key, value = row.key, row.value
                try:
                    if type(key) is list:
                        key = freeze(key)
                    if type(value) is list:
                        value = freeze(value)
                except HistoryFormatError as exc:
                    raise HistoryFormatError(exc.reason, path=path, line=line_number) from None
                ops.append(
                    Op(row.index, row.time_ns, row.process, row.type, row.f, key, value, row.error, row.node)
                )
                lines.append(line_number)
                continue
        if not line.strip():
            continue
        try:
            decoded = _DECODER.decode(line)
            op = _from_json_fast(decoded)
            if op is None:
                op = Op.from_json(decoded)
        except json.JSONDecodeError as exc:
            reason = f"{exc.msg.removesuffix(' at')} at column {exc.colno}"
            if not line.endswith("\n") and line.lstrip().startswith("{"):  # only the last line lacks one
                warn_torn(path, line_number, len(line.encode()), reason)
                break
            raise HistoryFormatError(f"not valid JSON ({reason})", path=path, line=line_number) from None
        except RecursionError:
            raise HistoryFormatError(
                f"a value nests deeper than {VALUE_DEPTH_MAX} levels (the JSON cannot be read)",
                path=path,
                line=line_number,
            ) from None
        except HistoryFormatError as exc:
            raise HistoryFormatError(exc.reason, path=path, line=line_number) from None
        ops.append(op)
        lines.append(line_number)
    return ops, lines


def check_pairing(ops: Sequence[Op], lines: Sequence[int], path: str | os.PathLike[str]) -> None:
    """Every completion follows an invocation of the same f by its process (else: file and line)."""
    pending: dict[int | str, Op] = {}
    for op, line in zip(ops, lines, strict=True):
        if type(op.process) is not int:  # nemesis (inlined: a hot loop)
            continue
        if op.type == "invoke":
            pending[op.process] = op
            continue
        started = pending.pop(op.process, None)
        if started is None:
            raise HistoryFormatError(
                f"a {op.type!r} completion for process {op.process!r} has no invocation before it",
                path=path,
                line=line,
            )
        if started.f != op.f:
            raise HistoryFormatError(
                f"completion f={op.f!r} does not match its invocation's f={started.f!r} (process {op.process!r})",
                path=path,
                line=line,
            )


_FIELDS = frozenset(Op.__match_args__)
_OP_TYPE_SET = frozenset(OP_TYPES)


def _from_json_fast(d: Any) -> Op | None:
    """The common, well-formed line without the field-by-field checks; None sends it to ``from_json``."""
    if type(d) is not dict or not d.keys() <= _FIELDS:
        return None
    index, time_ns, process = d.get("index"), d.get("time_ns"), d.get("process")
    f, error, node = d.get("f"), d.get("error"), d.get("node")
    if (
        type(index) is not int
        or index < 0
        or type(time_ns) is not int
        or (type(process) is not int and type(process) is not str)
        or d.get("type") not in _OP_TYPE_SET
        or type(f) is not str
        or not f
        or (error is not None and type(error) is not str)
        or (node is not None and type(node) is not str)
    ):
        return None
    key, value = d.get("key"), d.get("value")
    if type(key) is list:
        key = freeze(key)
    if type(value) is list:
        value = freeze(value)
    return Op(index, time_ns, process, d["type"], f, key, value, error, node)


def detect_format(path: str | os.PathLike[str]) -> str:
    """Guess the format from the extension, then from the first meaningful line."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix in (".jsonl", ".json"):
        return "jsonl"
    if suffix == ".edn":
        return "edn"
    if suffix in (".log", ".txt"):
        return "porcupine"
    with open(path, encoding="utf-8", errors="replace") as file:
        for line in _head(file, 200):
            stripped = line.strip()
            if not stripped:
                continue
            if "jepsen.util" in stripped:
                return "porcupine"
            if stripped.startswith("{"):
                try:
                    json.loads(stripped)
                    return "jsonl"
                except json.JSONDecodeError:
                    return "edn"
            if stripped[0] in "[(;#":
                return "edn"
    raise HistoryFormatError(
        "cannot tell the history's format; pass --format jsonl, edn or porcupine", path=path
    )


def _head(file: IO[str], count: int) -> Iterator[str]:
    for i, line in enumerate(file):
        if i >= count:
            return
        yield line


def read_history(path: str | os.PathLike[str], format: str | None = None) -> list[Op]:
    """Read a history in any supported format (autodetected when ``format`` is None).

    Besides each line's own shape, the pairing is checked here (a completion
    with no invocation is a malformed history), so the error can name the line.
    """
    if format is None:
        format = detect_format(path)
    with GcPaused():
        return _read_history(path, format)


def _read_history(path: str | os.PathLike[str], format: str) -> list[Op]:
    if format == "jsonl":
        ops, lines = read_jsonl_lines(path)
    elif format == "edn":
        from checkers.readers import read_jepsen_edn_lines

        ops, lines = read_jepsen_edn_lines(path)
    elif format == "porcupine":
        from checkers.readers import read_porcupine_log_lines

        ops, lines = read_porcupine_log_lines(path)
    else:
        raise HistoryFormatError(f"unknown format {format!r}; accepted: {', '.join(FORMATS)}", path=path)
    check_pairing(ops, lines, path)
    return ops
