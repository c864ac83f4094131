"""Which operation x state classes a history really exercised (results.json ``coverage``).

A workload asks for corners on purpose (a read of a key never written, a cas
from null, a large value, ...), but only the outcomes say which states the
system was in: an ok read that returned null really read a missing key, a cas
from null that succeeded really met a missing key, a cas-mismatch really met a
different value. So the classes are computed from the completed ops, and each
class the model expects but the run never reached is listed as ``missing`` for
the report and the campaign summary. Not a verdict: coverage never changes
``valid``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import Any

from checkers.history import Op, PairedEvent, pair_events

LARGE_VALUE_BYTES = 8 * 1024  # a value at least this big (as JSON) counts as large

# class -> what it means; the order is the order reports show them in
REGISTER_CLASSES = {
    "read-missing": "ok read of a key that held no value (returned null)",
    "read-present": "ok read of a key that held a value",
    "write-new-key": "ok write to a key no earlier op had written",
    "write-overwrite": "ok write to a key written before",
    "cas-ok": "cas from a non-null value that succeeded",
    "cas-null-missing": "cas from null that succeeded (the key held no value)",
    "cas-null-present": "cas from null refused with cas-mismatch (the key held a value)",
    "cas-mismatch": "cas from a non-null value refused with cas-mismatch",
    "large-value": f"a value of at least {LARGE_VALUE_BYTES} bytes written (ok)",
    "large-read": f"ok read returning a value of at least {LARGE_VALUE_BYTES} bytes",
}
APPEND_CLASSES = {
    "read-missing": "ok read of a key never appended to (returned null or [])",
    "read-present": "ok read of a non-empty list",
    "append-new-key": "ok append to a key no earlier op had appended to",
    "append-existing": "ok append to a key appended to before",
    "large-value": f"an append of a value of at least {LARGE_VALUE_BYTES} bytes (ok)",
    "large-read": f"ok read of a list holding a value of at least {LARGE_VALUE_BYTES} bytes",
}


def expected_classes(model: str) -> dict[str, str]:
    return APPEND_CLASSES if model == "list-append" else REGISTER_CLASSES


def _large(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, str):
        return len(value.encode("utf-8", "replace")) >= LARGE_VALUE_BYTES
    return len(json.dumps(value, default=str)) >= LARGE_VALUE_BYTES


def _register_class(invoke: Op, done: Op, written: set[Any]) -> list[str]:
    f, key = invoke.f, invoke.key
    if f == "read" and done.type == "ok":
        found = ["read-missing" if done.value is None else "read-present"]
        return found + (["large-read"] if _large(done.value) else [])
    if f == "write" and done.type == "ok":
        found = ["write-overwrite" if key in written else "write-new-key"]
        return found + (["large-value"] if _large(invoke.value) else [])
    if f == "cas" and isinstance(invoke.value, list | tuple) and len(invoke.value) == 2:
        old, new = invoke.value
        if done.type == "ok":
            return ["cas-null-missing" if old is None else "cas-ok"] + (
                ["large-value"] if _large(new) else []
            )
        if done.type == "fail" and done.error == "cas-mismatch":
            return ["cas-null-present" if old is None else "cas-mismatch"]
    return []


def _append_class(invoke: Op, done: Op, written: set[Any]) -> list[str]:
    if invoke.f == "read" and done.type == "ok":
        value = done.value
        if value is None or (isinstance(value, list | tuple) and not value):
            return ["read-missing"]
        found = ["read-present"]
        large = isinstance(value, list | tuple) and any(_large(v) for v in value)
        return found + (["large-read"] if large else [])
    if invoke.f == "append" and done.type == "ok":
        found = ["append-existing" if invoke.key in written else "append-new-key"]
        return found + (["large-value"] if _large(invoke.value) else [])
    return []


def coverage(
    ops: Sequence[Op], *, model: str = "cas-register", events: list[PairedEvent] | None = None
) -> dict[str, Any]:
    """``{"classes": {class: count}, "missing": [classes never reached], "expected": {class: meaning}}``.

    "Written before" is judged at invocation, in history order: a key counts as
    written once a write, cas or append on it was invoked (a conservative reading
    of "no earlier op had written": a concurrent one may have been invoked first).
    """
    classify = _append_class if model == "list-append" else _register_class
    counts: Counter[str] = Counter()
    written: set[Any] = set()
    for _, invoke, _, done in events if events is not None else pair_events(ops):
        if done is not None:
            counts.update(classify(invoke, done, written))
        if invoke.f in ("write", "cas", "append"):
            written.add(invoke.key)
    expected = expected_classes(model)
    classes = {name: counts.get(name, 0) for name in expected}
    return {
        "classes": classes,
        "missing": [name for name, count in classes.items() if count == 0],
        "expected": expected,
    }
