"""Generators driven by a simulated clock: exact histories for a fixed seed.

Each test states the schedule it claims a combinator produces and compares the
whole simulated history, so a change in semantics shows up as a diff.
"""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest

from core import generator as g

NS = 1_000_000_000


def brief(history: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(o["time_ns"], o["process"], o["type"], o["f"]) for o in history]


def test_dict_is_emitted_once_and_repeat_makes_it_endless() -> None:
    assert brief(g.simulate({"f": "read"}, seed=1, concurrency=2)) == [
        (0, 0, "invoke", "read"),
        (10, 0, "ok", "read"),
    ]
    history = g.simulate(g.clients(g.limit(3, g.repeat({"f": "read"}))), seed=1, concurrency=2)
    assert brief(history) == [
        (0, 0, "invoke", "read"),
        (0, 1, "invoke", "read"),
        (10, 0, "ok", "read"),
        (10, 1, "ok", "read"),
        (10, 0, "invoke", "read"),
        (20, 0, "ok", "read"),
    ]


def test_clients_and_nemesis_routing_keep_ops_on_their_threads() -> None:
    gen = g.clients(
        g.limit(4, g.repeat({"f": "write"})),
        g.once({"type": "info", "f": "start-partition"}),
    )
    history = g.simulate(gen, seed=3, concurrency=2)
    nemesis_ops = [o for o in history if o["process"] == "nemesis"]
    client_ops = [o for o in history if o["process"] != "nemesis"]
    assert [o["f"] for o in nemesis_ops] == ["start-partition", "start-partition"]
    assert [o["type"] for o in nemesis_ops] == ["info", "info"]
    assert {o["f"] for o in client_ops} == {"write"}
    assert len([o for o in client_ops if o["type"] == "invoke"]) == 4


def test_delay_spaces_ops_and_time_limit_cuts_them() -> None:
    gen = g.clients(g.time_limit(1e-7, g.delay(3e-8, g.repeat({"f": "read"}))))
    history = g.simulate(gen, seed=1, concurrency=3)
    assert [o["time_ns"] for o in history if o["type"] == "invoke"] == [0, 30, 60, 90]


def test_stagger_is_deterministic_for_a_seed_and_differs_across_seeds() -> None:
    def run(seed: int) -> list[int]:
        gen = g.clients(g.limit(6, g.stagger(1e-6, g.repeat({"f": "read"}))))
        return [o["time_ns"] for o in g.simulate(gen, seed=seed, concurrency=1) if o["type"] == "invoke"]

    assert run(7) == run(7)
    assert run(7) != run(8)
    gaps = [b - a for a, b in zip(run(7), run(7)[1:], strict=False)]
    assert all(0 <= gap < 2_000 for gap in gaps)


def test_mix_draws_from_the_seed_and_drops_exhausted_generators() -> None:
    gen = g.clients(g.mix([g.limit(3, g.repeat({"f": "read"})), g.limit(2, g.repeat({"f": "write"}))]))
    first = g.simulate(gen, seed=11, concurrency=1)
    second = g.simulate(gen, seed=11, concurrency=1)
    assert brief(first) == brief(second)
    fs = [o["f"] for o in first if o["type"] == "invoke"]
    assert sorted(fs) == ["read", "read", "read", "write", "write"]


def test_seeded_stagger_and_mix_answer_the_same_however_often_asked() -> None:
    """With their own seed, asking again in the same state (with the run's rng moved on) gives
    the same op and the same next state; the values still cover the range."""
    seeded = g.stagger(
        1.0, g.mix([g.repeat({"f": "a"}), g.repeat({"f": "b"}), g.repeat({"f": "c"})], seed=5), seed=6
    )
    rng = random.Random(0)
    ctx = g.Context(0, (0,), frozenset({0}), {0: 0}, rng)
    state, fs, times = seeded, [], []
    for _ in range(300):
        first = g.op(state, ctx)
        rng.random()
        again = g.op(state, ctx)
        assert first is not None and first is not g.PENDING and again is not None and again is not g.PENDING
        assert first[0] == again[0] and first[1] == again[1]  # type: ignore[index]
        fs.append(first[0]["f"])  # type: ignore[index]
        times.append(first[0]["time_ns"])  # type: ignore[index]
        state = first[1]  # type: ignore[index]
    assert {fs.count(f) for f in "abc"} <= set(range(70, 131)), fs
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(0 <= gap < 2 * g.NS_PER_S for gap in gaps) and max(gaps) > 1.5 * g.NS_PER_S


def test_phases_wait_for_every_thread_before_the_next_phase() -> None:
    def slow_first(invoke: dict[str, Any], ctx: g.Context) -> dict[str, Any]:
        latency = 100 if invoke["process"] == 0 else 10
        return {**invoke, "type": "ok", "time_ns": invoke["time_ns"] + latency}

    gen = g.clients(g.phases(g.limit(2, g.repeat({"f": "write"})), g.each_thread(g.once({"f": "read"}))))
    history = g.simulate(gen, seed=1, concurrency=2, complete=slow_first)
    assert brief(history) == [
        (0, 0, "invoke", "write"),
        (0, 1, "invoke", "write"),
        (10, 1, "ok", "write"),
        (100, 0, "ok", "write"),
        (100, 0, "invoke", "read"),
        (100, 1, "invoke", "read"),
        (110, 1, "ok", "read"),
        (200, 0, "ok", "read"),
    ]


