"""checkers.record: the frozen slotted classes behave as ``@dataclass(frozen=True, slots=True)`` ones."""

from __future__ import annotations

import copy
import pickle

import pytest

from checkers.history import Op
from checkers.models.cas_register import CasRegister
from checkers.models.register import Register
from checkers.record import record, replace


@record
class _Point:
    x: int
    y: int = 0


def test_fields_defaults_equality_hash_and_repr() -> None:
    assert _Point(1) == _Point(1, 0) == _Point(x=1, y=0)
    assert _Point(1) != _Point(1, 2)
    assert hash(_Point(1, 2)) == hash(_Point(1, 2))
    assert repr(_Point(1, 2)) == "_Point(x=1, y=2)"
    assert _Point.__slots__ == ("x", "y") and not hasattr(_Point(1), "__dict__")
    assert _Point.__match_args__ == ("x", "y")


def test_wrong_arguments_are_type_errors() -> None:
    with pytest.raises(TypeError, match="missing required argument: 'x'"):
        _Point()
    with pytest.raises(TypeError, match="multiple values"):
        _Point(1, x=2)
    with pytest.raises(TypeError, match="unexpected keyword"):
        _Point(1, z=2)
    with pytest.raises(TypeError, match="positional"):
        _Point(1, 2, 3)


def test_frozen_and_replace() -> None:
    point = _Point(1, 2)
    with pytest.raises(AttributeError, match="cannot assign to field 'x'"):
        point.x = 5  # type: ignore[misc]
    assert replace(point, y=7) == _Point(1, 7) and point == _Point(1, 2)
    with pytest.raises(TypeError, match="no field"):
        replace(point, z=1)


def test_inherited_fields_keep_order_and_take_the_subclass_defaults() -> None:
    assert Register.__match_args__ == CasRegister.__match_args__
    model = CasRegister(initial=0)
    assert (model.name, model.initial, model.fs) == ("cas-register", 0, frozenset({"read", "write", "cas"}))
    assert model != Register(name="cas-register", initial=0, fs=model.fs)  # another class


def test_pickle_and_copy_round_trip_without_calling_init() -> None:
    op = Op(3, 10, 1, "ok", "cas", "k", (1, 2), None, "n1")
    for clone in (pickle.loads(pickle.dumps(op)), copy.copy(op), copy.deepcopy(op)):
        assert clone == op and type(clone) is Op
    assert pickle.loads(pickle.dumps(CasRegister(initial=5))) == CasRegister(initial=5)


@record(frozen=False)
class _Cell:
    value: int
    hits: int = 0


def test_a_mutable_record_takes_assignment_and_is_not_hashable() -> None:
    cell = _Cell(1)
    cell.hits += 1
    assert cell == _Cell(1, 1)
    with pytest.raises(TypeError):
        hash(cell)
