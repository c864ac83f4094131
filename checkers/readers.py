"""Read other tools' histories into :class:`~checkers.history.Op` records, and write EDN.

Two foreign shapes matter (see ``tests/data/corpus/README.md``):

* **Jepsen EDN**, either one op map per top-level form (``history.edn`` as
  Jepsen writes it) or one vector/list of maps spread over lines with comments
  (Knossos's test data). ``:process :nemesis`` becomes ``"nemesis"``. When every
  client op's value is a ``[k v]`` tuple (``jepsen.independent``), ``k``
  becomes the op's key and ``v`` its value.
* **Porcupine's etcd logs**: Jepsen console lines
  ``INFO  jepsen.util - <process> <type> <f> <value>``; the place of a line is
  its time, and ``:timed-out`` marks a completion whose value is unknown.

Foreign histories have no timestamps or indices of their own in general, so
``index`` is the op's position and ``time_ns`` its ``:time`` when present,
otherwise its position.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from checkers.edn import EdnError, EdnList, Keyword, Located, Symbol, dumps, load_elements, loads
from checkers.fastedn import independent, read_regular
from checkers.history import (
    COMPLETION_TYPES,
    OP_TYPES,
    HistoryFormatError,
    Op,
    decode_torn_tail,
    warn_torn,
)

TYPE_CHECKING = False  # typing is for type checkers only: importing it slows every `ratchet check`
if TYPE_CHECKING:
    from typing import Any

_CLIENT_FS_WITH_TUPLES = ("read", "write", "cas", "append", "add")


def plain(value: Any) -> Any:
    """EDN values as Ratchet values: keywords and symbols become str, lists tuples."""
    if isinstance(value, Keyword | Symbol):
        return str(value)
    if isinstance(value, EdnList):
        return tuple(plain(v) for v in value)
    if isinstance(value, tuple):
        return tuple(plain(v) for v in value)
    if isinstance(value, frozenset):
        return frozenset(plain(v) for v in value)
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items()}
    return value


def _read_text(path: str | os.PathLike[str]) -> tuple[str, str]:
    """The file's whole lines and its last line when that has no newline (else "").

    The last line is kept apart so a reader can leave it out when it is torn
    (a writer that crashed, a full disk); it may end in a cut character.
    """
    with open(path, "rb") as file:
        raw = file.read()
    cut = raw.rfind(b"\n") + 1
    try:
        body = raw[:cut].decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise HistoryFormatError(
            f"not UTF-8 text ({exc.reason} at byte {exc.start})", path=path, line=line
        ) from None
    tail = decode_torn_tail(raw[cut:])
    if tail is None:
        raise HistoryFormatError("not UTF-8 text (in the last line)", path=path, line=raw.count(b"\n") + 1)
    return body, tail


def _edn_op(element: Located, position: int, path: str | os.PathLike[str]) -> Op:
    """One EDN op map -> Op (before any independent-key split)."""
    m = element.value
    if not isinstance(m, dict):
        raise HistoryFormatError(
            f"expected an op map {{:process ..., :type ...}}, found {dumps_short(m)}",
            path=path,
            line=element.line,
        )
    fields = m  # keywords are str subclasses: fields["process"] finds :process
    for name in ("process", "type", "f"):
        if name not in fields:
            raise HistoryFormatError(f"op map has no :{name}", path=path, line=element.line)
    process = fields["process"]
    if isinstance(process, Keyword | Symbol | str):
        process = str(process)
    elif isinstance(process, bool) or not isinstance(process, int):
        raise HistoryFormatError(
            f":process must be an integer or a keyword, got {dumps_short(process)}",
            path=path,
            line=element.line,
        )
    op_type = fields["type"]
    if not isinstance(op_type, Keyword) or op_type not in OP_TYPES:
        raise HistoryFormatError(
            f":type must be one of :invoke :ok :fail :info, got {dumps_short(op_type)}",
            path=path,
            line=element.line,
        )
    f = fields["f"]
    if not isinstance(f, Keyword | Symbol | str):
        raise HistoryFormatError(f":f must be a keyword, got {dumps_short(f)}", path=path, line=element.line)
    time_value = fields.get("time")
    time_ns = time_value if isinstance(time_value, int) and not isinstance(time_value, bool) else position
    error = fields.get("error")
    node = fields.get("node")
    return Op(
        index=position,
        time_ns=time_ns,
        process=process,
        type=str(op_type),
        f=str(f),
        key=None,
        value=plain(fields.get("value")),
        error=None if error is None else (str(error) if isinstance(error, Keyword | str) else dumps(error)),
        node=None if node is None else str(plain(node)),
    )


def dumps_short(value: Any) -> str:
    try:
        text = dumps(value)
    except TypeError:
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _is_independent(ops: list[Op]) -> bool:
    """True when every client op carries a ``[k v]`` tuple (:func:`checkers.fastedn.independent`)."""
    return independent(
        [op.process for op in ops], [op.type for op in ops], [op.f for op in ops], [op.value for op in ops]
    )


def read_jepsen_edn(path: str | os.PathLike[str]) -> list[Op]:
    """Jepsen/Knossos EDN history (either shape) -> ops in file order."""
    return read_jepsen_edn_lines(path)[0]


def read_jepsen_edn_lines(path: str | os.PathLike[str]) -> tuple[list[Op], list[int]]:
    """Ops and the line each op map starts on.

    A last line with no newline that breaks the file is left out with a warning
    when the lines before it read on their own (one op map per line, cut mid-write).
    """
    body, tail = _read_text(path)
    regular = read_regular(body + tail)
    if regular is not None:  # the common shape, read directly (split by key already); else the general reader
        return regular
    try:
        elements = load_elements(body + tail)
    except EdnError as exc:
        elements = None
        if tail.lstrip().startswith("{") and exc.line == body.count("\n") + 1:
            try:  # (not contextlib.suppress: contextlib is a share of a small check's start-up)
                elements = load_elements(body)
            except EdnError:
                elements = None
        if elements is None:
            raise HistoryFormatError(
                f"malformed EDN: {exc.reason} (column {exc.column})", path=path, line=exc.line
            ) from None
        warn_torn(path, exc.line, len(tail.encode()), exc.reason)
    ops: list[Op] = []
    lines: list[int] = []
    for element in elements:
        ops.append(_edn_op(element, len(ops), path))
        lines.append(element.line)
    if _is_independent(ops):
        ops = [_split_tuple(op) for op in ops]
    return ops, lines


def _split_tuple(op: Op) -> Op:
    if op.is_nemesis or not (isinstance(op.value, tuple) and len(op.value) == 2):
        return op
    key, value = op.value
    return Op(op.index, op.time_ns, op.process, op.type, op.f, key, value, op.error, op.node)


_PORCUPINE_MARK = "jepsen.util - "


def read_porcupine_log(path: str | os.PathLike[str]) -> list[Op]:
    """Porcupine's etcd logs (Jepsen console lines); other log lines are skipped."""
    return read_porcupine_log_lines(path)[0]


