"""The fast readers read exactly what the general ones read.

history.jsonl (from FAST_DECODER_BYTES_MIN up) is decoded by msgspec first, and by the standard library (field by
field) for any line msgspec refuses; Jepsen EDN of the regular shape is read by
checkers.fastedn, anything else by the general EDN reader. These tests run both
ways on the same files and compare the ops, line numbers and errors.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checkers import fastedn, history, readers
from checkers.history import HistoryFormatError, read_jsonl_lines
from checkers.readers import read_jepsen_edn_lines


def _general(path: Path, monkeypatch: pytest.MonkeyPatch) -> object:
    with monkeypatch.context() as patch:
        patch.setattr(history, "FAST_DECODER_BYTES_MIN", 1 << 62)
        return _outcome(path)


@pytest.fixture(autouse=True)
def _fast_decoder_for_every_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """msgspec decodes files of any size here (it is skipped below FAST_DECODER_BYTES_MIN)."""
    monkeypatch.setattr(history, "FAST_DECODER_BYTES_MIN", 0)


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


@pytest.mark.parametrize("chunk_bytes", [1, 97, 4096])
def test_jsonl_bulk_decoding_in_chunks_matches_line_by_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk_bytes: int
) -> None:
    """Chunk edges anywhere inside a line; a bad line, a blank line or a torn end in a late chunk."""
    import random

    from checkers.generate import linearizable_history

    monkeypatch.setattr(history, "BULK_CHUNK_BYTES", chunk_bytes)
    ops = linearizable_history(
        random.Random(4), op_count=300, keys=3, processes=5, info_fraction=0.1, cas_fraction=0.5
    )
    good = [json.dumps(op.to_json(), separators=(",", ":")) for op in ops]
    cases = {
        "good": "\n".join(good) + "\n",
        "blank": "\n".join(good[:400]) + "\n\n" + "\n".join(good[400:]) + "\n",
        "bad": "\n".join(good[:500]) + '\n{"index": -1}\n' + "\n".join(good[500:]) + "\n",
        "torn": "\n".join(good) + "\n" + good[0][:20],
        "deep": "\n".join(good[:550])
        + "\n"
        + json.dumps({**ops[0].to_json(), "value": [[[[1]]]] * 1})
        + "\n",
    }
    for name, text in cases.items():
        path = tmp_path / f"{name}.jsonl"
        path.write_text(text, encoding="utf-8")
        assert _outcome(path) == _general(path, monkeypatch), name
    assert history._read_jsonl_bulk(tmp_path / "good.jsonl") is not None  # the bulk path took it
    assert history._read_jsonl_bulk(tmp_path / "good.jsonl")[0] == ops  # type: ignore[index]
    for refused in ("blank", "bad", "torn"):
        assert history._read_jsonl_bulk(tmp_path / f"{refused}.jsonl") is None


def test_jsonl_bulk_decoding_freezes_arrays_at_every_depth(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bulk decoder gives arrays as tuples; one holding an array is frozen all the way down,
    and an array inside a map stays a list, as field by field."""
    values = [
        [1, 2],
        [1, [2, [3, []]]],
        [[1], {"a": [1, [2]]}],
        {"k": [1]},
        [{"k": [[1]]}, 2],
        [],
        [[]],
        "s",
        2**70,
        "[",  # a bracket in a string: one more "[" byte than arrays
        ["]", [1]],
    ]
    text = "".join(
        json.dumps(
            {"index": i, "time_ns": i, "process": 0, "type": "ok", "f": "write", "key": v, "value": v},
            separators=(",", ":"),
        )
        + "\n"
        for i, v in enumerate(values)
    )
    path = tmp_path / "nested.jsonl"
    path.write_text(text, encoding="utf-8")
    bulk = history._read_jsonl_bulk(path)
    assert bulk is not None
    assert bulk == _general(path, monkeypatch)
    assert bulk[0][1].value == (1, (2, (3, ()))) and bulk[0][2].key == ((1,), {"a": [1, [2]]})
    assert bulk[0][4].value == ({"k": [[1]]}, 2) and bulk[0][6].value == ((),)
    assert bulk[0][10].value == ("]", (1,))


