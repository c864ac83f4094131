"""The EDN reader is a real reader: the grammar, not patterns over lines."""

from __future__ import annotations

from fractions import Fraction

import pytest

from checkers.edn import EdnError, EdnList, Keyword, Symbol, dumps, load_elements, loads, loads_all


def test_scalars() -> None:
    assert loads("nil") is None
    assert loads("true") is True
    assert loads("false") is False
    assert loads("-42") == -42
    assert loads("42N") == 42
    assert loads("1.5M") == 1.5
    assert loads("-2.5e3") == -2500.0
    assert loads("3/4") == Fraction(3, 4)
    assert loads(":jepsen.history/op") == Keyword("jepsen.history/op")
    assert isinstance(loads("foo/bar"), Symbol)
    assert loads(r"\newline") == "\n"
    assert loads(r"\a") == "a"
    assert loads(r"\u00e9") == "é"


def test_strings_keep_braces_quotes_and_escapes() -> None:
    assert (
        loads(r'"Cut off {\"n1\" #[:n2]} ; not a comment\n\u00e9"')
        == 'Cut off {"n1" #[:n2]} ; not a comment\né'
    )


def test_collections_comments_commas_discard_and_tags() -> None:
    text = """
    ; leading comment
    {:a [1, 2 ,3], :b (1 #_ 2 3), :c #{:x :y}, ; trailing comment
     :d #inst "2024-01-01T00:00:00Z", :e #_{:dropped 1} :kept,
     :f {[1 2] "vector key"}}
    """
    value = loads(text)
    assert value[Keyword("a")] == (1, 2, 3)
    assert isinstance(value[Keyword("b")], EdnList)
    assert value[Keyword("b")] == (1, 3)
    assert value[Keyword("c")] == frozenset({Keyword("x"), Keyword("y")})
    assert value[Keyword("d")] == "2024-01-01T00:00:00Z"
    assert value[Keyword("e")] == Keyword("kept")
    assert value[Keyword("f")] == {(1, 2): "vector key"}


def test_jepsen_records_and_line_numbers() -> None:
    text = (
        "#jepsen.history.Op{:index 0, :time 1, :type :invoke, :process 0, :f :read, :value nil}\n"
        "\n"
        "#jepsen.history.Op{:index 1, :time 2, :type :ok, :process 0, :f :read, :value 3}\n"
    )
    elements = load_elements(text)
    assert [e.line for e in elements] == [1, 3]
    assert elements[1].value[Keyword("value")] == 3


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("[1 2\n 3", 1, "never closed"),
        ("[1 2)", 1, "expected ']'"),
        ("{:a 1\n :b}", 1, "even number"),
        ('[1\n "oops]', 2, "string is never closed"),
        ("1 2 )", 1, "nothing open"),
        ("[1 2] [3]", 1, "after the history"),
    ],
)
def test_errors_name_the_line(text: str, line: int, words: str) -> None:
    with pytest.raises(EdnError, match=words) as info:
        load_elements(text) if "after" in words else loads_all(text)
    assert info.value.line == line


def test_writer_round_trips() -> None:
    value = {
        Keyword("a"): (1, None, 'q"uote'),
        Keyword("b"): EdnList((Keyword("x"), 2.5)),
        Keyword("c"): frozenset({1}),
    }
    assert loads(dumps(value)) == value
