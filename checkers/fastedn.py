"""Jepsen EDN histories of the regular shape, read without the general EDN parser.

Jepsen writes ``history.edn`` as one flat op map per line, and Knossos's data is
a vector of such maps, one per line: ``{:type :invoke, :f :read, :value [6 nil],
:process 3, :time 8719, :index 0}``. On that shape the general reader
(:mod:`checkers.edn`, a tokenizer and a parser over all of EDN) spends most of
a big history's check. Here each line is matched by one regular expression of
that shape (keywords, integers, nil, true, false and vectors two deep as
values), its pairs are found by a second, and the op is built directly.

Anything else (a comment, a string, a map spread over lines, a symbol, a
float, a tagged literal, an op the reader would refuse, a torn last line)
makes :func:`read_regular` return None, and the caller reads the file with the
general reader, which gives the same ops for a regular file and the errors for
a bad one (tests/checkers/test_readers_fast.py compares the two).

Most files repeat a handful of key orders (Jepsen: ``:index :time :type
:process :f :value``; Knossos: ``:process :type :f :value``), so the lines are
first matched in chunks against a *template* per key order: the line pattern
with the keys spelled out and the values captured. One ``findall`` over a
chunk then reads all its lines in C, and each column (times, processes,
values) is converted at once: the few distinct processes, types and functions
through a table, the integers and vectors by a JSON decoder, after rewriting
the (then keyword-free) EDN values as JSON with two string replacements. Any
line no template fits, or a column that does not convert, sends the file to
the line-by-line path above, and anything that refuses to the general reader.

A big file of Jepsen's shape (from SPLIT_READ_CHARS_MIN) is matched by two
processes: a forked child matches the later chunks and sends their fields'
text back, while this one matches the first chunks; this one converts all of
it, so the ops are what one process would have built.
"""

from __future__ import annotations

import functools
import json
import os
import re
import sys
from collections.abc import Callable, Sequence

from checkers.history import OP_TYPES, Op, ops_from_columns

TYPE_CHECKING = False  # typing is for type checkers only: importing it slows every `ratchet check`
if TYPE_CHECKING:
    from typing import Any

_KEYWORD = r":[A-Za-z][A-Za-z0-9*+!_?<>=./-]*+"
_ATOM = rf"(?:nil|true|false|-?(?:0|[1-9][0-9]*+)|{_KEYWORD})"
_SEP = r"[\s,]"
_VECTOR1 = rf"\[{_SEP}*+(?:{_ATOM}(?:{_SEP}++{_ATOM})*+)?{_SEP}*+\]"
_ELEMENT = rf"(?:{_ATOM}|{_VECTOR1})"
_VECTOR2 = rf"\[{_SEP}*+(?:{_ELEMENT}(?:{_SEP}++{_ELEMENT})*+)?{_SEP}*+\]"
_VALUE = rf"(?:{_ATOM}|{_VECTOR2})"
_PAIR = rf"{_KEYWORD}{_SEP}++{_VALUE}"
_LINE = re.compile(rf"{_SEP}*+\{{{_SEP}*+(?:{_PAIR}(?:{_SEP}++{_PAIR})*+)?{_SEP}*+\}}{_SEP}*+")
_PAIRS = re.compile(rf"({_KEYWORD}){_SEP}++({_VALUE})")
_VECTOR_TOKENS = re.compile(r"\[|\]|[^\s,\[\]]+")
_INTEGER = re.compile(r"-?[0-9]+")
_BLANK = re.compile(rf"{_SEP}*+")
_COMMENT = re.compile(r";[^\n]*")
_TYPES = {f":{name}": name for name in OP_TYPES}
_CONSTANTS: dict[str, Any] = {"nil": None, "true": True, "false": False}


class _Irregular(Exception):
    """The file is not of the regular shape: read it with the general reader."""


