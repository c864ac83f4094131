"""The fast readers read exactly what the general ones read.

history.jsonl is decoded by msgspec first, and by the standard library (field by
field) for any line msgspec refuses; these tests run both on the same files and
compare the ops, line numbers and errors.
"""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checkers import history
from checkers.history import HistoryFormatError, read_jsonl_lines


class _RefuseAll:
    """A decoder that refuses every line: the reader falls back to the standard library."""

    @staticmethod
    def decode(line: str) -> None:
        raise msgspec.DecodeError("refused")


def _general(path: Path, monkeypatch: pytest.MonkeyPatch) -> object:
    with monkeypatch.context() as patch:
        patch.setattr(history, "_FAST_DECODER", _RefuseAll())
        return _outcome(path)


def _outcome(path: Path) -> object:
    try:
        return read_jsonl_lines(path)
    except HistoryFormatError as exc:
        return ("error", str(exc))


_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=2),
    max_leaves=6,
)
_fields = st.fixed_dictionaries(
    {
        "index": st.integers(min_value=-1, max_value=2**65) | st.booleans() | st.floats(allow_nan=False),
        "time_ns": st.integers() | st.just(1.0) | st.text(max_size=2),
        "process": st.integers(-3, 30) | st.just("nemesis") | st.booleans() | st.none(),
        "type": st.sampled_from(["invoke", "ok", "fail", "info", "", "OK", 3]),
        "f": st.sampled_from(["read", "write", "cas", ""]) | st.integers(0, 2),
    },
    optional={
        "key": _values,
        "value": _values,
        "error": st.none() | st.text(max_size=4) | st.integers(0, 3),
        "node": st.none() | st.text(max_size=4) | st.booleans(),
        "extra": st.integers(0, 3),
    },
)
_line = st.one_of(
    _fields.map(lambda d: json.dumps(d)),
    _fields.map(lambda d: json.dumps(d, indent=None, separators=(",", ":"))),
    st.sampled_from(["", "   ", "[1, 2]", "null", '{"index": NaN}', "{", '{"index":0}{"index":1}']),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(_line, max_size=6), torn=st.booleans())
def test_jsonl_fast_path_matches_the_standard_library(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lines: list[str], torn: bool
) -> None:
    path = tmp_path / "h.jsonl"
    text = "".join(line + "\n" for line in lines)
    if torn and text:
        text = text[:-1]
    path.write_text(text, encoding="utf-8")
    assert _outcome(path) == _general(path, monkeypatch)


def test_jsonl_fast_path_matches_on_the_corpus_and_generated_histories(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import random

    from checkers.generate import linearizable_history

    ops = linearizable_history(
        random.Random(3), op_count=2_000, keys=8, processes=10, info_fraction=0.05, cas_fraction=0.5
    )
    path = tmp_path / "h.jsonl"
    path.write_text("".join(json.dumps(op.to_json()) + "\n" for op in ops), encoding="utf-8")
    fast = _outcome(path)
    assert fast == _general(path, monkeypatch)
    assert isinstance(fast, tuple) and fast[0] == ops
    corpus = Path(__file__).resolve().parents[1] / "data" / "corpus"
    for jsonl in sorted(corpus.rglob("*.jsonl")):
        assert _outcome(jsonl) == _general(jsonl, monkeypatch), jsonl
