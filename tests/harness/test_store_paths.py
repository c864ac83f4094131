"""The store's paths: a run directory is always inside the store, and a failed start leaves nothing.

``create_run_dir`` is the last line of defence behind scenario validation (a
``--replay`` of an edited test.json reaches it too), so it checks the name
itself and removes the directories it made when it cannot finish.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import BadInput
from core.scenario import scenario_name_problem
from harness.store import create_run_dir, store_dir_problem


@pytest.mark.parametrize("name", ["default", "no-faults", "combined-5", "a.b_c", "régime"])
def test_plain_names_are_accepted(name: str) -> None:
    assert scenario_name_problem(name) is None


@pytest.mark.parametrize(
    "name",
    ["", ".", "..", "../x", "a/b", "/abs", ".hidden", "-flag", "latest", "index.html", "x" * 101, "a\0b"],
)
def test_names_that_are_not_one_safe_path_component_are_refused(name: str) -> None:
    assert scenario_name_problem(name)


def test_create_run_dir_refuses_a_traversing_name_and_creates_nothing(tmp_path: Path) -> None:
    store = tmp_path / "store"
    with pytest.raises(BadInput, match=r"no '/', '\.\.'"):
        create_run_dir(store, "../../escaped")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_run_dir_that_cannot_be_finished_is_removed_again(tmp_path: Path) -> None:
    store = tmp_path / "store"
    (store / "latest" / "blocker").mkdir(parents=True)  # `latest` cannot be replaced by a symlink
    with pytest.raises(BadInput, match="cannot create a run directory"):
        create_run_dir(store, "fresh")
    assert sorted(p.name for p in store.iterdir()) == ["latest"]


def test_a_run_dir_is_made_inside_the_store(tmp_path: Path) -> None:
    run = create_run_dir(tmp_path / "a" / "store", "default", now_s=0)
    assert run.path == tmp_path / "a" / "store" / "default" / "19700101T000000"
    assert (run.path / "nodes").is_dir()
    assert (tmp_path / "a" / "store" / "latest").resolve() == run.path


def test_store_problems_are_found_without_leaving_anything(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    assert store_dir_problem(str(tmp_path / "missing" / "store")) is None
    assert store_dir_problem(str(tmp_path)) is None
    assert "is a file" in (store_dir_problem(str(tmp_path / "file")) or "")
    assert "is a file" in (store_dir_problem(str(tmp_path / "file" / "store")) or "")
    assert "cannot be written" in (store_dir_problem("/proc/ratchet-store") or "")
    assert "empty" in (store_dir_problem("  ") or "")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # the probes left nothing
