"""A grow-only set: ``add x`` and ``read`` (returns every element added so far)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from checkers.models.base import ILLEGAL, UnsupportedOp, show
from checkers.record import record


@record
class SetModel:
    """State is a frozenset; a read's value (a list) must equal it as a set."""

    name: str = "set"
    fs: frozenset[str] = frozenset({"add", "read"})
    op_problem_fs = frozenset({"read"})  # (not a field) the only ops op_problem can refuse

    def init(self) -> Any:
        return frozenset()

    def op_problem(self, f: str, value_in: Any, value_out: Any, known: bool) -> str | None:
        """A read returns a collection of elements (or nil before any add)."""
        if f == "read" and known and value_out is not None and not isinstance(value_out, tuple | frozenset):
            return f"a set read must return a list or set of elements, got {show(value_out)}"
        return None

    def step(self, state: Any, f: str, value_in: Any, value_out: Any, known: bool) -> Any:
        if f == "add":
            return state | {value_in}
        if f == "read":
            if not known:
                return state
            seen = frozenset(value_out or ())
            return state if seen == state else ILLEGAL
        raise UnsupportedOp(f"model {self.name!r} has no op {f!r} (it knows {sorted(self.fs)})")

    def produces(self, f: str, value_in: Any) -> Iterable[Any] | None:
        return (value_in,) if f == "add" else ()

    def observes(self, f: str, value_in: Any, value_out: Any) -> Iterable[Any]:
        return tuple(value_out or ()) if f == "read" else ()

    def needs_before(self, info: Any, next_op: Any) -> bool:
        """Adds commute, so an open-ended add can always move later, up to a read that shows it
        (or into a run of open-ended adds before that read)."""
        if next_op.outcome != "ok":
            return bool(next_op.f == "add")
        return next_op.f == "read" and info.value_in in (next_op.value_out or ())

    def describe_state(self, state: Any) -> str:
        return f"the set held {show(frozenset(state))}"

    def describe_op(self, f: str, value_in: Any, value_out: Any, known: bool, who: str) -> str:
        if f == "read":
            return (
                f"read by {who} returned {show(frozenset(value_out or ()))}"
                if known
                else f"read by {who} (result unknown)"
            )
        return f"add {show(value_in)} by {who}"