def test_jsonl_bulk_decoding_of_flat_arrays_skips_the_freeze_and_matches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pairs, a bracket inside a string, an empty array: as many "[" bytes as top-level arrays
    only when none is nested, and then the values are what field by field reads."""
    lines = [
        {"index": 0, "time_ns": 0, "process": 0, "type": "invoke", "f": "cas", "key": 1, "value": [1, 2]},
        {"index": 1, "time_ns": 1, "process": 0, "type": "ok", "f": "cas", "key": [1, 2], "value": []},
        {"index": 2, "time_ns": 2, "process": 1, "type": "ok", "f": "read", "key": 1, "value": "[x"},
        {"index": 3, "time_ns": 3, "process": 1, "type": "ok", "f": "read", "key": 1, "value": ["[", 2]},
    ]
    path = tmp_path / "flat.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines[:2]), encoding="utf-8")
    assert history._flat_arrays(path.read_bytes(), [1, (1, 2)], [(1, 2), ()])
    assert history._read_jsonl_bulk(path) == _general(path, monkeypatch)
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    assert not history._flat_arrays(path.read_bytes(), [1, (1, 2), 1, 1], [(1, 2), (), "[x", ("[", 2)])
    assert history._read_jsonl_bulk(path) == _general(path, monkeypatch)


# --- Jepsen EDN: the regular-shape reader against the general reader ---------------------------


def _edn_outcome(path: Path) -> object:
    try:
        return read_jepsen_edn_lines(path)
    except HistoryFormatError as exc:
        return ("error", str(exc))


def _edn_general(path: Path, monkeypatch: pytest.MonkeyPatch) -> object:
    with monkeypatch.context() as patch:
        patch.setattr(readers, "read_regular", lambda text: None)
        return _edn_outcome(path)


_keywords = st.sampled_from(
    [":invoke", ":ok", ":fail", ":info", ":read", ":write", ":cas", ":nemesis", ":a/b", ":x.y-z?", ":nil"]
)
_atoms = st.one_of(
    _keywords,
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(["nil", "true", "false", "-0", "007", "1.5", "sym", '"s"', "\\c", "1N", ":"]),
)


def _vector(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.tuples(st.lists(inner, max_size=3), st.sampled_from([" ", ", ", ",", "  "])).map(
        lambda parts: "[" + parts[1].join(parts[0]) + "]"
    )


_edn_values = st.recursive(_atoms, _vector, max_leaves=5)
_edn_keys = st.sampled_from(
    [":index", ":time", ":type", ":process", ":f", ":value", ":error", ":node", ":sub"]
)
_regular_map = st.fixed_dictionaries(
    {
        ":type": st.sampled_from([":invoke", ":ok", ":fail", ":info"]),
        ":f": st.sampled_from([":read", ":write", ":cas"]),
        ":process": st.integers(0, 4).map(str),
    },
    optional={
        ":value": _edn_values,
        ":time": st.integers(0, 10**12).map(str),
        ":index": st.integers(0, 99).map(str),
    },
)
_any_map = st.dictionaries(_edn_keys, _edn_values, max_size=7)


def _map_text(fields: dict[str, str], separator: str) -> str:
    return "{" + separator.join(f"{k} {v}" for k, v in fields.items()) + "}"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    maps=st.lists(st.one_of(_regular_map, _regular_map, _any_map), max_size=6),
    separator=st.sampled_from([", ", " ", ",", " ,  "]),
    wrapped=st.sampled_from(["", "[]", "[\n]", " [ \n ] "]),
    blank=st.booleans(),
    end=st.sampled_from(["\n", "", " \n\n"]),
)
def test_edn_regular_reader_matches_the_general_reader(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    maps: list[dict[str, str]],
    separator: str,
    wrapped: str,
    blank: bool,
    end: str,
) -> None:
    """Also Knossos's vector with its brackets on the maps' lines or alone on their own."""
    lines = [_map_text(m, separator) for m in maps]
    if blank and lines:
        lines.insert(len(lines) // 2, "")
    text = "\n ".join(lines)
    if wrapped:
        opening, _, closing = wrapped.partition("\n") if "\n" in wrapped else (wrapped[0], "", wrapped[1])
        newline = "\n" if "\n" in wrapped else ""
        text = opening + newline + text + newline + closing
    path = tmp_path / "h.edn"
    path.write_text(text + end, encoding="utf-8")
    assert _edn_outcome(path) == _edn_general(path, monkeypatch)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    maps=st.lists(st.one_of(_regular_map, _regular_map, _any_map), min_size=1, max_size=8),
    separator=st.sampled_from([", ", " ", ",", " ,  "]),
    wrapped=st.booleans(),
    chunk_lines=st.sampled_from([1, 2, 3, 50_000]),
    chunk_chars=st.sampled_from([1, 50, 97, 4 << 20]),
    bulk_values=st.booleans(),
    split=st.booleans(),
)
def test_edn_templates_match_the_line_by_line_path_and_the_general_reader(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    maps: list[dict[str, str]],
    separator: str,
    wrapped: bool,
    chunk_lines: int,
    chunk_chars: int,
    bulk_values: bool,
    split: bool,
) -> None:
    """Templates per key order, in chunks of any size (lines, or slices of the text when every
    line is a map), values decoded by json or msgspec, part of the chunks read by a forked
    child or not: the same ops."""
    text = "\n".join(_map_text(m, separator) for m in maps)
    if wrapped:
        text = "[" + text + "]"
    path = tmp_path / "h.edn"
    path.write_text(text + "\n", encoding="utf-8")
    with monkeypatch.context() as patch:
        patch.setattr(fastedn, "CHUNK_LINES", chunk_lines)
        patch.setattr(fastedn, "CHUNK_CHARS", chunk_chars)
        patch.setattr(fastedn, "BULK_VALUES_LINES_MIN", 0 if bulk_values else 1 << 62)
        patch.setattr(fastedn, "SPLIT_READ_CHARS_MIN", 0 if split else 1 << 62)
        by_template = fastedn._read_by_template(text + "\n")
        outcome = _edn_outcome(path)
    if by_template is not None:
        line_by_line = fastedn._read_line_by_line(text + "\n")
        assert line_by_line is not None  # a template only takes what the line pattern takes
        assert by_template[1] == line_by_line[1]
        assert outcome == by_template
    assert outcome == _edn_general(path, monkeypatch)


@pytest.mark.parametrize("separator", ["\u2003", "\x1f", "\xa0", "\x85"])
def test_edn_whitespace_only_the_line_pattern_takes_is_read_line_by_line_as_the_general_reader_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, separator: str
) -> None:
    """A template's separator is narrower than EDN's whitespace: such a line matches no template,
    and the file is read line by line, into what the general reader gives."""
    text = (
        f"{{:process 0, :type :invoke,{separator}:f :write, :value [1 2]}}\n"
        "{:process 0, :type :ok, :f :write, :value [1 2]}\n"
    )
    path = tmp_path / "h.edn"
    path.write_text(text, encoding="utf-8")
    assert fastedn._read_by_template(text) is None
    assert fastedn._read_line_by_line(text) is not None
    assert _edn_outcome(path) == _edn_general(path, monkeypatch)


def test_edn_templates_take_several_key_orders_keywords_and_missing_times(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = [
        "{:index 0, :time 5, :type :invoke, :process 0, :f :write, :value [1 2]}",
        "{:type :ok, :f :write, :value [1 2], :process 0}",  # another key order, no :time
        "{:index 2, :time 9, :type :invoke, :process :nemesis, :f :start, :value :majority}",
        "{:index 3, :time 10, :type :info, :process :nemesis, :f :start, :value [:n1 :n2], :error :x}",
        "{:index 4, :time [1], :type :invoke, :process 1, :f :cas, :value [1 [2 3]], :node :n1}",
        "{:index 5, :time -0, :type :info, :process 1, :f :cas, :value [1 [2 3]], :error nil}",
    ]
    text = "\n".join(lines) + "\n"
    path = tmp_path / "h.edn"
    path.write_text(text, encoding="utf-8")
    for chunk_lines in (1, 2, 50_000):
        for bulk in (0, 1 << 62):
            with monkeypatch.context() as patch:
                patch.setattr(fastedn, "CHUNK_LINES", chunk_lines)
                patch.setattr(fastedn, "BULK_VALUES_LINES_MIN", bulk)
                taken = fastedn._read_by_template(text)
                assert taken is not None
                assert _edn_outcome(path) == taken == _edn_general(path, monkeypatch)
    ops = taken[0]
    assert [op.key for op in ops] == [1, 1, None, None, 1, 1]  # jepsen.independent: split by key
    assert [op.time_ns for op in ops] == [5, 1, 9, 10, 4, 0]
    assert ops[3].value == ("n1", "n2") and ops[3].error == "x" and ops[4].node == "n1"


@pytest.mark.parametrize("odd_time", ["", "1180591620717411303424", "-7", "true", "nil", ":t", "[2]"])
def test_edn_time_columns_decoded_in_bulk_match_the_general_reader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, odd_time: str
) -> None:
    """Every line starting a map (one slice per chunk), times decoded by msgspec: an odd one
    (a big integer, a bool, nil, a keyword, a vector) is read as the general reader reads it."""
    lines = [
        f"{{:index {i}, :time {10 * i}, :type :invoke, :process {i}, :f :read, :value nil}}" for i in range(6)
    ]
    if odd_time:
        lines[3] = lines[3].replace(":time 30", f":time {odd_time}")
    text = "\n".join(lines) + "\n"
    path = tmp_path / "h.edn"
    path.write_text(text, encoding="utf-8")
    for chunk_lines in (2, 50_000):
        with monkeypatch.context() as patch:
            patch.setattr(fastedn, "CHUNK_LINES", chunk_lines)
            patch.setattr(fastedn, "CHUNK_CHARS", 40 * chunk_lines)
            patch.setattr(fastedn, "BULK_VALUES_LINES_MIN", 0)
            taken = fastedn._read_by_template(text)
            assert taken is not None
            assert _edn_outcome(path) == taken == _edn_general(path, monkeypatch)
    assert taken[0][3].time_ns == (int(odd_time) if odd_time[1:].isdigit() else 3 if odd_time else 30)


def _jepsen_text(path: Path, op_count: int) -> str:
    import random

    from checkers.generate import linearizable_history
    from checkers.readers import write_edn

    ops = linearizable_history(
        random.Random(7), op_count=op_count, keys=4, processes=6, info_fraction=0.05, cas_fraction=0.5
    )
    write_edn(ops, path)
    return path.read_text(encoding="utf-8")


@pytest.mark.parametrize("where", ["nowhere", "first part", "second part", "child dies"])
def test_edn_read_split_with_a_forked_child_matches_one_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """A big text's chunks are read partly by a forked child: the same ops as one process reads,
    an irregular line in either part sends the file to the general reader, and a child that
    dies leaves its part to this process."""
    path = tmp_path / "h.edn"
    text = _jepsen_text(path, 1_000)
    lines = text.splitlines(keepends=True)
    if where in ("first part", "second part"):
        at = len(lines) // 10 if where == "first part" else len(lines) * 9 // 10
        lines[at] = lines[at].replace(":value", ':value "a string"', 1)
        text = "".join(lines)
        path.write_text(text, encoding="utf-8")
    alone = _edn_outcome(path)
    forked: list[int] = []
    real_read_in_child = fastedn._read_in_child

    def read_in_child(*args: object) -> object:
        child = real_read_in_child(*args)  # type: ignore[arg-type]
        assert child is not None
        forked.append(child.pid)
        if where == "child dies":
            child.abandon()
            return _DeadChild()
        return child

    with monkeypatch.context() as patch:
        patch.setattr(fastedn, "CHUNK_CHARS", 2048)
        patch.setattr(fastedn, "SPLIT_READ_CHARS_MIN", 0)
        patch.setattr(fastedn, "_read_in_child", read_in_child)
        split = _edn_outcome(path)
        regular = fastedn.read_regular(text)
    assert forked  # a child read part of it
    assert split == alone == _edn_general(path, monkeypatch)
    assert (regular is None) is (where in ("first part", "second part"))


class _DeadChild:
    """A child that died before it sent its columns."""

    def texts(self) -> object:
        return fastedn._CHILD_FAILED

    def abandon(self) -> None:
        pass


def test_edn_regular_reader_takes_jepsen_and_knossos_shapes_and_matches_on_the_corpus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import random

    from checkers.generate import linearizable_history
    from checkers.readers import write_edn

    ops = linearizable_history(
        random.Random(5), op_count=2_000, keys=8, processes=10, info_fraction=0.05, cas_fraction=0.5
    )
    jepsen = tmp_path / "history.edn"
    write_edn(ops, jepsen)
    assert fastedn.read_regular(jepsen.read_text()) is not None  # the fast reader takes it
    assert fastedn._read_by_template(jepsen.read_text()) is not None  # with one template
    assert _edn_outcome(jepsen) == _edn_general(jepsen, monkeypatch)
    knossos = tmp_path / "knossos.edn"
    knossos.write_text("[" + "\n ".join(jepsen.read_text().splitlines()) + "]\n")
    assert fastedn.read_regular(knossos.read_text()) is not None
    assert _edn_outcome(knossos) == _edn_general(knossos, monkeypatch)
    corpus = Path(__file__).resolve().parents[1] / "data" / "corpus"
    taken = 0
    for edn in sorted(corpus.rglob("*.edn")):
        taken += fastedn.read_regular(edn.read_text(encoding="utf-8", errors="replace")) is not None
        assert _edn_outcome(edn) == _edn_general(edn, monkeypatch), edn
    assert taken > 0


@pytest.mark.parametrize(
    "text",
    [
        "[{:type :invoke, :process 1, :f :read, :value nil} ; a comment {:x 1}\n; whole line\n"
        "{:type :ok, :process 1, :f :read, :value 3}]\n",
        "{:type :invoke, :process 1, :f :read, :value nil};{:type :ok\n",
        '{:type :invoke, :process 1, :f :read, :value nil} ; "a string"\n',  # not cut here: general reader
        "; only a comment\n",
    ],
)
def test_edn_comments_cut_by_the_regular_reader_read_as_the_general_reader_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    path = tmp_path / "h.edn"
    path.write_text(text, encoding="utf-8")
    assert _edn_outcome(path) == _edn_general(path, monkeypatch)
