"""vr.log_limit: a burst of lines per key and interval, then one exact "suppressed K" summary."""

from __future__ import annotations

import logging

import pytest

from vr.log_limit import LogLimiter


class Clock:
    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


def test_each_key_logs_a_burst_per_interval_then_one_summary(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    log = logging.getLogger("test.log_limit")
    limiter = LogLimiter(log, burst=3, interval_ms=1000, clock_s=clock)
    with caplog.at_level(logging.INFO, logger="test.log_limit"):
        for n in range(50):
            limiter.info("drop:a", "drop a %d", n)
        for n in range(2):
            limiter.info("drop:b", "drop b %d", n)
        clock.now_s += 0.5
        limiter.flush()  # the interval is not over: nothing to summarize yet
        clock.now_s += 0.6
        limiter.flush()
        limiter.info("drop:a", "drop a again")  # a new interval: logged again
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        "drop a 0",
        "drop a 1",
        "drop a 2",
        "drop b 0",
        "drop b 1",
        "log=suppressed key=drop:a suppressed=47 interval_ms=1000 logged=3",
        "drop a again",
    ]
    assert limiter.lines_suppressed == 47


def test_a_new_interval_summarizes_the_last_one_and_shutdown_summarizes_everything(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    limiter = LogLimiter(logging.getLogger("test.log_limit"), burst=1, interval_ms=10_000, clock_s=clock)
    with caplog.at_level(logging.INFO, logger="test.log_limit"):
        for _ in range(5):
            limiter.info("k", "line")
        clock.now_s += 11
        limiter.info("k", "line")  # rolls the window over: the old one's summary comes first
        limiter.info("k", "line")
        limiter.flush(everything=True)
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        "line",
        "log=suppressed key=k suppressed=4 interval_ms=10000 logged=1",
        "line",
        "log=suppressed key=k suppressed=1 interval_ms=10000 logged=1",
    ]
