"""A read/write register: the state is the last value written (nil before any write)."""

from __future__ import annotations

from collections.abc import Iterable

from checkers.models.base import ILLEGAL, UnsupportedOp, show
from checkers.record import record

TYPE_CHECKING = False  # typing is for type checkers only: importing it slows every `ratchet check`
if TYPE_CHECKING:
    from typing import Any


@record
class Register:
    """``read`` must return the current value; ``write v`` sets it.

    A read returning nil means the key was absent, which only matches a nil
    state (Ratchet's and etcd's semantics). With ``nil_reads_unknown`` a nil
    read matches any state instead: Knossos's register models read it so, and
    Knossos checks its test data from ``initial=0``.
    """

    name: str = "register"
    initial: Any = None
    nil_reads_unknown: bool = False
    fs: frozenset[str] = frozenset({"read", "write"})

    def init(self) -> Any:
        return self.initial

    def step(self, state: Any, f: str, value_in: Any, value_out: Any, known: bool) -> Any:
        if f == "write":
            return value_in
        if f == "read":
            if not known or value_out == state or (value_out is None and self.nil_reads_unknown):
                return state
            return ILLEGAL
        raise UnsupportedOp(f"model {self.name!r} has no op {f!r} (it knows {sorted(self.fs)})")

    def produces(self, f: str, value_in: Any) -> Iterable[Any] | None:
        return (value_in,) if f == "write" else ()

    def observes(self, f: str, value_in: Any, value_out: Any) -> Iterable[Any]:
        return (value_out,) if f == "read" else ()

    def needs_before(self, info: Any, next_op: Any) -> bool:
        """Only an op observing the value an open-ended op wrote can need it next.

        A write right after it erases its effect (drop the open-ended op and
        everything after stays legal); a read or cas right after it must observe
        its value to be legal at all.
        """
        produced = self.produces(info.f, info.value_in) or ()
        known = next_op.outcome == "ok"
        observed = self.observes(next_op.f, next_op.value_in, next_op.value_out if known else None)
        if not known and next_op.f == "read":
            return False
        return any(value in produced for value in observed)

    def describe_state(self, state: Any) -> str:
        return f"the register held {show(state)}"

    def describe_op(self, f: str, value_in: Any, value_out: Any, known: bool, who: str) -> str:
        if f == "read":
            return f"read by {who} returned {show(value_out)}" if known else f"read by {who} (result unknown)"
        return f"write {show(value_in)} by {who}"
