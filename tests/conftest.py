"""Suite-wide pytest hooks."""

from __future__ import annotations

import pytest


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A run that collected no test fails (exit 1) instead of pytest's exit 5.

    The README's test command is what CI runs; a wrong path, a deselecting marker or a
    collection that found nothing must not pass for a green suite.
    """
    if exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line("error: no test was collected: the run counts as failed (exit 1)", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
