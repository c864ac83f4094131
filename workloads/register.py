"""Register workload: read / write / cas over a few independent keys, every written value unique.

Why unique values: a read then names exactly one write, which lets the
linearizability checker prune almost every ordering (and a stale read shows up
as a value that was already overwritten). Why rotating keys: an ``info`` op
stays concurrent with everything after it, so one key's history gets harder
to check the longer it lives; after ``ops_per_key`` operations a key is retired
and a fresh one takes its slot (Jepsen's "independent" keys do the same).

cas ``old`` values are drawn from the last few values written to that key,
so a fair share of cas ops can succeed; ``new`` is a fresh unique value.

Corners on purpose: random ops on a few busy keys rarely meet some states of
the state machine (a run has only a few ops on keys never written). So a share
(``corner_rate``) of ops walk, in turn, through :data:`CORNERS`: a read of a key
never written, a cas from null on a key never written (it must succeed), a
first write, a cas from null on a written key and a cas from a value never
written (both must fail), and a large value on a key of its own. Which state
classes a run really reached is computed from its history afterwards
(:mod:`checkers.coverage`), not from what was asked.

The generator is a frozen value (core.generator): its counters live in its
state, so values are dense and a replay with the same seed asks for the same
operations.

Outcomes (contracts §4): ok with the value read; ``fail`` for a definite
refusal (cas mismatch, or nothing was sent); ``info`` for an unknown outcome
(timeout or connection lost after sending, or an unexpected client error).
"""

from __future__ import annotations

import bisect
import itertools
import logging
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from core import generator as gen
from core.scenario import WorkloadSpec
from core.system import Client, OpFailed, OpIndeterminate

logger = logging.getLogger(__name__)

CHECKER = "linearizable"
MODEL = "cas-register"
RECENT_VALUES = 3
OPS_PER_KEY_DEFAULT = 400
FS = ("read", "write", "cas")
CORNER_RATE_DEFAULT = 0.05
LARGE_VALUE_BYTES = 16 * 1024  # one request must fit one WAL slot (64 KiB) with room to spare
CORNERS = (
    "read-missing",
    "cas-null-missing",
    "write-new-key",
    "cas-null-present",
    "cas-mismatch",
    "large-value",
)


def large_value(unique: int) -> str:
    """A value of ``LARGE_VALUE_BYTES`` that is still unique (its number comes first)."""
    head = f"{unique}:"
    return head + "x" * (LARGE_VALUE_BYTES - len(head))


# weights -> (cumulative weights, their total): what random.choices works out on every call
_CUMULATIVE: dict[tuple[float, ...], tuple[list[float], float]] = {}


def choose(rng: random.Random, population: tuple[str, ...], weights: tuple[float, ...]) -> str:
    """``rng.choices(population, weights=weights)[0]``: the same draw and the same choice.

    The cumulative weights are worked out once per weights rather than once per op; the
    draw is choices' own (one ``random()``, scaled by the total, bisected), so a seed
    still names the same operations.
    """
    known = _CUMULATIVE.get(weights)
    if known is None:
        if len(weights) != len(population):
            raise ValueError("The number of weights does not match the population")
        cumulative = list(itertools.accumulate(weights))
        total = cumulative[-1] + 0.0
        if total <= 0.0:
            raise ValueError("Total of weights must be greater than zero")
        if not math.isfinite(total):
            raise ValueError("Total of weights must be finite")
        known = _CUMULATIVE[weights] = (cumulative, total)
    cumulative, total = known
    return population[bisect.bisect(cumulative, rng.random() * total, 0, len(population) - 1)]


