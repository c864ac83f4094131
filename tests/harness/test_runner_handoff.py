"""The runner's hand-offs: workers that ask the generator for their own next op, under one lock.

Claims, on a system in this process that answers at once (so thousands of hand-offs
run in seconds, with the interpreter forced to switch threads every few µs):

- every op's invocation is in the history file before the client is called, and its
  completion after; indices are consecutive, times never go back, each process has
  at most one op open, and no two threads run an op of the same process;
- the ops asked for are the ones the generator gave, each once: with one client the
  run asks for exactly the ops :func:`core.generator.simulate` asks for with that seed;
- an ``info`` retires its process, and the next op of that thread uses ``p + concurrency``;
- the nemesis runs its schedule while client ops are in flight; ops scheduled in the
  future (rate limits) are started when they come due;
- a generator error raised in a worker fails the run (no hang) and teardown runs;
- a stop (as Ctrl-C and SIGTERM call it, from a signal handler) ends the run with
  every recorded line readable and at most one open op per client thread.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from checkers.history import read_history
from core import generator as gen
from core.scenario import WorkloadSpec
from core.system import OpIndeterminate
from tests.harness.nullsystem import FlagNemesis, NullSystem, null_runner
from workloads import register

pytestmark = pytest.mark.timeout(120)

SPEC = WorkloadSpec(rate_hz=0.0, keys=4)


@pytest.fixture(autouse=True)
def switch_often() -> Iterator[None]:
    """Threads switch every 10 µs instead of 5 ms, so critical sections really interleave."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(previous)


def lines(path: Path) -> list[dict[str, Any]]:
    """The history's lines as written (and each one readable by the checkers' reader)."""
    text = path.read_text()
    assert len(read_history(path)) == text.count("\n")
    return [json.loads(line) for line in text.splitlines()]