def _atom(token: str, memo: dict[str, Any]) -> Any:
    """A token the line pattern accepted as an atom -> the value plain EDN reading gives it."""
    try:
        return memo[token]
    except KeyError:
        pass
    if token in _CONSTANTS:
        value = _CONSTANTS[token]
    elif token[0] == ":":
        value = token[1:]  # a keyword, as the readers give it (its name)
    else:
        value = int(token)
    if len(memo) < 65_536:
        memo[token] = value
    return value


def _value(text: str, memo: dict[str, Any]) -> Any:
    if text[0] != "[":
        return _atom(text, memo)
    stack: list[list[Any]] = []
    for token in _VECTOR_TOKENS.findall(text):
        if token == "[":
            stack.append([])
        elif token == "]":
            done = tuple(stack.pop())
            if not stack:
                return done
            stack[-1].append(done)
        else:
            stack[-1].append(_atom(token, memo))
    raise _Irregular  # unreachable for text the line pattern accepted


def _op(fields: dict[str, str], position: int, memo: dict[str, Any]) -> Op:
    """The Op the general reader builds from this map; _Irregular where it would refuse it."""
    process_text = fields.get(":process")
    op_type = _TYPES.get(fields.get(":type", ""))
    f = fields.get(":f", "")
    if process_text is None or op_type is None or f[:1] != ":":
        raise _Irregular
    if process_text[0] == ":":
        process: int | str = process_text[1:]
    elif _INTEGER.fullmatch(process_text):
        process = _atom(process_text, memo)
    else:
        raise _Irregular
    time_text = fields.get(":time")
    time_ns = position
    if time_text is not None and _INTEGER.fullmatch(time_text):
        time_ns = int(time_text)
    error = _name_or_none(fields.get(":error"))
    node = _name_or_none(fields.get(":node"))
    value_text = fields.get(":value")
    value = None if value_text is None else _value(value_text, memo)
    return Op(position, time_ns, process, op_type, f[1:], None, value, error, node)


def _name_or_none(text: str | None) -> str | None:
    if text is None or text == "nil":
        return None
    if text[0] == ":":
        return text[1:]
    raise _Irregular  # a number or a vector: the general reader's conversion applies


def _read_line_by_line(text: str) -> tuple[list[Op], list[int]] | None:
    """Ops (values not yet split by key) and the line each map is on, or None when irregular."""
    lines = text.split("\n")
    content = [number for number, line in enumerate(lines) if not _BLANK.fullmatch(line)]
    if not content:
        return None
    first, last = content[0], content[-1]
    head = lines[first].lstrip()
    if head.startswith("["):  # one vector of maps (Knossos's shape): its brackets on the first and last lines
        lines[first] = head[1:]
        tail = lines[last].rstrip()
        if not tail.endswith("]"):
            return None
        lines[last] = tail[:-1]
        content = [number for number in content if not _BLANK.fullmatch(lines[number])]
    memo: dict[str, Any] = {}
    ops: list[Op] = []
    numbers: list[int] = []
    fullmatch = _LINE.fullmatch
    findall = _PAIRS.findall
    try:
        for number in content:
            line = lines[number]
            if fullmatch(line) is None:
                return None
            ops.append(_op(dict(findall(line)), len(ops), memo))
            numbers.append(number + 1)
    except _Irregular:
        return None
    return ops, numbers


def independent(
    processes: Sequence[Any], types: Sequence[str], fs: Sequence[str], values: Sequence[Any]
) -> bool:
    """True when every client op carries a ``[k v]`` tuple: ``jepsen.independent``.

    A plain register history has ``nil`` or scalar values on reads and writes,
    so one such op rules the tuple reading out; a cas ``[old new]`` alone is
    ambiguous and never decides it. (Columns, so the readers share it without
    building ops twice; one pass over them together.)
    """
    decisive = 0
    for process, op_type, f, value in zip(processes, types, fs, values, strict=True):
        if type(process) is not int:
            continue  # nemesis
        if type(value) is not tuple or len(value) != 2:
            if op_type == "invoke" or op_type == "ok":
                return False
            continue  # an info/fail completion may carry no value
        if f == "read" or f == "write":
            decisive += 1
        elif f == "cas":
            inner = value[1]
            if not (type(inner) is tuple and len(inner) == 2):
                return False
            decisive += 1
    return decisive > 0


