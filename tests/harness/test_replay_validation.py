"""``--replay`` checks the stored test.json by the scenario rules and replays it unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.errors import BadInput
from core.scenario import SCENARIO_DIR, Test, build_test, read_table, revalidate


@pytest.mark.parametrize("path", sorted(SCENARIO_DIR.glob("*.toml")), ids=lambda p: p.stem)
def test_every_shipped_scenario_replays_exactly_as_stored(path: Path) -> None:
    test = build_test(read_table(path), source=str(path), seed_if_absent=7)
    stored = Test.from_json(json.loads(json.dumps(test.to_json())))
    assert revalidate(stored, where="test.json") == test


@pytest.mark.parametrize(
    ("section", "key", "value", "words"),
    [
        ("", "name", "../../escaped", "no '/', '..'"),
        ("", "nodes", 4, "must be odd"),
        ("", "time_limit_s", float("nan"), "finite"),
        ("", "store_dir", "/proc/ratchet-store", "cannot be written"),
        ("nemesis", "faults", ["partiton"], "did you mean 'partition'"),
        ("nemesis", "clock_max_ms", -5, "nemesis.clock_max_ms = -5"),
        ("workload", "keys", 0, "workload.keys = 0"),
    ],
)
def test_an_edited_test_json_is_refused(section: str, key: str, value: object, words: str) -> None:
    path = SCENARIO_DIR / "default.toml"
    data = build_test(read_table(path), source=str(path), seed_if_absent=7).to_json()
    (data[section] if section else data)[key] = value
    with pytest.raises(BadInput) as refused:
        revalidate(Test.from_json(data), where="run/test.json")
    assert words in refused.value.paragraph()
    assert refused.value.paragraph().startswith("run/test.json: ")
