"""Replica assertions read back from a VR node's log: the checker of last resort, made a finding.

A VR node that trips an assertion in its replica (``vr.replica``, ``vr.journal``)
logs ``node=crashed replica=N`` with the whole traceback and exits with code 1
(``vr.node.main``; contracts §3). The assertion is the replica's own check that an
invariant holds, so a replica that asserted is a detected bug, whatever the
clients saw (TigerBeetle's stance). A kill by the nemesis (SIGKILL) or a stop
(SIGTERM, a clean exit) leaves no such block; a crash of another kind (an
``OSError`` from a failing disk, a bad configuration) is a fail-stop, not an
assertion, and is left to the run's ``node_exits``.

The log's ``ts=`` is the node's wall clock, which a clock fault may move; the
node's own events carry its wall and monotonic clocks side by side, so their
median difference turns the crash's wall time into the node's monotonic time,
which on one machine (local and docker clusters) is the history's clock.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

CRASH_LINE = re.compile(r"^ts=(\S+ \S+) level=\w+ node=crashed replica=(\d+)")
FRAME_LINE = re.compile(r'^\s+File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<function>\S+)')
EXCEPTION_LINE = re.compile(r"^(?P<type>[A-Za-z_][\w.]*)(?::\s?(?P<message>.*))?$")
CHAIN_LINES = ("Traceback ", "During handling of", "The above exception")
MESSAGE_CHARS_MAX = 500
EVENT_LINES_MAX = 200_000  # an events file this long still gives its offset from its first lines


@dataclass(frozen=True, slots=True)
class AssertionFailure:
    """One replica assertion: where and when it fired, and what it said."""

    node: str
    replica: int
    message: str  # the assertion's message ("" for a bare ``assert``)
    where: str  # ``vr/replica.py:1549 in _primary_start_view_from_dvcs: assert chosen.head >= ...``
    wall_ns: int | None  # the node's wall clock at the log line
    mono_ns: int | None  # the node's monotonic clock then (None: no events to convert with)
    log_line: int  # line number (from 1) of the ``node=crashed`` line in node.log

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _short_path(path: str) -> str:
    """``vr/replica.py`` from an absolute path into the checkout (or the remote copy of it)."""
    parts = Path(path).parts
    for anchor in ("vr", "systems", "core"):
        if anchor in parts:
            index = len(parts) - 1 - parts[::-1].index(anchor)
            return "/".join(parts[index:])
    return Path(path).name


def _wall_ns(stamp: str) -> int | None:
    """``2026-12-05 03:31:49,905`` (logging's asctime, local time without a zone) as epoch ns."""
    try:
        moment = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f")
    except ValueError:
        return None
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1_000


def _block_failure(
    node: str, replica: int, stamp: str, line_no: int, block: list[str]
) -> AssertionFailure | None:
    """The assertion a crash block ends with, or None when it ended in another exception."""
    final: re.Match[str] | None = None
    final_at = -1
    for position, text in enumerate(block):
        if not text or text[0].isspace() or text.startswith(CHAIN_LINES):
            continue
        match = EXCEPTION_LINE.match(text)
        if match:
            final, final_at = match, position
    if final is None or final.group("type").rsplit(".", 1)[-1] != "AssertionError":
        return None
    message_lines = [final.group("message") or ""] + [
        t for t in block[final_at + 1 :] if t and not t.startswith(CHAIN_LINES)
    ]
    message = "\n".join(message_lines).strip()[:MESSAGE_CHARS_MAX]
    where = ""
    for position in range(final_at - 1, -1, -1):
        frame = FRAME_LINE.match(block[position])
        if frame:
            where = f"{_short_path(frame['file'])}:{frame['line']} in {frame['function']}"
            source = next(
                (
                    t.strip()
                    for t in block[position + 1 : final_at]
                    if t.strip() and not set(t.strip()) <= {"^", "~"}
                ),
                "",
            )
            if source and not FRAME_LINE.match(source):
                where += f": {source}"
            break
    return AssertionFailure(node, replica, message, where, _wall_ns(stamp), None, line_no)


def read_log(node: str, log_path: Path) -> list[AssertionFailure]:
    """Every replica assertion in one node's log (a restarted node appends to the same log)."""
    if not log_path.is_file():
        return []
    found: list[AssertionFailure] = []
    current: tuple[int, str, int] | None = None  # (replica, stamp, line number)
    block: list[str] = []

    def close() -> None:
        if current is not None:
            failure = _block_failure(node, current[0], current[1], current[2], block)
            if failure is not None:
                found.append(failure)

    with log_path.open(encoding="utf-8", errors="replace") as handle:
        for number, raw in enumerate(handle, start=1):
            text = raw.rstrip("\n")
            if text.startswith("ts="):
                close()
                current, block = None, []
                match = CRASH_LINE.match(text)
                if match:
                    current = (int(match.group(2)), match.group(1), number)
            elif current is not None:
                block.append(text)
    close()
    return found


def wall_minus_mono_ns(events_path: Path) -> int | None:
    """The node's median wall-minus-monotonic offset over its events (None without events)."""
    if not events_path.is_file():
        return None
    offsets: list[int] = []
    with events_path.open(encoding="utf-8", errors="replace") as handle:
        for count, line in enumerate(handle):
            if count >= EVENT_LINES_MAX:
                break
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a node killed mid-write leaves a torn last line
            if isinstance(event, dict):
                wall, mono = event.get("wall_ns"), event.get("mono_ns")
                if isinstance(wall, int) and isinstance(mono, int):
                    offsets.append(wall - mono)
    if not offsets:
        return None
    offsets.sort()
    return offsets[len(offsets) // 2]


def node_assertions(node: str, node_dir: Path) -> list[AssertionFailure]:
    """The assertions in ``node_dir/node.log``, each placed on the node's monotonic clock."""
    failures = read_log(node, node_dir / "node.log")
    if not failures:
        return []
    offset = wall_minus_mono_ns(node_dir / "events.jsonl")
    return [
        replace(failure, mono_ns=failure.wall_ns - offset)
        if failure.wall_ns is not None and offset is not None
        else failure
        for failure in failures
    ]
