"""The runner's history recorder writes what HistoryWriter writes, line by line as ops happen.

Claims: the recorder's lines are byte for byte the lines ``checkers.history.HistoryWriter``
writes for the same ops (escapes, floats, nemesis values, unicode); a bad op is refused
with the same ``HistoryFormatError``; every recorded line is in the file (readable by
another reader) before ``record`` returns; a torn last line left by a failed write is
cut, the error reported once, and the op written again.
"""

from __future__ import annotations

import itertools
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from checkers.history import HistoryFormatError, HistoryWriter, read_history
from harness.runner import Recorder, encode_line

OPS: list[dict[str, Any]] = [
    {"process": 3, "type": "invoke", "f": "cas", "key": 5, "value": [None, 4]},
    {"process": 3, "type": "ok", "f": "cas", "key": 5, "value": (None, 4), "node": "n2"},
    {
        "process": "nemesis",
        "type": "info",
        "f": "start-partition",
        "value": {"targets": ["n1"], "grudge": {"n1": ["n2", "n3"]}, "x": 1.5e16, "y": float("nan"), 3: True},
        "error": 'é\u2028\x00"\\ \udc80',
    },
    {"process": 1, "type": "invoke", "f": "read", "key": "k", "value": None},
    {"process": 1, "type": "ok", "f": "read", "key": "k", "value": "ü" * 3 + "x" * 100, "node": "n1"},
    {"process": 2, "type": "invoke", "f": "append", "key": 7, "value": [1, [2, [3, 0.1]]]},
    {"process": 2, "type": "fail", "f": "append", "key": 7, "value": -(2**70), "error": "e"},
]


def test_lines_are_the_history_writers_bytes(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "recorded.jsonl")
    entries = [recorder.record(op) for op in OPS]
    recorder.close()
    with HistoryWriter(tmp_path / "written.jsonl") as writer:
        for entry in entries:
            assert entry is not None
            writer.append(entry)
    assert (tmp_path / "recorded.jsonl").read_bytes() == (tmp_path / "written.jsonl").read_bytes()
    assert [e["index"] for e in entries if e] == list(range(len(OPS)))
    assert recorder.counts == {"invoke": 3, "ok": 2, "fail": 1}
    assert recorder.keys == {5, "k", 7}
    assert recorder.ok_read_index == {"k": 4}


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("error", 3),
        ("node", b"n1"),
        ("f", ""),
        ("type", "done"),
        ("process", True),
        ("value", "nested 120 deep"),
    ],
)
def test_a_bad_op_is_refused_as_the_reader_would(field: str, bad: Any) -> None:
    entry = {"index": 0, "time_ns": 1, "process": 1, "type": "ok", "f": "read", "key": 1, "value": 2}
    entry |= {"error": None, "node": None, field: bad}
    if field == "value":
        deep: Any = 0
        for _ in range(120):
            deep = [deep]
        entry["value"] = deep
    with pytest.raises(HistoryFormatError):
        encode_line(entry)


def test_each_line_is_in_the_file_when_record_returns(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    recorder = Recorder(path)
    seen: list[int] = []

    def worker(process: int) -> None:
        for i in range(50):
            entry = recorder.record(
                {"process": process, "type": "invoke", "f": "write", "key": i, "value": i}
            )
            assert entry is not None
            # another reader of the file sees the line at once: nothing waits in a buffer
            assert f'"index":{entry["index"]},'.encode() in path.read_bytes()
            seen.append(entry["index"])

    threads = [threading.Thread(target=worker, args=(p,)) for p in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    ops = read_history(path)
    assert [op.index for op in ops] == sorted(seen) == list(range(200))
    assert all(a.time_ns <= b.time_ns for a, b in itertools.pairwise(ops))
    recorder.close()
    assert recorder.record({"process": 0, "type": "invoke", "f": "read"}) is None


def test_a_failed_write_cuts_the_torn_line_reports_once_and_writes_again(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    errors: list[OSError] = []
    recorder = Recorder(path, on_write_error=errors.append)
    recorder.record({"process": 0, "type": "invoke", "f": "read", "key": 1})

    class Failing:
        """Writes half the line, then fails, as a filling disk does."""

        def __init__(self, inner: Any) -> None:
            self.inner, self.path = inner, inner.path

        def write_line(self, line: bytes) -> None:
            self.inner.write_line(line[: len(line) // 2])
            raise OSError(28, "No space left on device")

        def close(self) -> None:
            self.inner.close()

    recorder._writer = Failing(recorder._writer)  # type: ignore[assignment]
    entry = recorder.record({"process": 0, "type": "ok", "f": "read", "key": 1, "value": 9, "node": "n1"})
    recorder.close()
    assert entry is not None and entry["index"] == 1
    assert [e.errno for e in errors] == [28]
    assert [(op.index, op.type) for op in read_history(path)] == [(0, "invoke"), (1, "ok")]
    assert recorder.dropped == 0 and not recorder.frozen


_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=400, deadline=None)
@given(
    process=st.integers(min_value=0, max_value=2**40) | st.just("nemesis") | st.text(max_size=4),
    op_type=st.sampled_from(["invoke", "ok", "fail", "info"]),
    f=st.text(min_size=1, max_size=6),
    key=st.none() | st.integers(min_value=-5, max_value=2**64) | st.text(max_size=6) | _VALUES,
    value=_VALUES,
    error=st.none() | st.text(max_size=6),
    node=st.none() | st.text(max_size=4),
)
def test_any_op_is_written_as_the_history_writer_writes_it(
    tmp_path_factory: pytest.TempPathFactory,
    process: Any,
    op_type: str,
    f: str,
    key: Any,
    value: Any,
    error: str | None,
    node: str | None,
) -> None:
    entry = {
        "index": 7,
        "time_ns": 2**62 + 3,
        "process": process,
        "type": op_type,
        "f": f,
        "key": key,
        "value": value,
        "error": error,
        "node": node,
    }
    path = tmp_path_factory.mktemp("writer") / "h.jsonl"
    with HistoryWriter(path) as writer:
        writer.append(entry)
    assert encode_line(entry) == path.read_bytes()
