"""A non-editable install works on its own: the wheel carries the scenarios and the version.

The wheel is built from a copy of the checkout, installed with ``--no-deps`` into a
throwaway venv that borrows this environment's installed dependencies (so nothing is
downloaded), and the installed ``ratchet`` is run from a directory that is not the
checkout: it must list the named scenarios from its own site-packages, find one by
name, and print its version.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STEP_TIMEOUT_S = 120

pytestmark = [pytest.mark.integration]


def _step(argv: list[str | Path], cwd: Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=STEP_TIMEOUT_S
    )
    assert proc.returncode == 0, (
        f"{argv} exited {proc.returncode}:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
    )
    return proc.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin/ directory of a throwaway venv holding only the built wheel (plus borrowed deps)."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "src"
    shutil.copytree(
        REPO,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "store", "build", "dist", "tests", "*.egg-info", "__pycache__", ".*_cache"
        ),
    )
    _step(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "-w", work / "dist", source],
        cwd=work,
    )  # fmt: skip
    (wheel,) = (work / "dist").glob("ratchet-*.whl")
    venv = work / "venv"
    _step([sys.executable, "-m", "venv", "--without-pip", venv], cwd=work)
    python = venv / "bin" / "python"
    site = Path(
        _step([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=work).strip()
    )
    here = sysconfig.get_paths()
    # This environment's packages (pip and the dependencies) after the venv's own: a .pth adds the
    # folders to sys.path without running the editable-install hooks inside them.
    (site / "borrowed-dependencies.pth").write_text(f"{here['purelib']}\n{here['platlib']}\n")
    _step([python, "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", wheel], cwd=work)
    return venv / "bin"


def _elsewhere(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["COLUMNS"] = "400"
    return tmp_path, env


def test_installed_wheel_lists_its_own_scenarios(installed: Path, tmp_path: Path) -> None:
    cwd, env = _elsewhere(tmp_path)
    out = _step([installed / "ratchet", "scenarios"], cwd=cwd, env=env)
    site_packages = installed.parent / "lib"
    shown = (
        next(line for line in out.splitlines() if "scenarios in " in line).split("scenarios in ")[1].strip()
    )
    assert Path(shown).is_relative_to(site_packages), f"scenarios listed from {shown}, not the wheel"
    names = {line.split("│")[1].strip() for line in out.splitlines() if line.count("│") >= 3}
    assert {"default", "partition-majority", "no-faults"} <= names, out
    assert {path.stem for path in (REPO / "scenarios").glob("*.toml")} == names - {"name"}


def test_installed_wheel_finds_a_scenario_by_name_and_knows_its_version(
    installed: Path, tmp_path: Path
) -> None:
    cwd, env = _elsewhere(tmp_path)
    found = _step(
        [installed / "python", "-c",
         "from core.scenario import resolve_scenario_path; print(resolve_scenario_path('partition-majority'))"],
        cwd=cwd,
        env=env,
    )  # fmt: skip
    assert Path(found.strip()).is_file()
    assert Path(found.strip()).is_relative_to(installed.parent / "lib")
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert _step([installed / "ratchet", "--version"], cwd=cwd, env=env).strip() == f"ratchet {declared}"


def test_installed_wheel_ships_the_campaigns(installed: Path, tmp_path: Path) -> None:
    cwd, env = _elsewhere(tmp_path)
    listed = _step([installed / "ratchet", "campaign", "smoke", "--list"], cwd=cwd, env=env)
    shipped = tomllib.loads((REPO / "scenarios" / "campaigns" / "smoke.toml").read_text())
    assert len(listed.strip().splitlines()) == len(shipped["run"]) * shipped.get("seeds", 1)
    for name in ("nightly", "selftest"):
        assert _step([installed / "ratchet", "campaign", name, "--list"], cwd=cwd, env=env).strip()
