"""Writes synthetic stored runs (contracts §6) for the report tests and bench/report_render.py.

Real runs come from the harness; these stand in for them where a test needs
exact, known contents or a size (100,000 ops) no bounded test run reaches.
Everything is drawn from ``random.Random(seed)``: the same arguments write the
same bytes.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

START_MONO_NS = 5_000_000_000_000
START_WALL_NS = 1_795_000_000_000_000_000
NODES = ("n1", "n2", "n3")


@dataclass(frozen=True, slots=True)
class Synthetic:
    """What was written, so tests can compare the report against known answers."""

    run_dir: Path
    op_count: int
    fault_windows: list[tuple[str, int, int]]  # (kind, start completion ns, stop completion ns) relative
    anomaly_indices: list[int]


def write_run(
    run_dir: Path,
    *,
    op_count: int,
    seed: int,
    processes: int = 5,
    keys: int = 8,
    anomaly: bool = True,
    key_prefix: str = "k",
) -> Synthetic:
    """A run of ``op_count`` client ops (invoke+completion pairs) with partition and kill windows."""
    rng = random.Random(seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    records: list[dict[str, Any]] = []
    span_ns = (
        max(op_count, 1) * 1_100_000 // processes
    )  # each process: ~0.95 ms latency + ~0.175 ms think time
    windows = _fault_schedule(span_ns)
    clients = _client_ops(
        rng, op_count=op_count, processes=processes, keys=keys, key_prefix=key_prefix, windows=windows
    )
    records.extend(clients)
    for kind, start, stop, targets in windows:
        for offset, f in ((start, f"start-{kind}"), (stop, f"stop-{kind}")):
            value = {"targets": targets}
            records.append(_rec(START_MONO_NS + offset - 2_000_000, "nemesis", "info", f, None, value))
            records.append(_rec(START_MONO_NS + offset, "nemesis", "info", f, None, value))
    records.sort(key=lambda r: r["time_ns"])
    for index, record in enumerate(records):
        record["index"] = index
    anomaly_indices: list[int] = []
    if anomaly:
        anomaly_indices = _plant_stale_read(records)
    with (run_dir / "history.jsonl").open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, separators=(",", ":")) + "\n")
    _write_test(run_dir, seed=seed, processes=processes)
    _write_results(run_dir, records, anomaly_indices)
    _write_nodes(run_dir, rng, span_ns=span_ns, windows=windows)
    return Synthetic(run_dir, op_count, [(k, s, e) for k, s, e, _t in windows], anomaly_indices)


def _rec(
    time_ns: int, process: Any, type_: str, f: str, key: Any, value: Any, error: Any = None, node: Any = None
) -> dict[str, Any]:
    return {
        "index": -1,
        "time_ns": time_ns,
        "process": process,
        "type": type_,
        "f": f,
        "key": key,
        "value": value,
        "error": error,
        "node": node,
    }


def _fault_schedule(span_ns: int) -> list[tuple[str, int, int, list[str]]]:
    tenth = span_ns // 10
    return [
        ("partition", 2 * tenth, 3 * tenth, ["n1"]),
        ("kill", 5 * tenth, 6 * tenth, ["n2"]),
        ("partition", 7 * tenth, 8 * tenth, ["n3"]),
    ]


def _client_ops(
    rng: random.Random,
    *,
    op_count: int,
    processes: int,
    keys: int,
    key_prefix: str,
    windows: list[tuple[str, int, int, list[str]]],
) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    clock = [rng.randrange(0, 500_000) for _ in range(processes)]
    process_ids = list(range(processes))
    next_process = processes
    for n in range(op_count):
        thread = n % processes
        process = process_ids[thread]
        start = clock[thread]
        in_fault = any(s <= start < e for _k, s, e, _t in windows)
        key = f"{key_prefix}{rng.randrange(keys)}"
        f = rng.choice(("read", "read", "write", "cas"))
        latency = int(rng.expovariate(1 / 800_000)) + 150_000
        outcome = "ok"
        if in_fault and rng.random() < 0.3:
            outcome, latency = "info", 50_000_000
        elif f == "cas" and rng.random() < 0.4:
            outcome = "fail"
        written = n + 1  # every write/cas carries a fresh value
        value: Any = None if f == "read" else (written if f == "write" else [written - 1, written])
        node = NODES[rng.randrange(len(NODES))]
        records.append(_rec(START_MONO_NS + start, process, "invoke", f, key, value))
        done_value = rng.randrange(written) if f == "read" and outcome == "ok" else value
        error = {"fail": "cas-mismatch", "info": "timeout"}.get(outcome)
        records.append(
            _rec(START_MONO_NS + start + latency, process, outcome, f, key, done_value, error, node)
        )
        clock[thread] = start + latency + rng.randrange(50_000, 300_000)
        if outcome == "info":
            process_ids[thread] = next_process
            next_process += 1
    return records


def _plant_stale_read(records: list[dict[str, Any]]) -> list[int]:
    """Mark the middle write and a later read of the same key as the counterexample pair."""
    writes = [r for r in records if r["f"] == "write" and r["type"] == "ok"]
    if not writes:
        return []
    write = writes[len(writes) // 2]
    later = [
        r
        for r in records
        if r["f"] == "read"
        and r["type"] == "ok"
        and r["key"] == write["key"]
        and r["time_ns"] > write["time_ns"]
    ]
    if not later:
        return []
    read = later[0]
    read["value"] = write["value"] - 1
    invoke_for: dict[int, int] = {}
    open_invoke: dict[Any, int] = {}
    for r in records:
        if r["process"] == "nemesis":
            continue
        if r["type"] == "invoke":
            open_invoke[r["process"]] = r["index"]
        else:
            invoke_for[r["index"]] = open_invoke.pop(r["process"])
    return [invoke_for[write["index"]], write["index"], invoke_for[read["index"]], read["index"]]


def _write_test(run_dir: Path, *, seed: int, processes: int) -> None:
    test = {
        "scenario": "synthetic-partition",
        "seed": seed,
        "nodes": list(NODES),
        "concurrency": processes,
        "command": ["ratchet", "run", "scenarios/synthetic-partition.toml", "--seed", str(seed)],
        "start_mono_ns": START_MONO_NS,
        "start_wall_ns": START_WALL_NS,
        "nemesis": ["partition", "kill"],
    }
    (run_dir / "test.json").write_text(json.dumps(test, indent=2), encoding="utf-8")


def _write_results(run_dir: Path, records: list[dict[str, Any]], anomaly: list[int]) -> None:
    checkers: dict[str, Any] = {"stats": {"valid": True}}
    if anomaly:
        by_index = {r["index"]: r for r in records}
        write, read = by_index[anomaly[1]], by_index[anomaly[3]]
        checkers["linearizable"] = {
            "valid": False,
            "key": write["key"],
            "first_unlinearizable": read,
            "counterexample": {
                "ops": [by_index[i] for i in anomaly],
                "explanation": (
                    f"after write {write['value']} by p{write['process']} [ok], read by p{read['process']} "
                    f"returned {read['value']}, but the register held {write['value']}"
                ),
            },
        }
    else:
        checkers["linearizable"] = {"valid": True}
    results = {"valid": not anomaly, "checkers": checkers, "teardown_errors": []}
    (run_dir / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")


def _write_nodes(
    run_dir: Path, rng: random.Random, *, span_ns: int, windows: list[tuple[str, int, int, list[str]]]
) -> None:
    for replica, name in enumerate(NODES):
        directory = run_dir / "nodes" / name
        directory.mkdir(parents=True, exist_ok=True)
        events = []
        for view, (_kind, start, _stop, _targets) in enumerate(windows, start=1):
            at = start + 100_000_000
            events.append(
                {
                    "mono_ns": START_MONO_NS + at,
                    "wall_ns": START_WALL_NS + at,
                    "replica": replica,
                    "kind": "view_change_started",
                    "view": view,
                }
            )
            if view % len(NODES) == replica:
                events.append(
                    {
                        "mono_ns": START_MONO_NS + at + 30_000_000,
                        "wall_ns": START_WALL_NS + at + 30_000_000,
                        "replica": replica,
                        "kind": "became_primary",
                        "view": view,
                    }
                )
        with (directory / "events.jsonl").open("w", encoding="utf-8") as handle:
            for event in events:
                handle.write(json.dumps(event) + "\n")
        with (directory / "node.log").open("w", encoding="utf-8") as handle:
            step = max(span_ns // 400, 1)
            for at in range(0, span_ns, step):
                # local time, as logging writes it
                moment = datetime.fromtimestamp((START_WALL_NS + at) / 1e9)
                stamp = moment.strftime("%Y-%m-%d %H:%M:%S,") + f"{moment.microsecond // 1000:03d}"
                handle.write(
                    f"ts={stamp} level=INFO vr.replica replica={replica} op={at // step} commit={at // step - 1}\n"
                )