def split_keys(processes: Sequence[Any], values: list[Any]) -> tuple[list[Any], list[Any]]:
    """(keys, values) of a ``jepsen.independent`` history: each client op's ``[k v]`` taken apart."""
    keys: list[Any] = [None] * len(values)
    split = [
        i
        for i, (process, value) in enumerate(zip(processes, values, strict=True))
        if type(value) is tuple and len(value) == 2 and type(process) is int
    ]
    for i in split:
        keys[i], values[i] = values[i]
    return keys, values


# Lines per template chunk: one findall's rows stay small (a few MB), whatever the file's size.
CHUNK_LINES = 50_000
TEMPLATES_MAX = 16
# The fields a template captures, in this order; a key the line does not have is an empty group.
_FIELDS = ("time", "type", "process", "f", "value", "error", "node")
# A template's separator: one character class (a third faster in findall than "whitespace but
# newline, or comma"). It leaves out the rarer whitespace the line pattern takes (\x1c-\x1f,
# Unicode spaces): a line with one matches no template and the file is read line by line.
_NOT_NEWLINE_SEP = r"[ \t,\r\x0b\x0c]"
_TEMPLATE_VALUE = _VALUE.replace(_SEP, _NOT_NEWLINE_SEP)


class _Template:
    """The line pattern for one key order, capturing the values of the keys an op needs."""

    __slots__ = ("fields", "findall", "match")

    def __init__(self, keys: list[str]) -> None:
        sep = _NOT_NEWLINE_SEP
        parts = []
        for key in keys:
            name = key[1:]
            value = f"(?P<{name}>{_TEMPLATE_VALUE})" if name in _FIELDS else _TEMPLATE_VALUE
            parts.append(re.escape(key) + f"{sep}++" + value)
        missing = "".join(f"(?P<{name}>)" for name in _FIELDS if f":{name}" not in keys)
        pattern = rf"^{sep}*+\{{{sep}*+{f'{sep}++'.join(parts)}{sep}*+\}}{sep}*+{missing}$"
        compiled = re.compile(pattern, re.MULTILINE)
        self.findall = compiled.findall
        self.match = compiled.match
        # findall's columns are in group order; this puts them in _FIELDS order
        self.fields = [compiled.groupindex[name] - 1 for name in _FIELDS]


def _template_for(line: str) -> _Template | None:
    """The template of a regular line's key order (None: not regular, or a key twice)."""
    if _LINE.fullmatch(line) is None:
        return None
    keys = [key for key, _ in _PAIRS.findall(line)]
    if len(set(keys)) != len(keys) or any(key.count(":") != 1 for key in keys):
        return None
    return _Template(keys)


def _table(column: Sequence[str], convert: Callable[[str], Any]) -> list[Any]:
    """``column`` converted through a table of its distinct texts (few: processes, types, names)."""
    table = {text: convert(text) for text in set(column)}
    return list(map(table.__getitem__, column))


def _process(text: str) -> int | str:
    if text[:1] == ":":
        return text[1:]
    if _INTEGER.fullmatch(text):
        return int(text)
    raise _Irregular


def _op_type(text: str) -> str:
    op_type = _TYPES.get(text)
    if op_type is None:
        raise _Irregular
    return op_type


def _f(text: str) -> str:
    if text[:1] != ":":
        raise _Irregular
    return text[1:]


def _optional_name(text: str) -> str | None:
    return None if text == "" else _name_or_none(text)


