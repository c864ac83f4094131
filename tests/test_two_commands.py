"""The two-command promise: a fresh clone is all the README's commands need.

.ci/run runs the README's test command verbatim, and nothing in the
repository reads files from beside it (a user's clone has no sibling folders).
"""

from __future__ import annotations

import glob
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# A path that leaves the repository for the sibling folder of design notes and histories the
# project grew up beside, in every spelling the code and docs have used: relative, built with
# pathlib from the parent, named by its subfolders, or absolute.
_OUTSIDE = re.compile(r"\.\./shared|[(/]\s*\"shared\"|\bshared/(corpus|design|seeds)\b|/work/(?:shared)")


def _readme_commands() -> list[str]:
    lines = (ROOT / "README.md").read_text().splitlines()
    section = lines[lines.index("## Two commands") :]
    return [line for line in section if line.startswith("apt-get update && ")][:2]


def _apt_packages(command: str) -> list[str]:
    words = shlex.split(command.split("&&")[1])
    return [w for w in words[words.index("install") + 1 :] if not w.startswith("-")]


# What each package the test command installs gives the suite, as a probe a test can make.
PACKAGE_PROBES = {
    "python3": lambda: shutil.which("python3") is not None,
    "python3-venv": lambda: sys.prefix != sys.base_prefix,  # the suite runs in the venv it made
    "nftables": lambda: shutil.which("nft") is not None,
    "iptables": lambda: shutil.which("iptables") is not None,
    "iproute2": lambda: shutil.which("ip") is not None,
    "procps": lambda: shutil.which("ps") is not None,
    "fuse3": lambda: shutil.which("fusermount3") is not None,
    "libfaketime": lambda: bool(glob.glob("/usr/lib/*/faketime/libfaketime*.so*")),
    "faketime": lambda: shutil.which("faketime") is not None,
    "chromium": lambda: os.access("/usr/bin/chromium", os.X_OK),
    "libatomic1": lambda: bool(glob.glob("/usr/lib/*/libatomic.so.1")),
    "docker.io": lambda: shutil.which("dockerd") is not None,
    "openssh-server": lambda: os.access("/usr/sbin/sshd", os.X_OK),
    "openssh-client": lambda: shutil.which("ssh") is not None,
    "sudo": lambda: shutil.which("sudo") is not None,
}


def test_readme_has_the_main_job_and_the_test_command() -> None:
    """Both make their own venv (PEP 668 refuses a system-wide pip) and keep apt's extras out."""
    main_job, tests = _readme_commands()
    assert main_job.endswith(
        "&& python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/ratchet run"
    )
    assert tests.endswith(
        "&& python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/python -m pytest"
    )
    for command in (main_job, tests):
        assert "apt-get install -y --no-install-recommends " in command
        assert {"python3", "python3-venv", "nftables"} <= set(_apt_packages(command))
        assert " pip install" not in command.replace(".venv/bin/pip install", "")


def test_every_package_of_the_test_command_is_there() -> None:
    """After the README's test command (on CI: always) every package it installs can be found.

    A package the suite needs but the command forgets makes tests skip quietly; this makes the
    gap loud on CI, and names it (with a skip) on a developer's machine.
    """
    _, tests = _readme_commands()
    packages = _apt_packages(tests)
    assert set(packages) == set(PACKAGE_PROBES), "keep PACKAGE_PROBES in step with the README's list"
    missing = [name for name in packages if not PACKAGE_PROBES[name]()]
    if missing and os.environ.get("CI") != "true":
        pytest.skip(f"not installed here: {', '.join(missing)} (the README's test command installs them)")
    assert not missing, f"the README's test command ran, yet these are missing: {', '.join(missing)}"


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
