"""The three kinds of failure the CLI tells apart, and their exit codes.

Bad input (a scenario, flag or history that does not parse) is the user's to
fix: one paragraph, exit 3, no traceback. An anomaly is the system under test's
fault: exit 1. A run that could not complete or a check that ran out of budget
is exit 2. A harness bug is none of these: it keeps its traceback.
"""

from __future__ import annotations

EXIT_VALID = 0
EXIT_ANOMALY = 1
EXIT_UNKNOWN = 2
EXIT_BAD_INPUT = 3


class BadInput(Exception):
    """Input the user must fix. The message is the whole paragraph shown to them.

    Say what was wrong, the value given, what is accepted, and "did you mean" where
    one fits. ``where`` names the file/line/key when there is one.
    """

    def __init__(self, message: str, *, where: str | None = None) -> None:
        super().__init__(message)
        self.where = where

    def paragraph(self) -> str:
        text = str(self)
        return f"{self.where}: {text}" if self.where else text


def exit_code_for_validity(valid: bool | str) -> int:
    """Map a checker verdict (True / False / "unknown") to the CLI's exit code."""
    if valid is True:
        return EXIT_VALID
    if valid is False:
        return EXIT_ANOMALY
    return EXIT_UNKNOWN
