"""The history format every part shares: records, writer, readers and pairing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from checkers.history import HistoryFormatError, HistoryWriter, Op, pair, read_history


def op(index: int, process: int | str, type_: str, f: str, value=None, key=None) -> Op:
    return Op(index=index, time_ns=index * 10, process=process, type=type_, f=f, key=key, value=value)


def test_op_round_trips_through_json() -> None:
    original = op(3, 1, "invoke", "cas", value=(1, 2), key="k")
    decoded = Op.from_json(json.loads(json.dumps(original.to_json())))
    assert decoded == original
    assert decoded.value == (1, 2)  # lists come back as tuples (hashable)


@pytest.mark.parametrize(
    ("field", "bad", "message"),
    [
        ("type", "done", "'type'"),
        ("index", -1, "'index'"),
        ("time_ns", "soon", "'time_ns'"),
        ("process", 1.5, "'process'"),
        ("f", "", "'f'"),
        ("error", 7, "'error'"),
    ],
)
def test_from_json_names_the_bad_field(field: str, bad: object, message: str) -> None:
    d = op(0, 1, "invoke", "read").to_json()
    d[field] = bad
    with pytest.raises(HistoryFormatError, match=message):
        Op.from_json(d)


def test_from_json_names_a_missing_field() -> None:
    d = op(0, 1, "invoke", "read").to_json()
    del d["f"]
    with pytest.raises(HistoryFormatError, match="'f' is missing"):
        Op.from_json(d)


def test_writer_lines_are_readable_while_open_and_after_close(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    with HistoryWriter(path) as writer:
        writer.append(op(0, 1, "invoke", "write", value=5, key=0))
        writer.append({"process": 1, "type": "ok", "f": "write", "key": 0, "value": 5})
        during = read_history(path)
        assert [o.type for o in during] == ["invoke", "ok"]
        assert during[1].index == 1  # a dict without index gets the next one
    assert read_history(path) == during


def test_writer_output_survives_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    script = textwrap.dedent(
        f"""
        import sys, time
        from checkers.history import HistoryWriter
        w = HistoryWriter({str(path)!r})
        for i in range(3):
            w.append({{"process": 0, "type": "invoke" if i % 2 == 0 else "ok", "f": "read", "key": 1}})
        print("written", flush=True)
        time.sleep(30)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=os.getcwd()
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "written"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    ops = read_history(path)
    assert [o.index for o in ops] == [0, 1, 2]
    assert proc.returncode == -signal.SIGKILL


def test_malformed_jsonl_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    good = json.dumps(op(0, 1, "invoke", "read").to_json())
    path.write_text(good + "\n" + good + "\n{not json\n")
    with pytest.raises(HistoryFormatError) as info:
        read_history(path)
    assert info.value.line == 3
    assert str(path) in str(info.value)
    assert ":3:" in str(info.value)


def test_edn_reader_handles_comments_strings_lists_and_multiline_maps(tmp_path: Path) -> None:
    path = tmp_path / "h.edn"
    path.write_text(
        textwrap.dedent(
            """\
            ; a comment with a { brace
            ({:process 0, :type :invoke, :f :write, :value 1}
             {:process 0, :type :ok, :f :write, :value 1}
             {:process :nemesis,
              :type :info,
              :f :start,
              :value "Cut off {\\"n1\\" #[:n2]}"}
             {:process 1 :type :invoke :f :read :value nil}  ; commas are optional
             {:process 1, :type :ok, :f :read, :value 1})
            """
        )
    )
    ops = read_history(path)
    assert [o.process for o in ops] == [0, 0, "nemesis", 1, 1]
    assert ops[2].value == 'Cut off {"n1" #[:n2]}'
    operations = pair(ops)
    assert [(o.f, o.value_in, o.value_out, o.outcome) for o in operations] == [
        ("write", 1, 1, "ok"),
        ("read", None, 1, "ok"),
    ]


def test_edn_one_map_per_line_with_independent_tuples(tmp_path: Path) -> None:
    path = tmp_path / "history.edn"
    path.write_text(
        "{:index 0, :time 5, :type :invoke, :process 0, :f :cas, :value [7 [1 2]]}\n"
        "{:index 1, :time 9, :type :ok, :process 0, :f :cas, :value [7 [1 2]]}\n"
        "{:index 2, :time 11, :type :invoke, :process 1, :f :read, :value [8 nil]}\n"
    )
    ops = read_history(path)
    assert [(o.key, o.value, o.time_ns) for o in ops] == [(7, (1, 2), 5), (7, (1, 2), 9), (8, None, 11)]


def test_malformed_edn_names_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.edn"
    path.write_text(
        '[{:process 0, :type :invoke, :f :read}\n {:process 0, :type :ok\n  :f :read, :value "x}\n]'
    )
    with pytest.raises(HistoryFormatError) as info:
        read_history(path)
    assert info.value.line is not None
    path.write_text("[{:process 0, :type :invoke, :f :read}\n {:process 0, :type :done, :f :read}]\n")
    with pytest.raises(HistoryFormatError, match=":type") as info:
        read_history(path)
    assert info.value.line == 2