def _times(column: Sequence[str], first: int, bulk: bool = False) -> list[int]:
    """``:time`` when an integer, else the op's position (as the line-by-line path does)."""
    text = "[" + ",".join(column) + "]"
    if bulk:
        try:
            times = _integers_decoder()(text)
        except ValueError:
            times = None
        if times is not None and len(times) == len(column):
            return times
    try:
        times = json.loads(text)
    except ValueError:
        times = None
    if times is not None and len(times) == len(column) and all(type(t) is int for t in times):
        return times  # type: ignore[no-any-return]
    return [int(t) if _INTEGER.fullmatch(t) else first + i for i, t in enumerate(column)]


def _values(
    column: Sequence[str], memo: dict[str, Any], decode: Callable[[str], list[Any]] | None
) -> list[Any]:
    """Every ``:value`` at once when they are keyword-free (then EDN is JSON after two replacements).

    What the template accepted is integers, nil, true, false, keywords and vectors
    of them two deep; with no keyword, replacing each space by a comma and each
    nil by null gives JSON that means the same, or JSON that does not parse (two
    separators in a row, a tab): then one value at a time.
    """
    joined = ",".join(column if "" not in column else [text or "nil" for text in column])
    if ":" not in joined:
        text = "[" + joined.replace(" ", ",").replace("nil", "null") + "]"
        try:
            values = decode(text) if decode is not None else json.loads(text)
        except ValueError:
            values = None
        if values is not None and len(values) == len(column):
            return values if decode is not None else [_tuple(v) if type(v) is list else v for v in values]
    return [_value(text, memo) if text else None for text in column]


def _tuple(value: list[Any]) -> tuple[Any, ...]:
    """A decoded vector as the readers give it: a tuple, and so its vectors (two deep at most here,
    as the template accepts them, so no depth check is needed as in :func:`freeze`)."""
    return tuple([tuple(v) if type(v) is list else v for v in value])


@functools.cache
def _tuple_decoder() -> Callable[[str], list[Any]]:
    """msgspec's JSON decoder giving vectors as tuples (two deep) directly, for big files."""
    import msgspec

    atom = None | bool | int
    inner = atom | tuple[atom, ...]
    value = atom | tuple[inner, ...]
    decode = msgspec.json.Decoder(list[value]).decode  # type: ignore[valid-type]

    def run(text: str) -> list[Any]:
        try:
            return decode(text)  # type: ignore[no-any-return]
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ValueError(str(exc)) from None

    return run


@functools.cache
def _integers_decoder() -> Callable[[str], list[int]]:
    """msgspec's JSON decoder of a list of integers (any size; a bool or a float is refused)."""
    import msgspec

    decode = msgspec.json.Decoder(list[int]).decode

    def run(text: str) -> list[int]:
        try:
            return decode(text)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ValueError(str(exc)) from None

    return run


BULK_VALUES_LINES_MIN = 20_000  # below this the standard library's decoder is as fast as importing msgspec


def _read_by_template(text: str) -> tuple[list[Op], list[int]] | None:
    """Ops (split by key when independent) and line numbers; None when a template does not fit."""
    lines_count = text.count("\n") + (not text.endswith("\n"))
    if text[:1] == "{" and text.count("\n{") == lines_count - 1:
        return _read_maps_by_template(text, lines_count)
    lines = text.split("\n")
    blank = _BLANK.fullmatch
    # (a map's line starts with its brace, or one space and it in Knossos's vector: no regex for those)
    content = [n for n, line in enumerate(lines) if line[:1] == "{" or line[:2] == " {" or not blank(line)]
    if not content:
        return None
    first, last = content[0], content[-1]
    head = lines[first].lstrip()
    if head.startswith("["):  # Knossos's one vector: as in the line-by-line path
        lines[first] = head[1:]
        tail = lines[last].rstrip()
        if not tail.endswith("]"):
            return None
        lines[last] = tail[:-1]
        # only the first and last lines changed: either may now be blank
        if blank(lines[last]):
            content.pop()
        if content and content[0] == first and blank(lines[first]):
            content.pop(0)
        if not content:
            return None
    template = _template_for(lines[content[0]])
    if template is None:
        return None
    reading = _Columns(template, len(content) >= BULK_VALUES_LINES_MIN)
    try:
        for start in range(0, len(content), CHUNK_LINES):
            numbers = content[start : start + CHUNK_LINES]
            contiguous = numbers[-1] - numbers[0] == len(numbers) - 1
            chunk_lines = lines[numbers[0] : numbers[-1] + 1] if contiguous else [lines[n] for n in numbers]
            if not reading.add("\n".join(chunk_lines), len(numbers), start, lambda lines=chunk_lines: lines):
                return None
    except _Irregular:
        return None
    return reading.ops(len(content)), [number + 1 for number in content]


