"""Budgets turn hopeless searches into "unknown"; the CLI maps verdicts and bad input to exit codes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from checkers.edn import dumps, loads
from checkers.history import HistoryWriter, Op, read_history
from checkers.linearizable import check_linearizable
from checkers.readers import write_edn
from checkers.stats import stats
from harness.cli import main


def pathological(width: int = 22) -> list[Op]:
    """``width`` concurrent writes and a read of a value nobody wrote, plus an open-ended cas.

    The cas writes 2, as a write does: the repeated value keeps the unique-values
    fast path out, and every order of the writes reaches a distinct (set, state)
    pair: about width * 2**width of them.
    """
    ops: list[Op] = []

    def add(process: int, type_: str, f: str, value: object) -> None:
        ops.append(Op(len(ops), len(ops), process, type_, f, 0, value))

    add(100, "invoke", "cas", (1, 2))
    for p in range(width):
        add(p, "invoke", "write", p + 1)
    add(width, "invoke", "read", None)
    for p in range(width):
        add(p, "ok", "write", p + 1)
    add(width, "ok", "read", 2)  # legal in many orders, so the search keeps trying them all
    add(width + 1, "invoke", "read", None)
    add(width + 1, "ok", "read", 999)
    return ops


@pytest.mark.timeout(120)
def test_pathological_history_is_unknown_within_the_time_budget() -> None:
    started = time.monotonic()
    result = check_linearizable(pathological(), model="cas-register", time_limit_s=1.0)
    elapsed = time.monotonic() - started
    assert result["valid"] == "unknown", result
    assert result["reason"] == "time limit reached"
    entry = result["unknown_keys"][0]
    assert entry["key"] == 0
    assert entry["steps"] > 0
    assert "linearizable_through_event" in entry, f"after {elapsed:.1f} s"


@pytest.mark.timeout(120)
def test_memory_budget_gives_unknown_too() -> None:
    result = check_linearizable(pathological(), model="cas-register", time_limit_s=60, memory_mb=1)
    assert result["valid"] == "unknown"
    assert result["reason"] == "memory limit reached"


@pytest.mark.timeout(120)
def test_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    history = tmp_path / "history.jsonl"
    with HistoryWriter(history) as writer:
        for op in pathological(18):
            writer.append(op)
    assert main(["check", str(history), "--time-limit", "0.5"]) == 2
    assert "could not decide" in capsys.readouterr().out

    valid = tmp_path / "valid.jsonl"
    with HistoryWriter(valid) as writer:
        writer.append({"process": 0, "type": "invoke", "f": "write", "key": "a", "value": 1})
        writer.append({"process": 0, "type": "ok", "f": "write", "key": "a", "value": 1})
        writer.append({"process": 1, "type": "invoke", "f": "read", "key": "a", "value": None})
        writer.append({"process": 1, "type": "ok", "f": "read", "key": "a", "value": 1})
    assert main(["check", str(valid), "--results"]) == 0
    written = json.loads((tmp_path / "results.json").read_text())
    assert written["valid"] is True
    assert set(written["checkers"]) == {"linearizable", "stats", "perf", "availability"}


@pytest.mark.parametrize(
    ("content", "line", "words"),
    [
        (
            '{"index":0,"time_ns":0,"process":0,"type":"invoke","f":"read"}\n{"index":1,\n',
            2,
            "not valid JSON",
        ),
        ('{"index":0,"time_ns":0,"process":0,"type":"invoke","f":"read","colour":1}\n', 1, "unknown field"),
        ('{"index":0,"time_ns":0,"process":0,"type":"ok","f":"read","value":1}\n', 1, "no invocation"),
    ],
)
def test_malformed_history_is_exit_3_naming_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, line: int | None, words: str
) -> None:
    path = tmp_path / "history.jsonl"
    path.write_text(content)
    assert main(["check", str(path)]) == 3
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert words in err
    assert str(path.name) in err
    if line is not None:
        assert f"history.jsonl:{line}" in err


def test_model_without_cas_refuses_cas_with_a_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "h.edn"
    path.write_text(
        "[{:process 0 :type :invoke :f :cas :value [1 2]} {:process 0 :type :ok :f :cas :value [1 2]}]"
    )
    assert main(["check", str(path), "--model", "register"]) == 3
    assert "did you mean --model cas-register" in capsys.readouterr().err


def test_edn_writer_round_trips_a_ratchet_history(tmp_path: Path) -> None:
    ops = [
        Op(0, 10, 0, "invoke", "cas", "k1", (1, 2)),
        Op(1, 20, "nemesis", "info", "start-partition", None, {"targets": ["n1", "n2"]}),
        Op(2, 30, 0, "ok", "cas", "k1", (1, 2), node="n1"),
        Op(3, 40, 1, "invoke", "read", "k2", None),
        Op(4, 50, 1, "info", "read", "k2", None, error='timeout "x"'),
    ]
    path = tmp_path / "history.edn"
    write_edn(ops, path)
    back = read_history(path)
    assert [(o.process, o.type, o.f, o.key, o.value, o.error, o.time_ns) for o in back] == [
        (0, "invoke", "cas", "k1", (1, 2), None, 10),
        ("nemesis", "info", "start-partition", None, {"targets": ("n1", "n2")}, None, 20),
        (0, "ok", "cas", "k1", (1, 2), None, 30),
        (1, "invoke", "read", "k2", None, None, 40),
        (1, "info", "read", "k2", None, 'timeout "x"', 50),
    ]
    assert loads(dumps({"a": (1, None, True), "b": frozenset({1})})) == {
        "a": (1, None, True),
        "b": frozenset({1}),
    }


def test_stats_flags_a_function_that_never_succeeded() -> None:
    ops = [
        Op(0, 0, 0, "invoke", "write", 0, 1),
        Op(1, 1, 0, "fail", "write", 0, 1),
        Op(2, 2, 1, "invoke", "read", 0, None),
        Op(3, 3, 1, "ok", "read", 0, None),
    ]
    result = stats(ops)
    assert result["never_succeeded"] == ["write"]
    assert result["by_f"]["write"] == {"invoke": 1, "ok": 0, "fail": 1, "info": 0}
    assert result["valid"] is True


def test_check_run_reads_a_stored_run(tmp_path: Path) -> None:
    from checkers.check import check_run

    (tmp_path / "test.json").write_text(json.dumps({"test": {"time_limit_s": 5, "workload": {}}}))
    with HistoryWriter(tmp_path / "history.jsonl") as writer:
        writer.append({"process": 0, "type": "invoke", "f": "write", "key": 1, "value": 7})
        writer.append({"process": 0, "type": "ok", "f": "write", "key": 1, "value": 7})
        writer.append({"process": 1, "type": "invoke", "f": "read", "key": 1, "value": None})
        writer.append({"process": 1, "type": "ok", "f": "read", "key": 1, "value": 8})
    results = check_run(tmp_path)
    assert results["valid"] is False
    assert results["checkers"]["linearizable"]["model"] == "cas-register"
    assert results["checkers"]["linearizable"]["key"] == 1


@pytest.mark.timeout(120)
def test_fast_path_proof_stands_when_the_search_runs_out() -> None:
    """Without the cas (and its repeated value), the unique-values check proves the violation
    in O(n log n); a search that runs out of time afterwards cannot turn that into "unknown"."""
    ops = [op for op in pathological() if op.process != 100]
    result = check_linearizable(ops, model="cas-register", time_limit_s=1.0)
    assert result["valid"] is False
    assert "unique-values" in result["methods"]
    assert result["counterexample"] is None  # nothing unproven is claimed
    assert result["first_unlinearizable_proven"] is False


def test_register_semantics_follow_the_source_unless_overridden(tmp_path: Path) -> None:
    """EDN is checked as Knossos checks it (initial 0, a nil read matches anything); jsonl as Ratchet writes it."""
    edn = tmp_path / "h.edn"
    edn.write_text(
        "[{:process 0 :type :invoke :f :read :value nil} {:process 0 :type :ok :f :read :value 0}\n"
        " {:process 1 :type :invoke :f :write :value 5} {:process 1 :type :ok :f :write :value 5}\n"
        " {:process 2 :type :invoke :f :read :value nil} {:process 2 :type :ok :f :read :value nil}]\n"
    )
    assert main(["check", str(edn)]) == 0
    assert main(["check", str(edn), "--initial", "nil"]) == 1  # the read of 0 now has no writer
    assert main(["check", str(edn), "--nil-reads", "empty"]) == 1  # the late nil read is stale
    assert main(["check", str(edn), "--initial", "{:a"]) == 3
    jsonl = tmp_path / "h.jsonl"
    with HistoryWriter(jsonl) as writer:
        for op in read_history(edn):
            writer.append(op)
    assert main(["check", str(jsonl)]) == 1
    assert main(["check", str(jsonl), "--initial", "0", "--nil-reads", "unknown"]) == 0


def test_cli_writes_an_edn_copy_that_checks_the_same(tmp_path: Path) -> None:
    source = Path(__file__).resolve().parents[1] / "data" / "corpus" / "porcupine-etcd" / "etcd_000.log"
    copy = tmp_path / "copy.edn"
    assert main(["check", str(source), "--to-edn", str(copy)]) == 1
    assert main(["check", str(copy), "--initial", "nil", "--nil-reads", "empty"]) == 1
    assert read_history(copy)[0].f == read_history(source)[0].f


def test_map_values_are_checked_not_crashed_on(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    with HistoryWriter(path) as writer:
        writer.append({"process": 0, "type": "invoke", "f": "write", "key": {"k": 1}, "value": {"a": [1, 2]}})
        writer.append({"process": 0, "type": "ok", "f": "write", "key": {"k": 1}, "value": {"a": [1, 2]}})
        writer.append({"process": 1, "type": "invoke", "f": "read", "key": {"k": 1}, "value": None})
        writer.append({"process": 1, "type": "ok", "f": "read", "key": {"k": 1}, "value": {"a": [1, 3]}})
    assert main(["check", str(path)]) == 1


@pytest.mark.timeout(120)
def test_a_long_search_reports_progress_to_the_callable_given(monkeypatch: pytest.MonkeyPatch) -> None:
    """``ratchet check`` takes progress lines directly (no logging import on its start-up)."""
    from checkers import search

    monkeypatch.setattr(search, "PROGRESS_EVERY_S", 0.0)
    lines: list[str] = []
    result = check_linearizable(
        pathological(), model="cas-register", time_limit_s=0.5, processes=1, progress=lines.append
    )
    assert result["valid"] == "unknown"
    assert lines and all(line.startswith("key=0 steps=") for line in lines), lines[:3]
    assert "linearizable_through_event=" in lines[-1]


@pytest.mark.timeout(120)
def test_the_check_command_prints_a_long_searchs_progress_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from checkers import search

    monkeypatch.setattr(search, "PROGRESS_EVERY_S", 0.0)
    history = tmp_path / "history.jsonl"
    with HistoryWriter(history) as writer:
        for op in pathological(18):
            writer.append(op)
    assert main(["check", str(history), "--time-limit", "0.5"]) == 2
    assert "searching: key=0 steps=" in capsys.readouterr().err
