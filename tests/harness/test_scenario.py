"""Scenario validation: every bad input is refused up front with file, key and reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import BadInput
from core.scenario import (
    SCENARIO_DIR,
    Test,
    build_test,
    merge_overrides,
    read_table,
    resolve_scenario_path,
)
from harness.capabilities import Capability

ALL_CAPS = {
    "namespaces": Capability("namespaces", True, "ok"),
    "packet-filter": Capability("packet-filter", True, "ok"),
    "signals": Capability("signals", True, "ok"),
    "libfaketime": Capability("libfaketime", True, "ok"),
    "message-proxy": Capability("message-proxy", True, "ok"),
    "fuse": Capability("fuse", True, "ok"),
}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(text)
    return path


def load(path: Path, **kw: object) -> Test:
    return build_test(read_table(path), source=str(path), seed_if_absent=42, **kw)  # type: ignore[arg-type]


def test_every_shipped_scenario_is_valid() -> None:
    paths = sorted(SCENARIO_DIR.glob("*.toml"))
    assert len(paths) >= 5
    for path in paths:
        test = load(path, capabilities=ALL_CAPS)
        assert test.name == path.stem
        assert test.description


def test_defaults_and_seed_recorded(tmp_path: Path) -> None:
    test = load(write(tmp_path, 'name = "x"\n'))
    assert (test.nodes, test.concurrency, test.time_limit_s, test.seed) == (3, 5, 60.0, 42)
    assert Test.from_json(test.to_json()) == test


def test_unknown_key_names_file_key_and_a_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, "[cluster]\nnodse = 3\n")
    with pytest.raises(BadInput) as info:
        load(path)
    text = info.value.paragraph()
    assert str(path) in text
    assert "'nodse'" in text
    assert "Did you mean 'nodes'" in text


def test_unknown_section_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match=r"unknown key 'nemeses'.*Did you mean 'nemesis'"):
        load(write(tmp_path, "[nemeses]\nfaults = []\n"))


def test_wrong_type_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match=r"cluster.nodes must be an integer, got '3'"):
        load(write(tmp_path, '[cluster]\nnodes = "3"\n'))
    with pytest.raises(BadInput, match=r"run.concurrency must be an integer, got True"):
        load(write(tmp_path, "[run]\nconcurrency = true\n"))


def test_out_of_range_and_unknown_fault(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match=r"run.concurrency = 0: must be between 1 and 256"):
        load(write(tmp_path, "[run]\nconcurrency = 0\n"))
    with pytest.raises(BadInput, match=r"'partiton' is not one of .*did you mean 'partition'"):
        load(write(tmp_path, '[nemesis]\nfaults = ["partiton"]\n'))


def test_clients_route_to_the_primary_unless_bound_to_nodes(tmp_path: Path) -> None:
    assert load(write(tmp_path, "[workload]\nkeys = 8\n")).workload.clients == "primary"
    assert load(write(tmp_path, '[workload]\nclients = "nodes"\n')).workload.clients == "nodes"
    with pytest.raises(BadInput, match=r"'node' is not one of primary, nodes .*did you mean 'nodes'"):
        load(write(tmp_path, '[workload]\nclients = "node"\n'))


def test_invalid_toml_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="not valid TOML"):
        load(write(tmp_path, "[cluster\nnodes = 3\n"))


def test_even_node_counts_are_refused_because_vr_runs_on_2f_plus_1(tmp_path: Path) -> None:
    for nodes in (2, 4):
        with pytest.raises(BadInput, match=r"must be odd: VR runs on N = 2f\+1"):
            load(write(tmp_path, f"[cluster]\nnodes = {nodes}\n"))


def test_one_node_cannot_be_partitioned(tmp_path: Path) -> None:
    path = write(tmp_path, '[cluster]\nnodes = 1\n[nemesis]\nfaults = ["partition"]\n')
    with pytest.raises(BadInput, match="1-node cluster has no network links"):
        load(path)


def test_majorities_ring_needs_five_nodes(tmp_path: Path) -> None:
    path = write(tmp_path, '[nemesis]\nfaults = ["partition"]\ngrudges = ["majorities-ring"]\n')
    with pytest.raises(BadInput, match="needs at least 5 nodes"):
        load(path)


def test_interval_must_fit_in_the_time_limit(tmp_path: Path) -> None:
    path = write(tmp_path, '[nemesis]\nfaults = ["pause"]\ninterval_s = 40\n[run]\ntime_limit_s = 60\n')
    with pytest.raises(BadInput, match=r"interval_s = 40\.0 leaves no room"):
        load(path)


def test_a_fault_this_machine_cannot_inject_is_refused_with_how_to_enable(tmp_path: Path) -> None:
    caps = {
        **ALL_CAPS,
        "packet-filter": Capability("packet-filter", False, "nft: not installed", "apt-get install nftables"),
    }
    path = write(tmp_path, '[nemesis]\nfaults = ["partition"]\n')
    with pytest.raises(BadInput, match=r"needs packet-filter.*apt-get install nftables"):
        load(path, capabilities=caps)
    no_faketime = {
        **ALL_CAPS,
        "libfaketime": Capability("libfaketime", False, "not found", "apt-get install libfaketime"),
    }
    with pytest.raises(BadInput, match=r"'clock' fault needs libfaketime.*apt-get install libfaketime"):
        load(write(tmp_path, '[nemesis]\nfaults = ["clock"]\n'), capabilities=no_faketime)


def test_flags_override_the_file_and_errors_name_the_flag(tmp_path: Path) -> None:
    path = write(tmp_path, "[run]\nconcurrency = 5\n")
    data = merge_overrides(read_table(path), {("run", "concurrency"): 9, ("nemesis", "faults"): ["pause"]})
    test = build_test(data, source=str(path), seed_if_absent=1)
    assert test.concurrency == 9
    assert test.nemesis.faults == ("pause",)
    bad = merge_overrides(read_table(path), {("run", "concurrency"): 0})
    with pytest.raises(BadInput) as info:
        build_test(
            bad, source=str(path), seed_if_absent=1, flag_names={("run", "concurrency"): "--concurrency"}
        )
    assert info.value.paragraph().startswith("--concurrency:")


def test_unknown_bug_is_refused_with_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, '[cluster]\nbug = "read-from-bakup"\n')
    with pytest.raises(BadInput, match="Did you mean 'read-from-backup'"):
        load(path, known_bugs=("read-from-backup", "no-client-table"))


def test_scenario_names_resolve_and_unknown_names_suggest() -> None:
    assert resolve_scenario_path("default").name == "default.toml"
    with pytest.raises(BadInput, match="Did you mean 'partition-majority'"):
        resolve_scenario_path("partition-majorty")