# Characters per chunk when every line is a map: about CHUNK_LINES of Jepsen's lines.
CHUNK_CHARS = 4 << 20
# From this size on, a forked child reads the second part of the chunks while this process
# reads the first: the read is most of a big EDN history's check, and it is the one part
# that otherwise runs on one core (1M ops, 190 MB: about 10 CPU-s).
SPLIT_READ_CHARS_MIN = 32 << 20
# The child's share of the text: more than half, as this process also converts the
# child's text columns to values (a fifth of the read) after reading its own share.
CHILD_SHARE = 0.55


def _read_maps_by_template(text: str, lines_count: int) -> tuple[list[Op], list[int]] | None:
    """Jepsen's shape, every line a map: chunks are slices of the text, cut after a newline
    (no list of the lines, no joining them again)."""
    end_of_first = text.find("\n")
    template = _template_for(text if end_of_first < 0 else text[:end_of_first])
    if template is None:
        return None
    bulk = lines_count >= BULK_VALUES_LINES_MIN
    spans: list[tuple[int, int, int, int]] = []  # (begin, end, first line, line count) per chunk
    position = start = 0
    while position < len(text):
        end = text.find("\n", position + CHUNK_CHARS - 1)
        end = len(text) if end < 0 else end + 1
        count = text.count("\n", position, end) + (text[end - 1] != "\n")
        spans.append((position, end, start, count))
        position, start = end, start + count
    split, child = len(spans), None
    if len(text) >= SPLIT_READ_CHARS_MIN and _may_fork():
        threshold = len(text) * (1 - CHILD_SHARE)
        split = next((i for i, (begin, _, _, _) in enumerate(spans) if begin >= threshold), len(spans))
        child = _read_in_child(text, spans[split:], template, bulk) if split < len(spans) else None
        if child is None:  # no child (or no fork): every chunk read here
            split = len(spans)
    reading = _Columns(template, bulk)
    try:
        regular = _read_spans(reading, text, spans[:split])
    except BaseException:  # (an interrupt, say) no child left behind, blocked on its pipe
        if child is not None:
            child.abandon()
        raise
    if child is not None:
        texts = child.texts() if regular else child.abandon()
        if texts is _CHILD_FAILED:  # the child died: its share read here instead
            regular = _read_spans(reading, text, spans[split:])
        elif texts is None:
            return None
        else:
            try:  # a chunk at a time: all the child's text split at once would be 400 MB at 1M ops
                for joined, (_, _, first_line, _) in zip(texts, spans[split:], strict=True):
                    reading.convert([column.split("\n") for column in joined], first_line)
            except _Irregular:
                return None
    if not regular:
        return None
    return reading.ops(lines_count), list(range(1, lines_count + 1))


def _read_spans(reading: _Columns, text: str, spans: list[tuple[int, int, int, int]]) -> bool:
    """Add these chunks of ``text`` to ``reading``; False when a line fits no template."""
    try:
        for begin, end, start, count in spans:
            chunk = text[begin:end]
            if not reading.add(
                chunk, count, start, lambda chunk=chunk, count=count: chunk.split("\n")[:count]
            ):
                return False
    except _Irregular:
        return False
    return True


