"""A counter: ``add n`` (or ``increment``, n=1 when no value) and ``read``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from checkers.models.base import ILLEGAL, UnsupportedOp, show
from checkers.record import record


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@record
class Counter:
    """State is an integer starting at 0; reads must return it exactly."""

    name: str = "counter"
    fs: frozenset[str] = frozenset({"add", "increment", "read"})

    def init(self) -> Any:
        return 0

    def op_problem(self, f: str, value_in: Any, value_out: Any, known: bool) -> str | None:
        """Adds carry a number (or nothing, for 1); reads return one."""
        if f in ("add", "increment") and value_in is not None and not _is_number(value_in):
            return f"a counter {f} must carry a number, got {show(value_in)}"
        if f == "read" and known and value_out is not None and not _is_number(value_out):
            return f"a counter read must return a number, got {show(value_out)}"
        return None

    def step(self, state: Any, f: str, value_in: Any, value_out: Any, known: bool) -> Any:
        if f in ("add", "increment"):
            return state + (1 if value_in is None else value_in)
        if f == "read":
            if not known:
                return state
            return state if value_out == state else ILLEGAL
        raise UnsupportedOp(f"model {self.name!r} has no op {f!r} (it knows {sorted(self.fs)})")

    def produces(self, f: str, value_in: Any) -> Iterable[Any] | None:
        return None  # any add can matter to a later read's total

    def observes(self, f: str, value_in: Any, value_out: Any) -> Iterable[Any]:
        return ()

    def needs_before(self, info: Any, next_op: Any) -> bool:
        """Adds commute, so an open-ended add can always move later, up to the read that counts it
        (or into a run of open-ended adds before that read)."""
        if next_op.outcome != "ok":
            return bool(next_op.f in ("add", "increment"))
        return bool(next_op.f == "read")

    def describe_state(self, state: Any) -> str:
        return f"the counter held {show(state)}"

    def describe_op(self, f: str, value_in: Any, value_out: Any, known: bool, who: str) -> str:
        if f == "read":
            return f"read by {who} returned {show(value_out)}" if known else f"read by {who} (result unknown)"
        return f"add {show(1 if value_in is None else value_in)} by {who}"
