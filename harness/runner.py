"""Drive one test: worker threads, a nemesis worker, the generator interpreter, teardown.

Jepsen's model: one worker thread per client "thread", each running one
logical *process* at a time, plus a nemesis thread. The interpreter (this
module's main loop, on the caller's thread) asks the generator for the next
op, records its invocation, hands it to the free thread it names, and feeds
completions back into the generator. A process whose op ends ``info`` may
still have its op take effect at any time, so it is retired: its thread
continues as process ``p + concurrency`` with a fresh client.

Phases: setup (start nodes, wait for a primary) -> main (clients + nemesis
until the time limit) -> heal (every fault kind's stop) -> recovery (wait for
a healthy cluster) -> final reads (every key used) -> teardown. Teardown
always runs: on a normal end, an exception, Ctrl-C or SIGTERM. It heals what
is still injected (recorded in the history with ``"teardown": true``), stops
every node, and returns what it did and what failed, which is reported beside
the verdict, never instead of it.

The history is appended and flushed as ops happen, invocations by the
interpreter and completions by the worker that saw them, under one lock that
also takes the timestamp, so the file's order is the real-time order the
checkers rely on.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from pathlib import Path
from time import monotonic_ns
from typing import Any

from checkers.history import OP_TYPES, Op, freeze
from clusters.firewall import Firewall
from core import generator as gen
from core.system import Client, System
from nemeses.packages import HEAL_ORDER, Package
from workloads import register

logger = logging.getLogger(__name__)

POLL_S = 0.05
DRAIN_AFTER_STOP_S = 2.0
FINAL_READ_ATTEMPTS = 3
FINAL_READ_RETRY_S = 1.0


INTERRUPTED = "interrupted"


def _not_json(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# The standard library's C encoder with ``json.dumps(..., separators=(",", ":"))``'s settings, built
# once: the same bytes as HistoryWriter writes (ASCII only, floats by repr, NaN allowed), without a
# new JSONEncoder and Op per line. No circular check (markers None): a history value is a tree.
_ENCODER = (
    c_make_encoder(None, _not_json, encode_basestring_ascii, None, ":", ",", False, False, True)
    if c_make_encoder is not None
    else None
)
_OP_TYPES = frozenset(OP_TYPES)


def encode_line(entry: dict[str, Any]) -> bytes:
    """One history line (with its newline), exactly as :class:`HistoryWriter` writes ``entry``.

    Checks the fields as :meth:`Op.from_json` does (a bad op raises the same
    ``HistoryFormatError``), cheaply when the field types are the usual ones.
    """
    process, f = entry["process"], entry["f"]
    error, node = entry["error"], entry["node"]
    if not (
        (type(process) is int or type(process) is str)
        and entry["type"] in _OP_TYPES
        and type(f) is str
        and f
        and (error is None or type(error) is str)
        and (node is None or type(node) is str)
    ):
        Op.from_json(entry)
    for name in ("key", "value"):
        if isinstance(entry[name], list | tuple):
            freeze(entry[name])  # the depth bound a reader enforces
    if _ENCODER is None:
        return (json.dumps(entry, separators=(",", ":")) + "\n").encode()
    return ("".join(_ENCODER(entry, 0)) + "\n").encode()


class HistoryFile:
    """``history.jsonl`` opened for appending, one ``write(2)`` per line (no buffer in this process).

    What HistoryWriter's write-then-flush gives: a line is in the kernel when
    :meth:`write_line` returns, so a reader sees it at once and a SIGKILL of the
    controller loses nothing written; a failed write leaves at most a torn last
    line, which :func:`cut_torn_line` removes.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fd: int | None = os.open(
            self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o666
        )

    def write_line(self, line: bytes) -> None:
        if self._fd is None:
            raise ValueError(f"the history {self.path} is closed")
        written = os.write(self._fd, line)
        while written < len(line):  # a short write (a disk filling up): each round writes >= 1 byte or raises
            line = line[written:]
            written = os.write(self._fd, line)

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


