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
"""

from __future__ import annotations

import re
from typing import Any

from checkers.history import OP_TYPES, Op

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


def read_regular(text: str) -> tuple[list[Op], list[int]] | None:
    """Ops and the line each map is on, or None when ``text`` is not of the regular shape."""
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
