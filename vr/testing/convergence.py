"""End-of-seed oracle: replicas that executed the same ops hold the same state.

The state checker follows what clients saw (replies against a replayed model), so a
backup whose state silently differs is invisible to it until that backup serves the
key as primary. Once a seed has converged (every replica normal, one view, one
``commit_min``), every replica's state machine must hash alike; the violation names
the replicas, the op and the keys whose values differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vr.replica import Replica
from vr.testing.state_checker import Violation

KEYS_NAMED_MAX = 5


def check_replicas_converged(replicas: Sequence[Replica | None]) -> None:
    """Raise :class:`Violation` ``state-divergence`` when replicas at one op hold different states."""
    by_op: dict[int, list[tuple[int, Replica]]] = {}
    for index, replica in enumerate(replicas):
        if replica is not None:
            by_op.setdefault(replica.commit_min, []).append((index, replica))
    for op, group in sorted(by_op.items()):
        (first_index, first), *others = group
        reference = first.machine.digest()
        for index, replica in others:
            digest = replica.machine.digest()
            if digest == reference:
                continue
            if digest.kv != reference.kv:
                keys = _differing_keys(first.machine.kv, replica.machine.kv)
                shown = ", ".join(
                    f"{key!r}: {first.machine.kv.get(key)!r} vs {replica.machine.kv.get(key)!r}"
                    for key in keys[:KEYS_NAMED_MAX]
                )
                more = f" (+{len(keys) - KEYS_NAMED_MAX} more)" if len(keys) > KEYS_NAMED_MAX else ""
                detail = f"{len(keys)} key(s) differ: {shown}{more}"
            else:
                detail = "the client tables differ"
            raise Violation(
                "state-divergence",
                f"replicas {first_index} and {index} both executed up to op {op}, but {detail}",
            )


def _differing_keys(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return sorted(key for key in a.keys() | b.keys() if key not in a or key not in b or a[key] != b[key])
