"""List-append workload: ``append`` a unique value to one of a few keys, or ``read`` a key's whole list.

Why: a request the cluster executes twice (a retried request a primary without
a client table applies again, docs/vr.md bug #13) is invisible on a register when
the duplicate lands next to the original, but on a list the value is there
twice in every later read. Values are unique across the run, so a read names
exactly which appends it saw and in which order (checked by
:mod:`checkers.append`).

Keys rotate after ``ops_per_key`` operations so lists stay short (a list travels
in one reply, and one request must fit one WAL slot).

Corners on purpose (``corner_rate`` of the ops, in turn): a read of a key never
appended to, an append to a key never appended to, and a large value appended
to a key of its own (so lists stay small).

Outcomes as for the register workload (contracts §4): ok; ``fail`` for a
definite refusal; ``info`` when the outcome is unknown.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from core import generator as gen
from core.scenario import WorkloadSpec
from core.system import AppendClient
from workloads.register import CORNER_RATE_DEFAULT, complete, final_reads, large_value

__all__ = ["AppendGen", "final_reads", "generator", "invoke"]


CHECKER = "append"
OPS_PER_KEY_DEFAULT = 120
CORNERS = ("read-missing", "append-new-key", "large-value")


@dataclass(frozen=True, slots=True)
class AppendGen(gen.Generator):
    read_weight: float
    append_weight: float
    keys: tuple[int, ...]  # the key in each slot
    counts: tuple[int, ...]  # ops issued on each slot's current key
    next_key: int
    next_value: int
    ops_per_key: int
    corner_rate: float = 0.0
    corner_next: int = 0

    def op(self, ctx: gen.Context) -> gen.Result:
        if not ctx.free:
            return gen.PENDING
        if self.corner_rate > 0 and ctx.rng.random() < self.corner_rate:
            return self._corner(ctx)
        slot = ctx.rng.randrange(len(self.keys))
        f = ctx.rng.choices(("read", "append"), weights=(self.read_weight, self.append_weight))[0]
        key = self.keys[slot]
        next_value = self.next_value
        if f == "read":
            operation: dict[str, Any] = {"f": "read", "key": key, "value": None}
        else:
            operation = {"f": "append", "key": key, "value": next_value}
            next_value += 1
        filled = gen.fill_in(operation, ctx)
        if filled is gen.PENDING:
            return gen.PENDING
        keys, counts = list(self.keys), list(self.counts)
        counts[slot] += 1
        next_key = self.next_key
        if counts[slot] >= self.ops_per_key:
            keys[slot], counts[slot] = next_key, 0
            next_key += 1
        # positional, in the fields' order: dataclasses.replace costs several times as much, once per op
        nxt = AppendGen(
            self.read_weight,
            self.append_weight,
            tuple(keys),
            tuple(counts),
            next_key,
            next_value,
            self.ops_per_key,
            self.corner_rate,
            self.corner_next,
        )
        return filled, nxt  # type: ignore[return-value]

    def _corner(self, ctx: gen.Context) -> gen.Result:
        corner = CORNERS[self.corner_next % len(CORNERS)]
        key, value = self.next_key, self.next_value
        if corner == "read-missing":
            operation: dict[str, Any] = {"f": "read", "key": key, "value": None}
        elif corner == "append-new-key":
            operation = {"f": "append", "key": key, "value": value}
        else:
            operation = {"f": "append", "key": key, "value": large_value(value)}
        filled = gen.fill_in(operation, ctx)
        if filled is gen.PENDING:
            return gen.PENDING
        used = 0 if operation["f"] == "read" else 1
        nxt = replace(self, next_key=key + 1, next_value=value + used, corner_next=self.corner_next + 1)
        return filled, nxt  # type: ignore[return-value]


def generator(
    spec: WorkloadSpec, *, ops_per_key: int = OPS_PER_KEY_DEFAULT, corner_rate: float = CORNER_RATE_DEFAULT
) -> Any:
    """The client generator for the main phase: reads with the spec's read weight, appends with the
    rest (write + cas weights: both are "change the value" in the register workload)."""
    base = AppendGen(
        read_weight=spec.read,
        append_weight=spec.write + spec.cas,
        keys=tuple(range(spec.keys)),
        counts=(0,) * spec.keys,
        next_key=spec.keys,
        next_value=1,
        ops_per_key=ops_per_key,
        corner_rate=corner_rate,
    )
    return gen.stagger(1.0 / spec.rate_hz, base) if spec.rate_hz > 0 else base


def invoke(client: AppendClient, operation: dict[str, Any]) -> dict[str, Any]:
    """Perform one op; returns the completion fields (type, value, error)."""
    f, key, value = operation["f"], str(operation["key"]), operation.get("value")

    def perform() -> dict[str, Any]:
        if f == "read":
            return {"type": "ok", "value": client.read(key)}
        if f == "append":
            client.append(key, value)
            return {"type": "ok", "value": value}
        raise ValueError(f"append workload has no op {f!r}")

    return complete(perform, f=f, key=key, value=value)
