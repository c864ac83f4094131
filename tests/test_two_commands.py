"""The two-command promise: a fresh clone is all the README's commands need.

.ci/run runs the README's test command verbatim, and nothing in the
repository reads files from beside it (a user's clone has no sibling folders).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# A path that leaves the repository for the sibling folder of design notes and histories the
# project grew up beside, in every spelling the code and docs have used: relative, built with
# pathlib from the parent, named by its subfolders, or absolute.
_OUTSIDE = re.compile(r"\.\./shared|[(/]\s*\"shared\"|\bshared/(corpus|design|seeds)\b|/work/(?:shared)")


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


def _project_files() -> list[Path]:
    """The files git tracks; in an unpacked source tree, every file outside caches and runs."""
    try:
        listed = subprocess.run(
            ["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, check=True, timeout=60
        ).stdout
        paths = [ROOT / name for name in listed.decode().split("\0") if name]
    except (OSError, subprocess.CalledProcessError):
        skip = {"store", "build", "dist", "__pycache__"}
        paths = [
            p
            for p in ROOT.rglob("*")
            if not any(
                part.startswith(".") or part in skip or part.endswith(".egg-info")
                for part in p.relative_to(ROOT).parts
            )
        ]
    corpus = ROOT / "tests" / "data" / "corpus"
    return [p for p in paths if p.is_file() and not p.is_relative_to(corpus)]


def test_nothing_in_the_repository_reads_from_beside_it() -> None:
    """Tests, benches, code and docs name only paths inside the clone (the corpus is vendored)."""
    files = _project_files()
    assert len(files) > 50, f"git ls-files found only {len(files)} files under {ROOT}"
    found = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if _OUTSIDE.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "paths outside the repository:\n" + "\n".join(found)


def test_the_vendored_corpus_is_complete() -> None:
    """Every history the manifest lists is in the repository, next to its upstream license."""
    corpus = ROOT / "tests" / "data" / "corpus"
    rows = (corpus / "MANIFEST.tsv").read_text(encoding="utf-8").splitlines()[1:]
    listed = {row.split("\t")[0] for row in rows}
    assert len(listed) == 152
    assert all((corpus / name).is_file() for name in listed)
    assert "MIT License" in (corpus / "porcupine-etcd" / "LICENSE.md").read_text(encoding="utf-8")
    assert "Eclipse Public License - v 1.0" in (corpus / "knossos-cas-register" / "LICENSE").read_text(
        encoding="utf-8"
    )
