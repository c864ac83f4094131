"""History readers against what crashes and hostile files leave: torn last lines, deep nesting, bytes.

A writer killed mid-line (or a disk that filled) leaves a last line with no
newline; every reader leaves it out with a warning and reads the rest. The same
damage anywhere else is bad input. Nesting is bounded so no file exhausts the stack.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from checkers.history import VALUE_DEPTH_MAX, HistoryFormatError, Op, read_history
from checkers.models import UnsupportedOp
from checkers.readers import read_jepsen_edn_lines, read_porcupine_log_lines

W0 = '{"index":0,"time_ns":1,"process":0,"type":"invoke","f":"write","key":1,"value":5}\n'
W1 = '{"index":1,"time_ns":2,"process":0,"type":"ok","f":"write","key":1,"value":5}\n'
EDN = "{:process 0, :type :invoke, :f :write, :value 1}\n{:process 0, :type :ok, :f :write, :value 1}\n"
LOG = "INFO  jepsen.util - 0 :invoke :write 1\nINFO  jepsen.util - 0 :ok :write 1\n"


def write(tmp_path: Path, name: str, data: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("name", "whole", "torn"),
    [
        ("h.jsonl", W0 + W1, b'{"index":2,"time_ns":3,"pro'),
        ("h.jsonl", W0 + W1, b'{"index":2,"time_ns":3,"process":0,"f":"\xc3'),  # cut inside a character
        ("h.edn", EDN, b"{:process 1, :type :inv"),
        ("h.edn", EDN, b'{:process 1, :type :invoke, :f :write, :value "\xe2\x82'),
        ("h.log", LOG, b"INFO  jepsen.util - 1 :invoke :write [1"),
    ],
)
def test_a_torn_last_line_is_left_out_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, name: str, whole: str, torn: bytes
) -> None:
    path = write(tmp_path, name, whole.encode() + torn)
    with caplog.at_level(logging.WARNING, logger="checkers"):
        ops = read_history(path)
    assert [(op.process, op.type, op.f) for op in ops] == [(0, "invoke", "write"), (0, "ok", "write")]
    assert f"{path}:3: the last line is torn" in caplog.text
    assert read_history(write(tmp_path, "whole" + Path(name).suffix, whole)) == ops


@pytest.mark.parametrize(
    ("name", "data", "line", "words"),
    [
        ("h.jsonl", W0 + '{"index":1,"time_ns":2,"pro\n' + W1, 2, "not valid JSON"),
        ("h.jsonl", W0 + W1 + '{"index":2,"time_ns":3,"pro\n', 3, "not valid JSON"),  # newline: written whole
        ("h.jsonl", W0 + "\xff\xfe garbage\n" + W1, 2, "not UTF-8"),
        ("h.edn", "{:process 0, :type :inv\n" + EDN, 1, "malformed EDN"),
        ("h.log", "INFO  jepsen.util - 0 :invoke\n" + LOG, 1, "expected '<process> <type> <f> <value>'"),
    ],
)
def test_the_same_damage_before_the_last_line_is_bad_input(
    tmp_path: Path, name: str, data: str, line: int, words: str
) -> None:
    raw = data.encode("latin-1") if "\xff" in data else data.encode()
    path = write(tmp_path, name, raw)
    with pytest.raises(HistoryFormatError, match=words) as caught:
        read_history(path)
    assert caught.value.line == line


def test_random_bytes_are_not_mistaken_for_a_torn_line(tmp_path: Path) -> None:
    """Bytes that are not text were never a line the writer wrote: bad input, not a warning."""
    path = write(tmp_path, "h.jsonl", (W0 + W1).encode() + bytes([0x9C, 0xFF, 0x13, 0x80, 0x41]))
    with pytest.raises(HistoryFormatError, match="not UTF-8"):
        read_history(path)
    binary = write(tmp_path, "b.edn", bytes(range(256)) * 4)
    with pytest.raises(HistoryFormatError, match="not UTF-8"):
        read_jepsen_edn_lines(binary)
    with pytest.raises(HistoryFormatError, match="not UTF-8"):
        read_porcupine_log_lines(binary)


@pytest.mark.parametrize(
    ("name", "data", "words"),
    [
        ("deep.jsonl", "[" * 100_000 + "\n", "nests deeper"),
        ("deep.edn", "[" * 100_000 + "\n", "nest deeper than 100"),
        ("closed.edn", "[" * 5_000 + "]" * 5_000 + "\n", "nest deeper than 100"),
        (
            "value.jsonl",
            W0.replace('"value":5', '"value":' + "[" * 500 + "]" * 500),
            f"deeper than {VALUE_DEPTH_MAX} levels",
        ),
    ],
)
def test_deep_nesting_is_refused_with_its_line(tmp_path: Path, name: str, data: str, words: str) -> None:
    with pytest.raises(HistoryFormatError, match=words) as caught:
        read_history(write(tmp_path, name, data))
    assert caught.value.line == 1


def test_moderate_nesting_still_reads(tmp_path: Path) -> None:
    value = "[" * 50 + "1" + "]" * 50
    ops = read_history(write(tmp_path, "ok.jsonl", W0.replace('"value":5', f'"value":{value}')))
    depth, v = 0, ops[0].value
    while isinstance(v, tuple):
        depth, v = depth + 1, v[0]
    assert (depth, v) == (50, 1)


def test_a_cas_value_of_the_wrong_shape_is_unsupported_before_any_search(tmp_path: Path) -> None:
    from checkers.linearizable import check_linearizable

    cas = W0.replace('"write"', '"cas"') + W1.replace('"write"', '"cas"')
    ops = read_history(write(tmp_path, "cas.jsonl", cas))
    with pytest.raises(UnsupportedOp, match=r"op index 0 .*a cas value must be \[old new\], got 5"):
        check_linearizable(ops, model="cas-register")
    assert isinstance(UnsupportedOp("x"), HistoryFormatError)  # every reader's caller reports it


@pytest.mark.parametrize(
    ("model", "f", "value_in", "value_out", "words"),
    [
        ("counter", "add", '"x"', '"x"', "a counter add must carry a number"),
        ("counter", "read", "null", '"x"', "a counter read must return a number"),
        ("set", "read", "null", "5", "a set read must return a list or set"),
    ],
)
def test_other_models_check_their_values_too(
    tmp_path: Path, model: str, f: str, value_in: str, value_out: str, words: str
) -> None:
    from checkers.linearizable import check_linearizable

    text = (
        f'{{"index":0,"time_ns":1,"process":0,"type":"invoke","f":"{f}","value":{value_in}}}\n'
        f'{{"index":1,"time_ns":2,"process":0,"type":"ok","f":"{f}","value":{value_out}}}\n'
    )
    with pytest.raises(UnsupportedOp, match=words):
        check_linearizable(read_history(write(tmp_path, "h.jsonl", text)), model=model)


@pytest.mark.parametrize(
    ("name", "whole", "torn"),
    [
        ("h.jsonl", W0 + W1, '{"index":2,"time_ns":3,"pro'),
        ("h.edn", EDN, "{:process 1, :type :inv"),
        ("h.log", LOG, "INFO  jepsen.util - 1 :invoke :write [1"),
    ],
)
def test_ratchet_check_warns_on_stderr_and_checks_the_rest(
    tmp_path: Path, name: str, whole: str, torn: str
) -> None:
    """Through the real command: the warning reaches stderr (no logging set up by anyone) and exit is 0."""
    path = write(tmp_path, name, whole + torn)
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "400"},
    )
    assert proc.returncode == 0, proc.stderr
    assert f"{path}:3: the last line is torn" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "VALID" in proc.stdout


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("1", '{"a":1}', "an appended value must be a plain value"),
        ('{"k":1}', "1", "a key must be a plain value"),
    ],
)
def test_append_values_that_cannot_be_compared_are_malformed(key: str, value: str, words: str) -> None:
    from checkers.append import check_append

    line = '{"index":%d,"time_ns":%d,"process":0,"type":"%s","f":"append","key":%s,"value":%s}'
    ops = [Op.from_json(json.loads(line % (i, i + 1, t, key, value))) for i, t in enumerate(("invoke", "ok"))]
    with pytest.raises(HistoryFormatError, match=words):
        check_append(ops)


def test_an_append_read_of_a_non_list_stays_the_systems_anomaly() -> None:
    from checkers.append import check_append

    ops = [Op(0, 1, 0, "invoke", "read", 1, None), Op(1, 2, 0, "ok", "read", 1, 5)]
    assert check_append(ops)["anomaly_counts"] == {"phantom": 1}