def check_well_formed(history: list[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    """Consecutive indices, times in order, and per process: invoke, completion, invoke, ...

    Returns the ops still open at the end, by process.
    """
    assert [op["index"] for op in history] == list(range(len(history)))
    assert all(a["time_ns"] <= b["time_ns"] for a, b in itertools.pairwise(history))
    open_ops: dict[Any, dict[str, Any]] = {}
    for op in history:
        if op["process"] == gen.NEMESIS:  # its invocation and completion are both "info"
            if open_ops.pop(gen.NEMESIS, None) is None:
                open_ops[gen.NEMESIS] = op
        elif op["type"] == "invoke":
            assert op["process"] not in open_ops, op
            open_ops[op["process"]] = op
        else:
            invoke = open_ops.pop(op["process"])
            assert (invoke["f"], invoke.get("key")) == (op["f"], op.get("key"))
    return open_ops


def test_invocations_are_written_before_the_call_and_completions_after(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    running: set[int] = set()
    guard = threading.Lock()
    problems: list[str] = []

    def on_call(process: int, f: str, key: str, value: Any) -> None:
        with guard:
            if process in running:
                problems.append(f"process {process} runs two ops at once")
            running.add(process)
        last = [op for op in map(json.loads, path.read_text().splitlines()) if op["process"] == process][-1]
        if (last["type"], last["f"], str(last["key"])) != ("invoke", f, key):
            problems.append(f"process {process} called for {f} {key} before its invocation was written")
        with guard:
            running.discard(process)

    system = NullSystem(on_call)
    runner = null_runner(
        path, system=system, client_generator=gen.limit(600, register.generator(SPEC)), concurrency=12
    )
    outcome = runner.run()
    runner.recorder.close()
    assert outcome.completed and outcome.error is None
    assert problems == []
    history = lines(path)
    check_well_formed(history)
    main = [op for op in history if op["type"] == "invoke"][:600]
    assert len(main) == 600 and all(op["type"] == "invoke" for op in main)
    values = [op["value"] for op in main if op["f"] == "write"]
    assert len(values) == len(set(values))  # each generated op started once
    assert system.torn_down


def test_one_client_asks_for_exactly_the_simulators_ops(tmp_path: Path) -> None:
    client_gen = gen.limit(300, register.generator(SPEC))
    simulated = gen.simulate(gen.clients(client_gen), seed=7, concurrency=1)
    runner = null_runner(
        tmp_path / "history.jsonl", system=NullSystem(), client_generator=client_gen, concurrency=1, seed=7
    )
    assert runner.run().completed
    runner.recorder.close()
    ran = [op for op in lines(tmp_path / "history.jsonl") if op["type"] == "invoke"][:300]

    def what(op: dict[str, Any]) -> tuple[Any, ...]:
        value = op["value"]
        return op["f"], op["key"], tuple(value) if isinstance(value, list | tuple) else value

    assert [what(op) for op in ran] == [what(op) for op in simulated if op["type"] == "invoke"]


def test_an_info_retires_its_process(tmp_path: Path) -> None:
    calls = itertools.count()

    def on_call(process: int, f: str, key: str, value: Any) -> None:
        if next(calls) % 5 == 4:
            raise OpIndeterminate("timed out")

    system = NullSystem(on_call)
    concurrency = 4
    runner = null_runner(
        tmp_path / "history.jsonl",
        system=system,
        client_generator=gen.limit(400, register.generator(SPEC)),
        concurrency=concurrency,
    )
    assert runner.run().completed
    runner.recorder.close()
    history = lines(tmp_path / "history.jsonl")
    check_well_formed(history)
    retired = set()
    for op in history:
        assert op["process"] not in retired, op
        if op["type"] == "info":
            retired.add(op["process"])
    assert len(retired) >= 400 // 5 - concurrency
    # a thread's processes are t, t + concurrency, t + 2 * concurrency, ...: each successor of a retired one
    processes = {op["process"] for op in history}
    assert all(p < concurrency or p - concurrency in retired for p in processes)
    assert len(set(system.processes)) == len(system.processes)  # a retired process never gets a client again


def test_the_nemesis_runs_while_client_ops_are_in_flight(tmp_path: Path) -> None:
    nemesis = FlagNemesis()

    def on_call(process: int, f: str, key: str, value: Any) -> None:
        if process == 0:  # every op of process 0 waits for the fault: the nemesis must start meanwhile
            assert nemesis.started.wait(30), "the nemesis never started while a client op was in flight"

    schedule = [
        gen.sleep(0.01),
        {"type": "info", "f": "start-flag", "value": None},
        gen.sleep(0.01),
        {"type": "info", "f": "stop-flag", "value": None},
    ]
    runner = null_runner(
        tmp_path / "history.jsonl",
        system=NullSystem(on_call),
        client_generator=gen.stagger(0.001, gen.limit(40, register.generator(SPEC))),
        concurrency=3,
        nemesis=nemesis,
        nemesis_generator=schedule,
    )
    outcome = runner.run()
    runner.recorder.close()
    assert outcome.completed and outcome.error is None
    history = lines(tmp_path / "history.jsonl")
    check_well_formed(history)
    assert nemesis.calls == ["start", "stop", "stop"]  # the schedule's, then the heal phase's
    nemesis_fs = [op["f"] for op in history if op["process"] == gen.NEMESIS]
    assert nemesis_fs == ["start-flag"] * 2 + ["stop-flag"] * 4
    first_start = next(op["index"] for op in history if op["f"] == "start-flag")
    first_of_0 = next(op for op in history if op["process"] == 0)
    assert first_of_0["type"] == "invoke" and first_of_0["index"] < first_start
    client_invokes = [op for op in history if op["type"] == "invoke" and op["process"] != gen.NEMESIS]
    assert len(client_invokes) >= 40  # every rate-limited op started (then the final reads)


class Exploding(gen.Generator):
    """Gives reads; raises when told about its ``after``-th completion."""

    def __init__(self, after: int, seen: int = 0) -> None:
        self.after, self.seen = after, seen

    def op(self, ctx: gen.Context) -> gen.Result:
        filled = gen.fill_in({"f": "read", "key": 1, "value": None}, ctx)
        return filled if filled is gen.PENDING else (filled, self)  # type: ignore[return-value]

    def update(self, ctx: gen.Context, event: dict[str, Any]) -> Any:
        if event["type"] == "invoke":
            return self
        if self.seen + 1 >= self.after:
            raise ValueError("generator broke")
        return Exploding(self.after, self.seen + 1)


def test_a_generator_error_in_a_worker_fails_the_run_and_teardown_runs(tmp_path: Path) -> None:
    system = NullSystem()
    runner = null_runner(
        tmp_path / "history.jsonl", system=system, client_generator=Exploding(50), concurrency=5
    )
    outcome = runner.run()
    runner.recorder.close()
    assert not outcome.completed
    assert outcome.error == "ValueError: generator broke"
    assert system.torn_down
    check_well_formed(lines(tmp_path / "history.jsonl"))


@pytest.mark.parametrize("by_signal", [False, True], ids=["stop", "signal"])
def test_a_stop_mid_run_ends_it_with_a_readable_history(tmp_path: Path, by_signal: bool) -> None:
    calls = itertools.count()
    runner_box: list[Any] = []

    def on_call(process: int, f: str, key: str, value: Any) -> None:
        if next(calls) == 2000:
            if by_signal:
                os.kill(os.getpid(), signal.SIGUSR1)  # handled on the main thread, inside the run
            else:
                runner_box[0].stop()

    concurrency = 8
    runner = null_runner(
        tmp_path / "history.jsonl",
        system=NullSystem(on_call),
        client_generator=register.generator(SPEC),
        concurrency=concurrency,
    )
    runner_box.append(runner)
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: runner.stop())
    try:
        outcome = runner.run()
    finally:
        signal.signal(signal.SIGUSR1, previous)
    runner.recorder.close()
    assert outcome.interrupted and not outcome.completed
    history = lines(tmp_path / "history.jsonl")
    assert len(check_well_formed(history)) <= concurrency
    assert len(history) >= 2000
