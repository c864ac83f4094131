"""The models a history can be checked against, by name. A new model is one file here."""

from __future__ import annotations

from checkers.models.base import ILLEGAL, Model, UnsupportedOp

TYPE_CHECKING = False  # typing is for type checkers only: importing it slows every `ratchet check`
if TYPE_CHECKING:
    from typing import Any

MODEL_NAMES = ("register", "cas-register", "set", "counter")

__all__ = ["ILLEGAL", "MODEL_NAMES", "Model", "UnsupportedOp", "get_model"]


def get_model(name: str, *, initial: Any = None, nil_reads_unknown: bool = False) -> Model:
    """The model called ``name``; ValueError listing the names when there is none.

    ``initial`` and ``nil_reads_unknown`` shape the register models (see
    :class:`~checkers.models.register.Register`); the set and counter models ignore them.
    Each model's module is imported when it is asked for: a check uses one.
    """
    if name == "register":
        from checkers.models.register import Register

        return Register(initial=initial, nil_reads_unknown=nil_reads_unknown)
    if name == "cas-register":
        from checkers.models.cas_register import CasRegister

        return CasRegister(initial=initial, nil_reads_unknown=nil_reads_unknown)
    if name == "set":
        from checkers.models.set import SetModel

        return SetModel()
    if name == "counter":
        from checkers.models.counter import Counter

        return Counter()
    raise ValueError(f"unknown model {name!r}; accepted: {', '.join(MODEL_NAMES)}")
