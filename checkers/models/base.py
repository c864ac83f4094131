"""What a model is: a small pure value the linearizability search steps through.

A model is a frozen dataclass with ``init()`` (the state before any op) and
``step(state, f, value_in, value_out, known)`` returning the next state, or
:data:`ILLEGAL` when the op cannot take effect in that state. ``known`` is
False for an open-ended (``info``) op, whose output was never seen: the model
then checks only the op's precondition (a cas still needs its expected value)
and applies its effect. States must be hashable: the search memoizes on them.

``produces``/``observes`` let the checker drop open-ended ops that can never
matter (a write of a value nobody ever reads changes nothing anyone saw) and
keep counterexamples honest (a read is never left without the op that
produced its value). ``describe_*`` turn states and ops into words for the
explanation.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable

from checkers.history import HistoryFormatError

TYPE_CHECKING = False  # typing is for type checkers only: importing it slows every `ratchet check`
if TYPE_CHECKING:
    from typing import Any, Protocol
else:
    Protocol = object  # Model is never checked with isinstance: a plain base class does at run time


class _Illegal:
    """The op cannot take effect in this state."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "ILLEGAL"


ILLEGAL: Any = _Illegal()


class UnsupportedOp(HistoryFormatError):
    """The history holds an op the model does not know (e.g. cas for a plain register),
    or one whose value has the wrong shape for it (a cas whose value is not ``[old new]``).

    It is a :class:`~checkers.history.HistoryFormatError`: the history is bad input
    for this model, and every reader of a history already reports those.
    """


class Model(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def fs(self) -> frozenset[str]: ...

    def init(self) -> Hashable: ...

    def step(self, state: Any, f: str, value_in: Any, value_out: Any, known: bool) -> Any: ...

    def produces(self, f: str, value_in: Any) -> Iterable[Any] | None:
        """Values the op makes observable; None means "cannot tell, always keep it"."""
        ...

    def observes(self, f: str, value_in: Any, value_out: Any) -> Iterable[Any]:
        """Values the op needs to have been produced (or to be the initial state)."""
        ...

    def needs_before(self, info: Any, next_op: Any) -> bool:
        """Could ``next_op``, placed right after the open-ended op ``info``, need its effect?

        Both are :class:`~checkers.history.Operation`. When False, the search never
        places ``info`` directly before ``next_op``: any linearization doing so
        stays legal with ``info`` moved later or dropped (see each model).
        """
        ...

    def describe_state(self, state: Any) -> str: ...

    # Optional: ``op_problem(f, value_in, value_out, known) -> str | None`` says why an op's
    # values do not fit the model (checked once, before any search); a model whose ops
    # take any value leaves it out. With it, an optional ``op_problem_fs`` names the only
    # functions it can refuse, so the check skips the rest (half a 1M-op history's ops).

    def describe_op(self, f: str, value_in: Any, value_out: Any, known: bool, who: str) -> str: ...


def show(value: Any) -> str:
    """A value as a person reads it: nil for None, [a b] for tuples."""
    if value is None:
        return "nil"
    if isinstance(value, tuple | list):
        return "[" + " ".join(show(v) for v in value) + "]"
    if isinstance(value, frozenset):
        return "#{" + " ".join(sorted(show(v) for v in value)) + "}"
    return repr(value) if isinstance(value, str) else str(value)
