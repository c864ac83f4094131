"""Every kind of bad input, through the real ``ratchet`` command: exit 3, one paragraph, no traceback.

Each row is a command line and the words its error must contain. The files a
row needs are made in a fresh directory first; the command runs there as a
subprocess of the installed ``ratchet``. Besides the exit code and the message,
a row must leave nothing behind: no store, no run directory, no results.json or
EDN copy, no file in or beside the directory it ran in. Refusals come before any node starts, so
the whole table takes seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
COMMAND_TIMEOUT_S = 60  # a refusal takes well under a second; a row that starts a run fails here

W0 = '{"index":0,"time_ns":1,"process":0,"type":"invoke","f":"write","key":1,"value":5}\n'
W1 = '{"index":1,"time_ns":2,"process":0,"type":"ok","f":"write","key":1,"value":5}\n'
CAS5 = W0.replace('"write"', '"cas"') + W1.replace('"write"', '"cas"')
APPEND_MAP = (W0 + W1).replace('"write"', '"append"').replace('"value":5', '"value":{"a":1}')
RANDOM_BYTES = bytes((i * 167 + 13) % 256 for i in range(4096))  # fixed "random" bytes, not UTF-8


def ratchet() -> list[str]:
    """The ``ratchet`` console script of this interpreter's environment (the venv's)."""
    script = Path(sys.executable).parent / "ratchet"
    return [str(script)] if script.exists() else [sys.executable, "-m", "harness.cli"]


Setup = Callable[[Path], None]


def files(**contents: str | bytes) -> Setup:
    """Write each keyword's file (``__`` in a name stands for ``/``) before the command runs."""

    def setup(root: Path) -> None:
        for name, data in contents.items():
            path = root / name.replace("__", "/")
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(data, str):
                data = data.encode()
            path.write_bytes(data)

    return setup


def symlink_loop(name: str) -> Setup:
    def setup(root: Path) -> None:
        (root / f"{name}.a").symlink_to(f"{name}.b")
        (root / f"{name}.b").symlink_to(f"{name}.a")
        (root / name).symlink_to(f"{name}.a")

    return setup


def dangling(name: str) -> Setup:
    return lambda root: (root / name).symlink_to("nowhere.toml")


def fifo(name: str) -> Setup:
    return lambda root: os.mkfifo(root / name)


def directory(name: str, *inside: str) -> Setup:
    def setup(root: Path) -> None:
        (root / name).mkdir()
        for child in inside:
            (root / name / child).write_bytes(RANDOM_BYTES)

    return setup


def stored_run(name: str, test_changes: dict[str, object]) -> Setup:
    """A run directory whose test.json was edited (``--replay`` must refuse it, not run it)."""

    def setup(root: Path) -> None:
        from core.scenario import build_test, read_table, resolve_scenario_path

        path = resolve_scenario_path("no-faults")
        test = build_test(read_table(path), source=str(path), seed_if_absent=1).to_json()
        test.update(test_changes)
        (root / name).mkdir()
        (root / name / "test.json").write_text(json.dumps({"test": test, "seed": 1}))

    return setup


@dataclass(frozen=True)
class Row:
    id: str
    args: tuple[str, ...]
    words: str
    setup: Setup | None = None
    also: tuple[Setup, ...] = field(default=())


def row(id: str, args: str | tuple[str, ...], words: str, *setups: Setup) -> pytest.ParameterSet:
    argv = tuple(args.split()) if isinstance(args, str) else args
    return pytest.param(Row(id, argv, words, None, setups), id=id)


TOML_NAME = '\nname = "{}"\n[run]\ntime_limit_s = 5\n'

