"""The CLI's promise for bad input: one paragraph, exit 3, no traceback."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

from harness.cli import main


def test_unknown_flag_is_bad_input(capsys) -> None:
    code = main(["--no-such-flag"])
    assert code == 3
    err = capsys.readouterr().err
    assert "no-such-flag" in err
    assert "Traceback" not in err


def test_console_script_exit_code_and_no_traceback() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "--bogus"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 3
    assert "Traceback" not in proc.stderr
    assert "error:" in proc.stderr


def test_version_is_the_installed_distribution_version(capsys) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"ratchet {version('ratchet')}"


def test_console_script_prints_its_version() -> None:
    declared = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "--version"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"ratchet {declared['project']['version']}"
