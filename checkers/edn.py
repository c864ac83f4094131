"""Read and write EDN, the data notation Jepsen and Knossos store histories in.

Why a real reader: Knossos's test data spreads one op map over several lines,
puts braces and escaped quotes inside strings, and interleaves ``;`` comments,
so anything line- or regex-based misreads it. This is a tokenizer (one compiled
regular expression that finds token *boundaries*) feeding an iterative parser
(an explicit stack; collections nest at most ``DEPTH_MAX`` deep) over the EDN
grammar: nil/true/false, integers (``N`` suffix), floats (``M`` suffix),
ratios, strings with escapes, characters, keywords, symbols, vectors, lists,
maps, sets, ``#_`` discard and ``#tag value`` tagged literals (the tag is
dropped and the value kept, so ``#jepsen.history.Op{...}`` reads as a map).
Commas are whitespace.

Python representation: vectors are ``tuple``; lists are :class:`EdnList` (a
tuple subclass, so a writer can tell them apart); maps are ``dict``; sets are
``frozenset``; keywords are :class:`Keyword` and symbols :class:`Symbol` (both
``str`` subclasses, so ``Keyword("ok") == "ok"``).
"""

from __future__ import annotations

import re
import sys

from checkers.record import record

TYPE_CHECKING = False  # typing is for type checkers only: importing it slows every `ratchet check`
if TYPE_CHECKING:
    from typing import Any