def _texts_of(reading: _Columns, text: str, spans: list[tuple[int, int, int, int]]) -> list[list[str]] | None:
    """Per span, its text columns, each joined by newlines (None: a line fits no template)."""
    joined: list[list[str]] = []
    try:
        for begin, end, _, count in spans:
            chunk = text[begin:end]
            texts = reading.texts(chunk, count, lambda chunk=chunk, count=count: chunk.split("\n")[:count])
            if texts is None:
                return None
            joined.append(["\n".join(column) for column in texts])
    except _Irregular:
        return None
    return joined


def _may_fork() -> bool:
    """Fork is there, and no other thread could hold a lock the child would need."""
    if not hasattr(os, "fork"):
        return False
    threading = sys.modules.get("threading")  # not imported: no thread was started through it
    return threading is None or threading.active_count() == 1


_CHILD_FAILED = object()


class _ChildRead:
    """A forked child matching some chunks' lines; the fields' text comes back through a pipe.

    Text, not values: this process converts them as it converts its own chunks'
    (the conversion is a fifth of the read), which costs about what unpickling
    the values would, and builds them here as a read in one process does. A
    field's text never holds a newline (a template matches within a line), so
    a chunk's column goes as one string, its items joined by newlines; they are
    split and converted here a chunk at a time, as this process reads its own.
    """

    __slots__ = ("pid", "pipe")

    def __init__(self, pid: int, pipe: int) -> None:
        self.pid = pid
        self.pipe = pipe

    def texts(self) -> Any:
        """Per chunk, the child's joined text columns; None when a line fit no template,
        _CHILD_FAILED when it died."""
        import pickle

        try:
            with os.fdopen(self.pipe, "rb") as pipe:
                return pickle.load(pipe)
        except (EOFError, pickle.UnpicklingError, ValueError, OSError):
            return _CHILD_FAILED
        finally:
            os.waitpid(self.pid, 0)

    def abandon(self) -> None:
        """Stop the child (its columns are not needed) and reap it."""
        import signal

        os.close(self.pipe)
        os.kill(self.pid, signal.SIGKILL)  # not yet reaped, so the pid is still this child's
        os.waitpid(self.pid, 0)


def _read_in_child(
    text: str, spans: list[tuple[int, int, int, int]], template: _Template, bulk: bool
) -> _ChildRead | None:
    """Fork a child that reads ``spans`` of ``text`` and writes its columns (or None) to a pipe."""
    import pickle

    if bulk:
        _tuple_decoder()
        _integers_decoder()  # made once, here: the child inherits them
    read_end, write_end = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(read_end)
        os.close(write_end)
        return None
    if pid == 0:  # the child: never returns into the caller
        try:
            os.close(read_end)
            result = _texts_of(_Columns(template, bulk), text, spans)
            with os.fdopen(write_end, "wb") as pipe:
                pickle.dump(result, pipe, protocol=pickle.HIGHEST_PROTOCOL)
        finally:
            os._exit(0)
    os.close(write_end)
    return _ChildRead(pid, read_end)


