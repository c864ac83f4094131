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
from datetime import UTC, datetime
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
    fault_windows: list[tuple[str, int, int]]  # (kind, start invocation ns, stop completion ns) relative
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
        # The window opens when its start is invoked and closes when its stop completes (§4).
        for invoked, f in ((start, f"start-{kind}"), (stop - 2_000_000, f"stop-{kind}")):
            value = {"targets": targets}
            records.append(_rec(START_MONO_NS + invoked, "nemesis", "info", f, None, value))
            records.append(_rec(START_MONO_NS + invoked + 2_000_000, "nemesis", "info", f, None, value))
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
    _write_results(run_dir)
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


@dataclass(slots=True)
class _Shell:
    """One client op before its values are known: who, when, and when it takes effect."""

    process: int
    start: int
    end: int
    effect: int
    key: str
    f: str
    info: bool
    node: str


def _client_ops(
    rng: random.Random,
    *,
    op_count: int,
    processes: int,
    keys: int,
    key_prefix: str,
    windows: list[tuple[str, int, int, list[str]]],
) -> list[dict[str, Any]]:
    """Client ops that are linearizable by construction: each takes effect at one instant inside
    its window, and values are computed by applying the ops in the order of those instants."""
    shells: list[_Shell] = []
    clock = [rng.randrange(0, 500_000) for _ in range(processes)]
    process_ids = list(range(processes))
    next_process = processes
    for n in range(op_count):
        thread = n % processes
        start = clock[thread]
        in_fault = any(s <= start < e for _k, s, e, _t in windows)
        info = in_fault and rng.random() < 0.3
        latency = 50_000_000 if info else int(rng.expovariate(1 / 800_000)) + 150_000
        effect = start + int(latency * rng.random())
        f = rng.choice(("read", "read", "write", "cas"))
        key = f"{key_prefix}{rng.randrange(keys)}"
        shells.append(
            _Shell(process_ids[thread], start, start + latency, effect, key, f, info, rng.choice(NODES))
        )
        clock[thread] = start + latency + rng.randrange(50_000, 300_000)
        if info:
            process_ids[thread] = next_process
            next_process += 1
    state: dict[str, Any] = {}
    records: list[dict[str, Any]] = []
    for fresh, shell in enumerate(sorted(shells, key=lambda sh: sh.effect), start=1):
        current = state.get(shell.key)
        applied = not shell.info or rng.random() < 0.5
        outcome, invoke_value, done_value, error = "ok", None, None, None
        if shell.f == "read":
            done_value = current
        elif shell.f == "write":
            invoke_value = done_value = fresh
            if applied:
                state[shell.key] = fresh
        else:
            old = current if rng.random() < 0.6 and current is not None else -fresh
            invoke_value = done_value = [old, fresh]
            if old != current:
                outcome, error, done_value = "fail", "cas-mismatch", [old, fresh]
            elif applied:
                state[shell.key] = fresh
        if shell.info and outcome == "ok":
            outcome, error, done_value = "info", "timeout", invoke_value
        records.append(
            _rec(START_MONO_NS + shell.start, shell.process, "invoke", shell.f, shell.key, invoke_value)
        )
        records.append(
            _rec(
                START_MONO_NS + shell.end,
                shell.process,
                outcome,
                shell.f,
                shell.key,
                done_value,
                error,
                shell.node,
            )
        )
    return records