def test_info_retires_the_process_and_the_thread_gets_a_fresh_one() -> None:
    def info_on_process_zero(invoke: dict[str, Any], ctx: g.Context) -> dict[str, Any]:
        kind = "info" if invoke["process"] == 0 else "ok"
        return {**invoke, "type": kind, "time_ns": invoke["time_ns"] + 10}

    gen = g.clients(g.limit(4, g.repeat({"f": "write"})))
    history = g.simulate(gen, seed=1, concurrency=2, complete=info_on_process_zero)
    assert [o["process"] for o in history if o["type"] == "invoke"] == [0, 1, 2, 1]


def test_each_thread_gives_every_thread_its_own_copy() -> None:
    gen = g.clients(g.each_thread(g.limit(2, g.repeat({"f": "read"}))))
    history = g.simulate(gen, seed=1, concurrency=3)
    invokes = [o["process"] for o in history if o["type"] == "invoke"]
    assert sorted(invokes) == [0, 0, 1, 1, 2, 2]


def test_reserve_gives_the_first_threads_their_own_generator() -> None:
    gen = g.clients(
        g.limit(8, g.reserve(1, g.repeat({"f": "write"}), 1, g.repeat({"f": "cas"}), g.repeat({"f": "read"})))
    )
    history = g.simulate(gen, seed=1, concurrency=4)
    by_process: dict[Any, set[str]] = {}
    for o in history:
        by_process.setdefault(o["process"], set()).add(o["f"])
    assert by_process == {0: {"write"}, 1: {"cas"}, 2: {"read"}, 3: {"read"}}


def test_flip_flop_alternates_and_stops_when_one_side_ends() -> None:
    gen = g.nemesis(
        g.flip_flop(
            g.repeat({"type": "info", "f": "start"}), g.limit(2, g.repeat({"type": "info", "f": "stop"}))
        )
    )
    history = g.simulate(gen, seed=1, concurrency=1)
    assert [o["f"] for o in history if o["time_ns"] % 20 == 0] == ["start", "stop", "start", "stop", "start"]


def test_cycle_times_switches_generators_by_the_clock() -> None:
    gen = g.clients(
        g.time_limit(
            60e-9,
            g.cycle_times(
                (20e-9, g.delay(5e-9, g.repeat({"f": "read"}))),
                (10e-9, g.delay(5e-9, g.repeat({"f": "write"}))),
            ),
        )
    )
    history = g.simulate(gen, seed=1, concurrency=1, complete=g.default_completer(latency_ns=1))
    invokes = [(o["time_ns"], o["f"]) for o in history if o["type"] == "invoke"]
    assert invokes == [
        (0, "read"), (5, "read"), (10, "read"), (15, "read"),
        (20, "write"), (25, "write"),
        (30, "read"), (35, "read"), (40, "read"), (45, "read"),
        (50, "write"), (55, "write"),
    ]  # fmt: skip


def test_until_ok_stops_after_the_first_ok() -> None:
    outcomes = iter(["fail", "info", "ok", "ok"])

    def complete(invoke: dict[str, Any], ctx: g.Context) -> dict[str, Any]:
        return {**invoke, "type": next(outcomes), "time_ns": invoke["time_ns"] + 10}

    gen = g.clients(g.until_ok(g.repeat({"f": "read"})))
    history = g.simulate(gen, seed=1, concurrency=1, complete=complete)
    assert [o["type"] for o in history] == ["invoke", "fail", "invoke", "info", "invoke", "ok"]
    assert [o["process"] for o in history if o["type"] == "invoke"] == [0, 0, 1]


def test_sleep_holds_the_thread_and_is_not_recorded() -> None:
    gen = g.nemesis([{"type": "info", "f": "start"}, g.sleep(5e-7), {"type": "info", "f": "stop"}])
    history = g.simulate(gen, seed=1, concurrency=1)
    assert brief(history) == [
        (0, "nemesis", "info", "start"),
        (10, "nemesis", "info", "start"),
        (510, "nemesis", "info", "stop"),
        (520, "nemesis", "info", "stop"),
    ]


def test_cycle_restarts_and_once_and_limit_bound_it() -> None:
    gen = g.clients(g.limit(5, g.cycle([{"f": "a"}, {"f": "b"}])))
    history = g.simulate(gen, seed=1, concurrency=1)
    assert [o["f"] for o in history if o["type"] == "invoke"] == ["a", "b", "a", "b", "a"]
    assert len(g.simulate(g.clients(g.once(g.repeat({"f": "x"}))), seed=1, concurrency=3)) == 2


def test_functions_are_asked_for_every_op() -> None:
    counter = iter(range(100))

    def write(ctx: g.Context) -> dict[str, Any]:
        return {"f": "write", "value": next(counter)}

    history = g.simulate(g.clients(g.limit(3, write)), seed=1, concurrency=2)
    values = [o["value"] for o in history if o["type"] == "invoke"]
    assert len(values) == 3
    assert values == sorted(set(values))  # asked afresh each time: unique, increasing


def test_a_pending_generator_with_nothing_in_flight_is_a_deadlock() -> None:
    class NeverReady(g.Generator):
        def op(self, ctx: g.Context) -> g.Result:
            return g.PENDING

    with pytest.raises(g.Deadlock):
        g.simulate(NeverReady(), seed=1, concurrency=1)