def read_porcupine_log_lines(path: str | os.PathLike[str]) -> tuple[list[Op], list[int]]:
    """Ops and their line numbers. A torn last line (no newline, does not read) is left out."""
    body, tail = _read_text(path)
    ops: list[Op] = []
    lines: list[int] = []
    last_line = body.count("\n") + 1
    for line_number, line in enumerate((*body.splitlines(), tail) if tail else body.splitlines(), start=1):
        at = line.find(_PORCUPINE_MARK)
        if at < 0:
            continue
        try:
            op = _porcupine_op(line[at + len(_PORCUPINE_MARK) :], len(ops), path, line_number)
        except HistoryFormatError as exc:
            if tail and line_number == last_line:
                warn_torn(path, line_number, len(tail.encode()), exc.reason)
                break
            raise
        ops.append(op)
        lines.append(line_number)
    return ops, lines


def _porcupine_op(rest: str, position: int, path: str | os.PathLike[str], line_number: int) -> Op:
    """One Jepsen console line after ``jepsen.util - ``: ``<process> <type> <f> <value>``."""
    fields = rest.split(None, 3)
    if len(fields) < 3:
        raise HistoryFormatError(
            "expected '<process> <type> <f> <value>' after 'jepsen.util - '", path=path, line=line_number
        )
    process_text, type_text, f_text = fields[0], fields[1], fields[2]
    value_text = fields[3].strip() if len(fields) == 4 else "nil"
    if process_text.lstrip("-").isdigit():
        process: int | str = int(process_text)
    elif process_text.startswith(":"):
        process = process_text[1:]
    else:
        raise HistoryFormatError(
            f"process {process_text!r} is neither an integer nor a keyword", path=path, line=line_number
        )
    op_type = type_text.lstrip(":")
    if op_type not in OP_TYPES:
        raise HistoryFormatError(
            f"type {type_text!r} is not one of :invoke :ok :fail :info", path=path, line=line_number
        )
    try:
        value = _porcupine_value(value_text)
    except EdnError as exc:
        raise HistoryFormatError(
            f"value {value_text!r} is not EDN ({exc.reason})", path=path, line=line_number
        ) from None
    error = None
    if value == "timed-out" and op_type in COMPLETION_TYPES:
        error, value = "timed-out", None
    return Op(position, position, process, op_type, f_text.lstrip(":"), None, value, error, None)


def _porcupine_value(text: str) -> Any:
    """The common shapes (nil, an integer, [a b], :timed-out) directly; anything else via EDN."""
    if text == "nil":
        return None
    if text.isdigit():
        return int(text)
    if text == ":timed-out":
        return "timed-out"
    if text.startswith("[") and text.endswith("]"):
        parts = text[1:-1].split()
        if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
            return (int(parts[0]), int(parts[1]))
    return plain(loads(text))


def op_to_edn(op: Op) -> str:
    """One op as a Jepsen-style EDN map; a keyed op's value becomes a ``[k v]`` tuple."""
    fields: dict[Any, Any] = {
        Keyword("index"): op.index,
        Keyword("time"): op.time_ns,
        Keyword("type"): Keyword(op.type),
        Keyword("process"): op.process if isinstance(op.process, int) else Keyword(op.process),
        Keyword("f"): Keyword(op.f),
        Keyword("value"): _edn_value(op.value)
        if op.key is None
        else (_edn_value(op.key), _edn_value(op.value)),
    }
    if op.error is not None:
        fields[Keyword("error")] = op.error
    if op.node is not None:
        fields[Keyword("node")] = op.node
    return dumps(fields)


def _edn_value(value: Any) -> Any:
    if isinstance(value, dict):
        return {Keyword(k) if isinstance(k, str) else k: _edn_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return tuple(_edn_value(v) for v in value)
    return value


def write_edn(ops: Iterable[Op], path: str | os.PathLike[str]) -> None:
    """Write Jepsen's ``history.edn`` shape (one op map per line) for Knossos/Elle users."""
    with open(path, "w", encoding="utf-8") as file:
        for op in ops:
            file.write(op_to_edn(op) + "\n")