class Recorder:
    """Thread-safe history appender; the lock also orders timestamps.

    Each op is encoded and written to ``history.jsonl`` as one line while the lock
    is held, before :meth:`record` returns: appended and handed to the kernel as it
    happens (contracts §4), in the order of its index and timestamp.

    A write that fails (a full disk: ENOSPC) never raises into a worker: the
    torn line is cut off so the file ends at its last whole line, ``on_write_error``
    is told (the session frees its reserve and stops the run), and the op is
    written again once; if that fails too the history stays as it is and later
    ops are counted in ``dropped``. Indices are assigned here, so they stay
    consecutive across the re-opened file.
    """

    def __init__(
        self,
        history: str | os.PathLike[str],
        *,
        on_write_error: Callable[[OSError], None] | None = None,
    ) -> None:
        self._writer = HistoryFile(history)
        self._lock = threading.Lock()
        self._closed = False
        self._on_write_error = on_write_error
        self.write_error: OSError | None = None
        self.frozen = False  # the history could not be written even after the error was handled
        self.dropped = 0
        self.counts: Counter[str] = Counter()
        self.keys: set[Any] = set()
        self.ok_read_index: dict[Any, int] = {}  # key -> index of its latest ok read
        self.last_index = -1

    @property
    def path(self) -> Path:
        return self._writer.path

    def _append(self, line: bytes) -> bool:
        """Write one line; on an OSError cut the torn line, report, retry once. False: not written."""
        try:
            self._writer.write_line(line)
            return True
        except OSError as exc:
            self._abandon_writer()
            if self.write_error is None:
                self.write_error = exc
                if self._on_write_error is not None:
                    try:
                        self._on_write_error(exc)
                    except Exception:  # the handler is best effort; the history is what matters here
                        logger.exception("handling a history write error failed")
        try:
            self._writer = HistoryFile(self._writer.path)
            self._writer.write_line(line)
            return True
        except OSError:
            self._abandon_writer()
            self.frozen = True
            return False

    def _abandon_writer(self) -> None:
        """Close the failed file and cut it at its last newline."""
        with contextlib.suppress(OSError):
            self._writer.close()
        cut_torn_line(self._writer.path)

    def record(self, op: dict[str, Any]) -> dict[str, Any] | None:
        get = op.get
        with self._lock:
            if self._closed:
                return None
            index = self.last_index + 1
            entry = {
                "index": index,
                "time_ns": monotonic_ns(),
                "process": op["process"],
                "type": op["type"],
                "f": op["f"],
                "key": get("key"),
                "value": get("value"),
                "error": get("error"),
                "node": get("node"),
            }
            if self.frozen or not self._append(encode_line(entry)):
                self.dropped += 1
                return None
            self.last_index = index
            op_type = entry["type"]
            if entry["process"] != gen.NEMESIS:
                self.counts[op_type] += 1
                if op_type == "invoke":
                    if entry["key"] is not None:
                        self.keys.add(entry["key"])
                elif op_type == "ok" and entry["f"] == "read":
                    self.ok_read_index[entry["key"]] = index
            return entry

    def close(self) -> None:
        with self._lock:
            self._closed = True
            try:
                self._writer.close()
            except OSError:
                self._abandon_writer()


def cut_torn_line(path: Path) -> int:
    """Truncate ``path`` after its last newline (a torn last line is what a failed write leaves).

    Truncating needs no free space. Returns how many bytes were cut.
    """
    try:
        with open(path, "rb+") as handle:
            size = handle.seek(0, os.SEEK_END)
            end = size
            while end > 0:
                start = max(0, end - 65536)
                handle.seek(start)
                chunk = handle.read(end - start)
                newline = chunk.rfind(b"\n")
                if newline >= 0:
                    keep = start + newline + 1
                    break
                end = start
            else:
                keep = 0
            if keep < size:
                handle.truncate(keep)
            return size - keep
    except OSError:
        logger.exception("could not cut the torn line of %s", path)
        return 0


class Mailbox:
    """A queue with one reader: items in a deque, the reader parked on a lock that writers release.

    One hand-off costs a deque append and a lock release (queue.Queue's Condition
    costs several times that in Python code). Not queue.SimpleQueue: on Python 3.11
    its ``get(timeout=...)`` on the main thread could hang for good once a signal
    (Ctrl-C, SIGTERM) arrived during the wait, while ``Lock.acquire(timeout=...)``
    runs the handler and goes on waiting out the rest of its timeout.
    """

    __slots__ = ("_items", "_wake")

    def __init__(self) -> None:
        self._items: deque[Any] = deque()
        self._wake = threading.Lock()
        self._wake.acquire()  # held while nothing is pending; put() releases it

    def put(self, item: Any) -> None:
        self._items.append(item)  # before the release: a reader that wakes always finds it
        if self._wake.locked():
            with contextlib.suppress(RuntimeError):  # another writer released it first
                self._wake.release()

    def empty(self) -> bool:
        return not self._items

    def get(self, timeout: float | None = None) -> Any:
        """The oldest item; waits for one (up to ``timeout`` s, then ``queue.Empty``)."""
        items = self._items
        if items:
            return items.popleft()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:  # each round consumes one release; bounded by the deadline when there is one
            if deadline is None:
                self._wake.acquire()
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._wake.acquire(timeout=remaining):
                    if items:
                        return items.popleft()
                    raise queue.Empty
            if items:
                return items.popleft()