@dataclass(frozen=True, slots=True)
class RegisterGen(gen.Generator):
    weights: tuple[float, float, float]  # read, write, cas
    keys: tuple[int, ...]  # the key in each slot
    counts: tuple[int, ...]  # ops issued on each slot's current key
    recent: tuple[tuple[int, ...], ...]  # last values written to each slot's key
    next_key: int
    next_value: int
    ops_per_key: int
    corner_rate: float = 0.0
    corner_next: int = 0  # index into CORNERS of the next corner op

    def op(self, ctx: gen.Context) -> gen.Result:
        if not ctx.free:
            return gen.PENDING
        rng = ctx.rng
        if self.corner_rate > 0 and rng.random() < self.corner_rate:
            return self._corner(ctx)
        keys = self.keys
        slot = rng.randrange(len(keys))
        f = choose(rng, FS, self.weights)
        key = keys[slot]
        recent = self.recent[slot]
        next_value = self.next_value
        if f == "read":
            value: Any = None
        elif f == "write":
            value = next_value
            recent = (*recent, next_value)[-RECENT_VALUES:]
            next_value += 1
        else:
            value = [rng.choice(recent) if recent else None, next_value]
            recent = (*recent, next_value)[-RECENT_VALUES:]
            next_value += 1
        filled = gen.fill_in_new({"f": f, "key": key, "value": value}, ctx)
        if filled is gen.PENDING:
            return gen.PENDING
        count = self.counts[slot] + 1
        next_key = self.next_key
        if count >= self.ops_per_key:
            keys = (*keys[:slot], next_key, *keys[slot + 1 :])
            count, recent = 0, ()
            next_key += 1
        # positional, in the fields' order: dataclasses.replace costs several times as much, once per op
        nxt = RegisterGen(
            self.weights,
            keys,
            (*self.counts[:slot], count, *self.counts[slot + 1 :]),
            (*self.recent[:slot], recent, *self.recent[slot + 1 :]),
            next_key,
            next_value,
            self.ops_per_key,
            self.corner_rate,
            self.corner_next,
        )
        return filled, nxt  # type: ignore[return-value]

    def _corner(self, ctx: gen.Context) -> gen.Result:
        """The next corner op; fresh keys come from the same counter as rotated keys (never reused)."""
        corner = CORNERS[self.corner_next % len(CORNERS)]
        value, next_key, next_value = self.next_value, self.next_key, self.next_value + 1
        slot = ctx.rng.randrange(len(self.keys))
        recents = list(self.recent)
        if corner == "read-missing":
            operation: dict[str, Any] = {"f": "read", "key": next_key, "value": None}
            next_key, next_value = next_key + 1, value
        elif corner == "cas-null-missing":
            operation = {"f": "cas", "key": next_key, "value": [None, value]}
            next_key += 1
        elif corner == "write-new-key":
            operation = {"f": "write", "key": next_key, "value": value}
            next_key += 1
        elif corner == "large-value":
            operation = {"f": "write", "key": next_key, "value": large_value(value)}
            next_key += 1
        elif corner == "cas-null-present" and self.recent[slot]:
            operation = {"f": "cas", "key": self.keys[slot], "value": [None, value]}
            recents[slot] = (*recents[slot], value)[-RECENT_VALUES:]
        else:  # cas-mismatch (or cas-null-present before the slot's key was written): old never written
            operation = {"f": "cas", "key": self.keys[slot], "value": [value, value + 1]}
            next_value = value + 2
        filled = gen.fill_in(operation, ctx)
        if filled is gen.PENDING:
            return gen.PENDING
        keys, counts = list(self.keys), list(self.counts)
        if operation["key"] == keys[slot]:  # an op on the slot's key counts toward its rotation
            counts[slot] += 1
            if counts[slot] >= self.ops_per_key:
                keys[slot], counts[slot], recents[slot] = next_key, 0, ()
                next_key += 1
        nxt = replace(
            self,
            keys=tuple(keys),
            counts=tuple(counts),
            recent=tuple(recents),
            next_key=next_key,
            next_value=next_value,
            corner_next=self.corner_next + 1,
        )
        return filled, nxt  # type: ignore[return-value]


def generator(
    spec: WorkloadSpec, *, ops_per_key: int = OPS_PER_KEY_DEFAULT, corner_rate: float = CORNER_RATE_DEFAULT
) -> Any:
    """The client generator for the main phase (unbounded: the runner's time limit ends it)."""
    base = RegisterGen(
        weights=(spec.read, spec.write, spec.cas),
        keys=tuple(range(spec.keys)),
        counts=(0,) * spec.keys,
        recent=((),) * spec.keys,
        next_key=spec.keys,
        next_value=1,
        ops_per_key=ops_per_key,
        corner_rate=corner_rate,
    )
    return gen.stagger(1.0 / spec.rate_hz, base) if spec.rate_hz > 0 else base


def final_reads(keys: list[Any]) -> list[dict[str, Any]]:
    """One read of every key used, spread over whichever client threads are free."""
    return [{"f": "read", "key": k, "value": None} for k in sorted(keys, key=repr)]


def complete(perform: Callable[[], dict[str, Any]], *, f: str, key: str, value: Any) -> dict[str, Any]:
    """Run one client call and classify its outcome (shared by every workload).

    ``fail`` only when the client knows the op did not and will not happen;
    anything else that went wrong after sending is ``info`` (unknown), never
    ``fail``: calling a maybe-applied op failed would let a checker miss it.
    """
    try:
        return perform()
    except OpFailed as exc:
        return {"type": "fail", "value": value, "error": exc.error}
    except OpIndeterminate as exc:
        return {"type": "info", "value": value, "error": exc.error}
    except (OSError, RuntimeError, ValueError) as exc:
        logger.warning("workload=unexpected-client-error f=%s key=%s error=%r", f, key, exc)
        return {"type": "info", "value": value, "error": f"unexpected: {exc!r}"}


def invoke(client: Client, operation: dict[str, Any]) -> dict[str, Any]:
    """Perform one op; returns the completion fields (type, value, error)."""
    f, key, value = operation["f"], str(operation["key"]), operation.get("value")

    def perform() -> dict[str, Any]:
        if f == "read":
            return {"type": "ok", "value": client.read(key)}
        if f == "write":
            client.write(key, value)
            return {"type": "ok", "value": value}
        if f == "cas":
            old, new = value
            client.cas(key, old, new)
            return {"type": "ok", "value": value}
        raise ValueError(f"register workload has no op {f!r}")

    return complete(perform, f=f, key=key, value=value)
