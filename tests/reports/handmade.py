"""Small hand-made histories and run directories with answers known by construction."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from checkers.history import Op

MS = 1_000_000
T0_NS = 7_000_000_000


def op(
    index: int,
    t_ms: float,
    process: Any,
    type_: str,
    f: str,
    key: Any = None,
    value: Any = None,
    error: str | None = None,
    node: str | None = None,
) -> Op:
    return Op(index, T0_NS + int(t_ms * MS), process, type_, f, key, value, error, node)


def partition_history() -> list[Op]:
    """Two clients on key "a", a partition from 18 ms (start invoked) to 60 ms (stop completed).

    p0: write 1 [0, 5] ok; read [10, 12] ok -> 1; write 2 [30, 80] info (retired);
    p1: cas [1, 3] [2, 4] fail; write 3 [25, 28] fail; write 4 [65, 70] ok (first ok write after heal: 10 ms);
    p2 (p0's thread after retirement): read [85, 90] ok -> 4; read [95, ...) never completes.
    """
    return [
        op(0, 0, 0, "invoke", "write", "a", 1),
        op(1, 1, 1, "invoke", "cas", "a", [1, 3]),
        op(2, 2, 1, "fail", "cas", "a", [1, 3], error="cas-mismatch", node="n1"),
        op(3, 5, 0, "ok", "write", "a", 1, node="n1"),
        op(4, 10, 0, "invoke", "read", "a", None),
        op(5, 12, 0, "ok", "read", "a", 1, node="n2"),
        op(
            6,
            18,
            "nemesis",
            "info",
            "start-partition",
            None,
            {"targets": ["n1"], "grudge": {"n1": ["n2", "n3"]}},
        ),
        op(
            7,
            20,
            "nemesis",
            "info",
            "start-partition",
            None,
            {"targets": ["n1"], "grudge": {"n1": ["n2", "n3"]}},
        ),
        op(8, 25, 1, "invoke", "write", "a", 3),
        op(9, 28, 1, "fail", "write", "a", 3, error="not-primary"),
        op(10, 30, 0, "invoke", "write", "a", 2),
        op(11, 58, "nemesis", "info", "stop-partition", None, {"targets": ["n1"]}),
        op(12, 60, "nemesis", "info", "stop-partition", None, {"targets": ["n1"]}),
        op(13, 65, 1, "invoke", "write", "a", 4),
        op(14, 70, 1, "ok", "write", "a", 4, node="n2"),
        op(15, 80, 0, "info", "write", "a", 2, error="timeout"),
        op(16, 85, 2, "invoke", "read", "a", None),
        op(17, 90, 2, "ok", "read", "a", 4, node="n2"),
        op(18, 95, 2, "invoke", "read", "a", None),
    ]


def write_history(path: Path, ops: list[Op]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for record in ops:
            handle.write(json.dumps(record.to_json()) + "\n")


def write_run(
    run_dir: Path,
    ops: list[Op],
    *,
    results: dict[str, Any] | None,
    test: dict[str, Any] | None,
    node_logs: dict[str, list[str]] | None = None,
    node_events: dict[str, list[dict[str, Any]]] | None = None,
) -> Path:
    """A run directory per contracts §6 with exactly the given contents (None: file left out)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    write_history(run_dir / "history.jsonl", ops)
    if results is not None:
        (run_dir / "results.json").write_text(json.dumps(results), encoding="utf-8")
    if test is not None:
        (run_dir / "test.json").write_text(json.dumps(test), encoding="utf-8")
    for name, lines in (node_logs or {}).items():
        (run_dir / "nodes" / name).mkdir(parents=True, exist_ok=True)
        (run_dir / "nodes" / name / "node.log").write_text(
            "".join(line + "\n" for line in lines), encoding="utf-8"
        )
    for name, events in (node_events or {}).items():
        (run_dir / "nodes" / name).mkdir(parents=True, exist_ok=True)
        with (run_dir / "nodes" / name / "events.jsonl").open("w", encoding="utf-8") as handle:
            for event in events:
                handle.write(json.dumps(event) + "\n")
    return run_dir