@dataclass(slots=True)
class RunState:
    """What the progress display reads (written by the runner only)."""

    phase: str = "setup"
    started_ns: int = 0
    main_deadline_ns: int | None = None
    primary: str | None = None
    active_faults: dict[str, Any] = field(default_factory=dict)
    nemesis_errors: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Outcome:
    completed: bool  # every phase ran (not interrupted, no harness error)
    interrupted: bool
    error: str | None
    recovered: bool | None
    teardown: list[str]
    teardown_errors: list[str]


class _ClientWorker(threading.Thread):
    def __init__(self, runner: Runner, thread_id: int) -> None:
        super().__init__(name=f"client-{thread_id}", daemon=True)
        self.runner, self.thread_id = runner, thread_id
        self.inbox = Mailbox()
        self._client: Client | None = None
        self._process: Any = None

    def _client_for(self, process: Any) -> Client:
        if self._client is None or self._process != process:
            if self._client is not None:
                self._client.close()
            seed = self.runner.seed * 1_000_003 + int(process) * 7919 + 1
            self._client = self.runner.system.open_client(process=int(process), seed=seed)
            self._process = process
        return self._client

    def run(self) -> None:
        while True:
            op = self.inbox.get()
            if op is None:
                break
            if op["type"] == "sleep":
                self.runner.stop_event.wait(op["value"] / 1e9)
                self.runner.completions.put((self.thread_id, {**op}))
                continue
            try:
                client = self._client_for(op["process"])
                result = self.runner.workload.invoke(client, op)
                node = client.last_node
            except Exception as exc:  # opening a client failed: outcome unknown, keep the thread alive
                logger.exception("client thread %s failed", self.thread_id)
                result, node = {"type": "info", "value": op.get("value"), "error": f"client: {exc!r}"}, None
            completion = {**op, **result, "node": node}
            recorded = self.runner.recorder.record(completion) or completion
            self.runner.completions.put((self.thread_id, recorded))
        if self._client is not None:
            self._client.close()


class _NemesisWorker(threading.Thread):
    def __init__(self, runner: Runner) -> None:
        super().__init__(name="nemesis", daemon=True)
        self.runner = runner
        self.inbox = Mailbox()

    def run(self) -> None:
        while True:
            op = self.inbox.get()
            if op is None:
                break
            if op["type"] == "sleep":
                self.runner.stop_event.wait(op["value"] / 1e9)
                self.runner.completions.put((gen.NEMESIS, {**op}))
                continue
            try:
                value = self.runner.package.nemesis.invoke(op["f"])
                error = None
            except Exception as exc:
                logger.exception("nemesis op %s failed", op["f"])
                value, error = {"targets": []}, f"{type(exc).__name__}: {exc}"
                self.runner.state.nemesis_errors.append(f"{op['f']}: {error}")
            self.runner.state.active_faults = self.runner.package.nemesis.active()
            completion = {**op, "type": "info", "value": value, "error": error}
            recorded = self.runner.recorder.record(completion) or completion
            self.runner.completions.put((gen.NEMESIS, recorded))


