"""`ratchet check` draws a counterexample's table without rich when it can: the same text as rich's."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console
from rich.table import Table

from harness.commands.check import _plain_table

COLUMNS = ("op", "process", "f", "in", "out", "outcome", "history index")
_CELL = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=12)


def _rich(title: str, rows: list[tuple[str, ...]], width: int) -> str:
    table = Table(title=title)
    for column in COLUMNS:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    out = io.StringIO()
    Console(file=out, markup=False, soft_wrap=True, width=width).print(table)
    return out.getvalue()


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(st.tuples(*[_CELL] * len(COLUMNS)), min_size=1, max_size=5),
    minimal=st.booleans(),
    width=st.integers(40, 140),
)
def test_the_plain_table_is_rich_s_text_or_left_to_rich(
    rows: list[tuple[str, ...]], minimal: bool, width: int
) -> None:
    title = "minimal counterexample" + ("" if minimal else " (shrinking stopped early)")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COLUMNS", str(width))
        patch.delenv("FORCE_COLOR", raising=False)
        patch.delenv("TTY_COMPATIBLE", raising=False)
        plain = _plain_table(title, COLUMNS, rows)
    if plain is not None:
        assert plain == _rich(title, rows, width)
    else:
        assert (
            any(":" in cell for row in rows for cell in row)
            or width < 60
            or any(len(cell) > 3 for row in rows for cell in row)
        )
