"""What this machine can do for a run: namespaces, packet filters, signals, clocks, FUSE, docker.

One probe, shared by ``ratchet doctor`` (which prints it) and scenario validation
(which refuses a fault the machine cannot inject before anything starts).
Each probe actually tries the thing (enter a namespace, list a ruleset inside
it) rather than guessing from file names, because a binary that exists but is
not permitted is the common failure in containers and CI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from core.capability import FAULT_NEEDS, Capability, fault_refusal  # noqa: F401  (re-exported)

PROBE_TIMEOUT_S = 10
FAKETIME_TOLERANCE_S = 60.0  # the probe sets +-1 h; anything within a minute of it is the fake clock


def _try(argv: list[str]) -> tuple[bool, str]:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    out = (proc.stderr or proc.stdout).strip().splitlines()
    return proc.returncode == 0, (out[-1] if out else f"exit {proc.returncode}")


def namespace_argv() -> list[str]:
    """Run a command the way a run lives: private net+mount+pid namespaces (clusters.namespace)."""
    return [sys.executable, "-m", "clusters.namespace", "--"]


def probe_namespaces() -> Capability:
    ok, detail = _try([*namespace_argv(), "true"])
    if ok:
        return Capability("namespaces", True, f"private network+mount+pid namespaces work ({_mode()})")
    return Capability(
        "namespaces",
        False,
        f"cannot create a private network namespace: {detail}",
        "run as root, or allow unprivileged user namespaces: "
        "sysctl -w kernel.unprivileged_userns_clone=1 (Debian) / "
        "sysctl -w user.max_user_namespaces=15000; in a container, run it with --privileged "
        "or --cap-add SYS_ADMIN,NET_ADMIN",
    )


def _mode() -> str:
    return "as root" if os.geteuid() == 0 else "as an unprivileged user, through a user namespace"


def probe_packet_filter() -> Capability:
    """nftables, else iptables, able to do what a run does inside a fresh network namespace.

    The probe applies, reads back and removes one partition and one loss rule of the shape a run
    uses (clusters.firewall's self test) in a throwaway namespace of the kind a run gets: as
    root a plain one, as anyone else one inside a user namespace. Nodes are told apart by
    address, so no further privilege is needed.
    """
    tried = []
    for name in ("nft", "iptables"):
        if shutil.which(name) is None:
            tried.append(f"{name}: not installed")
            continue
        ok, detail = _try([*namespace_argv(), sys.executable, "-m", "clusters.firewall", "probe", name])
        if ok:
            return Capability(
                "packet-filter",
                True,
                f"{name} applies, reads back and removes address rules inside a private network "
                f"namespace ({_mode()})",
            )
        tried.append(f"{name}: {detail}")
    return Capability(
        "packet-filter",
        False,
        "; ".join(tried),
        "apt-get install nftables (or iptables); it must work inside a network namespace "
        "(needs working namespaces; without root, unprivileged user namespaces)",
    )


def probe_message_proxy() -> Capability:
    """The message proxy's redirect (nft nat + SO_ORIGINAL_DST + SO_MARK), tried in a throwaway namespace."""
    if shutil.which("nft") is None:
        return Capability(
            "message-proxy",
            False,
            "nft: not installed",
            "apt-get install nftables (the proxy's redirect is an nft nat rule)",
        )
    ok, detail = _try([*namespace_argv(), sys.executable, "-m", "systems.vr.proxy"])
    if ok:
        return Capability(
            "message-proxy", True, f"replica links redirected through a frame proxy ({_mode()})"
        )
    return Capability(
        "message-proxy",
        False,
        detail,
        "needs nftables with the nat table inside a network namespace (kernel nf_nat)",
    )


def probe_signals() -> Capability:
    return Capability("signals", True, "SIGSTOP/SIGCONT/SIGKILL to node processes (always available)")


def probe_faketime(library: str | None = None) -> Capability:
    """libfaketime really shifts a child's ``time.time()``, and follows its control file live.

    A child Python with libfaketime preloaded (as nemeses.clock starts nodes) reports its wall
    and monotonic clocks twice: with the control file at +1 hour, then, after the file was
    replaced, at -1 hour. The wall clock must follow both and the monotonic clock neither.
    """
    from nemeses.clock import ClockSetting, control_env, find_libfaketime, write_setting

    how = "apt-get install libfaketime faketime"
    library = library or find_libfaketime()
    if library is None:
        return Capability("libfaketime", False, "libfaketime.so.1 not found", how)
    with tempfile.TemporaryDirectory(prefix="ratchet-faketime-") as tmp:
        control = Path(tmp) / "probe.faketime"
        write_setting(control, ClockSetting(offset_ms=3_600_000))
        env = {**os.environ, **control_env(library=library, control_file=control, fake_monotonic=False)}
        script = "import sys,time\nfor _ in sys.stdin: print(time.time(), time.monotonic(), flush=True)\n"
        try:
            with subprocess.Popen(
                [sys.executable, "-c", script],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
            ) as proc:  # fmt: skip
                assert proc.stdin is not None and proc.stdout is not None
                shifts = []
                for offset_ms in (3_600_000, -3_600_000):
                    write_setting(control, ClockSetting(offset_ms=offset_ms))
                    proc.stdin.write("\n")
                    proc.stdin.flush()
                    line = proc.stdout.readline().split()
                    if len(line) != 2:
                        proc.kill()
                        detail = (proc.stderr.read() if proc.stderr else "").strip().splitlines()
                        return Capability(
                            "libfaketime", False, f"a child with {library} preloaded failed: "
                            f"{detail[-1] if detail else 'no output'}", how,
                        )  # fmt: skip
                    wall_s, mono_s = (float(x) for x in line)
                    shifts.append((wall_s - time.time(), mono_s - time.monotonic(), offset_ms / 1000))
                proc.stdin.close()
                proc.wait(timeout=PROBE_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired, ValueError) as exc:
            return Capability("libfaketime", False, f"probing {library} failed: {exc}", how)
    wrong = [s for s in shifts if abs(s[0] - s[2]) > FAKETIME_TOLERANCE_S or abs(s[1]) > FAKETIME_TOLERANCE_S]
    if wrong:
        got = ", ".join(f"wall {w:+.1f} s (wanted {t:+.0f}), monotonic {m:+.1f} s" for w, m, t in shifts)
        return Capability(
            "libfaketime", False, f"{library} preloaded does not shift a child's clock as set: {got}", how
        )
    return Capability(
        "libfaketime",
        True,
        f"{library}: a child's time.time() followed its control file live (+1 h, then -1 h; "
        f"measured {shifts[0][0]:+.1f} s, {shifts[1][0]:+.1f} s), its monotonic clock stayed real",
    )


def probe_fuse() -> Capability:
    """Mount faultfs in a throwaway run namespace and cut its power (nemeses.disk.probe)."""
    how = (
        "apt-get install fuse3 (libfuse3) and pip install mfusepy; in a container add --device /dev/fuse "
        "--cap-add SYS_ADMIN"
    )
    if not os.path.exists("/dev/fuse"):
        return Capability("fuse", False, "/dev/fuse is missing (no FUSE in this kernel or container)", how)
    ok, detail = _try([*namespace_argv(), sys.executable, "-m", "nemeses.disk.probe"])
    if ok:
        return Capability("fuse", True, f"{detail} ({_mode()})")
    return Capability("fuse", False, detail, how)


def probe_dm_flakey() -> Capability:
    """device-mapper's flakey target (``dmsetup targets``) and loop devices, for the dm-flakey fault."""
    from nemeses.disk.dmflakey import flakey_available

    if shutil.which("dmsetup") is None:
        return Capability(
            "dm-flakey", False, "dmsetup not installed", "apt-get install dmsetup; modprobe dm-flakey"
        )
    ok, detail = flakey_available()
    how = "" if ok else "a kernel with device-mapper and the dm-flakey module (modprobe dm-flakey), as root"
    return Capability("dm-flakey", ok, detail, how)


def probe_docker() -> Capability:
    if shutil.which("docker") is None:
        return Capability(
            "docker",
            False,
            "docker CLI not installed",
            "apt-get install docker.io (for cluster.kind = 'docker')",
        )
    ok, detail = _try(["docker", "info", "--format", "{{.ServerVersion}}"])
    if ok:
        return Capability("docker", True, f"docker daemon reachable ({detail})")
    return Capability(
        "docker",
        False,
        f"docker daemon not reachable: {detail}",
        "start dockerd (for cluster.kind = 'docker')",
    )


# Which capabilities each fault kind needs on the local cluster; None: not implemented yet.
def probe_all(*, include_docker: bool = True) -> dict[str, Capability]:
    probes = [
        probe_namespaces(),
        probe_packet_filter(),
        probe_signals(),
        probe_faketime(),
        probe_message_proxy(),
        probe_fuse(),
        probe_dm_flakey(),
    ]
    if include_docker:
        probes.append(probe_docker())
    return {c.name: c for c in probes}
