"""Package imports go one way: shared vocabulary at the bottom, the controller on top.

A package may import only packages of a lower rank (or its own). Every import
counts, also one inside a function or under TYPE_CHECKING: a lazy import is a
dependency all the same.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Lower rank = lower layer. Equal rank: neither may import the other.
RANK = {
    "checkers": 0,  # histories, models, verdicts: pure
    "vr": 1,  # the system under test; its simulator judges histories with checkers
    "core": 2,  # System/Client/Cluster protocols, generator, scenario spec, errors
    "clusters": 3,  # where nodes live: local namespaces, containers, hosts; their packet filters
    "nemeses": 4,  # faults, acting through core's protocols and a cluster's firewall
    "workloads": 4,  # what clients do
    "systems": 5,  # adapters of a system under test (VR) to core's protocols
    "reports": 5,  # HTML and plots from a run's files
    "harness": 6,  # the controller and the CLI
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & RANK.keys()


def _edges() -> list[tuple[str, str, str]]:
    edges = []
    for package in RANK:
        for path in sorted((ROOT / package).rglob("*.py")):
            for target in _imports(path):
                if target != package:
                    edges.append((package, target, str(path.relative_to(ROOT))))
    return edges


def test_every_package_is_ranked() -> None:
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()} - {
        "tests",
        "bench",
        "scenarios",
    }  # scenarios: data files only
    assert packages == set(RANK), f"rank the new package(s) {packages - set(RANK)} in RANK"


@pytest.mark.parametrize("package", sorted(RANK))
def test_imports_go_down_only(package: str) -> None:
    upward = [
        f"{path} imports {target} (rank {RANK[target]} >= {package}'s {RANK[package]})"
        for source, target, path in _edges()
        if source == package and RANK[target] >= RANK[source]
    ]
    assert not upward, "\n".join(upward)


def test_the_controller_is_the_only_package_nothing_imports() -> None:
    imported = {target for _, target, _ in _edges()}
    assert "harness" not in imported
    assert {"core", "checkers", "clusters"} <= imported
