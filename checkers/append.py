"""A checker for list-append histories: every key is a list, ``append`` adds one unique value, ``read`` returns the list.

Why a separate checker: a request executed twice (a primary without a client
table, docs/vr.md bug #13) writes the same value twice. On a register the second
write usually lands next to the first and leaves nothing to see; on a list
the value shows up twice, forever, in every later read. Unique appended values
make each read name exactly which appends it saw and in which order, so most
anomalies are visible pairwise, with no search:

- ``duplicate``: a read lists a value more than once (an append applied twice).
- ``phantom``: a read lists a value no append wrote, or one whose append failed
  (``fail`` means it never took effect).
- ``divergent``: two reads of a key neither of which is a prefix of the other
  (the list's history forked, or an append was reordered).
- ``stale-read``: a read invoked after another read of the key completed sees a
  strict prefix of it (it went back in time).
- ``lost-append``: an append acknowledged before a read was invoked is missing
  from that read.
- ``future-read``: a read contains a value whose append was invoked only after
  the read completed.
- ``append-order``: an append acknowledged before another was invoked appears
  after it in a read.

These are the real-time and ordering rules of a linearizable list with
append-only writes, checked pair by pair; an ``info`` append may or may not
have happened, so it is never required to appear (it may appear once).
The result names the first anomalous key and op, like the linearizability
checker's ``key`` / ``first_unlinearizable``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from checkers.counterexample import op_json
from checkers.history import HistoryFormatError, Op, Operation, PairedEvent, pair

ANOMALY_KINDS = (
    "duplicate",
    "phantom",
    "divergent",
    "stale-read",
    "lost-append",
    "future-read",
    "append-order",
)
EXAMPLES_PER_KIND = 5


def _as_list(value: Any) -> tuple[Any, ...] | None:
    """A read's value as a tuple (an absent key reads as empty); None if it is not a list."""
    if value is None:
        return ()
    if isinstance(value, list | tuple):
        return tuple(value)
    return None


def _is_prefix(short: tuple[Any, ...], long: tuple[Any, ...]) -> bool:
    return len(short) <= len(long) and long[: len(short)] == short


