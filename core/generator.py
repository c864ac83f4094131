"""Pure, immutable operation generators: what to do next, and when.

In a nutshell
-------------
A generator is a value. Asking it for an operation never changes it:

    op(gen, ctx)          -> None (exhausted) | PENDING | (operation, next_gen)
    update(gen, ctx, ev)  -> next_gen   (told about an invocation or completion)

``ctx`` (a :class:`Context`) carries the time, the threads in scope, which of
them are free, which process each thread currently runs, and the run's seeded
``random.Random``. An operation is a plain dict (``{"f": "read", "key": 3}``);
the generator fills in ``type`` (``invoke``), ``process`` (a free one) and
``time_ns`` (now) where they are missing. An operation whose ``time_ns`` lies
in the future tells the interpreter to wait until then; ``PENDING`` tells it
to wait for a completion.

Plain values are generators too: ``None`` is empty, a dict emits itself once,
a list/tuple emits each element's operations in turn, and a callable
``f(ctx)`` is asked again for every operation (returning None ends it).

Examples::

    time_limit(60, clients(stagger(0.01, mix([reads, writes])), nemesis(cycle(...))))
    phases(limit(100, writes), sleep(5), each_thread(once(final_read)))

Why immutable values and not threads that sleep and mutate (Jepsen's early
design, dropped for the same reasons there): the same generator can be driven
by the real runner and by :func:`simulate` with a fake clock, so a schedule is
tested exactly, deterministically and instantly; and there are no races
between worker threads asking for operations at the same time.

Times are integers in nanoseconds inside; constructors take seconds.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

Thread = int | str
Process = int | str
Op = dict[str, Any]
NEMESIS = "nemesis"
NS_PER_S = 1_000_000_000


class _Pending:
    def __repr__(self) -> str:
        return "PENDING"


PENDING = _Pending()
Result = None | _Pending | tuple[Op, Any]


def seconds_to_ns(seconds: float) -> int:
    return round(seconds * NS_PER_S)


# keep -> (threads, threads as a set, the threads keep accepts, the same as a set): what
# Context.restrict worked out for the last ``threads`` tuple it saw with that ``keep``. The runner
# and simulate() pass the same tuple object for every context of a run, so the filter runs once.
_RESTRICT_MEMO: dict[
    Any, tuple[tuple[Thread, ...], frozenset[Thread], tuple[Thread, ...], frozenset[Thread]]
] = {}
_RESTRICT_MEMO_MAX = 256


@dataclass(frozen=True, slots=True, init=False)
class Context:
    """What a generator may look at: time, threads in scope and their state.

    ``workers`` must not change after the context is made (pass a copy). Frozen, but
    built through the slots' own descriptors: the interpreter makes several per op,
    and a frozen dataclass's generated ``__init__`` costs several times as much.
    """

    time_ns: int
    threads: tuple[Thread, ...]
    free: frozenset[Thread]
    workers: Mapping[Thread, Process]
    rng: random.Random = field(compare=False, repr=False)

    def __init__(
        self,
        time_ns: int,
        threads: tuple[Thread, ...],
        free: frozenset[Thread],
        workers: Mapping[Thread, Process],
        rng: random.Random,
    ) -> None:
        _ctx_time_ns(self, time_ns)
        _ctx_threads(self, threads)
        _ctx_free(self, free)
        _ctx_workers(self, workers)
        _ctx_rng(self, rng)

    def restrict(self, keep: Callable[[Thread], bool]) -> Context:
        """The threads ``keep`` accepts (``keep`` must be a pure function of the thread).

        Runs once per op per scope in the interpreter, so the filtering of the
        (unchanging) thread tuple is remembered, and the free threads are one set
        intersection.
        """
        try:
            memo = _RESTRICT_MEMO.get(keep)
        except TypeError:  # an unhashable keep: filter every time
            memo = None
            hashable = False
        else:
            hashable = True
        if memo is None or memo[0] is not self.threads:
            kept = tuple(t for t in self.threads if keep(t))
            memo = (self.threads, frozenset(self.threads), kept, frozenset(kept))
            if hashable:
                if len(_RESTRICT_MEMO) >= _RESTRICT_MEMO_MAX:
                    _RESTRICT_MEMO.clear()
                _RESTRICT_MEMO[keep] = memo
        _, all_threads, threads, kept_set = memo
        free = self.free
        free = free & kept_set if free <= all_threads else frozenset(t for t in free if keep(t))
        return Context(self.time_ns, threads, free, self.workers, self.rng)

    def thread_of(self, process: Process | None) -> Thread | None:
        for thread, proc in self.workers.items():
            if proc == process:
                return thread
        return None

    def first_free(self) -> Thread | None:
        """The first free thread in ``threads`` order, or None."""
        free = self.free
        if not free:
            return None
        if len(free) == 1:  # the usual case under load: the thread whose op just completed
            (only,) = free
            return only if only in self.threads else None
        for t in self.threads:
            if t in free:
                return t
        return None

    def free_threads(self) -> list[Thread]:
        return [t for t in self.threads if t in self.free]

    def all_free(self) -> bool:
        return all(t in self.free for t in self.threads)


_ctx_time_ns, _ctx_threads, _ctx_free, _ctx_workers, _ctx_rng = (
    Context.__dict__[name].__set__ for name in ("time_ns", "threads", "free", "workers", "rng")
)


def fill_in(operation: Op, ctx: Context) -> Op | _Pending:
    """Give an op its missing process (the first free thread's), type and time."""
    filled = dict(operation)
    if "process" not in filled:
        first = ctx.first_free()
        if first is None:
            return PENDING
        filled["process"] = ctx.workers[first]
    filled.setdefault("type", "invoke")
    filled.setdefault("time_ns", ctx.time_ns)
    return filled


def fill_in_new(operation: Op, ctx: Context) -> Op | _Pending:
    """:func:`fill_in` for an op dict made for this call alone: filled in place, not copied."""
    if "process" not in operation:
        first = ctx.first_free()
        if first is None:
            return PENDING
        operation["process"] = ctx.workers[first]
    if "type" not in operation:
        operation["type"] = "invoke"
    if "time_ns" not in operation:
        operation["time_ns"] = ctx.time_ns
    return operation


class Generator:
    """Base of the combinators; subclasses are frozen dataclasses."""

    def op(self, ctx: Context) -> Result:
        raise NotImplementedError

    def update(self, ctx: Context, event: Op) -> Any:
        return self

    def ignores_events(self) -> bool:
        """See :func:`ignores_events`; a combinator that passes events on asks its parts."""
        return type(self).update is Generator.update


def op(gen: Any, ctx: Context) -> Result:
    """Ask ``gen`` for its next operation in ``ctx``."""
    if gen is None:
        return None
    if isinstance(gen, Generator):
        return gen.op(ctx)
    if isinstance(gen, dict):
        filled = fill_in(gen, ctx)
        return filled if filled is PENDING else (filled, None)  # type: ignore[return-value]
    if isinstance(gen, (list, tuple)):
        return Seq(tuple(gen)).op(ctx)
    if callable(gen):
        return Fn(gen).op(ctx)
    raise TypeError(f"not a generator: {gen!r}")


def update(gen: Any, ctx: Context, event: Op) -> Any:
    """Tell ``gen`` about an invocation or completion; returns the next generator."""
    if isinstance(gen, Generator):
        return gen.update(ctx, event)
    if isinstance(gen, (list, tuple)) and gen:
        return Seq(tuple(gen)).update(ctx, event)
    return gen


def ignores_events(gen: Any) -> bool:
    """Whether ``update(gen, ctx, event)`` is ``gen`` itself for every ``ctx`` and ``event``.

    True of plain values (None, a dict, a callable) and of generators that keep
    :meth:`Generator.update` (a workload's, :class:`Mix`), and of the combinators over
    them that only pass events on. A scope asks before it works out the event's thread
    and a restricted context, which the interpreter would otherwise do twice per op only
    to be handed the same generator back.
    """
    if isinstance(gen, Generator):
        return gen.ignores_events()
    return not (isinstance(gen, list | tuple) and gen)


def _update_all(gens: tuple[Any, ...], ctx: Context, event: Op) -> tuple[Any, ...]:
    """Each of ``gens`` told about ``event``; the same tuple when none of them changed."""
    updated = tuple(update(g, ctx, event) for g in gens)
    for old, new in zip(gens, updated, strict=True):
        if old is not new:
            return updated
    return gens


def _event_in(ctx: Context, event: Op) -> bool:
    thread = ctx.thread_of(event.get("process"))
    return thread is not None and thread in ctx.threads


# -- sequencing ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Seq(Generator):
    gens: tuple[Any, ...]

    def op(self, ctx: Context) -> Result:
        gens = self.gens
        while gens:
            result = op(gens[0], ctx)
            if result is None:
                gens = gens[1:]
                continue
            if result is PENDING:
                return PENDING
            operation, nxt = result  # type: ignore[misc]
            rest = gens[1:] if nxt is None else (nxt, *gens[1:])
            return operation, Seq(rest)
        return None

    def update(self, ctx: Context, event: Op) -> Any:
        if not self.gens:
            return self
        first = self.gens[0]
        updated = update(first, ctx, event)
        return self if updated is first else Seq((updated, *self.gens[1:]))

    def ignores_events(self) -> bool:
        return not self.gens or ignores_events(self.gens[0])  # only the first is told


@dataclass(frozen=True, slots=True)
class Fn(Generator):
    """Calls ``f(ctx)`` for each operation; the value it returns is a generator.

    ``f`` may be called for an op the interpreter then does not take (a completion
    came first), so a side-effecting ``f`` sees gaps; keep counters in a generator's
    state instead when the values must be dense."""

    f: Callable[[Context], Any]

    def op(self, ctx: Context) -> Result:
        if not ctx.free:
            return PENDING  # do not call f for an op no thread could take
        produced = self.f(ctx)
        if produced is None:
            return None
        result = op(produced, ctx)
        if result is None or result is PENDING:
            return result
        operation, nxt = result  # type: ignore[misc]
        return operation, (self if nxt is None else Seq((nxt, self)))


@dataclass(frozen=True, slots=True)
class Synchronize(Generator):
    """Waits until every thread in scope is free, then behaves like ``gen``."""

    gen: Any
    synced: bool = False

    def op(self, ctx: Context) -> Result:
        if not self.synced and not ctx.all_free():
            return PENDING
        result = op(self.gen, ctx)
        if result is None or result is PENDING:
            return result
        operation, nxt = result  # type: ignore[misc]
        return operation, Synchronize(nxt, synced=True)

    def update(self, ctx: Context, event: Op) -> Any:
        updated = update(self.gen, ctx, event)
        return self if updated is self.gen else Synchronize(updated, self.synced)

    def ignores_events(self) -> bool:
        return ignores_events(self.gen)


def phases(*gens: Any) -> Seq:
    """Each generator runs to exhaustion, and the next starts when all threads are free."""
    return Seq(tuple(Synchronize(g) for g in gens))


@dataclass(frozen=True, slots=True)
class Sleep(Generator):
    """One ``sleep`` op: its thread does nothing for ``dt_ns`` (not recorded in the history)."""

    dt_ns: int

    def op(self, ctx: Context) -> Result:
        filled = fill_in({"type": "sleep", "f": "sleep", "value": self.dt_ns}, ctx)
        return filled if filled is PENDING else (filled, None)  # type: ignore[return-value]


def sleep(dt_s: float) -> Sleep:
    return Sleep(seconds_to_ns(dt_s))


# -- transforming -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Map(Generator):
    f: Callable[[Op], Op]
    gen: Any

    def op(self, ctx: Context) -> Result:
        result = op(self.gen, ctx)
        if result is None or result is PENDING:
            return result
        operation, nxt = result  # type: ignore[misc]
        return self.f(operation), Map(self.f, nxt)

    def update(self, ctx: Context, event: Op) -> Any:
        updated = update(self.gen, ctx, event)
        return self if updated is self.gen else Map(self.f, updated)

    def ignores_events(self) -> bool:
        return ignores_events(self.gen)


@dataclass(frozen=True, slots=True)
class Limit(Generator):
    remaining: int
    gen: Any

    def op(self, ctx: Context) -> Result:
        if self.remaining <= 0:
            return None
        result = op(self.gen, ctx)
        if result is None or result is PENDING:
            return result
        operation, nxt = result  # type: ignore[misc]
        return operation, Limit(self.remaining - 1, nxt)

    def update(self, ctx: Context, event: Op) -> Any:
        updated = update(self.gen, ctx, event)
        return self if updated is self.gen else Limit(self.remaining, updated)

    def ignores_events(self) -> bool:
        return ignores_events(self.gen)


def limit(n: int, gen: Any) -> Limit:
    return Limit(n, gen)


def once(gen: Any) -> Limit:
    return Limit(1, gen)


@dataclass(frozen=True, slots=True)
class Repeat(Generator):
    """Emits ``gen``'s first operation over and over (``remaining`` None: forever)."""

    remaining: int | None
    gen: Any

    def op(self, ctx: Context) -> Result:
        if self.remaining is not None and self.remaining <= 0:
            return None
        result = op(self.gen, ctx)
        if result is None or result is PENDING:
            return result
        operation, _ = result  # type: ignore[misc]
        left = None if self.remaining is None else self.remaining - 1
        return operation, Repeat(left, self.gen)

    def update(self, ctx: Context, event: Op) -> Any:
        updated = update(self.gen, ctx, event)
        return self if updated is self.gen else Repeat(self.remaining, updated)

    def ignores_events(self) -> bool:
        return ignores_events(self.gen)


def repeat(gen: Any, n: int | None = None) -> Repeat:
    return Repeat(n, gen)


@dataclass(frozen=True, slots=True)
class Cycle(Generator):
    """Runs ``gen`` to exhaustion, then starts it again from the beginning."""

    original: Any
    current: Any
    remaining: int | None

    def op(self, ctx: Context) -> Result:
        current, remaining = self.current, self.remaining
        for _ in range(2):
            result = op(current, ctx)
            if result is PENDING:
                return PENDING
            if result is not None:
                operation, nxt = result  # type: ignore[misc]
                return operation, Cycle(self.original, nxt, remaining)
            remaining = None if remaining is None else remaining - 1
            if remaining is not None and remaining <= 0:
                return None
            current = self.original
        return None  # the original itself is empty

    def update(self, ctx: Context, event: Op) -> Any:
        updated = update(self.current, ctx, event)
        return self if updated is self.current else Cycle(self.original, updated, self.remaining)

    def ignores_events(self) -> bool:
        return ignores_events(self.current)  # only the current round is told


def cycle(gen: Any, n: int | None = None) -> Cycle:
    return Cycle(gen, gen, n)


# -- timing -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Delay(Generator):
    """Operations at least ``dt_ns`` apart."""

    dt_ns: int
    gen: Any
    next_ns: int | None = None

    def op(self, ctx: Context) -> Result:
        result = op(self.gen, ctx)
        if result is None or result is PENDING:
            return result
        operation, nxt = result  # type: ignore[misc]
        at = max(operation["time_ns"], self.next_ns if self.next_ns is not None else 0)
        return {**operation, "time_ns": at}, Delay(self.dt_ns, nxt, at + self.dt_ns)

    def update(self, ctx: Context, event: Op) -> Any:
        updated = update(self.gen, ctx, event)
        return self if updated is self.gen else Delay(self.dt_ns, updated, self.next_ns)

    def ignores_events(self) -> bool:
        return ignores_events(self.gen)


def delay(dt_s: float, gen: Any) -> Delay:
    return Delay(seconds_to_ns(dt_s), gen)


_U64 = (1 << 64) - 1


def _draw(stream: int, bound: int) -> tuple[int, int]:
    """A value uniform in [0, bound) and the stream's next state (splitmix64).

    A generator that carries its own stream draws the same value however often it is asked
    in the same state: the interpreter asks a generator for its next op many times before
    one is taken (every completion, every poll), and a draw from ``ctx.rng`` per ask would
    make the schedule depend on how often that happened, i.e. on timing.
    """
    stream = (stream + 0x9E3779B97F4A7C15) & _U64
    z = stream
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _U64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _U64
    z ^= z >> 31
    return (z * bound) >> 64, stream


@dataclass(frozen=True, slots=True)
class Stagger(Generator):
    """Operations separated by random gaps, uniform in [0, 2 * dt) (mean ``dt``).

    With a ``stream`` (``stagger(..., seed=S)``) the gaps are a function of the seed and of
    how many operations were taken, never of how often the generator was asked; without
    one they come from the run's ``ctx.rng``.
    """

    dt_ns: int
    gen: Any
    next_ns: int | None = None
    stream: int | None = None

    def op(self, ctx: Context) -> Result:
        result = op(self.gen, ctx)
        if result is None or result is PENDING:
            return result
        operation, nxt = result  # type: ignore[misc]
        at = max(operation["time_ns"], self.next_ns if self.next_ns is not None else 0)
        stream = self.stream
        if self.dt_ns <= 0:
            gap = 0
        elif stream is None:
            gap = ctx.rng.randrange(0, 2 * self.dt_ns)
        else:
            gap, stream = _draw(stream, 2 * self.dt_ns)
        return {**operation, "time_ns": at}, Stagger(self.dt_ns, nxt, at + gap, stream)

    def update(self, ctx: Context, event: Op) -> Any:
        updated = update(self.gen, ctx, event)
        return self if updated is self.gen else Stagger(self.dt_ns, updated, self.next_ns, self.stream)

    def ignores_events(self) -> bool:
        return ignores_events(self.gen)


def stagger(dt_s: float, gen: Any, *, seed: int | None = None) -> Stagger:
    return Stagger(seconds_to_ns(dt_s), gen, stream=None if seed is None else seed & _U64)


@dataclass(frozen=True, slots=True)
class TimeLimit(Generator):
    """Operations until ``dt_ns`` after the first one was asked for; later ones are dropped."""

    dt_ns: int
    gen: Any
    cutoff_ns: int | None = None

    def op(self, ctx: Context) -> Result:
        cutoff = self.cutoff_ns if self.cutoff_ns is not None else ctx.time_ns + self.dt_ns
        if ctx.time_ns >= cutoff:
            return None
        result = op(self.gen, ctx)
        if result is None or result is PENDING:
            return result
        operation, nxt = result  # type: ignore[misc]
        if operation["time_ns"] >= cutoff:
            return None
        return operation, TimeLimit(self.dt_ns, nxt, cutoff)

    def update(self, ctx: Context, event: Op) -> Any:
        updated = update(self.gen, ctx, event)
        return self if updated is self.gen else TimeLimit(self.dt_ns, updated, self.cutoff_ns)

    def ignores_events(self) -> bool:
        return ignores_events(self.gen)


def time_limit(dt_s: float, gen: Any) -> TimeLimit:
    return TimeLimit(seconds_to_ns(dt_s), gen)


@dataclass(frozen=True, slots=True)
class CycleTimes(Generator):
    """Cycles through generators, each in charge for its own duration; each keeps its state."""

    durations_ns: tuple[int, ...]
    gens: tuple[Any, ...]
    start_ns: int | None = None

    def op(self, ctx: Context) -> Result:
        start = self.start_ns if self.start_ns is not None else ctx.time_ns
        period = sum(self.durations_ns)
        cycle_start = start + ((ctx.time_ns - start) // period) * period
        window_start = cycle_start
        # Find the window that contains "now"; then try it and the next ones in turn.
        index = 0
        while window_start + self.durations_ns[index] <= ctx.time_ns:
            window_start += self.durations_ns[index]
            index = (index + 1) % len(self.gens)
        for _ in range(len(self.gens) + 1):
            window_end = window_start + self.durations_ns[index]
            local = replace(ctx, time_ns=max(ctx.time_ns, window_start))
            result = op(self.gens[index], local)
            if result is PENDING:
                return PENDING
            if result is not None:
                operation, nxt = result  # type: ignore[misc]
                if operation["time_ns"] < window_end:
                    gens = (*self.gens[:index], nxt, *self.gens[index + 1 :])
                    return operation, CycleTimes(self.durations_ns, gens, start)
            window_start, index = window_end, (index + 1) % len(self.gens)
        return None

    def update(self, ctx: Context, event: Op) -> Any:
        gens = _update_all(self.gens, ctx, event)
        return self if gens is self.gens else CycleTimes(self.durations_ns, gens, self.start_ns)

    def ignores_events(self) -> bool:
        return all(ignores_events(g) for g in self.gens)


def cycle_times(*specs: tuple[float, Any]) -> CycleTimes:
    """``cycle_times((10, gen_a), (5, gen_b))``: a for 10 s, b for 5 s, a for 10 s, ..."""
    return CycleTimes(tuple(seconds_to_ns(s) for s, _ in specs), tuple(g for _, g in specs))


# -- choosing between generators ---------------------------------------------


@dataclass(frozen=True, slots=True)
class Mix(Generator):
    """Each operation from a generator chosen at random (seeded); exhausted ones drop out.

    With a ``stream`` (``mix(..., seed=S)``) the choice is a function of the seed and of the
    operations taken so far (asked again in the same state, it chooses the same generator);
    without one it comes from the run's ``ctx.rng``.
    """

    gens: tuple[Any, ...]
    stream: int | None = None

    def op(self, ctx: Context) -> Result:
        gens = self.gens
        stream = self.stream
        while gens:
            if stream is None:
                index = ctx.rng.randrange(len(gens))
            else:
                index, stream = _draw(stream, len(gens))
            result = op(gens[index], ctx)
            if result is None:
                gens = (*gens[:index], *gens[index + 1 :])
                continue
            if result is PENDING:
                return PENDING
            operation, nxt = result  # type: ignore[misc]
            return operation, Mix((*gens[:index], nxt, *gens[index + 1 :]), stream)
        return None


def mix(gens: Sequence[Any], *, seed: int | None = None) -> Mix:
    return Mix(tuple(gens), None if seed is None else seed & _U64)


@dataclass(frozen=True, slots=True)
class Any_(Generator):
    """The soonest operation of several generators, each running in the same scope."""

    gens: tuple[Any, ...]

    def op(self, ctx: Context) -> Result:
        best: tuple[Op, int, Any] | None = None
        pending = False
        for index, gen in enumerate(self.gens):
            result = op(gen, ctx)
            if result is PENDING:
                pending = True
            elif result is not None:
                operation, nxt = result  # type: ignore[misc]
                if best is None or operation["time_ns"] < best[0]["time_ns"]:
                    best = (operation, index, nxt)
        if best is None:
            return PENDING if pending else None
        operation, index, nxt = best
        return operation, Any_((*self.gens[:index], nxt, *self.gens[index + 1 :]))

    def update(self, ctx: Context, event: Op) -> Any:
        gens = _update_all(self.gens, ctx, event)
        return self if gens is self.gens else Any_(gens)

    def ignores_events(self) -> bool:
        return all(ignores_events(g) for g in self.gens)


def any_(*gens: Any) -> Any_:
    return Any_(tuple(gens))


@dataclass(frozen=True, slots=True)
class OnThreads(Generator):
    """``gen`` sees only the threads ``keep`` accepts, and only their events."""

    keep: Callable[[Thread], bool]
    gen: Any

    def op(self, ctx: Context) -> Result:
        result = op(self.gen, ctx.restrict(self.keep))
        if result is None or result is PENDING:
            return result
        operation, nxt = result  # type: ignore[misc]
        return operation, OnThreads(self.keep, nxt)

    def update(self, ctx: Context, event: Op) -> Any:
        if ignores_events(self.gen):
            return self
        # the event's thread is in scope (what _event_in(ctx.restrict(keep), event) asks, without
        # building the restricted context for events of other scopes)
        thread = ctx.thread_of(event.get("process"))
        if thread is None or not self.keep(thread) or thread not in ctx.threads:
            return self
        updated = update(self.gen, ctx.restrict(self.keep), event)
        return self if updated is self.gen else OnThreads(self.keep, updated)

    def ignores_events(self) -> bool:
        return ignores_events(self.gen)


def _is_client(thread: Thread) -> bool:
    return thread != NEMESIS


def _is_nemesis(thread: Thread) -> bool:
    return thread == NEMESIS


def clients(client_gen: Any, nemesis_gen: Any = None) -> Any:
    """Routes ``client_gen`` to client threads (and ``nemesis_gen``, if given, to the nemesis)."""
    routed = OnThreads(_is_client, client_gen)
    return routed if nemesis_gen is None else Any_((routed, OnThreads(_is_nemesis, nemesis_gen)))


def nemesis(nemesis_gen: Any, client_gen: Any = None) -> Any:
    """Routes ``nemesis_gen`` to the nemesis thread (and ``client_gen``, if given, to clients)."""
    routed = OnThreads(_is_nemesis, nemesis_gen)
    return routed if client_gen is None else Any_((routed, OnThreads(_is_client, client_gen)))


@dataclass(frozen=True, slots=True)
class _ThreadSet:
    members: frozenset[Thread]

    def __call__(self, thread: Thread) -> bool:
        return thread in self.members


@dataclass(frozen=True, slots=True)
class EachThread(Generator):
    """Every thread runs its own copy of ``gen`` (e.g. one final read per client)."""

    fresh: Any
    per_thread: tuple[tuple[Thread, Any], ...] = ()

    def _gen_for(self, thread: Thread) -> Any:
        for owner, gen in self.per_thread:
            if owner == thread:
                return gen
        return self.fresh

    def _with(self, thread: Thread, gen: Any) -> EachThread:
        rest = tuple((t, g) for t, g in self.per_thread if t != thread)
        return EachThread(self.fresh, (*rest, (thread, gen)))

    def op(self, ctx: Context) -> Result:
        best: tuple[Op, Thread, Any] | None = None
        pending = False
        for thread in ctx.threads:
            if thread not in ctx.free:
                if op(self._gen_for(thread), ctx.restrict(_ThreadSet(frozenset([thread])))) is not None:
                    pending = True
                continue
            result = op(self._gen_for(thread), ctx.restrict(_ThreadSet(frozenset([thread]))))
            if result is PENDING:
                pending = True
            elif result is not None:
                operation, nxt = result  # type: ignore[misc]
                if best is None or operation["time_ns"] < best[0]["time_ns"]:
                    best = (operation, thread, nxt)
        if best is None:
            return PENDING if pending else None
        operation, thread, nxt = best
        return operation, self._with(thread, nxt)

    def update(self, ctx: Context, event: Op) -> Any:
        thread = ctx.thread_of(event.get("process"))
        if thread is None or thread not in ctx.threads:
            return self
        local = ctx.restrict(_ThreadSet(frozenset([thread])))
        return self._with(thread, update(self._gen_for(thread), local, event))


def each_thread(gen: Any) -> EachThread:
    return EachThread(gen)


def reserve(*args: Any) -> Any:
    """``reserve(5, writes, 10, cas, reads)``: the first 5 threads in scope write, the next 10
    cas, the rest read. Thread sets are fixed at the first call, from the scope's order."""
    counts = args[:-1:2]
    gens = args[1:-1:2]
    default = args[-1]
    if len(counts) != len(gens):
        raise TypeError("reserve(n1, gen1, n2, gen2, ..., default)")
    return _Reserve(tuple(counts), tuple(gens), default)


@dataclass(frozen=True, slots=True)
class _Reserve(Generator):
    counts: tuple[int, ...]
    gens: tuple[Any, ...]
    default: Any

    def _split(self, ctx: Context) -> Any_:
        routed = []
        start = 0
        for n, gen in zip(self.counts, self.gens, strict=True):
            routed.append(OnThreads(_ThreadSet(frozenset(ctx.threads[start : start + n])), gen))
            start += n
        routed.append(OnThreads(_ThreadSet(frozenset(ctx.threads[start:])), self.default))
        return Any_(tuple(routed))

    def op(self, ctx: Context) -> Result:
        return self._split(ctx).op(ctx)

    def update(self, ctx: Context, event: Op) -> Any:
        return self._split(ctx).update(ctx, event)


@dataclass(frozen=True, slots=True)
class FlipFlop(Generator):
    """Alternates: an operation from ``a``, then from ``b``, then ``a``...; ends when either does."""

    gens: tuple[Any, Any]
    turn: int = 0

    def op(self, ctx: Context) -> Result:
        result = op(self.gens[self.turn], ctx)
        if result is None or result is PENDING:
            return result
        operation, nxt = result  # type: ignore[misc]
        gens = (nxt, self.gens[1]) if self.turn == 0 else (self.gens[0], nxt)
        return operation, FlipFlop(gens, 1 - self.turn)  # type: ignore[arg-type]

    def update(self, ctx: Context, event: Op) -> Any:
        gens = _update_all(self.gens, ctx, event)
        return self if gens is self.gens else FlipFlop(gens, self.turn)  # type: ignore[arg-type]

    def ignores_events(self) -> bool:
        return ignores_events(self.gens[0]) and ignores_events(self.gens[1])


def flip_flop(a: Any, b: Any) -> FlipFlop:
    return FlipFlop((a, b))


@dataclass(frozen=True, slots=True)
class UntilOk(Generator):
    """Operations from ``gen`` until one of them completes ``ok``."""

    gen: Any
    done: bool = False
    processes: frozenset[Process] = frozenset()

    def op(self, ctx: Context) -> Result:
        if self.done:
            return None
        result = op(self.gen, ctx)
        if result is None or result is PENDING:
            return result
        operation, nxt = result  # type: ignore[misc]
        return operation, UntilOk(nxt, False, self.processes | {operation["process"]})

    def update(self, ctx: Context, event: Op) -> Any:
        done = self.done or (event.get("type") == "ok" and event.get("process") in self.processes)
        updated = update(self.gen, ctx, event)
        if updated is self.gen and done == self.done:
            return self
        return UntilOk(updated, done, self.processes)


def until_ok(gen: Any) -> UntilOk:
    return UntilOk(gen)


# -- simulation ---------------------------------------------------------------


class Deadlock(RuntimeError):
    """The generator is pending with nothing in flight: it can never make progress."""


Completer = Callable[[Op, Context], Op]


def default_completer(latency_ns: int = 10) -> Completer:
    def complete(invoke: Op, ctx: Context) -> Op:
        return {
            **invoke,
            "type": "ok" if invoke["type"] == "invoke" else "info",
            "time_ns": invoke["time_ns"] + latency_ns,
        }

    return complete


def initial_workers(concurrency: int, *, with_nemesis: bool = True) -> dict[Thread, Process]:
    workers: dict[Thread, Process] = {t: t for t in range(concurrency)}
    if with_nemesis:
        workers[NEMESIS] = NEMESIS
    return workers


def next_process(process: Process, concurrency: int) -> Process:
    """Jepsen's rule: a process whose op ended ``info`` is retired; its thread gets this one."""
    return process if process == NEMESIS else int(process) + concurrency


def simulate(
    gen: Any,
    *,
    seed: int,
    concurrency: int,
    complete: Completer | None = None,
    max_ops: int = 10_000,
) -> list[Op]:
    """Drive ``gen`` with a fake clock; returns the history (invocations and completions).

    ``complete(invoke, ctx)`` returns the completion (its ``time_ns`` must not be
    before the invocation's). Sleep ops occupy their thread and are not recorded.
    """
    complete = complete or default_completer()
    rng = random.Random(seed)
    workers = initial_workers(concurrency)
    threads: tuple[Thread, ...] = tuple(workers)
    free: set[Thread] = set(threads)
    time_ns = 0
    in_flight: list[tuple[int, int, Op]] = []
    sequence = 0
    history: list[Op] = []

    def context() -> Context:
        return Context(time_ns, threads, frozenset(free), dict(workers), rng)

    def finish_one() -> None:
        nonlocal time_ns, gen
        at, _, completion = heapq.heappop(in_flight)
        time_ns = max(time_ns, at)
        thread = context().thread_of(completion["process"])
        assert thread is not None
        free.add(thread)
        if completion["type"] == "sleep":
            return
        history.append(completion)
        gen = update(gen, context(), completion)
        if completion["type"] == "info" and thread != NEMESIS:
            workers[thread] = next_process(completion["process"], concurrency)

    while len(history) < max_ops:
        result = op(gen, context())
        if result is None or result is PENDING:
            if not in_flight:
                if result is None:
                    break
                raise Deadlock(f"generator pending with nothing in flight at time_ns={time_ns}: {gen!r}")
            finish_one()
            continue
        operation, nxt = result  # type: ignore[misc]
        if in_flight and in_flight[0][0] <= operation["time_ns"]:
            finish_one()
            continue
        time_ns = max(time_ns, operation["time_ns"])
        thread = context().thread_of(operation["process"])
        assert thread is not None and thread in free, (operation, free)
        free.discard(thread)
        if operation["type"] == "sleep":
            done = {**operation, "time_ns": time_ns + operation["value"]}
            gen = nxt
        else:
            history.append(operation)
            gen = update(nxt, context(), operation)
            done = complete(operation, context())
        sequence += 1
        heapq.heappush(in_flight, (done["time_ns"], sequence, done))
    return history


def ops_of(gen_fn: Callable[[Context], Any]) -> Fn:
    """Readable alias: a generator calling ``gen_fn(ctx)`` for every operation."""
    return Fn(gen_fn)


def concat(gens: Iterable[Any]) -> Seq:
    return Seq(tuple(gens))
