"""`ratchet check` imports only what judging the history needs.

It runs once per history file (a directory of 100 logs is 100 processes), so
its start-up is mostly imports: the other commands, rich, the EDN reader and
the counterexample machinery stay out of a valid check of Ratchet's own format.
Asserted on ``sys.modules`` of a real process, not on time.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_PROBE = """
import contextlib, io, json, sys
from harness.cli import main
with contextlib.redirect_stdout(io.StringIO()) as out:
    code = main(sys.argv[1:])
print(json.dumps({"code": code, "out": out.getvalue(), "modules": sorted(sys.modules)}))
"""

NOT_NEEDED = (
    "rich",
    "logging",  # a long search's progress reaches the command directly; a torn line's warning imports it
    "importlib.metadata",
    "multiprocessing",
    "msgspec",
    "checkers.edn",
    "checkers.readers",
    "checkers.counterexample",
    "checkers.append",
    "checkers.convergence",
    "reports",
    "harness.verdict",
    "harness.commands.run",
    "harness.commands.report",
    # only what the fast path cannot decide searches; a check uses one model
    "checkers.search",
    "checkers.models.set",
    "checkers.models.counter",
    # argparse asks shutil (with bz2 and lzma) for the width of help it never prints
    "shutil",
    # dataclasses brings inspect (ast, dis, tokenize); records are built by checkers.record
    "dataclasses",
    "inspect",
    # annotations only: imported under TYPE_CHECKING
    "typing",
    # the history writer's lock and the worker pool's check, not a small check's
    "threading",
    "importlib.util",
    "pathlib",
    # the run machinery and the heavy libraries of the other commands
    "docker",
    "paramiko",
    "matplotlib",
    "jinja2",
    "networkx",
    "junitparser",
    "mfusepy",
    "asyncio",
    "subprocess",
)
# Ratchet's own modules a valid check may load: the CLI, the check command, and the checkers it runs.
OWN_PACKAGES = ("vr", "core", "systems", "harness", "nemeses", "workloads", "checkers", "clusters", "reports")
OWN_ALLOWED = {
    "harness",
    "harness.cli",
    "harness.commands",
    "harness.commands.check",
    "core",
    "core.errors",
}


def _probe(*argv: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, *argv],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def _register_history(path: Path) -> None:
    lines = []
    for process in range(5):
        for op_type in ("invoke", "ok"):
            lines.append(
                {
                    "index": len(lines),
                    "time_ns": len(lines) * 1000,
                    "process": process,
                    "type": op_type,
                    "f": "write",
                    "key": "k",
                    "value": process,
                }
            )
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")


def test_a_valid_jsonl_check_imports_no_rich_edn_or_counterexample(tmp_path: Path) -> None:
    history = tmp_path / "h.jsonl"
    _register_history(history)
    result = _probe("check", str(history))
    assert result["code"] == 0
    assert result["out"].startswith("VALID  ")
    loaded = [m for m in result["modules"] if any(m == n or m.startswith(n + ".") for n in NOT_NEEDED)]
    assert loaded == []
    assert "harness.commands.check" in result["modules"]
    own = [
        m
        for m in result["modules"]
        if m.split(".")[0] in OWN_PACKAGES and m.split(".")[0] != "checkers" and m not in OWN_ALLOWED
    ]
    assert own == [], "a valid check loads only the CLI, the check command and the checkers"


def test_help_still_lists_every_command(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "--help"], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert proc.returncode == 0, proc.stderr
    for command in ("run", "check", "report", "scenarios", "doctor"):
        assert f"    {command}" in proc.stdout


def test_a_mistyped_command_is_bad_input_naming_the_choices() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "chek", "x"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert proc.returncode == 3
    assert "invalid choice: 'chek'" in proc.stderr and "'check'" in proc.stderr
    assert "Traceback" not in proc.stderr
