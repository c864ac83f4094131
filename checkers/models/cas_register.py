"""A compare-and-set register: read, write, and cas [expected new]."""

from __future__ import annotations

from collections.abc import Iterable

from checkers.models.base import ILLEGAL, show
from checkers.models.register import Register
from checkers.record import record

TYPE_CHECKING = False  # typing is for type checkers only: importing it slows every `ratchet check`
if TYPE_CHECKING:
    from typing import Any


@record
class CasRegister(Register):
    """A :class:`~checkers.models.register.Register` plus ``cas [old new]``.

    A cas that took effect found ``old`` and left ``new``. A cas whose compare
    failed is recorded as ``fail`` and removed before the search, so here a
    cas is only legal when the state equals ``old``. Reads, writes and the
    pruning rule for open-ended ops are the register's.
    """

    name: str = "cas-register"
    fs: frozenset[str] = frozenset({"read", "write", "cas"})
    op_problem_fs = frozenset({"cas"})  # (not a field) the only ops op_problem can refuse

    def op_problem(self, f: str, value_in: Any, value_out: Any, known: bool) -> str | None:
        """A cas carries ``[old new]``; reads and writes take any value."""
        if f == "cas" and not (isinstance(value_in, tuple) and len(value_in) == 2):
            return f"a cas value must be [old new], got {show(value_in)}"
        return None

    def step(self, state: Any, f: str, value_in: Any, value_out: Any, known: bool) -> Any:
        if f == "cas":
            old, new = value_in
            return new if state == old else ILLEGAL
        return Register.step(self, state, f, value_in, value_out, known)

    def produces(self, f: str, value_in: Any) -> Iterable[Any] | None:
        return (value_in[1],) if f == "cas" else Register.produces(self, f, value_in)

    def observes(self, f: str, value_in: Any, value_out: Any) -> Iterable[Any]:
        return (value_in[0],) if f == "cas" else Register.observes(self, f, value_in, value_out)

    def describe_op(self, f: str, value_in: Any, value_out: Any, known: bool, who: str) -> str:
        if f == "cas":
            return f"cas {show(value_in[0])}->{show(value_in[1])} by {who}"
        return Register.describe_op(self, f, value_in, value_out, known, who)