def _plant_stale_read(records: list[dict[str, Any]]) -> list[int]:
    """Make one read return the value before the one a completed write had just put there.

    Picks, near the middle of the run, an ok write whose value a later ok read
    returned, where the read was invoked after the write completed, and where
    an earlier ok write to the key exists: the read is changed to return that
    earlier value, which no order respecting real time allows. Returns the
    history indices of the write's and the read's invocation and completion.
    """
    invoke_for: dict[int, dict[str, Any]] = {}
    open_invoke: dict[Any, dict[str, Any]] = {}
    for r in records:
        if r["process"] == "nemesis":
            continue
        if r["type"] == "invoke":
            open_invoke[r["process"]] = r
        else:
            invoke_for[r["index"]] = open_invoke.pop(r["process"])
    write_of: dict[Any, dict[str, Any]] = {}
    previous_of: dict[Any, Any] = {}  # an ok write's value -> the key's ok write before it
    last_write: dict[Any, Any] = {}
    candidates: list[tuple[dict[str, Any], dict[str, Any], Any]] = []
    for r in records:
        if r["type"] != "ok":
            continue
        if r["f"] == "write":
            write_of[r["value"]] = r
            if r["key"] in last_write:
                previous_of[r["value"]] = last_write[r["key"]]
            last_write[r["key"]] = r["value"]
        elif r["f"] == "read" and r["value"] in previous_of:
            write = write_of[r["value"]]
            if invoke_for[r["index"]]["time_ns"] > write["time_ns"]:
                candidates.append((write, r, previous_of[r["value"]]))
    if not candidates:
        return []
    write, read, stale = candidates[len(candidates) // 2]
    read["value"] = stale
    return [
        invoke_for[write["index"]]["index"],
        write["index"],
        invoke_for[read["index"]]["index"],
        read["index"],
    ]


def _write_test(run_dir: Path, *, seed: int, processes: int) -> None:
    """test.json in the harness's shape (harness/store.py: the resolved Test under "test")."""
    test = {
        "test": {
            "name": "synthetic-partition",
            "description": "synthetic run for report tests",
            "nodes": len(NODES),
            "bug": None,
            "workload": {"name": "register", "model": "cas-register"},
            "nemesis": {"faults": ["partition", "kill"], "interval_s": 10.0},
            "time_limit_s": 60.0,
            "concurrency": processes,
            "seed": seed,
            "store_dir": "store",
        },
        "seed": seed,
        "command_line": [
            "/usr/bin/python3",
            "/usr/local/bin/ratchet",
            "run",
            "synthetic-partition",
            "--seed",
            str(seed),
        ],
        "cluster": {
            "kind": "local",
            "nodes": {name: f"127.0.0.{i + 1}:4000" for i, name in enumerate(NODES)},
        },
    }
    (run_dir / "test.json").write_text(json.dumps(test, indent=2), encoding="utf-8")


def _write_results(run_dir: Path) -> None:
    """results.json as the real checkers write it for this history (so the evidence has their shape)."""
    from checkers.compose import check_history
    from checkers.history import read_history

    results = check_history(read_history(run_dir / "history.jsonl", "jsonl"), time_limit_s=60)
    results["teardown_errors"] = []
    (run_dir / "results.json").write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")


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


REAL_FAILING_ARCHIVE = Path(__file__).parent / "data" / "real-failing-run.tar.gz"
# What a report of a stored run reads (reports/run.py, reports/nodes.py), and nothing else: the
# nodes' data files (replica.vr, ~100 MB each) and the rendered report are left out.
ARCHIVED_RUN_FILES = ("test.json", "history.jsonl", "results.json", "ratchet.log")
ARCHIVED_NODE_FILES = ("node.log", "events.jsonl", "output.log")


def archive_real_run(run_dir: Path, archive: Path) -> list[str]:
    """Write ``archive`` (tar.gz) holding ``<scenario>/<stamp>/`` with only the files a report reads.

    Deterministic for a given run: names sorted, owner root, modes 0644/0755,
    each member's mtime the run's start and the gzip header's mtime zero, so
    re-archiving the same run gives the same bytes. Returns the member names.
    """
    import gzip
    import io
    import tarfile

    run_dir = Path(run_dir)
    stamp = int(datetime.strptime(run_dir.name, "%Y%m%dT%H%M%S").replace(tzinfo=UTC).timestamp())
    paths = [run_dir / name for name in ARCHIVED_RUN_FILES if (run_dir / name).is_file()]
    for node in sorted(p for p in (run_dir / "nodes").iterdir() if p.is_dir()):
        paths += [node / name for name in ARCHIVED_NODE_FILES if (node / name).is_file()]
    directories = sorted({p.parent for p in paths} | {run_dir.parent, run_dir, run_dir / "nodes"})
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted([*directories, *paths]):
            relative = path.relative_to(run_dir.parent.parent).as_posix()
            info = tarfile.TarInfo(relative)
            info.mtime, info.uid, info.gid, info.uname, info.gname = stamp, 0, 0, "root", "root"
            if path.is_dir():
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                data = path.read_bytes()
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
    with archive.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
        gz.write(buffer.getvalue())
    return [p.relative_to(run_dir.parent.parent).as_posix() for p in paths]


@dataclass(frozen=True, slots=True)
class RealRun:
    """A real stored run, extracted as the harness wrote it (nothing edited)."""

    run_dir: Path
    results: dict[str, Any]
    history: list[dict[str, Any]]
    test: dict[str, Any]


def real_failing_run(store: Path) -> RealRun:
    """A real run that failed: `ratchet run scenarios/rolling-kill.toml --bug read-from-backup --seed 3`.

    3 VR nodes under rolling kills for 20 s with the planted read-from-backup
    bug; the checkers found a stale read (exit 1). The archive holds the run's
    test.json, history.jsonl, results.json, ratchet.log and each node's logs
    and events as the harness wrote them; it is extracted under
    ``store/<scenario>/<stamp>/`` unchanged. Regenerate it from a new run with
    ``python -m tests.reports.synth archive STORE/<scenario>/<stamp>``.
    """
    import tarfile

    store.mkdir(parents=True, exist_ok=True)
    with tarfile.open(REAL_FAILING_ARCHIVE) as archive:
        # Extraction filters came in Python 3.11.4; Debian 12's 3.11.2 has none (the archive is our own).
        archive.extractall(store, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
        run_dir = store / min((m.name for m in archive.getmembers() if m.name.count("/") == 1), key=len)
    history = [
        json.loads(line)
        for line in (run_dir / "history.jsonl").read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    return RealRun(
        run_dir,
        json.loads((run_dir / "results.json").read_text(encoding="utf-8")),
        history,
        json.loads((run_dir / "test.json").read_text(encoding="utf-8")),
    )


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 3 or sys.argv[1] != "archive":
        sys.exit("usage: python -m tests.reports.synth archive STORE/<scenario>/<stamp>")
    for member in archive_real_run(Path(sys.argv[2]), REAL_FAILING_ARCHIVE):
        print(member)
    print(f"{REAL_FAILING_ARCHIVE}: {REAL_FAILING_ARCHIVE.stat().st_size:,} bytes")
