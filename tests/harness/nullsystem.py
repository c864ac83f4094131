"""A system in this process that answers every op at once, and a runner around it.

Test and bench code only: with no nodes and no network, what a run costs is the
runner's own work (generator, history, hand-offs between threads), and the
runner's thread hand-offs can be tested by the thousand in seconds. Each call
goes through ``on_call(process, f, key, value)`` first, where a test can block,
fail an op, or stop the run at a chosen point.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core import generator as gen
from harness.runner import Recorder, Runner
from nemeses.packages import Combined, Package
from workloads import register

OnCall = Callable[[int, str, str, Any], None]


class NullClient:
    last_node = "n1"

    def __init__(self, system: NullSystem, process: int) -> None:
        self.system, self.process = system, process

    def _call(self, f: str, key: str, value: Any) -> Any:
        self.system.on_call(self.process, f, key, value)
        if f == "write":
            with self.system.lock:
                self.system.values[key] = value
            return None
        with self.system.lock:
            current = self.system.values.get(key)
        return current

    def read(self, key: str) -> Any:
        return self._call("read", key, None)

    def write(self, key: str, value: Any) -> Any:
        return self._call("write", key, value)

    def cas(self, key: str, old: Any, new: Any) -> Any:
        self.system.on_call(self.process, "cas", key, [old, new])
        return None

    def close(self) -> None:
        pass


class NullSystem:
    """Answers at once; remembers which processes opened clients and whether it was torn down."""

    name = "null"

    def __init__(self, on_call: OnCall | None = None) -> None:
        self.on_call: OnCall = on_call or (lambda process, f, key, value: None)
        self.lock = threading.Lock()
        self.values: dict[str, Any] = {}
        self.processes: list[int] = []
        self.torn_down = False

    def node_names(self) -> tuple[str, ...]:
        return ("n1",)

    def setup(self) -> None:
        pass

    def open_client(self, *, process: int, seed: int) -> NullClient:
        with self.lock:
            self.processes.append(process)
        return NullClient(self, process)

    def primary(self) -> str | None:
        return "n1"

    def wait_healthy(self, *, timeout_s: float) -> bool:
        return True

    def teardown(self, *, keep_data: bool) -> list[str]:
        self.torn_down = True
        return []


class FlagNemesis:
    """A fault that only records that it was started and stopped (kind ``flag``)."""

    kind = "flag"

    def __init__(self) -> None:
        self.active: dict[str, Any] | None = None
        self.calls: list[str] = []
        self.started = threading.Event()

    def start(self) -> dict[str, Any]:
        self.calls.append("start")
        self.started.set()
        self.active = {"targets": ["n1"]}
        return {"targets": ["n1"]}

    def stop(self) -> dict[str, Any]:
        self.calls.append("stop")
        self.active = None
        return {"targets": ["n1"]}


def null_runner(
    history: Path,
    *,
    system: NullSystem,
    client_generator: Any,
    concurrency: int,
    seed: int = 1,
    time_limit_s: float = 600.0,
    nemesis: FlagNemesis | None = None,
    nemesis_generator: Any = None,
    workload: Any = register,
) -> Runner:
    """A runner over ``system`` with the register workload (or ``workload``) and no firewall."""
    package = Package(
        nemesis=Combined({"flag": nemesis} if nemesis is not None else {}),
        generator=nemesis_generator,
        final_generator=gen.once({"type": "info", "f": "stop-flag", "value": None})
        if nemesis is not None
        else None,
        kinds=("flag",) if nemesis is not None else (),
        perf=(),
    )
    return Runner(
        system=system,  # type: ignore[arg-type]
        package=package,
        recorder=Recorder(history),
        firewall=None,
        concurrency=concurrency,
        seed=seed,
        time_limit_s=time_limit_s,
        recovery_s=1.0,
        client_generator=client_generator,
        workload=workload,
    )