class Keyword(str):
    """An EDN keyword such as ``:invoke``; the string holds the name without the colon."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f":{self!s}"


class Symbol(str):
    """An EDN symbol such as ``foo/bar``."""

    __slots__ = ()


class EdnList(tuple):  # type: ignore[type-arg]
    """An EDN list ``( ... )``; a plain tuple is a vector ``[ ... ]``."""

    __slots__ = ()


class EdnError(ValueError):
    """Malformed EDN. ``line`` is 1-based; ``column`` 1-based."""

    def __init__(self, message: str, *, line: int, column: int) -> None:
        super().__init__(f"line {line}, column {column}: {message}")
        self.reason = message
        self.line = line
        self.column = column


@record
class Located:
    """A top-level element with the line it starts on."""

    value: Any
    line: int


# One token per match, each swallowing the whitespace, commas and comments
# before it, so a token costs one regex match. At the end only `end` matches.
_TOKEN = re.compile(
    r"""
    (?:[\s,]+|;[^\n]*)*
    (?:
      (?P<atom>[^\s,;()\[\]{}"\\\#][^\s,;()\[\]{}"\\]*)
    | (?P<close>[\])}])
    | (?P<open>\#\{|[\[({])
    | (?P<string>"(?:[^"\\]|\\.)*")
    | (?P<discard>\#_)
    | (?P<tag>\#[A-Za-z][^\s,;()\[\]{}"]*)
    | (?P<char>\\(?:newline|space|tab|return|formfeed|backspace|u[0-9A-Fa-f]{4}|.))
    | (?P<badstring>"(?:[^"\\]|\\.)*\Z)
    | (?P<end>\Z)
    | (?P<other>.)
    )
    """,
    re.VERBOSE | re.DOTALL,
)

_ATOM, _CLOSE, _OPEN, _STRING, _DISCARD, _TAG, _CHAR, _BADSTRING, _END, _OTHER = range(1, 11)
_MISSING = object()
_INT = re.compile(r"[+-]?(?:0|[1-9][0-9]*)N?\Z")
_FLOAT = re.compile(r"[+-]?[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?M?\Z")
_RATIO = re.compile(r"[+-]?[0-9]+/[0-9]+\Z")
_STRING_ESCAPES = {"t": "\t", "r": "\r", "n": "\n", "\\": "\\", '"': '"', "b": "\b", "f": "\f"}
_CHAR_NAMES = {
    "newline": "\n",
    "space": " ",
    "tab": "\t",
    "return": "\r",
    "formfeed": "\f",
    "backspace": "\b",
}
_CLOSERS = {"[": "]", "(": ")", "{": "}", "#{": "}"}
# How deep collections may nest. The parser itself is iterative, but everything that
# walks a value afterwards (conversion, hashing, printing) recurses; a history's ops
# nest a few levels, so a hostile file is refused here with its line and column.
DEPTH_MAX = 100


def _where(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    line_start = text.rfind("\n", 0, offset) + 1
    return line, offset - line_start + 1


def _error(text: str, message: str, offset: int) -> EdnError:
    line, column = _where(text, offset)
    return EdnError(message, line=line, column=column)


def _string(text: str, token: str, offset: int) -> str:
    body = token[1:-1]
    if "\\" not in body:
        return body
    out: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        nxt = body[i + 1]
        if nxt == "u":
            hex_digits = body[i + 2 : i + 6]
            if len(hex_digits) != 4 or not all(h in "0123456789abcdefABCDEF" for h in hex_digits):
                raise _error(text, "bad \\u escape in string", offset)
            out.append(chr(int(hex_digits, 16)))
            i += 6
            continue
        if nxt not in _STRING_ESCAPES:
            raise _error(text, f"unknown escape \\{nxt} in string", offset)
        out.append(_STRING_ESCAPES[nxt])
        i += 2
    return "".join(out)


def _atom(text: str, token: str, offset: int) -> Any:
    if token == "nil":
        return None
    if token == "true":
        return True
    if token == "false":
        return False
    first = token[0]
    if first == ":":
        if len(token) == 1 or token.startswith(":/"):
            raise _error(text, f"bad keyword {token!r}", offset)
        return Keyword(token[1:])
    if first.isdigit() or (first in "+-" and len(token) > 1 and token[1].isdigit()):
        if _INT.match(token):
            return int(token.rstrip("N"))
        if _FLOAT.match(token):
            return float(token.rstrip("M"))
        if _RATIO.match(token):
            from fractions import Fraction  # here: it imports decimal, and ratios are rare

            return Fraction(token)
        raise _error(text, f"bad number {token!r}", offset)
    return Symbol(token)


def _char(token: str) -> str:
    body = token[1:]
    if len(body) == 5 and body[0] == "u":
        return chr(int(body[1:], 16))
    return _CHAR_NAMES.get(body, body)


def _build(text: str, opener: str, items: list[Any], offset: int) -> Any:
    if opener == "[":
        return tuple(items)
    if opener == "(":
        return EdnList(items)
    if opener == "#{":
        try:
            return frozenset(items)
        except TypeError:
            raise _error(text, "a set holds a map, which cannot be a set element here", offset) from None
    if len(items) % 2:
        raise _error(text, "a map needs an even number of forms (a key without a value)", offset)
    try:
        return dict(zip(items[::2], items[1::2], strict=True))
    except TypeError:
        raise _error(text, "a map key is a map, which is not supported", offset) from None


class _Frame:
    """One open collection while parsing: its opener, items, item start offsets, discards due."""

    __slots__ = ("discards", "items", "offset", "opener", "starts")

    def __init__(self, opener: str, offset: int) -> None:
        self.opener = opener
        self.offset = offset
        self.items: list[Any] = []
        self.starts: list[int] = []
        self.discards = 0


def _parse(text: str) -> tuple[list[Any], list[int], _Frame | None]:
    """All top-level forms with their start offsets.

    Iterative (an explicit stack of frames) so deep nesting cannot overflow the
    Python stack and each token costs one dispatch. Also returns the frame of
    the first top-level vector/list, whose ``starts`` give element offsets.
    """
    top = _Frame("", 0)
    stack: list[_Frame] = [top]
    frame = top
    first_collection: _Frame | None = None
    atoms: dict[str, Any] = {}  # the same keywords and numbers recur on every line
    missing = _MISSING
    for match in _TOKEN.finditer(text):
        kind = match.lastindex or _OTHER
        if kind == _ATOM:
            token = match[kind]
            value: Any = atoms.get(token, missing)
            if value is missing:
                value = atoms[token] = _atom(text, token, match.start(kind))
        elif kind == _OPEN:
            offset = match.start(kind)
            token = match[kind]
            if len(stack) > DEPTH_MAX:
                raise _error(text, f"collections nest deeper than {DEPTH_MAX} levels", offset)
            frame = _Frame(token, offset)
            if first_collection is None and len(stack) == 1 and token in "[(":
                first_collection = frame
            stack.append(frame)
            continue
        elif kind == _CLOSE:
            token = match[kind]
            closed = stack.pop()
            if closed is top:
                raise _error(text, f"unexpected {token!r} with nothing open", match.start(kind))
            if _CLOSERS[closed.opener] != token:
                raise _error(
                    text, f"expected {_CLOSERS[closed.opener]!r} but found {token!r}", match.start(kind)
                )
            if closed.discards:
                raise _error(text, "#_ discards nothing before the collection closes", match.start(kind))
            value = _build(text, closed.opener, closed.items, closed.offset)
            frame = stack[-1]
            if frame.discards:
                frame.discards -= 1
                continue
            frame.items.append(value)
            if frame is top or frame is first_collection:
                frame.starts.append(closed.offset)
            continue
        elif kind == _STRING:
            value = _string(text, match[kind], match.start(kind))
        elif kind == _DISCARD:
            frame.discards += 1
            continue
        elif kind == _TAG:
            continue  # tagged literal: the tag is dropped, the next form is kept
        elif kind == _CHAR:
            value = _char(match[kind])
        elif kind == _END:
            break
        elif kind == _BADSTRING:
            raise _error(text, "string is never closed (missing '\"')", match.start(kind))
        else:
            raise _error(text, f"unexpected character {match[kind]!r}", match.start(kind))
        if frame.discards:
            frame.discards -= 1
            continue
        frame.items.append(value)
        if frame is top or frame is first_collection:
            frame.starts.append(match.start(kind))
    if len(stack) > 1:
        frame = stack[-1]
        raise _error(
            text, f"collection opened here is never closed (missing {_CLOSERS[frame.opener]!r})", frame.offset
        )
    if top.discards:
        raise _error(text, "#_ at the end discards nothing", len(text))
    return top.items, top.starts, first_collection


def _lines(text: str, offsets: list[int]) -> list[int]:
    """1-based line numbers of ascending offsets, in one pass."""
    lines: list[int] = []
    line, last = 1, 0
    for offset in offsets:
        line += text.count("\n", last, offset)
        last = offset
        lines.append(line)
    return lines


def loads_all(text: str) -> list[Located]:
    """Every top-level form in ``text`` with the line it starts on."""
    items, starts, _ = _parse(text)
    return [Located(v, line) for v, line in zip(items, _lines(text, starts), strict=True)]


def loads(text: str) -> Any:
    """Exactly one form."""
    items, _, _ = _parse(text)
    if len(items) != 1:
        raise EdnError(f"expected one form, found {len(items)}", line=1, column=1)
    return items[0]


def load_elements(text: str) -> list[Located]:
    """The elements a history file holds, each with its starting line.

    A file that is one vector or list yields that collection's elements (Knossos's
    shape); otherwise every top-level form is an element (Jepsen's
    ``history.edn``, one op map per line).
    """
    items, starts, collection = _parse(text)
    if len(items) == 1 and collection is not None and isinstance(items[0], tuple):
        return [
            Located(v, line)
            for v, line in zip(collection.items, _lines(text, collection.starts), strict=True)
        ]
    if len(items) > 1 and collection is not None and starts[0] == collection.offset:
        raise _error(text, "unexpected form after the history's closing bracket", starts[1])
    return [Located(v, line) for v, line in zip(items, _lines(text, starts), strict=True)]


def _escape(text: str) -> str:
    return (
        text.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\t", "\\t")
        .replace("\r", "\\r")
    )


def dumps(value: Any) -> str:
    """Write ``value`` as EDN (the inverse of :func:`loads` for the types above).

    ``str`` is written as an EDN string unless it is a Keyword or Symbol; ``list``
    and ``tuple`` as vectors; ``dict`` as a map.
    """
    if value is None:
        return "nil"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, Keyword):
        return f":{value!s}"
    if isinstance(value, Symbol):
        return str(value)
    if isinstance(value, str):
        return f'"{_escape(value)}"'
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    fractions = sys.modules.get("fractions")  # a Fraction exists only once its module is imported
    if fractions is not None and isinstance(value, fractions.Fraction):
        return f"{value.numerator}/{value.denominator}"
    if isinstance(value, EdnList):
        return "(" + " ".join(dumps(v) for v in value) + ")"
    if isinstance(value, list | tuple):
        return "[" + " ".join(dumps(v) for v in value) + "]"
    if isinstance(value, frozenset | set):
        return "#{" + " ".join(sorted(dumps(v) for v in value)) + "}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{dumps(k)} {dumps(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} as EDN: {value!r}")
