"""A search's limits, apart from the search itself.

Every check builds one, but most never search: a valid history of unique
values is decided by :mod:`checkers.fastpath`, so the search module (and its
imports) stays out of a small ``ratchet check``'s start-up.
"""

from __future__ import annotations

from checkers.record import record

INFINITY = 1 << 62
MEMO_ENTRY_BYTES = 160  # measured: a (int, state) tuple in a set, for small states


@record
class Budget:
    """Limits for one search: wall time and memo size (from a memory budget)."""

    deadline_s: float = INFINITY  # time.monotonic() deadline
    memory_mb: float = 1024.0

    @property
    def memo_entries_max(self) -> int:
        return int(self.memory_mb * 1024 * 1024 / MEMO_ENTRY_BYTES)