ROWS = [
    # -- ratchet run: the scenario file ------------------------------------------------------
    row("run-random-bytes", "run s.toml", "not UTF-8", files(**{"s.toml": RANDOM_BYTES})),
    row("run-invalid-utf8-name", "run s.toml", "not UTF-8", files(**{"s.toml": b'name = "\xe9\xff"\n'})),
    row("run-empty-file", "run s.toml", "the scenario file is empty", files(**{"s.toml": ""})),
    row("run-only-comments", "run s.toml", "the scenario file is empty", files(**{"s.toml": "# hi\n\n"})),
    row("run-not-toml", "run s.toml", "not valid TOML", files(**{"s.toml": "[cluster\nnodes = 3\n"})),
    row("run-directory", "run d", "'d' is a directory, not a scenario file", directory("d")),
    row("run-directory-slash", "run d/", "is a directory, not a scenario file", directory("d")),
    row("run-dir-named-toml", "run d.toml", "is a directory, not a scenario file", directory("d.toml")),
    row("run-missing-file", "run missing.toml", "'missing.toml' does not exist"),
    row("run-unknown-name", "run defualt", "Did you mean 'default'?"),
    row("run-empty-arg", ("run", ""), "the scenario argument is empty"),
    row("run-symlink-loop", "run loop.toml", "Too many levels of symbolic links", symlink_loop("loop.toml")),
    row("run-dangling-symlink", "run gone.toml", "which does not exist", dangling("gone.toml")),
    row("run-fifo", "run pipe.toml", "not a regular file", fifo("pipe.toml")),
    row("run-device", "run /dev/null", "not a regular file"),
    row("run-unreadable", "run /proc/self/mem", "cannot read the scenario"),
    row("run-huge-file", "run s.toml", "larger than", files(**{"s.toml": "# " + "x" * (1 << 21) + "\n"})),
    # -- the scenario's name: never a path out of the store ------------------------------------
    row(
        "run-name-absolute",
        "run s.toml",
        "no '/', '..' or absolute",
        files(**{"s.toml": TOML_NAME.format("/tmp/x")}),
    ),
    row("run-name-traversal", "run s.toml", "no '/', '..'", files(**{"s.toml": TOML_NAME.format("../../x")})),
    row(
        "run-name-dotdot", "run s.toml", "not starting with '.'", files(**{"s.toml": TOML_NAME.format("..")})
    ),
    row("run-name-separator", "run s.toml", "no '/'", files(**{"s.toml": TOML_NAME.format("a/b")})),
    row("run-name-latest", "run s.toml", "is reserved", files(**{"s.toml": TOML_NAME.format("latest")})),
    row("run-name-empty", "run s.toml", "name = ''", files(**{"s.toml": TOML_NAME.format("")})),
    row("run-name-number", "run s.toml", "name must be a string", files(**{"s.toml": "name = 5\n"})),
    row(
        "run-name-from-file",
        "run .hidden.toml",
        "from the file name",
        files(**{".hidden.toml": "[run]\nseed = 1\n"}),
    ),
    # -- keys and types ------------------------------------------------------------------------
    row("run-unknown-key", "run s.toml", "unknown key 'colour'", files(**{"s.toml": "colour = 1\n"})),
    row(
        "run-unknown-section",
        "run s.toml",
        "Did you mean 'cluster'?",
        files(**{"s.toml": "[clustr]\nnodes = 3\n"}),
    ),
    row(
        "run-nodes-string",
        "run s.toml",
        "cluster.nodes must be an integer",
        files(**{"s.toml": '[cluster]\nnodes = "3"\n'}),
    ),
    row(
        "run-nodes-two",
        "run s.toml",
        "must be odd: VR runs on N = 2f+1",
        files(**{"s.toml": "[cluster]\nnodes = 2\n"}),
    ),
    row(
        "run-faults-string",
        "run s.toml",
        "nemesis.faults must be a list",
        files(**{"s.toml": '[nemesis]\nfaults = "kill"\n'}),
    ),
    row(
        "run-faults-numbers",
        "run s.toml",
        "must be a list of strings",
        files(**{"s.toml": "[nemesis]\nfaults = [1, 2]\n"}),
    ),
    row(
        "run-read-bool",
        "run s.toml",
        "workload.read must be",
        files(**{"s.toml": "[workload]\nread = true\n"}),
    ),
    row(
        "run-read-nan",
        "run s.toml",
        "must be a finite number",
        files(**{"s.toml": "[workload]\nread = nan\n"}),
    ),
    row(
        "run-loss-inf",
        "run s.toml",
        "must be a finite number",
        files(**{"s.toml": "[nemesis]\nloss_fraction = inf\n"}),
    ),
    row(
        "run-unknown-workload",
        "run s.toml",
        "'regster' is not one of",
        files(**{"s.toml": '[workload]\nname = "regster"\n'}),
    ),
    row(
        "run-no-work",
        "run s.toml",
        "nothing to do",
        files(**{"s.toml": "[workload]\nread = 0\nwrite = 0\ncas = 0\n"}),
    ),
    # -- flags ---------------------------------------------------------------------------------
    row("run-nodes-2", "run --nodes 2", "must be odd: VR runs on N = 2f+1"),
    row("run-nodes-4", "run --nodes 4", "must be odd: VR runs on N = 2f+1"),
    row("run-nodes-0", "run --nodes 0", "must be between 1 and 9"),
    row("run-nodes-huge", "run --nodes 99999999999999999999", "must be between 1 and 9"),
    row("run-nodes-word", "run --nodes three", "cluster.hosts is for cluster.kind = 'ssh'"),
    row("run-nemesis-empty", ("run", "--nemesis", ""), "names nothing"),
    row("run-nemesis-commas", "run --nemesis ,,,", "names nothing"),
    row("run-nemesis-gap", "run --nemesis partition,,kill", "an empty item between commas"),
    row("run-nemesis-unknown", "run --nemesis partiton", "did you mean 'partition'"),
    row("run-grudges-empty", ("run", "--grudges", " "), "names nothing"),
    row("run-rate-nan", "run --rate nan", "workload.rate = nan: must be a finite number"),
    row("run-time-limit-inf", "run --time-limit inf", "must be a finite number between 1 and 86400"),
    row("run-time-limit-negative", "run --time-limit -5", "must be between 1 and 86400"),
    row("run-concurrency-negative", "run --concurrency -1", "must be between 1 and 256"),
    row("run-keys-zero", "run --keys 0", "must be between 1 and 1000"),
    row("run-seed-negative", "run --seed -1", "must be between 0 and"),
    row("run-unknown-bug", "run --bug no-such-bug", "is not a bug the nodes know"),
    row("run-unknown-flag", "run --nodez 3", "unrecognized arguments: --nodez"),
    row("run-store-file", "run --store f", "is a file, not a directory", files(f="x")),
    row("run-store-under-file", "run --store f/store", "is a file, not a directory", files(f="x")),
    row("run-store-proc", "run --store /proc/x", "cannot be written"),
    row("run-store-empty", ("run", "--store", ""), "is empty"),
    row("run-store-loop", "run --store loop", "Too many levels of symbolic links", symlink_loop("loop")),
    row("run-replay-missing", "run --replay nowhere", "is not a stored run"),
    row("run-replay-garbage", "run --replay r", "cannot read the stored test", directory("r", "test.json")),
    row("run-replay-traversal", "run --replay r", "no '/', '..'", stored_run("r", {"name": "../../x"})),
    row("run-replay-even", "run --replay r", "must be odd", stored_run("r", {"nodes": 4})),
    row(
        "run-replay-store",
        "run --replay r --store f",
        "is a file, not a directory",
        stored_run("r", {}),
        files(f="x"),
    ),
    # -- ratchet check ---------------------------------------------------------------------------
    row("check-random-bytes", "check h.jsonl", "not UTF-8", files(**{"h.jsonl": RANDOM_BYTES})),
    row(
        "check-cas-value-5",
        "check h.jsonl",
        "a cas value must be [old new], got 5",
        files(**{"h.jsonl": CAS5}),
    ),
    row(
        "check-deep-jsonl",
        "check h.jsonl",
        "nests deeper than 100",
        files(**{"h.jsonl": "[" * 100_000 + "\n"}),
    ),
    row("check-deep-edn", "check h.edn", "nest deeper than 100", files(**{"h.edn": "[" * 100_000 + "\n"})),
    row(
        "check-results-proc",
        "check --results /proc/x/results.json h.jsonl",
        "'/proc/x' does not exist",
        files(**{"h.jsonl": W0 + W1}),
    ),
    row(
        "check-results-dir",
        "check --results d h.jsonl",
        "is a directory",
        files(**{"h.jsonl": W0 + W1}),
        directory("d"),
    ),
    row(
        "check-to-edn-missing-dir",
        "check --to-edn no/x.edn h.jsonl",
        "'no' does not exist",
        files(**{"h.jsonl": W0 + W1}),
    ),
    row(
        "check-to-edn-bad-history",
        "check --to-edn copy.edn h.jsonl",
        "a cas value must be [old new]",
        files(**{"h.jsonl": CAS5}),
    ),
    row(
        "check-results-bad-history",
        "check h.jsonl --results",
        "a cas value must be [old new]",
        files(**{"h.jsonl": CAS5}),
    ),
    row(
        "check-porcupine-garbage",
        "check --format porcupine g.log",
        "no operations",
        files(**{"g.log": "hello\nworld\n"}),
    ),
    row(
        "check-porcupine-on-jsonl",
        "check --format porcupine h.jsonl",
        "no operations",
        files(**{"h.jsonl": W0 + W1}),
    ),
    row("check-empty-file", "check h.jsonl", "no operations", files(**{"h.jsonl": ""})),
    row("check-blank-lines", "check h.jsonl", "no operations", files(**{"h.jsonl": "\n\n  \n"})),
    row(
        "check-torn-middle",
        "check h.jsonl",
        "h.jsonl:2: not valid JSON",
        files(**{"h.jsonl": W0 + '{"index":1,"ti\n' + W1}),
    ),
    row(
        "check-nan-value",
        "check h.jsonl",
        "NaN is not a JSON value",
        files(**{"h.jsonl": W0.replace("5}", "NaN}")}),
    ),
    row(
        "check-unknown-field",
        "check h.jsonl",
        "unknown field(s) ['colour']",
        files(**{"h.jsonl": W0.replace("}", ',"colour":1}')}),
    ),
    row(
        "check-float-time",
        "check h.jsonl",
        "'time_ns' must be an integer",
        files(**{"h.jsonl": W0.replace('"time_ns":1', '"time_ns":1.5')}),
    ),
    row("check-no-invocation", "check h.jsonl", "has no invocation before it", files(**{"h.jsonl": W1})),
    row(
        "check-model-lacks-op",
        "check --model register h.jsonl",
        "did you mean --model cas-register?",
        files(**{"h.jsonl": CAS5}),
    ),
    row(
        "check-unknown-model",
        "check --model regster h.jsonl",
        "invalid choice: 'regster'",
        files(**{"h.jsonl": W0}),
    ),
    row(
        "check-unknown-format",
        "check --format xml h.jsonl",
        "invalid choice: 'xml'",
        files(**{"h.jsonl": W0}),
    ),
    row(
        "check-time-limit-nan",
        "check --time-limit nan h.jsonl",
        "--time-limit must be positive",
        files(**{"h.jsonl": W0 + W1}),
    ),
    row(
        "check-memory-negative",
        "check --memory-limit -1 h.jsonl",
        "--memory-limit must be positive",
        files(**{"h.jsonl": W0 + W1}),
    ),
    row(
        "check-initial-not-edn",
        "check --initial [[ h.jsonl",
        "is not an EDN value",
        files(**{"h.jsonl": W0 + W1}),
    ),
    row("check-missing", "check nowhere.jsonl", "does not exist"),
    row("check-directory", "check d", "does not exist (or is not a file)", directory("d")),
    row("check-device", "check /dev/zero", "does not exist (or is not a file)"),
    row("check-fifo", "check pipe.jsonl", "does not exist (or is not a file)", fifo("pipe.jsonl")),
    row(
        "check-symlink-loop",
        "check loop.jsonl",
        "does not exist (or is not a file)",
        symlink_loop("loop.jsonl"),
    ),
    row("check-binary-edn", "check h.edn", "not UTF-8", files(**{"h.edn": RANDOM_BYTES})),
    row("check-edn-not-maps", "check h.edn", "expected an op map", files(**{"h.edn": "[1 2 3]\n"})),
    row(
        "check-porcupine-bad-type",
        "check h.log",
        "is not one of :invoke",
        files(**{"h.log": "INFO  jepsen.util - 0 :maybe :read nil\n\n"}),
    ),
    # -- ratchet report --------------------------------------------------------------------------
    row(
        "report-random-history",
        "report r",
        "the stored history cannot be read",
        directory("r", "history.jsonl"),
    ),
    row(
        "report-cas-value-5", "report r", "a cas value must be [old new]", files(**{"r__history.jsonl": CAS5})
    ),
    row(
        "report-append-map-value",
        "report r",
        "an appended value must be a plain value",
        files(
            **{
                "r__history.jsonl": APPEND_MAP,
                "r__test.json": '{"test": {"workload": {"model": "list-append"}}}',
            }
        ),
    ),
    row("report-torn-middle", "report r", "not valid JSON", files(**{"r__history.jsonl": W0 + "{\n" + W1})),
    row("report-missing", "report nowhere", "does not exist"),
    row("report-not-a-run", "report d", "is not a stored run", directory("d")),
    row("report-a-file", "report f", "is not a stored run", files(f="x")),
    # -- ratchet serve, doctor, scenarios, the command itself -------------------------------------
    row("serve-store-file", "serve f", "is not a directory", files(f="x")),
    row("serve-store-missing", "serve nowhere", "is not a directory"),
    row("serve-port-negative", "serve . --port -1", "is not a TCP port"),
    row("serve-port-huge", "serve . --port 70000", "is not a TCP port"),
    row("serve-port-word", "serve . --port http", "invalid int value: 'http'"),
    row("doctor-extra-argument", "doctor now", "unrecognized arguments: now"),
    row("doctor-unknown-flag", "doctor --fix", "unrecognized arguments: --fix"),
    row("scenarios-extra-argument", "scenarios all", "unrecognized arguments: all"),
    row("unknown-command", "rnu", "invalid choice: 'rnu'"),
]


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("case", ROWS)
def test_bad_input_is_exit_3_in_one_paragraph_and_leaves_nothing(case: Row, tmp_path: Path) -> None:
    root = tmp_path / "cwd"
    root.mkdir()
    for setup in case.also:
        setup(root)
    before, beside = tree(root), set(os.listdir(tmp_path))
    env = {**os.environ, "COLUMNS": "400", "NO_COLOR": "1"}
    proc = subprocess.run(
        [*ratchet(), *case.args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=COMMAND_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
    )
    err = proc.stderr.strip()
    assert proc.returncode == 3, (
        f"exit {proc.returncode}\nstderr: {proc.stderr}\nstdout: {proc.stdout[-2000:]}"
    )
    assert "Traceback" not in proc.stderr + proc.stdout
    assert err.startswith("error: "), err
    assert len(err.splitlines()) == 1, f"not one paragraph:\n{err}"
    assert case.words in err, f"{case.words!r} not in: {err}"
    assert tree(root) == before, "a refused command left files behind"
    assert set(os.listdir(tmp_path)) == beside, "a refused command wrote beside its directory"
    assert not (root / "store").exists()


def test_the_table_covers_every_command() -> None:
    commands = {case.values[0].args[0] for case in ROWS}  # type: ignore[union-attr]
    assert {"run", "check", "report", "serve", "doctor", "scenarios"} <= commands
    assert len(ROWS) >= 40


def test_a_bug_in_ratchet_is_exit_2_with_the_traceback_in_a_file(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The safety net under the table: an exception no boundary turned into bad input is a Ratchet
    bug. Python would exit 1, which reads as "anomaly"; the command says unknown (2) instead and
    keeps the traceback in a file, so the table above still sees it as a failure (not exit 3)."""
    import tempfile

    import harness.commands.scenarios
    from harness.cli import main

    def broken(args: object) -> int:
        raise KeyError("planted")

    monkeypatch.setattr(harness.commands.scenarios, "handle", broken)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the crash log goes
    assert main(["scenarios"]) == 2
    err = capsys.readouterr().err.replace("\n", " ")
    assert "internal error: KeyError: 'planted'" in err
    assert "Traceback" not in err
    (log,) = tmp_path.glob("ratchet-crash-*.log")
    assert str(log) in err
    assert "raise KeyError" in log.read_text()


@pytest.mark.parametrize("name", ["test.json", "results.json"])
@pytest.mark.parametrize("command", [["report"], ["report", "--no-check"], ["check"]])
def test_a_stored_json_nested_too_deep_is_read_as_absent_not_a_crash(
    tmp_path: Path, name: str, command: list[str]
) -> None:
    """test.json and results.json are Ratchet's own files; one nested 5,000 deep was edited by hand or
    damaged. Python's JSON decoder raises RecursionError (not ValueError) for it: every reader treats
    it like any unreadable copy, so the command ends with a verdict code, never an internal error."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "history.jsonl").write_text(W0 + W1)
    (run / name).write_text("[" * 5000)
    proc = subprocess.run(
        [*ratchet(), *command[:1], str(run), *command[1:]],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        env={**os.environ, "COLUMNS": "400"},
    )
    assert proc.returncode in (0, 2), proc.stderr
    assert "internal error" not in proc.stderr
    assert "Traceback" not in proc.stderr
