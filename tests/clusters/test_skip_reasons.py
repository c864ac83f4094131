"""Where docker or sshd cannot run, the homes' tests skip and say why, rather than fail or hang.

Simulated with the environment: a PATH without the tools, a DOCKER_HOST nobody answers on,
a ``dockerd`` that exits at once as a daemon without cgroups or iptables does, an sshd path
that does not exist. The first test runs the real test modules that way in a child pytest.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.clusters import docker_engine, sshhosts

ROOT = Path(__file__).resolve().parents[2]
NOBODY = "unix:///nonexistent/ratchet-test/docker.sock"  # no daemon answers here


def test_the_homes_tests_skip_with_the_reason_without_docker_and_ssh_tools(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    tests = [
        "tests/clusters/test_docker.py::test_three_nodes_partition_pause_kill_and_close",
        "tests/clusters/test_ssh.py::test_a_short_run_on_ssh_hosts_is_valid_and_leaves_nothing",
        "tests/clusters/test_ssh.py::test_a_non_root_login_with_sudo_runs_nodes_rules_and_signals_as_root",
    ]
    env = {**os.environ, "PATH": str(empty), "DOCKER_HOST": NOBODY}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-p", "no:randomly", *tests],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    out = proc.stdout
    assert proc.returncode == 0 and re.search(r"\b3 skipped\b", out), out[-3000:] + proc.stderr[-2000:]
    assert "the docker engine is not installed (apt-get install docker.io)" in out
    assert "ssh test hosts unavailable: ip is not installed" in out
    assert "ssh test hosts with a sudo login unavailable: ip is not installed" in out


def test_a_dockerd_that_cannot_start_is_a_skip_in_its_own_words(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if os.geteuid() != 0:
        pytest.skip("the engine helper starts dockerd only as root")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    dockerd = bin_dir / "dockerd"
    dockerd.write_text(
        "#!/bin/sh\necho 'failed to start daemon: Error initializing network controller: iptables not found'\nexit 1\n"
    )
    dockerd.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("DOCKER_HOST", NOBODY)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the helper's log, not the session's
    engine = docker_engine.Engine().start()
    assert engine.client is None and engine.started is None
    assert engine.skip_reason is not None
    assert engine.skip_reason.startswith("dockerd cannot run here (exit 1): failed to start daemon")
    assert "iptables not found" in engine.skip_reason


def test_missing_sshd_and_sudo_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if os.geteuid() != 0:
        assert sshhosts.available() == "needs root (network namespaces, sshd)"
        return
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("ip", "nft", "ssh-keygen"):  # everything but sudo
        found = shutil.which(tool)
        if found is None:
            pytest.skip(f"{tool} is not installed here")
        (bin_dir / tool).symlink_to(found)
    monkeypatch.setenv("PATH", str(bin_dir))
    assert sshhosts.sudo_available() == "sudo is not installed (apt-get install sudo)"
    monkeypatch.setattr(sshhosts, "SSHD", str(tmp_path / "no-sshd"))
    assert sshhosts.available() == "sshd is not installed (apt-get install openssh-server)"
    assert sshhosts.sudo_available() == "sshd is not installed (apt-get install openssh-server)"