class _Columns:
    """The columns of the ops read so far, chunk by chunk, and the templates met."""

    __slots__ = ("columns", "decode", "memo", "templates")

    def __init__(self, template: _Template, bulk: bool) -> None:
        self.templates = [template]
        self.columns: list[list[Any]] = [[] for _ in _FIELDS]
        self.decode = _tuple_decoder() if bulk else None
        self.memo: dict[str, Any] = {}

    def add(self, chunk: str, count: int, start: int, chunk_lines: Callable[[], list[str]]) -> bool:
        """Read ``count`` lines (``chunk``, the first being line ``start`` of the maps) with the
        first template in one findall, else line by line; False when a line fits no template."""
        texts = self.texts(chunk, count, chunk_lines)
        if texts is None:
            return False
        self.convert(texts, start)
        return True

    def texts(
        self, chunk: str, count: int, chunk_lines: Callable[[], list[str]]
    ) -> list[Sequence[str]] | None:
        """The chunk's fields as text, one column per field in _FIELDS order (None: a line fits no template)."""
        templates = self.templates
        rows = templates[0].findall(chunk)
        if len(rows) == count:
            by_group = list(zip(*rows, strict=True))
            return [by_group[i] for i in templates[0].fields]
        return _match_each(chunk_lines(), templates)  # type: ignore[return-value]

    def convert(self, texts: list[Sequence[str]], start: int) -> None:
        """Add the values of these text columns (their first line being line ``start`` of the maps)."""
        times, types, processes, fs, values, errors, nodes = texts
        columns = self.columns
        columns[0] += _times(times, start, self.decode is not None)
        columns[1] += _table(types, _op_type)
        columns[2] += _table(processes, _process)
        columns[3] += _table(fs, _f)
        columns[4] += _values(values, self.memo, self.decode)
        columns[5] += _table(errors, _optional_name)
        columns[6] += _table(nodes, _optional_name)
        return True

    def ops(self, count: int) -> list[Op]:
        """The ops (``[k v]`` values split by key when the history is independent)."""
        times, types, processes, fs, values, errors, nodes = self.columns
        if any(len(column) != count for column in self.columns):
            raise AssertionError("a column lost or gained rows")  # never: each converter keeps its length
        keys: list[Any] = [None] * len(values)
        if independent(processes, types, fs, values):
            keys, values = split_keys(processes, values)
        return ops_from_columns(range(len(values)), times, processes, types, fs, keys, values, errors, nodes)


def _match_each(lines: list[str], templates: list[_Template]) -> list[list[str]] | None:
    """The chunk's columns in _FIELDS order, matching line by line (several key orders)."""
    rows: list[tuple[str, ...]] = []
    for line in lines:
        for template in templates:
            m = template.match(line)
            if m is not None:
                break
        else:
            new = _template_for(line) if len(templates) < TEMPLATES_MAX else None
            if new is None:
                return None
            templates.append(new)
            m = new.match(line)
            if m is None:
                return None
        rows.append(m.group(*_FIELDS))
    return [list(column) for column in zip(*rows, strict=True)]


# The first text a process reads is read line by line below this many characters:
# compiling a line template costs more than it saves on one small file (callgrind, one
# `ratchet check` each: a 1 KB Knossos file 173 M instructions with the template, 141 M
# without; 14 KB 186 M / 160 M; even at 75 KB). Later texts use templates whatever their
# size: re keeps the compiled patterns, so a process reading many files (the 84 Knossos
# files in one process: 1.37 G instructions read by template, 1.79 G line by line)
# compiles each shape once.
TEMPLATE_TEXT_MIN = 64 << 10
_texts_read = 0


def read_regular(text: str) -> tuple[list[Op], list[int]] | None:
    """Ops (``[k v]`` values split by key when the history is independent) and the line
    each map is on, or None when ``text`` is not of the regular shape.

    ``;`` comments (Knossos annotates its histories with them) are cut first when
    the text has no string and no character literal: then every ``;`` starts one.
    """
    if ";" in text and '"' not in text and "\\" not in text:
        text = _COMMENT.sub("", text)
    global _texts_read
    _texts_read += 1
    templates = _texts_read > 1 or len(text) >= TEMPLATE_TEXT_MIN
    by_template = _read_by_template(text) if templates else None
    if by_template is not None:
        return by_template
    found = _read_line_by_line(text)
    if found is None:
        return None
    ops, numbers = found
    processes = [op.process for op in ops]
    values = [op.value for op in ops]
    if independent(processes, [op.type for op in ops], [op.f for op in ops], values):
        keys, values = split_keys(processes, values)
        ops = [
            Op(op.index, op.time_ns, op.process, op.type, op.f, key, value, op.error, op.node)
            for op, key, value in zip(ops, keys, values, strict=True)
        ]
    return ops, numbers