def _check_key(
    key: Any, ops: Sequence[Operation], failed_values: set[Any]
) -> list[tuple[int, str, str, Operation]]:
    """Anomalies of one key as (event position that exposes it, kind, explanation, op)."""
    found: list[tuple[int, str, str, Operation]] = []
    appends = {op.value_in: op for op in ops if op.f == "append"}
    reads: list[tuple[Operation, tuple[Any, ...]]] = []
    for op in ops:
        if op.f != "read" or op.outcome != "ok":
            continue
        seen = _as_list(op.value_out)
        if seen is None:
            found.append((op.ret or op.call, "phantom", f"read returned a non-list {op.value_out!r}", op))
            continue
        reads.append((op, seen))
        position = op.ret if op.ret is not None else op.call
        for value, count in Counter(seen).items():
            if count > 1:
                found.append(
                    (position, "duplicate", f"value {value!r} appears {count} times in one read", op)
                )
            if value not in appends:
                why = "whose append failed" if value in failed_values else "that no append wrote"
                found.append((position, "phantom", f"read lists {value!r}, a value {why}", op))
        for value in seen:
            append = appends.get(value)
            if append is not None and op.ret is not None and append.call > op.ret:
                found.append(
                    (
                        append.call,
                        "future-read",
                        f"read lists {value!r}, appended only after the read completed",
                        op,
                    )
                )
        for append in appends.values():
            if append.ret is not None and append.ret < op.call and append.value_in not in seen:
                found.append(
                    (
                        position,
                        "lost-append",
                        f"append of {append.value_in!r} was acknowledged before this read began "
                        "and is missing from it",
                        op,
                    )
                )
        # Scanning from the end: the earliest acknowledgement among values listed after position i;
        # if it came before the append at i was even invoked, the read reversed real-time order.
        earliest_ret_after: tuple[int, Any] | None = None
        for value in reversed(seen):
            append = appends.get(value)
            if append is None:
                continue
            if earliest_ret_after is not None and earliest_ret_after[0] < append.call:
                found.append(
                    (
                        position,
                        "append-order",
                        f"{earliest_ret_after[1]!r} was acknowledged before {value!r} was appended, "
                        "yet the read lists it after",
                        op,
                    )
                )
                break
            if append.ret is not None and (earliest_ret_after is None or append.ret < earliest_ret_after[0]):
                earliest_ret_after = (append.ret, value)
    reads.sort(key=lambda item: item[0].call)
    for i, (earlier, earlier_seen) in enumerate(reads):
        for later, later_seen in reads[i + 1 :]:
            if not (_is_prefix(earlier_seen, later_seen) or _is_prefix(later_seen, earlier_seen)):
                found.append(
                    (
                        max(earlier.ret or 0, later.ret or 0),
                        "divergent",
                        f"reads {list(earlier_seen)!r} and {list(later_seen)!r} are not prefixes of one "
                        "another",
                        later,
                    )
                )
            elif earlier.ret is not None and earlier.ret < later.call and len(later_seen) < len(earlier_seen):
                found.append(
                    (
                        later.ret or later.call,
                        "stale-read",
                        f"read saw {len(later_seen)} values after an earlier read (completed before it "
                        f"began) saw {len(earlier_seen)}",
                        later,
                    )
                )
    return found


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _check_values(operations: Sequence[Operation]) -> None:
    """Keys and values are compared and counted, so none may hold a map: such a history is malformed
    and refused before any judging. (A read returning a non-list is the system's answer, judged a
    phantom by the checker.)"""
    for op in operations:
        if op.f not in ("append", "read"):
            continue
        where = f"op index {op.invoke_index} (process {op.process!r}, {op.f})"
        if not _hashable(op.key):
            raise HistoryFormatError(f"{where}: a key must be a plain value, got {op.key!r}")
        if op.f == "append" and not _hashable(op.value_in):
            raise HistoryFormatError(f"{where}: an appended value must be a plain value, got {op.value_in!r}")
        if op.f == "read" and op.outcome == "ok" and not _hashable(op.value_out):
            raise HistoryFormatError(
                f"{where}: a read must return a list of plain values, got {op.value_out!r}"
            )


def check_append(ops: Sequence[Op], *, events: list[PairedEvent] | None = None) -> dict[str, Any]:
    """``{"valid", "key", "first_anomaly", "anomalies", "anomaly_counts", ...}`` for an append history.

    ``key`` and ``first_anomaly`` (the op whose completion, or the append whose
    invocation, exposes the earliest anomaly) are present only when invalid.
    """
    operations = pair(ops, events=events)
    _check_values(operations)
    failed_values: dict[Any, set[Any]] = defaultdict(set)
    for event in ops:
        if event.type == "fail" and event.f == "append" and not event.is_nemesis:
            failed_values[event.key].add(event.value)
    by_key: dict[Any, list[Operation]] = defaultdict(list)
    for operation in operations:
        if operation.f in ("append", "read"):
            by_key[operation.key].append(operation)
    found: list[tuple[int, str, str, Operation, Any]] = []
    for key, key_ops in by_key.items():
        found.extend(
            (pos, kind, why, op, key) for pos, kind, why, op in _check_key(key, key_ops, failed_values[key])
        )
    found.sort(key=lambda item: (item[0], ANOMALY_KINDS.index(item[1])))
    counts = Counter(kind for _, kind, _, _, _ in found)
    examples: dict[str, list[dict[str, Any]]] = {}
    for _, kind, why, op, key in found:
        bucket = examples.setdefault(kind, [])
        if len(bucket) < EXAMPLES_PER_KIND:
            bucket.append({"key": key, "explanation": why, "op": op_json(op)})
    result: dict[str, Any] = {
        "valid": not found,
        "key_count": len(by_key),
        "op_count": len(operations),
        "anomaly_counts": {kind: counts[kind] for kind in ANOMALY_KINDS if counts[kind]},
        "anomalies": examples,
        "failed_keys": sorted({key for *_, key in found}, key=repr),
    }
    if found:
        _, kind, why, op, key = found[0]
        result["key"] = key
        result["first_anomaly"] = {"kind": kind, "explanation": why, "op": op_json(op)}
    return result
