"""Frozen records with slots, as ``@dataclass(frozen=True, slots=True)`` makes them, without dataclasses.

``ratchet check`` runs once per history file, so its start-up is paid per file.
Importing :mod:`dataclasses` brings :mod:`inspect` (with ast, dis and
tokenize), and each decorated class compiles its generated methods with
``exec``: together two fifths of the instructions of a check of a 10-op
history. :func:`record` builds the same class from closures instead: the
annotated fields in order (a base record's first), their defaults, slots,
``__init__`` (unless the class writes its own), ``__repr__``, ``__eq__`` and
``__hash__`` over the fields, assignment refused (unless ``frozen=False``), and
pickling; :func:`replace` stands in for ``dataclasses.replace``.
"""

from __future__ import annotations

from operator import attrgetter

_FIELDS = "__record_fields__"
_DEFAULTS = "__record_defaults__"


def _record(cls: type | None = None, *, init: bool = True, frozen: bool = True) -> object:
    """Class decorator: ``@record``, ``@record(init=False)`` (the class defines ``__init__``),
    ``@record(frozen=False)`` (fields may be assigned; then, as a dataclass's, not hashable)."""

    def wrap(cls: type) -> type:
        return _build(cls, init, frozen)

    return wrap if cls is None else wrap(cls)


TYPE_CHECKING = False  # typing is for type checkers only: importing it slows every `ratchet check`
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar, dataclass_transform, overload

    _C = TypeVar("_C", bound=type)
    _R = TypeVar("_R")

    @overload
    def record(cls: _C, *, init: bool = True, frozen: bool = True) -> _C: ...
    @overload
    def record(cls: None = None, *, init: bool = True, frozen: bool = True) -> Callable[[_C], _C]: ...
    @dataclass_transform(frozen_default=True)
    def record(cls: Any = None, *, init: bool = True, frozen: bool = True) -> Any:
        return _record(cls, init=init, frozen=frozen)
else:
    record = _record


def replace(obj: _R, **changes: Any) -> _R:
    """A copy of the record ``obj`` with ``changes`` (field=value) applied, as ``dataclasses.replace``."""
    return obj.__record_replace__(changes)  # type: ignore[attr-defined]


def _rebuild(cls: type, values: tuple[object, ...]) -> object:
    """Unpickle a record: its fields set through the slots, with no ``__init__`` (it may validate)."""
    obj: object = object.__new__(cls)
    for name, value in zip(getattr(cls, _FIELDS), values, strict=True):
        object.__setattr__(obj, name, value)
    return obj


def _build(cls: type, init: bool, frozen: bool) -> type:
    inherited: tuple[str, ...] = ()
    defaults: dict[str, object] = {}
    for base in reversed(cls.__mro__[1:]):
        if _FIELDS in base.__dict__:
            inherited = base.__dict__[_FIELDS]
            defaults.update(base.__dict__[_DEFAULTS])
    body = dict(cls.__dict__)
    own = tuple(
        name
        for name, annotation in body.get("__annotations__", {}).items()
        if "ClassVar" not in str(annotation)
    )
    for name in own:
        if name in body:
            defaults[name] = body.pop(name)
    fields = inherited + tuple(name for name in own if name not in inherited)
    body["__slots__"] = tuple(name for name in own if name not in inherited)
    body.pop("__dict__", None)
    body.pop("__weakref__", None)
    body[_FIELDS] = fields
    body[_DEFAULTS] = dict(defaults)
    body["__match_args__"] = fields
    key = (
        attrgetter(*fields) if len(fields) != 1 else (lambda self, _get=attrgetter(fields[0]): (_get(self),))
    )
    qualname = cls.__qualname__

    def __eq__(self: object, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return key(self) == key(other)

    def __hash__(self: object) -> int:
        return hash(key(self))

    def __repr__(self: object) -> str:
        shown = ", ".join(f"{name}={value!r}" for name, value in zip(fields, key(self), strict=True))
        return f"{qualname}({shown})"

    def __setattr__(self: object, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r}")

    def __delattr__(self: object, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r}")

    def __reduce__(self: object) -> tuple[object, ...]:
        return _rebuild, (self.__class__, key(self))

    def __record_replace__(self: object, changes: dict[str, object]) -> object:
        unknown = set(changes) - set(fields)
        if unknown:
            raise TypeError(f"{qualname} has no field(s) {sorted(unknown)}")
        return self.__class__(
            *(changes.get(name, value) for name, value in zip(fields, key(self), strict=True))
        )

    methods: dict[str, Any] = {
        "__eq__": __eq__,
        "__hash__": __hash__,
        "__repr__": __repr__,
        "__setattr__": __setattr__,
        "__delattr__": __delattr__,
        "__reduce__": __reduce__,
        "__record_replace__": __record_replace__,
    }
    if not frozen:
        del methods["__hash__"], methods["__setattr__"], methods["__delattr__"]
        body.setdefault("__hash__", None)  # equal by value yet mutable: unhashable, as a dataclass
    if init and "__init__" not in body:
        methods["__init__"] = _init(qualname, fields, defaults)
    for name, method in methods.items():
        if name not in body or (name == "__hash__" and body[name] is None):
            method.__qualname__ = f"{qualname}.{name}"
            body[name] = method
    built = type(cls)(cls.__name__, cls.__bases__, body)
    built.__qualname__ = qualname
    return built


def _init(qualname: str, fields: tuple[str, ...], defaults: dict[str, object]) -> object:
    """``__init__(self, *fields)`` with the defaults, positional or by keyword, as a dataclass's."""
    count = len(fields)
    setter = object.__setattr__

    def __init__(self: object, *args: object, **kwargs: object) -> None:
        if not kwargs and len(args) == count:  # the common call, every field positional
            for name, value in zip(fields, args, strict=True):
                setter(self, name, value)
            return
        if len(args) > count:
            raise TypeError(f"{qualname}() takes {count} positional arguments but {len(args)} were given")
        for name, value in zip(fields, args, strict=False):
            if name in kwargs:
                raise TypeError(f"{qualname}() got multiple values for argument {name!r}")
            setter(self, name, value)
        for name in fields[len(args) :]:
            if name in kwargs:
                setter(self, name, kwargs.pop(name))
            elif name in defaults:
                setter(self, name, defaults[name])
            else:
                raise TypeError(f"{qualname}() missing required argument: {name!r}")
        if kwargs:
            raise TypeError(f"{qualname}() got unexpected keyword argument(s) {sorted(kwargs)}")

    return __init__