class Runner:
    def __init__(
        self,
        *,
        system: System,
        package: Package,
        recorder: Recorder,
        firewall: Firewall | None,
        concurrency: int,
        seed: int,
        time_limit_s: float,
        recovery_s: float,
        client_generator: Any,
        state: RunState | None = None,
        workload: Any = register,
        convergence: Any = None,
    ) -> None:
        self.system, self.package, self.recorder, self.firewall = system, package, recorder, firewall
        self.concurrency, self.seed = concurrency, seed
        self.time_limit_s, self.recovery_s = time_limit_s, recovery_s
        self.client_generator = client_generator
        self.workload = workload  # a workloads module: invoke(client, op), final_reads(keys)
        self.state = state or RunState()
        self.convergence = convergence  # harness.convergence.ConvergenceMonitor, or None
        self.stop_event = threading.Event()
        self.stop_reason: str | None = None  # why stop_event was set: INTERRUPTED, or what went wrong
        self.completions = Mailbox()  # (thread, op) pairs
        self.rng = random.Random(seed)
        self.workers: dict[Any, Any] = {t: t for t in range(concurrency)}
        self.workers[gen.NEMESIS] = gen.NEMESIS
        self._threads: dict[Any, _ClientWorker | _NemesisWorker] = {}
        self._busy: set[Any] = set()
        # What every context of the run shares, kept up to date as threads get busy or free and
        # processes are retired (instead of rebuilt for each of the several contexts an op needs):
        # the same threads tuple lets Context.restrict remember its filtering.
        self._thread_tuple: tuple[Any, ...] = tuple(self.workers)
        self._all_threads = frozenset(self._thread_tuple)
        self._free = self._all_threads
        self._workers_view: dict[Any, Any] = dict(self.workers)  # never changed: replaced
        self._thread_of: dict[Any, Any] = {p: t for t, p in self.workers.items()}

    def stop(self, reason: str = INTERRUPTED) -> None:
        """Ask the run to end now (teardown still runs); the first reason given is the one recorded."""
        if self.stop_reason is None:
            self.stop_reason = reason
        self.stop_event.set()

    # -- the interpreter --------------------------------------------------------------

    def _context(self) -> gen.Context:
        return gen.Context(monotonic_ns(), self._thread_tuple, self._free, self._workers_view, self.rng)

    def _set_busy(self, thread: Any, busy: bool) -> None:
        if busy:
            self._busy.add(thread)
        else:
            self._busy.discard(thread)
        self._free = self._all_threads.difference(self._busy)

    def _complete(self, thread: Any, op: dict[str, Any], generator: Any) -> Any:
        self._set_busy(thread, False)
        if op["type"] == "sleep":
            return generator
        generator = gen.update(generator, self._context(), op)
        if op["type"] == "info" and thread != gen.NEMESIS:
            process = gen.next_process(op["process"], self.concurrency)
            del self._thread_of[self.workers[thread]]
            self.workers[thread] = process
            self._thread_of[process] = thread
            self._workers_view = dict(self.workers)
        return generator

    def _wait_completion(self, timeout_s: float, generator: Any) -> Any:
        completions = self.completions
        if timeout_s > 0:
            try:
                thread, op = completions.get(timeout=timeout_s)
            except queue.Empty:
                return generator
            generator = self._complete(thread, op, generator)
        while not completions.empty():  # whatever else is ready (this thread is the only reader)
            thread, op = completions.get(0)
            generator = self._complete(thread, op, generator)
        return generator

    def interpret(self, generator: Any, *, stop: Callable[[], bool]) -> bool:
        """Run ``generator`` to exhaustion (True) or until ``stop()`` (False)."""
        while True:
            generator = self._wait_completion(0, generator)
            if stop():
                return False
            ctx = self._context()
            result = gen.op(generator, ctx)
            if result is None:
                if not self._busy:
                    return True
                generator = self._wait_completion(POLL_S, generator)
                continue
            if result is gen.PENDING:
                generator = self._wait_completion(POLL_S, generator)
                continue
            operation, nxt = result  # type: ignore[misc]
            wait_s = (operation["time_ns"] - ctx.time_ns) / 1e9
            if wait_s > 0:
                generator = self._wait_completion(min(wait_s, POLL_S), generator)
                continue
            generator = self._dispatch(operation, nxt)

    def _dispatch(self, operation: dict[str, Any], nxt: Any) -> Any:
        thread = self._thread_of.get(operation["process"])
        assert thread is not None and thread not in self._busy, (operation, self._busy)
        self._set_busy(thread, True)
        if operation["type"] == "sleep":
            self._threads[thread].inbox.put(operation)
            return nxt
        recorded = self.recorder.record(operation) or operation
        self._threads[thread].inbox.put(recorded)
        return gen.update(nxt, self._context(), recorded)

    # -- phases -----------------------------------------------------------------------

    def _start_threads(self) -> None:
        for t in range(self.concurrency):
            self._threads[t] = _ClientWorker(self, t)
        self._threads[gen.NEMESIS] = _NemesisWorker(self)
        for thread in self._threads.values():
            thread.start()

    def _stop_threads(self, *, wait_s: float) -> None:
        for thread in self._threads.values():
            thread.inbox.put(None)
        deadline = time.monotonic() + wait_s
        for thread in self._threads.values():
            thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def _drain(self, wait_s: float) -> None:
        """Let in-flight ops finish (bounded); ops still running stay open in the history."""
        deadline = time.monotonic() + wait_s
        generator: Any = None
        while self._busy and time.monotonic() < deadline:
            generator = self._wait_completion(POLL_S, generator)

    def run(self) -> Outcome:
        error: str | None = None
        recovered: bool | None = None
        completed = False
        self.state.started_ns = time.monotonic_ns()
        try:
            self.state.phase = "setup"
            self.system.setup()
            self._start_threads()
            completed, recovered = self._phases()
        except Exception as exc:
            logger.exception("run failed")
            error = f"{type(exc).__name__}: {exc}"
        finally:
            if self.convergence is not None:
                self.convergence.stop()
            self.state.phase = "teardown"
            stopped = self.stop_event.is_set()
            interrupted = stopped and self.stop_reason in (None, INTERRUPTED)
            if stopped and not interrupted and error is None:
                error = self.stop_reason
            self._drain(0.5 if stopped or error else DRAIN_AFTER_STOP_S)
            teardown, teardown_errors = self.teardown()
            self._stop_threads(wait_s=1.0)
        if self.state.nemesis_errors and error is None:
            error = "nemesis failed: " + "; ".join(self.state.nemesis_errors)
            completed = False
        return Outcome(
            completed and error is None and not interrupted,
            interrupted,
            error,
            recovered,
            teardown,
            teardown_errors,
        )

    def _phases(self) -> tuple[bool, bool | None]:
        stopped = self.stop_event.is_set
        self.state.phase = "main"
        if self.convergence is not None:
            self.convergence.start()
        self.state.main_deadline_ns = time.monotonic_ns() + gen.seconds_to_ns(self.time_limit_s)
        main = gen.time_limit(self.time_limit_s, gen.clients(self.client_generator, self.package.generator))
        nemesis_failed = lambda: bool(self.state.nemesis_errors)  # noqa: E731
        if not self.interpret(main, stop=lambda: stopped() or nemesis_failed()):
            return False, None
        self.state.phase = "heal"
        if not self.interpret(gen.nemesis(self.package.final_generator), stop=stopped):
            return False, None
        self.state.phase = "recovery"
        recovered = self.system.wait_healthy(timeout_s=self.recovery_s)
        if stopped():
            return False, recovered
        self.state.phase = "final reads"
        completed = self._final_reads(stopped)
        if completed and self.convergence is not None:
            self.state.phase = "convergence"
            self.convergence.final(stopped)
        return completed, recovered

    def _final_reads(self, stopped: Callable[[], bool]) -> bool:
        """Read every key used; keys whose read did not come back ok are tried again (bounded)."""
        start_index = self.recorder.last_index
        keys = sorted(self.recorder.keys, key=repr)
        for attempt in range(FINAL_READ_ATTEMPTS):
            if attempt:
                self.stop_event.wait(FINAL_READ_RETRY_S)
            reads = gen.time_limit(self.recovery_s + 10, gen.clients(self.workload.final_reads(keys)))
            if not self.interpret(reads, stop=stopped):
                return False
            keys = [k for k in keys if self.recorder.ok_read_index.get(k, -1) <= start_index]
            if not keys:
                break
        return True

    # -- teardown -----------------------------------------------------------------------

    def teardown(self) -> tuple[list[str], list[str]]:
        """Heal every fault still injected (recorded), remove Ratchet's rules, stop every node."""
        done: list[str] = []
        errors: list[str] = []
        for kind in HEAL_ORDER:
            nemesis = self.package.nemesis.nemeses.get(kind)
            if nemesis is None or not nemesis.active:
                continue
            f = f"stop-{kind}"
            self.recorder.record(
                {"process": gen.NEMESIS, "type": "info", "f": f, "value": {"teardown": True}}
            )
            try:
                value = nemesis.stop()
                done.append(f"healed {kind} on {', '.join(value.get('targets', [])) or '-'}")
                err = None
            except Exception as exc:
                err = f"{f}: {type(exc).__name__}: {exc}"
                errors.append(err)
                value = {"targets": []}
            self.recorder.record(
                {
                    "process": gen.NEMESIS,
                    "type": "info",
                    "f": f,
                    "value": {**value, "teardown": True},
                    "error": err,
                }
            )
        if self.firewall is not None:
            try:
                if self.firewall.teardown():
                    done.append("removed Ratchet's packet-filter table")
            except Exception as exc:
                errors.append(f"firewall teardown: {type(exc).__name__}: {exc}")
        self.state.active_faults = self.package.nemesis.active()
        try:
            done.extend(self.system.teardown(keep_data=True))
        except Exception as exc:
            errors.append(f"stopping nodes: {type(exc).__name__}: {exc}")
        return done, errors