def test_porcupine_log_with_tabs_and_spaces(tmp_path: Path) -> None:
    path = tmp_path / "etcd.log"
    path.write_text(
        "INFO  jepsen.util - 4\t:invoke\t:cas\t[1 2]\n"
        "INFO  jepsen.util - 1   :invoke :write  3\n"
        "some other console line\n"
        "INFO  jepsen.util - 4\t:fail\t:cas\t[1 2]\n"
        "INFO  jepsen.util - 1   :info :write  :timed-out\n"
    )
    ops = read_history(path)
    assert [(o.process, o.type, o.f, o.value, o.error) for o in ops] == [
        (4, "invoke", "cas", (1, 2), None),
        (1, "invoke", "write", 3, None),
        (4, "fail", "cas", (1, 2), None),
        (1, "info", "write", None, "timed-out"),
    ]
    operations = pair(ops)
    assert len(operations) == 1  # the failed cas is gone
    assert operations[0].outcome == "info"
    assert operations[0].ret is None


def test_pair_follows_jepsens_rule() -> None:
    ops = [
        op(0, 0, "invoke", "write", 1),
        op(1, 1, "invoke", "read"),
        op(2, "nemesis", "info", "start-partition", {"targets": ["n1"]}),
        op(3, 0, "ok", "write", 1),
        op(4, 1, "ok", "read", 1),
        op(5, 2, "invoke", "cas", (1, 2)),
        op(6, 2, "fail", "cas", (1, 2)),
        op(7, 3, "invoke", "write", 9),
    ]
    operations = pair(ops)
    assert [(o.process, o.f, o.outcome, o.call, o.ret) for o in operations] == [
        (0, "write", "ok", 0, 3),
        (1, "read", "ok", 1, 4),
        (3, "write", "info", 7, None),
    ]


def _pair_op_by_op(ops: list[Op]) -> list[tuple[object, ...]]:
    """The pairing rule written out one op at a time: what the column-wise :func:`pair` must give."""
    pending: dict[object, tuple[int, Op]] = {}
    events: list[tuple[int, Op, int | None, Op | None]] = []
    for position, o in enumerate(ops):
        if not isinstance(o.process, int):
            continue
        if o.type == "invoke":
            if o.process in pending:
                events.append((*pending.pop(o.process), None, None))
            pending[o.process] = (position, o)
        else:
            events.append((*pending.pop(o.process), position, o))
    events.extend((position, o, None, None) for position, o in pending.values())
    events.sort(key=lambda event: event[0])
    out: list[tuple[object, ...]] = []
    for call, invoke, ret, completion in events:
        if completion is not None and completion.type == "fail":
            continue
        ok = completion is not None and completion.type == "ok"
        out.append(
            (
                len(out),
                invoke.process,
                invoke.f,
                invoke.key,
                None if invoke.f == "read" else invoke.value,
                completion.value if ok else None,
                "ok" if ok else "info",
                call,
                ret if ok else None,
                invoke.time_ns,
                None if completion is None else completion.time_ns,
                invoke.index,
                None if completion is None else completion.index,
            )
        )
    return out


def test_pair_gives_what_the_rule_op_by_op_gives() -> None:
    """Random histories with ok, fail and info completions, crashed invocations and nemesis ops."""
    import random

    from checkers.history import Operation

    fields = Operation.__match_args__
    assert pair([]) == []
    for seed in range(200):
        rng = random.Random(seed)
        ops: list[Op] = []
        running: dict[int, str] = {}
        for _ in range(rng.randint(0, 40)):
            process = rng.randrange(4)
            if rng.random() < 0.1:
                ops.append(op(len(ops), "nemesis", "info", "start", None))
            elif process in running and rng.random() < 0.8:
                f = running.pop(process)
                type_ = rng.choice(["ok", "ok", "fail", "info"])
                ops.append(op(len(ops), process, type_, f, rng.randrange(5), key=rng.randrange(2)))
            else:
                f = rng.choice(["read", "write", "cas"])
                running[process] = f
                value = (rng.randrange(5), rng.randrange(5)) if f == "cas" else rng.randrange(5)
                ops.append(op(len(ops), process, "invoke", f, value, key=rng.randrange(2)))
        got = [tuple(getattr(o, name) for name in fields) for o in pair(ops)]
        assert got == _pair_op_by_op(ops), seed


def test_pair_rejects_a_completion_without_invocation() -> None:
    with pytest.raises(HistoryFormatError, match="no invocation"):
        pair([op(0, 0, "ok", "read", 1)])


def test_unknown_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text("")
    with pytest.raises(HistoryFormatError, match="unknown format"):
        read_history(path, format="xml")
    assert read_history(path) == []


def test_a_completion_without_invocation_is_reported_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "h.edn"
    path.write_text(
        "[{:process 0, :type :invoke, :f :read}\n\n {:process 0, :type :ok, :f :read, :value 1}\n"
        " ; a comment\n {:process 3, :type :ok, :f :write, :value 1}]\n"
    )
    with pytest.raises(HistoryFormatError, match="no invocation") as info:
        read_history(path)
    assert info.value.line == 5


def test_writer_serializes_appends_from_threads(tmp_path: Path) -> None:
    import threading

    path = tmp_path / "history.jsonl"
    with HistoryWriter(path) as writer:

        def work(process: int) -> None:
            for _ in range(200):
                writer.append({"process": process, "type": "invoke", "f": "read", "key": process})

        threads = [threading.Thread(target=work, args=(p,)) for p in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    lines = path.read_text().splitlines()
    assert len(lines) == 800
    indices = [json.loads(line)["index"] for line in lines]
    assert indices == list(range(800))
