"""Partitions and packet loss as an unprivileged user: `ratchet doctor` and a real `ratchet run`.

Nodes are told apart by address (each dials its peers from its own 127.0.0.x), so
the run's nftables rules need only the network namespace's own root, which an
unprivileged user gets through a user namespace. This test proves it end to end:
a short `ratchet run --nemesis partition,loss` as uid 65534 (nobody, no groups, no
capabilities) must be valid, must have applied and healed real faults (the
nemesis ops in history.jsonl; a fault's start op completes only after its rules
were read back from the kernel and matched), must have moved the cluster (a
view change when the primary is cut off), and must leave nothing behind.

When pytest runs as root, the command is dropped to uid 65534 with ``setpriv``.
The interpreter lives under a directory nobody may enter (pyenv under /root), so
the drop happens inside a private mount namespace made for the command, where a
tmpfs hides that directory and only the interpreter's prefix (and the checkout,
when it is cloned under /root too) is bind-mounted back at its own path: the
unprivileged process sees the Python and the code it needs and nothing else of
/root, and the host's permissions are never changed. Inside a
virtual environment the child is started by the venv's own interpreter path, so
it finds the venv's packages; the venv's directory is exposed like the prefix. When
pytest itself runs unprivileged, the commands run as that user directly. Where
this cannot work (no setpriv/unshare, the checkout unreadable, user namespaces
disabled), the test is skipped with the exact reason.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nemeses import grudges
from tests.harness.leftovers import netns_users

REPO = Path(__file__).resolve().parents[2]
NOBODY_UID = 65534
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
COMMAND_TIMEOUT_S = 150

pytestmark = [pytest.mark.integration]

Runner = Callable[..., subprocess.CompletedProcess[str]]


def _others_may_enter(path: Path) -> bool:
    return bool(path.stat().st_mode & stat.S_IXOTH)


def _hidden_ancestor(path: Path) -> Path | None:
    """The topmost ancestor of ``path`` that other users cannot enter (None: all can)."""
    for ancestor in reversed(path.parents):
        if not _others_may_enter(ancestor):
            return ancestor
    return None


def _wrapper_script(exposed: list[Path]) -> str:
    """sh that, in a fresh private mount namespace, hides each unenterable ancestor of ``exposed``
    under an empty tmpfs and bind-mounts the exposed directories back at their own paths, then
    drops to uid/gid 65534 with no groups and no capabilities and runs "$@"."""
    lines = ["set -eu", 'stage="$1"; home="$2"; shift 2']
    hidden = sorted({a for p in exposed if (a := _hidden_ancestor(p)) is not None})
    for i, path in enumerate(exposed):
        lines.append(f'mkdir -p "$stage/{i}" && mount --bind {shlex.quote(str(path))} "$stage/{i}"')
    for ancestor in hidden:
        lines.append(f"mount -t tmpfs -o mode=755,size=1m ratchet-test-hide {shlex.quote(str(ancestor))}")
    for i, path in enumerate(exposed):
        lines.append(
            f'mkdir -p {shlex.quote(str(path))} && mount --move "$stage/{i}" {shlex.quote(str(path))}'
        )
    lines.append(
        f"exec setpriv --reuid {NOBODY_UID} --regid {NOBODY_UID} --clear-groups --inh-caps=-all "
        f'--bounding-set=-all env -i HOME="$home" PATH={SAFE_PATH} PYTHONDONTWRITEBYTECODE=1 '
        'COLUMNS=200 "$@"'
    )
    return "\n".join(lines) + "\n"


@pytest.fixture
def unprivileged() -> Iterator[tuple[Runner, Path]]:
    """(run argv as an unprivileged user with cwd = the checkout, a scratch dir that user owns)."""
    root = os.geteuid() == 0
    if root:
        missing = [tool for tool in ("setpriv", "unshare", "mount") if shutil.which(tool) is None]
        if missing:
            pytest.skip(f"dropping to an unprivileged user needs {', '.join(missing)} (util-linux)")
    # The interpreter by the path this process was started with, not its resolved target: in a
    # virtual environment that path is the venv's bin/python, whose pyvenv.cfg gives the child the
    # venv's site-packages (the resolved base interpreter would not see the installed packages).
    python = Path(sys.executable).absolute()
    prefixes = {Path(os.path.realpath(sys.base_prefix)), Path(os.path.realpath(sys.prefix))}
    exposed = sorted(prefixes | {REPO})
    for path in exposed:
        if not (path.stat().st_mode & stat.S_IROTH and _others_may_enter(path)):
            pytest.skip(f"{path} is not readable by other users (mode {stat.filemode(path.stat().st_mode)})")
    if not root and _hidden_ancestor(REPO) is not None:
        pytest.skip(f"{_hidden_ancestor(REPO)} (above the checkout) cannot be entered by this user")
    scratch = Path(tempfile.mkdtemp(prefix="ratchet-unprivileged-", dir="/tmp"))
    try:
        (scratch / "stage").mkdir()
        (scratch / "home").mkdir()
        script = scratch / "as-nobody.sh"
        hidden = [p for p in exposed if _hidden_ancestor(p) is not None]
        # A directory inside another exposed one comes back with it (a venv inside the checkout).
        script.write_text(
            _wrapper_script([p for p in hidden if not any(p.is_relative_to(o) and p != o for o in hidden)])
        )
        if root:
            os.chown(scratch / "home", NOBODY_UID, NOBODY_UID)
        scratch.chmod(0o755)

        def run(*argv: str, timeout_s: float = COMMAND_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
            full = [str(python), *argv]
            if root:
                full = [
                    "unshare", "--mount", "--propagation", "private", "sh", str(script),
                    str(scratch / "stage"), str(scratch / "home"), *full,
                ]  # fmt: skip
            env = None if root else {**os.environ, "COLUMNS": "200", "HOME": str(scratch / "home")}
            return subprocess.run(
                full, cwd=REPO, capture_output=True, text=True, timeout=timeout_s, check=False, env=env
            )

        who = run("-c", "import os; print(os.getuid(), os.getgroups())", timeout_s=30)
        assert who.returncode == 0, f"cannot start the interpreter unprivileged: {who.stderr[-2000:]}"
        assert who.stdout.split()[0] != "0", who.stdout
        userns = run("-m", "clusters.namespace", "--", "true", timeout_s=30)
        if userns.returncode != 0:
            pytest.skip(
                f"this machine does not let an unprivileged user create namespaces: {userns.stderr.strip()}"
            )
        yield run, scratch / "home"
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def test_doctor_offers_partition_and_loss_to_an_unprivileged_user(unprivileged: tuple[Runner, Path]) -> None:
    run, _ = unprivileged
    proc = run("-m", "harness.cli", "doctor", timeout_s=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # The table wraps long cells onto rows whose first cell is blank: join each column's pieces.
    rows: dict[str, list[str]] = {}
    name = ""
    for line in proc.stdout.splitlines():
        if line.count("│") < 3:
            continue
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        name = cells[0] or name
        if cells[0]:
            rows[name] = cells[1:]
        elif name:
            rows[name] = [f"{had} {more}".strip() for had, more in zip(rows[name], cells[1:], strict=True)]
    for fault in ("partition", "loss"):
        assert rows[fault][0] == "yes", rows[fault]
    assert any("as an unprivileged user" in cell for cell in rows["packet-filter"]), rows["packet-filter"]


def test_partition_and_loss_run_valid_as_an_unprivileged_user(unprivileged: tuple[Runner, Path]) -> None:
    run, home = unprivileged
    store = home / "store"
    proc = run(
        "-m", "harness.cli", "run",
        "--nemesis", "partition,loss",
        "--grudges", "primary,majority,one-way",
        "--nemesis-interval", "1",
        "--time-limit", "12",
        "--seed", "21",
        "--store", str(store),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = (store / "latest").resolve()
    assert (run_dir / "history.jsonl").stat().st_uid != 0  # written by the unprivileged user
    verdict = json.loads((run_dir / "results.json").read_text())
    assert verdict["valid"] is True
    assert verdict["teardown_errors"] == []

    ops = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    assert sum(1 for op in ops if op["process"] != "nemesis" and op["type"] == "ok") > 20
    done = [op for op in ops if op["process"] == "nemesis" and op["value"] is not None]
    partitions = [op["value"] for op in done if op["f"] == "start-partition"]
    losses = [op["value"] for op in done if op["f"] == "start-loss"]
    assert partitions, "no partition was applied"
    assert losses, "no packet loss was applied"
    for value in partitions:  # one rule per cut link, read back from the kernel before the op completed
        grudge = {dst: frozenset(srcs) for dst, srcs in value["grudge"].items()}
        assert value["rules"] == sum(len(srcs) for srcs in grudge.values()) > 0
        assert grudges.hears(grudge, ["n1", "n2", "n3"]).number_of_edges() < 6
    for value in losses:  # every ordered pair with a target in it, and each target -> the clients
        k = len(value["targets"])
        assert value["rules"] == 6 - (3 - k) * (2 - k) + k
    for kind in ("partition", "loss"):  # every fault applied was healed, by its own stop
        active = False
        for op in done:
            if op["f"] == f"start-{kind}":
                assert not active
                active = True
            elif op["f"] == f"stop-{kind}":
                assert op["value"]["healed"] is active
                active = False
        assert not active, f"the last {kind} was never healed"
    # The cluster felt the partitions: cutting off the primary made the others elect a new one, a view
    # past view 1 (which every cluster reaches as it starts; unbound connections leave it there).
    views = [
        event["view"]
        for node in ("n1", "n2", "n3")
        for line in (run_dir / "nodes" / node / "events.jsonl").read_text().splitlines()
        if line.strip() and (event := json.loads(line))["kind"] == "view_change_completed"
    ]
    assert max(views, default=0) > 1, f"no view change after startup (views {views})"

    test_json = json.loads((run_dir / "test.json").read_text())
    assert not netns_users(test_json["namespace"]["net"]), "the run's network namespace still exists"
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, timeout=10, check=True).stdout
    assert str(run_dir) not in ps, "a node process of the run is still running"
    assert str(run_dir) not in Path("/proc/mounts").read_text(), "a mount of the run is still there"
    if os.geteuid() == 0:
        tables = subprocess.run(
            ["nft", "list", "tables"], capture_output=True, text=True, timeout=10, check=True
        )
        assert "ratchet" not in tables.stdout, "a ratchet table appeared on the host"
