"""The runner's hand-off queue: order kept, timeouts kept, and a signal never strands the reader.

Claims: items come out in the order they went in, from any number of writers;
``get(timeout)`` raises ``queue.Empty`` once the timeout has passed; a signal
handled while the main thread waits (what Ctrl-C and SIGTERM do mid-run) runs its
handler and the wait still ends by its timeout, or as soon as an item arrives.
"""

from __future__ import annotations

import queue
import signal
import threading
import time

import pytest

from harness.runner import Mailbox


def test_items_come_out_in_order_from_many_writers() -> None:
    box = Mailbox()
    writers = [threading.Thread(target=lambda w=w: [box.put((w, i)) for i in range(500)]) for w in range(4)]
    for writer in writers:
        writer.start()
    got = [box.get(timeout=5) for _ in range(2000)]
    for writer in writers:
        writer.join(timeout=5)
    assert box.empty()
    for w in range(4):
        assert [i for v, i in got if v == w] == list(range(500))


def test_get_times_out_and_then_sees_a_later_item() -> None:
    box = Mailbox()
    started = time.monotonic()
    with pytest.raises(queue.Empty):
        box.get(timeout=0.1)
    assert time.monotonic() - started >= 0.1
    with pytest.raises(queue.Empty):
        box.get(0)
    threading.Timer(0.05, box.put, args=("late",)).start()
    assert box.get(timeout=5) == "late"


def test_a_signal_during_the_wait_runs_its_handler_and_the_timeout_still_holds() -> None:
    box = Mailbox()
    seen: list[int] = []
    previous = signal.signal(signal.SIGALRM, lambda signum, _frame: seen.append(signum))
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        started = time.monotonic()
        with pytest.raises(queue.Empty):
            box.get(timeout=0.3)
        assert seen == [signal.SIGALRM]
        assert 0.3 <= time.monotonic() - started < 5
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        threading.Timer(0.15, box.put, args=("after the signal",)).start()
        assert box.get(timeout=5) == "after the signal"
        assert seen == [signal.SIGALRM, signal.SIGALRM]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
