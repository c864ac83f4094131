"""The [cluster] table: which home, and the keys each home needs (validated before anything starts)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from core.errors import BadInput
from core.scenario import ClusterSpec, Test, build_test, revalidate


def build(cluster: dict) -> Test:
    return build_test({"cluster": cluster}, source="s.toml", seed_if_absent=1)


def test_local_is_the_default_and_needs_nothing() -> None:
    test = build({})
    assert test.cluster == "local" and test.nodes == 3
    assert test.cluster_spec == ClusterSpec()


def test_ssh_hosts_set_the_node_count_and_survive_test_json() -> None:
    test = build(
        {
            "kind": "ssh",
            "hosts": ["n1", "n2", "10.0.0.3"],
            "username": "admin",
            "sudo": True,
            "ssh_port": 2222,
        }
    )
    assert test.nodes == 3 and test.cluster_spec.hosts == ("n1", "n2", "10.0.0.3")
    again = Test.from_json(test.to_json())
    assert again == test
    assert revalidate(again, where="test.json") == test


@pytest.mark.parametrize(
    ("cluster", "words"),
    [
        ({"kind": "ssh"}, "needs the hosts"),
        ({"kind": "ssh", "hosts": ["a", "b"]}, "must be odd"),
        ({"kind": "ssh", "hosts": ["a", "b", "c"], "nodes": 5}, "names 3 host(s) but cluster.nodes = 5"),
        ({"kind": "ssh", "hosts": ["a", "a", "b"]}, "names a host twice"),
        ({"kind": "ssh", "hosts": ["a b", "c", "d"]}, "is not a host name"),
        ({"kind": "ssh", "hosts": ["a", "b", "c"], "remote_dir": "tmp/x"}, "absolute path"),
        ({"kind": "ssh", "hosts": ["a", "b", "c"], "username": "Root;rm"}, "not a login name"),
        ({"kind": "local", "hosts": ["a", "b", "c"]}, "cluster.hosts is for cluster.kind = 'ssh'"),
        ({"kind": "local", "image": "x"}, "cluster.image is for cluster.kind = 'docker'"),
        ({"kind": "dockr"}, "did you mean 'docker'"),
    ],
)
def test_bad_cluster_tables_are_refused_in_one_sentence(cluster: dict, words: str) -> None:
    with pytest.raises(BadInput) as info:
        build(cluster)
    assert words in str(info.value)


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
    )


def test_nodes_flag_takes_a_count_or_hosts(tmp_path: Path) -> None:
    proc = run_cli("--nodes", "n1,n2", "--cluster", "ssh", cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr
    assert "--nodes" in proc.stderr and "must be odd" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("--nodes", "n1,n2,n3", cwd=tmp_path)
    assert proc.returncode == 3 and "is for cluster.kind = 'ssh'" in proc.stderr, proc.stderr
    proc = run_cli("--nodes", "n1,,n3", "--cluster", "ssh", cwd=tmp_path)
    assert proc.returncode == 3 and "--nodes wants a replica count or hosts" in proc.stderr, proc.stderr
    assert not (tmp_path / "store").exists()
