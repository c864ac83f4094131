"""Drive one test: worker threads, a nemesis worker, the generator interpreter, teardown.

Jepsen's model: one worker thread per client "thread", each running one
logical *process* at a time, plus a nemesis thread. The generator is
interpreted by whichever thread has something to tell it, under one lock: a
worker whose op completed records the completion, feeds it to the generator,
and asks for what is due now, keeping its own next op (recorded as invoked
before it is sent) and handing any other thread's through that thread's inbox;
so an op at full speed never waits for another thread to be scheduled. The
controller (the caller's thread) starts each phase, hands out ops that come
due with no completion to ask for them (a nemesis fault, a rate-limited op),
and ends the phase. A process whose op ends ``info`` may still have its op
take effect at any time, so it is retired: its thread continues as process
``p + concurrency`` with a fresh client.

Phases: setup (start nodes, wait for a primary) -> main (clients + nemesis
until the time limit) -> heal (every fault kind's stop) -> recovery (wait for
a healthy cluster) -> final reads (every key used) -> teardown. Teardown
always runs: on a normal end, an exception, Ctrl-C or SIGTERM. It heals what
is still injected (recorded in the history with ``"teardown": true``), stops
every node, and returns what it did and what failed, which is reported beside
the verdict, never instead of it.

The history is appended and flushed as ops happen, invocations by the thread
that starts them (before the op is sent) and completions by the worker that saw
them, under one lock that also takes the timestamp, so the file's order is the
real-time order the checkers rely on.
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
POLL_NS = round(POLL_S * 1e9)
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


def _json_text(value: Any) -> str:
    """``value`` as JSON text, the standard library's bytes: ints, strings and None without its encoder.

    A cas value (``[old, new]`` of ints or null) is written directly too; anything else
    (floats, lists, a nemesis op's dict) goes through the C encoder, a list once its depth
    is checked against the bound a reader enforces.
    """
    kind = type(value)
    if kind is int:
        return f"{value}"
    if kind is str:
        return encode_basestring_ascii(value)  # type: ignore[no-any-return]
    if value is None:
        return "null"
    if (kind is list or kind is tuple) and len(value) == 2:
        old, new = value
        if (old is None or type(old) is int) and type(new) is int:
            return f"[{'null' if old is None else old},{new}]"
    if isinstance(value, list | tuple):
        freeze(value)  # the depth bound a reader enforces
    if _ENCODER is None:
        return json.dumps(value, separators=(",", ":"))
    return "".join(_ENCODER(value, 0))


def encode_line(entry: dict[str, Any]) -> bytes:
    """One history line (with its newline), exactly as :class:`HistoryWriter` writes ``entry``.

    Checks the fields as :meth:`Op.from_json` does (a bad op raises the same
    ``HistoryFormatError``), cheaply when the field types are the usual ones. The
    fields are written in the history's order (contracts §4), as ``Op.to_json`` gives them.
    """
    index, time_ns, process, op_type, f = (
        entry["index"],
        entry["time_ns"],
        entry["process"],
        entry["type"],
        entry["f"],
    )
    get = entry.get
    key, value, error, node = get("key"), get("value"), get("error"), get("node")
    if not (
        len(entry) <= 9
        and type(index) is int
        and index >= 0
        and type(time_ns) is int
        and (type(process) is int or type(process) is str)
        and type(op_type) is str
        and op_type in _OP_TYPES
        and type(f) is str
        and f
        and (error is None or type(error) is str)
        and (node is None or type(node) is str)
    ):
        Op.from_json(entry)  # raises the reader's error; an entry it accepts is written below
    # An exact int formats as its repr, JSON's text for it (checked above for index and time_ns).
    return (
        f'{{"index":{index},"time_ns":{time_ns},'
        f'"process":{process if type(process) is int else _json_text(process)},'
        f'"type":{encode_basestring_ascii(op_type)},"f":{encode_basestring_ascii(f)},'
        f'"key":{key if type(key) is int else _json_text(key)},"value":{_json_text(value)},'
        f'"error":{"null" if error is None else encode_basestring_ascii(error)},'
        f'"node":{"null" if node is None else encode_basestring_ascii(node)}}}\n'
    ).encode()


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


class _Worker(threading.Thread):
    """One thread of the test: performs the ops handed to it and asks for its next one itself.

    After each op the worker records the completion and, under the runner's lock,
    tells the generator and asks it for more (:meth:`Runner._finish`): its own next
    op comes back as the return value, so an op needs no hand-off to another
    thread. Only ops due for some other free thread go through that thread's inbox.
    """

    def __init__(self, runner: Runner, thread: Any, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.runner, self.thread = runner, thread
        self.inbox = Mailbox()

    def perform(self, op: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def run(self) -> None:
        runner = self.runner
        op = self.inbox.get()
        while op is not None:
            completion: dict[str, Any] | None
            if op["type"] == "sleep":
                runner.stop_event.wait(op["value"] / 1e9)
                completion = op
            else:
                try:
                    completion = self.perform(op)
                except Exception as exc:  # a harness bug (the history refused the op): the run fails
                    runner._fail(exc)
                    completion = None
            op = runner._finish(self.thread, completion)
            if op is None:
                op = self.inbox.get()
        self.close()

    def close(self) -> None:
        """Release what the thread holds once it is told to stop."""


class _ClientWorker(_Worker):
    def __init__(self, runner: Runner, thread_id: int) -> None:
        super().__init__(runner, thread_id, f"client-{thread_id}")
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

    def perform(self, op: dict[str, Any]) -> dict[str, Any]:
        try:
            client = self._client_for(op["process"])
            result = self.runner.workload.invoke(client, op)
            node = client.last_node
        except Exception as exc:  # opening a client failed: outcome unknown, keep the thread alive
            logger.exception("client thread %s failed", self.thread)
            result, node = {"type": "info", "value": op.get("value"), "error": f"client: {exc!r}"}, None
        completion = {**op, **result, "node": node}
        return self.runner.recorder.record(completion) or completion

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


class _NemesisWorker(_Worker):
    def __init__(self, runner: Runner) -> None:
        super().__init__(runner, gen.NEMESIS, "nemesis")

    def perform(self, op: dict[str, Any]) -> dict[str, Any]:
        runner = self.runner
        try:
            value = runner.package.nemesis.invoke(op["f"])
            error = None
        except Exception as exc:
            logger.exception("nemesis op %s failed", op["f"])
            value, error = {"targets": []}, f"{type(exc).__name__}: {exc}"
            runner.state.nemesis_errors.append(f"{op['f']}: {error}")
        runner.state.active_faults = runner.package.nemesis.active()
        completion = {**op, "type": "info", "value": value, "error": error}
        return runner.recorder.record(completion) or completion


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
        self.rng = random.Random(seed)
        self.workers: dict[Any, Any] = {t: t for t in range(concurrency)}
        self.workers[gen.NEMESIS] = gen.NEMESIS
        self._threads: dict[Any, _Worker] = {}
        self._busy: set[Any] = set()
        # What every context of the run shares, kept up to date as threads get busy or free and
        # processes are retired (instead of rebuilt for each of the several contexts an op needs):
        # the same threads tuple lets Context.restrict remember its filtering.
        self._thread_tuple: tuple[Any, ...] = tuple(self.workers)
        self._all_threads = frozenset(self._thread_tuple)
        self._free = self._all_threads
        self._workers_view: dict[Any, Any] = dict(self.workers)  # never changed: replaced
        self._thread_of: dict[Any, Any] = {p: t for t, p in self.workers.items()}
        # The interpreter's shared state (see "the interpreter" below), guarded by _lock.
        self._lock = threading.Lock()
        self._wake = Mailbox()  # tokens: the controller has something to look at
        self._generator: Any = None
        self._stop_check: Callable[[], bool] = lambda: False
        self._active = False  # a phase's generator is running
        self._finished = False
        self._stopped = False
        self._due_ns: int | None = None
        self._controller_wakes_ns = 0  # when the waiting controller looks again by itself (0: not waiting)
        self._failure: BaseException | None = None

    def stop(self, reason: str = INTERRUPTED) -> None:
        """Ask the run to end now (teardown still runs); the first reason given is the one recorded."""
        if self.stop_reason is None:
            self.stop_reason = reason
        self.stop_event.set()

    # -- the interpreter --------------------------------------------------------------
    #
    # The generator and the threads' state are shared by the controller and the workers and
    # change only under self._lock. A worker that finishes an op tells the generator, asks it
    # for what is due now and hands it out (its own next op it keeps); the controller does the
    # same when a phase starts, when an op comes due that no completion will ask for (the
    # nemesis's next fault, a rate-limited op), and every POLL_S, and it alone ends a phase.
    # Workers wake it (self._wake) only when it has something to do sooner than it would look.

    def _context(self) -> gen.Context:
        return gen.Context(monotonic_ns(), self._thread_tuple, self._free, self._workers_view, self.rng)

    def _set_busy(self, thread: Any, busy: bool) -> None:
        """Mark ``thread`` busy or free; the free set changes by that one thread (no pass over all)."""
        if busy:
            self._busy.add(thread)
            self._free = self._free.difference((thread,))
        else:
            self._busy.discard(thread)
            self._free = self._free.union((thread,))

    def _wake_controller(self) -> None:
        self._controller_wakes_ns = 0  # one token is enough until it looks again
        self._wake.put(None)

    def _fail(self, exc: BaseException) -> None:
        """A worker hit a harness error: the controller raises it (the run fails, teardown runs)."""
        with self._lock:
            if self._failure is None:
                self._failure = exc
            self._wake_controller()

    def _finish(self, thread: Any, completion: dict[str, Any] | None) -> dict[str, Any] | None:
        """A worker's op ended: free its thread, tell the generator, hand out what is due now.

        Returns the worker's own next op (its invocation already recorded), or None.
        ``completion`` is None when the op could not be completed (a failure was reported).
        """
        with self._lock:
            self._set_busy(thread, False)
            try:
                if completion is not None and completion["type"] != "sleep":
                    if self._active and not gen.ignores_events(self._generator):
                        self._generator = gen.update(self._generator, self._context(), completion)
                    if completion["type"] == "info" and thread != gen.NEMESIS:
                        self._retire(thread, completion["process"])
                if not self._active or self._failure is not None:
                    if not self._busy:
                        self._wake_controller()  # the drain waits for this
                    return None
                return self._hand_out(thread)
            except Exception as exc:
                if self._failure is None:
                    self._failure = exc
                self._wake_controller()
                return None

    def _retire(self, thread: Any, process: Any) -> None:
        successor = gen.next_process(process, self.concurrency)
        del self._thread_of[self.workers[thread]]
        self.workers[thread] = successor
        self._thread_of[successor] = thread
        self._workers_view = dict(self.workers)

    def _hand_out(self, asker: Any) -> dict[str, Any] | None:
        """Under the lock: start every op that is due now; the asker's own op is returned, not sent.

        Leaves for the controller: ``_stopped`` (stop() held when an op was due),
        ``_finished`` (generator exhausted, nothing in flight) and ``_due_ns`` (when the
        next op comes due). ``stop()`` is asked only before an op would start: asking the
        generator starts nothing, and the controller asks ``stop()`` each time it looks.
        """
        own: dict[str, Any] | None = None
        self._due_ns = None
        while True:
            ctx = self._context()
            result = gen.op(self._generator, ctx)
            if result is None:
                if not self._busy:
                    self._finished = True
                    self._wake_controller()
                return own
            if result is gen.PENDING:
                return own
            operation, nxt = result  # type: ignore[misc]
            if operation["time_ns"] > ctx.time_ns:
                self._due_ns = operation["time_ns"]
                if self._due_ns < self._controller_wakes_ns:
                    self._wake_controller()
                return own
            if self._stop_check():
                self._stopped = True
                self._wake_controller()
                return own
            thread, started = self._start(operation, nxt)
            if thread == asker:
                own = started
            else:
                self._threads[thread].inbox.put(started)

    def _start(self, operation: dict[str, Any], nxt: Any) -> tuple[Any, dict[str, Any]]:
        """Under the lock: the op's thread busy, its invocation recorded, the generator told."""
        thread = self._thread_of.get(operation["process"])
        assert thread is not None and thread not in self._busy, (operation, self._busy)
        self._set_busy(thread, True)
        if operation["type"] == "sleep":
            self._generator = nxt
            return thread, operation
        recorded = self.recorder.record(operation) or operation
        self._generator = nxt if gen.ignores_events(nxt) else gen.update(nxt, self._context(), recorded)
        return thread, recorded

    def _wait(self, timeout_s: float) -> None:
        """Sleep until a worker wakes the controller or ``timeout_s`` passes."""
        wake = self._wake
        try:
            wake.get(timeout=timeout_s)
        except queue.Empty:
            return
        while not wake.empty():  # tokens that came meanwhile: one look covers them all
            wake.get(0)

    def interpret(self, generator: Any, *, stop: Callable[[], bool]) -> bool:
        """Run ``generator`` to exhaustion (True) or until ``stop()`` (False)."""
        with self._lock:
            self._generator, self._stop_check = generator, stop
            self._active, self._finished, self._stopped = True, False, False
        try:
            while True:
                with self._lock:
                    if self._failure is not None:
                        raise self._failure
                    if self._stop_check():
                        return False
                    self._hand_out(None)
                    if self._stopped:
                        return False
                    if self._finished:
                        return True
                    now = monotonic_ns()
                    wait_ns = POLL_NS if self._due_ns is None else max(0, min(self._due_ns - now, POLL_NS))
                    self._controller_wakes_ns = now + wait_ns
                self._wait(wait_ns / 1e9)
        finally:
            with self._lock:
                self._active, self._generator, self._controller_wakes_ns = False, None, 0

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
        while self._busy:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._wait(min(remaining, POLL_S))

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
