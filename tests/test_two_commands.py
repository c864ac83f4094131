"""The two-command promise: .ci/run runs the README's test command verbatim."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _readme_commands() -> list[str]:
    lines = (ROOT / "README.md").read_text().splitlines()
    section = lines[lines.index("## Two commands") :]
    return [line for line in section if line.startswith("apt-get update && ")][:2]


def test_readme_has_the_main_job_and_the_test_command() -> None:
    main_job, tests = _readme_commands()
    assert main_job.endswith("&& ratchet run")
    assert tests.endswith("&& python -m pytest")


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    _, tests = _readme_commands()
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert tests in ci_lines
    assert ci_lines[-1] == tests, "the README's test command must be the last thing .ci/run does"
