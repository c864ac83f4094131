"""Scenario file + command-line flags -> one validated, frozen :class:`Test`.

Everything a user can get wrong is caught here, before a node starts: unknown
keys (with "did you mean"), wrong types, values out of range, combinations that
make no sense (a 2-node cluster cannot be split into a majority and a minority),
and faults this machine cannot inject (asked of the probes, :mod:`core.capability`).
Each problem is a :class:`BadInput` naming the file (or flag), the key and why.

Flags override the file: they are applied to the same nested table before
validation, so a flag and a key are checked by the same code.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import stat
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from core.capability import fault_refusal
from core.errors import BadInput
from core.paths import store_dir_problem

# scenarios/ beside harness/: the checkout's folder, or the package data a wheel installs there.
SCENARIO_DIR = Path(__file__).resolve().parent.parent / "scenarios"
DEFAULT_SCENARIO = "default"

FAULT_KINDS = (
    "partition",
    "primary-chain",
    "loss",
    "pause",
    "kill",
    "rolling-kill",
    "clock",
    "messages",
    "disk",
    "power-cut",
    "corrupt",
    "dm-flakey",
)
MESSAGE_MODES = ("delay", "reorder", "duplicate", "replay", "drop", "flap")  # nemeses.messages
MESSAGE_MODES_DEFAULT = MESSAGE_MODES[:4]  # per-frame faults; drop and flap are asked for by name
MESSAGE_TARGETS = ("primary", "one", "all")
DISK_MODES = ("eio-fsync", "eio-write", "eio-read", "enospc", "stall")  # nemeses.disk.nemesis
CORRUPT_DAMAGE = ("bitflip", "zero", "misdirect", "lost-write")  # nemeses.disk.corrupt
CORRUPT_TARGETS = ("one", "minority", "helix")
CORRUPT_SEQUENCES = ("plain", "isolate-acker")
GRUDGES = ("one", "primary", "majority", "majorities-ring", "minority-third", "bridge", "one-way", "random")
PROCESS_TARGETS = ("one", "primary", "minority", "majority", "all")
CLOCK_MODES = ("bump", "strobe", "skew", "freeze")  # nemeses.clock
SCHEDULES = ("mix", "together")
WORKLOAD_FS = ("read", "write", "cas")
WORKLOADS = ("register", "append")
CLUSTER_KINDS = ("local", "docker", "ssh")  # clusters/: where nodes run
# The checker's model of one key, per workload (append is judged by checkers.append, not a model).
WORKLOAD_MODELS = {"register": "cas-register", "append": "list-append"}
KEEP_DATA = ("always", "on-failure", "never")  # node data files after a run (harness.retention)
NODES_MAX = 9  # odd counts only: VR runs on N = 2f+1 replicas
CONCURRENCY_MAX = 256

# Smallest cluster each grudge makes sense on (fewer nodes: nothing to cut the way it says).
GRUDGE_NODES_MIN = {
    "one": 2,
    "primary": 2,
    "majority": 3,
    "majorities-ring": 5,
    "minority-third": 3,
    "bridge": 3,
    "one-way": 2,
    "random": 2,
}


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    name: str = "register"
    keys: int = 8
    read: float = 0.5
    write: float = 0.3
    cas: float = 0.2
    rate_hz: float = 200.0  # total ops/s across all clients; 0 = as fast as they can
    client_timeout_s: float = 1.0
    model: str = "cas-register"  # the checker's model of one key (checkers.models)
    clients: str = "primary"  # where a request goes first: the believed primary, or the client's node


@dataclass(frozen=True, slots=True)
class NemesisSpec:
    faults: tuple[str, ...] = ()
    interval_s: float = 10.0
    grudges: tuple[str, ...] = GRUDGES
    loss_fraction: float = 0.3
    pause_targets: tuple[str, ...] = ("one", "primary", "minority")
    kill_targets: tuple[str, ...] = ("one", "primary", "minority")
    schedule: str = "mix"  # mix: kinds flip independently; together: all start, then all stop
    clock_modes: tuple[str, ...] = CLOCK_MODES
    clock_targets: tuple[str, ...] = ("one", "primary", "minority")
    clock_max_ms: int = 262_144
    clock_rates: tuple[float, ...] = (0.5, 1.5, 2.0)
    clock_monotonic: bool = False
    message_modes: tuple[str, ...] = MESSAGE_MODES_DEFAULT
    message_targets: tuple[str, ...] = MESSAGE_TARGETS
    message_probability: float = 0.2
    message_delay_ms: int = 300
    disk_faults: tuple[str, ...] = DISK_MODES
    disk_targets: tuple[str, ...] = ("one", "minority")
    power_cut_targets: tuple[str, ...] = ("majority",)
    power_cut_stall_ms: int = 0
    corrupt_damage: tuple[str, ...] = CORRUPT_DAMAGE
    corrupt_targets: tuple[str, ...] = CORRUPT_TARGETS
    corrupt_sequence: str = "plain"


@dataclass(frozen=True, slots=True)
class ClusterSpec:
    """Where the nodes run, beyond the kind: hosts and SSH login (ssh), the image (docker)."""

    hosts: tuple[str, ...] = ()  # ssh: one host name or address per node, in node order
    username: str = "root"
    private_key: str | None = None  # ssh: path of the private key (default: the agent / ~/.ssh keys)
    ssh_port: int = 22
    sudo: bool = False  # ssh: run node and firewall commands through sudo
    known_hosts: str | None = None  # ssh: known_hosts file (default ~/.ssh/known_hosts)
    strict_host_keys: bool = True  # ssh: refuse a host whose key is not known (paramiko RejectPolicy)
    remote_dir: str = "/tmp/ratchet"  # ssh: where each run's files live on the hosts
    image: str | None = None  # docker: image tag (default: the one `ratchet image build` makes)


@dataclass(frozen=True, slots=True)
class Test:
    """The whole resolved description of one run (no live objects: it is written to test.json)."""

    __test__ = False  # not a pytest class

    name: str
    description: str
    source: str | None
    cluster: str
    nodes: int
    bug: str | None
    workload: WorkloadSpec
    nemesis: NemesisSpec
    time_limit_s: float
    concurrency: int
    seed: int
    recovery_s: float
    store_dir: str
    keep_data: str = "on-failure"  # node data files after the run: always, on-failure, never
    cluster_spec: ClusterSpec = field(default_factory=ClusterSpec)
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["extra"] = dict(self.extra)
        return data

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> Test:
        """The inverse of :meth:`to_json` (for ``ratchet run --replay``)."""
        fields = dict(data)
        fields["workload"] = WorkloadSpec(**fields["workload"])
        nem = dict(fields["nemesis"])
        for key in (
            "faults",
            "grudges",
            "pause_targets",
            "kill_targets",
            "clock_modes",
            "clock_targets",
            "clock_rates",
            "message_modes",
            "message_targets",
            "disk_faults",
            "disk_targets",
            "power_cut_targets",
            "corrupt_damage",
            "corrupt_targets",
        ):
            if key in nem:
                nem[key] = tuple(nem[key])
        fields["nemesis"] = NemesisSpec(**nem)
        spec = dict(fields.get("cluster_spec") or {})
        if "hosts" in spec:
            spec["hosts"] = tuple(spec["hosts"])
        fields["cluster_spec"] = ClusterSpec(**spec)
        return Test(**fields)


# -- schema -------------------------------------------------------------------

Check = Callable[[Any], str | None]  # returns the reason a value is wrong, or None


def _positive(v: Any) -> str | None:
    return None if v > 0 else "must be greater than 0"


def _non_negative(v: Any) -> str | None:
    return None if v >= 0 else "must be 0 or more"


def _fraction(v: Any) -> str | None:
    return None if 0 <= v <= 1 else "must be between 0 and 1"


def _between(lo: float, hi: float) -> Check:
    def check(v: Any) -> str | None:
        if isinstance(v, float) and not math.isfinite(v):
            return f"must be a finite number between {lo} and {hi}"
        return None if lo <= v <= hi else f"must be between {lo} and {hi}"

    return check


def _finite(check: Check) -> Check:
    """NaN compares false with everything, so it would pass every range check: refuse it first."""

    def finite_check(v: Any) -> str | None:
        if isinstance(v, float) and not math.isfinite(v):
            return "must be a finite number"
        return check(v)

    return finite_check


def _replica_count(v: Any) -> str | None:
    if not 1 <= v <= NODES_MAX:
        return f"must be between 1 and {NODES_MAX}"
    if v % 2 == 0:
        return (
            f"must be odd: VR runs on N = 2f+1 replicas to tolerate f failures, and an even count "
            f"adds a replica but no tolerance (use {v - 1} or {v + 1})"
        )
    return None


_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.:-]{0,252})")
_LOGIN = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")


def _host_names(v: Any) -> str | None:
    if not v:
        return "must name at least one host"
    for item in v:
        if not isinstance(item, str) or not _HOST.fullmatch(item):
            return f"{item!r} is not a host name or address (letters, digits, '.', '-', ':')"
    if len(set(v)) != len(v):
        return "names a host twice; one node per host"
    return None


def _login_name(v: Any) -> str | None:
    return None if _LOGIN.fullmatch(v) else f"{v!r} is not a login name"


def _non_empty(v: Any) -> str | None:
    return None if v.strip() and "\0" not in v else "must be a non-empty string"


def _absolute_path(v: Any) -> str | None:
    if not v.startswith("/") or "\0" in v or ".." in v.split("/"):
        return f"{v!r} must be an absolute path without '..'"
    return None


# A scenario's name becomes a directory under the store: one path component, no traversal.
_NAME = re.compile(r"[\w][\w.-]{0,99}")
RESERVED_NAMES = ("latest", "index.html")


def scenario_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a run directory under the store, or None when it can."""
    if not _NAME.fullmatch(name):
        return (
            "must be 1 to 100 letters, digits, '_', '-' or '.', not starting with '.' or '-' "
            "(it names a directory inside the store, so no '/', '..' or absolute paths)"
        )
    if name in RESERVED_NAMES:
        return f"is reserved: the store keeps its own {name!r} there"
    return None


def _scenario_name(v: Any) -> str | None:
    return scenario_name_problem(v)


def _rates(v: Any) -> str | None:
    """Clock rates as libfaketime writes them: "x1.5" (> 0 and at most 20; 0 would stop the node)."""
    for item in v:
        try:
            rate = float(item[1:]) if item.startswith("x") else None
        except ValueError:
            rate = None
        if rate is None or not 0 < rate <= 20:
            return f"{item!r} is not a rate like 'x1.5' (more than 0, at most 20)"
    return None if v else "must name at least one rate"


def _one_of(choices: tuple[str, ...]) -> Check:
    def check(v: Any) -> str | None:
        items = v if isinstance(v, list) else [v]
        for item in items:
            if item not in choices:
                close = difflib.get_close_matches(str(item), choices, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                return f"{item!r} is not one of {', '.join(choices)}{hint}"
        return None

    return check


@dataclass(frozen=True, slots=True)
class Key:
    kind: type | tuple[type, ...]
    check: Check | None = None
    doc: str = ""


CLIENT_ROUTES = ("primary", "nodes")


SCHEMA: dict[str, dict[str, Key]] = {
    "": {
        "name": Key(str, _scenario_name, "scenario name (store/<name>/...)"),
        "description": Key(str, doc="one line for `ratchet scenarios`"),
    },
    "cluster": {
        "kind": Key(
            str,
            _one_of(CLUSTER_KINDS),
            "where nodes run: local (processes in private namespaces), docker (containers), "
            "ssh (remote hosts)",
        ),
        "nodes": Key(int, _replica_count, "replica count (odd: 1, 3, 5, ...)"),
        "bug": Key(str, doc="planted bug the nodes run with (python3 -m vr.node --list-bugs)"),
        "hosts": Key(list, _host_names, "ssh: the hosts, one per node (names or addresses)"),
        "username": Key(str, _login_name, "ssh: login name (default root)"),
        "private_key": Key(str, _non_empty, "ssh: path of the private key"),
        "ssh_port": Key(int, _between(1, 65535), "ssh: port of every host's sshd (default 22)"),
        "sudo": Key(bool, doc="ssh: run commands through sudo (default false)"),
        "known_hosts": Key(str, _non_empty, "ssh: known_hosts file (default ~/.ssh/known_hosts)"),
        "strict_host_keys": Key(bool, doc="ssh: refuse hosts whose key is not in known_hosts (default true)"),
        "remote_dir": Key(str, _absolute_path, "ssh: directory for runs on the hosts (default /tmp/ratchet)"),
        "image": Key(str, _non_empty, "docker: image tag (default: the one `ratchet image build` makes)"),
    },
    "workload": {
        "name": Key(str, _one_of(WORKLOADS), "what clients do: " + ", ".join(WORKLOADS)),
        "keys": Key(int, _between(1, 1000), "independent registers"),
        "read": Key((int, float), _finite(_non_negative), "weight of reads"),
        "write": Key((int, float), _finite(_non_negative), "weight of writes"),
        "cas": Key((int, float), _finite(_non_negative), "weight of compare-and-set"),
        "rate": Key((int, float), _finite(_non_negative), "ops/s over all clients, 0 = unlimited"),
        "client_timeout_s": Key((int, float), _finite(_positive), "per-request timeout"),
        "clients": Key(
            str,
            _one_of(CLIENT_ROUTES),
            "where each request goes first: 'primary' (the one the client believes leads) or "
            "'nodes' (client process p is bound to node p mod N, as Jepsen's clients are; a backup "
            "redirects it)",
        ),
    },
    "nemesis": {
        "faults": Key(list, _one_of(FAULT_KINDS), "fault kinds: " + ", ".join(FAULT_KINDS)),
        "interval_s": Key((int, float), _finite(_positive), "seconds between fault changes"),
        "grudges": Key(list, _one_of(GRUDGES), "partition shapes"),
        "loss_fraction": Key((int, float), _finite(_fraction), "packet drop probability"),
        "pause_targets": Key(list, _one_of(PROCESS_TARGETS), "which nodes pause picks"),
        "kill_targets": Key(list, _one_of(PROCESS_TARGETS), "which nodes kill picks"),
        "schedule": Key(
            str,
            _one_of(SCHEDULES),
            "mix: each kind flips on its own; together: all kinds start, then all stop",
        ),
        "clock_modes": Key(list, _one_of(CLOCK_MODES), "clock faults: " + ", ".join(CLOCK_MODES)),
        "clock_targets": Key(list, _one_of(PROCESS_TARGETS), "which nodes clock faults pick"),
        "clock_max_ms": Key(
            int, _between(4, 86_400_000), "largest clock bump / strobe, ms (log-uniform from 4)"
        ),
        "clock_rates": Key(list, _rates, "clock rates a skew draws from, e.g. ['x1.5']"),
        "clock_monotonic": Key(bool, doc="fake the monotonic clock too (VR's timeouts run on it)"),
        "message_modes": Key(
            list, _one_of(MESSAGE_MODES), "message faults on replica links: " + ", ".join(MESSAGE_MODES)
        ),
        "message_targets": Key(
            list,
            _one_of(MESSAGE_TARGETS),
            "links a message fault picks: those of the primary, of one node, all",
        ),
        "message_probability": Key(
            (int, float), _finite(_fraction), "chance each frame on a chosen link is hit"
        ),
        "message_delay_ms": Key(int, _between(1, 60_000), "longest delay of a delayed frame, ms"),
        "disk_faults": Key(list, _one_of(DISK_MODES), "disk fault modes: " + ", ".join(DISK_MODES)),
        "disk_targets": Key(list, _one_of(PROCESS_TARGETS), "which nodes a disk fault picks"),
        "power_cut_targets": Key(list, _one_of(PROCESS_TARGETS), "which nodes lose power together"),
        "power_cut_stall_ms": Key(
            int, _between(0, 60_000), "before a power cut, the backups' fsyncs hang this long (ms)"
        ),
        "corrupt_damage": Key(list, _one_of(CORRUPT_DAMAGE), "damage: " + ", ".join(CORRUPT_DAMAGE)),
        "corrupt_targets": Key(list, _one_of(CORRUPT_TARGETS), "which nodes' WALs are damaged"),
        "corrupt_sequence": Key(
            str,
            _one_of(CORRUPT_SEQUENCES),
            "plain (kill, damage committed slots, restart) or isolate-acker (damage the op a lagging "
            "node lacks, then cut off the other node that acked it)",
        ),
    },
    "run": {
        "time_limit_s": Key((int, float), _between(1, 86_400), "length of the main phase"),
        "concurrency": Key(int, _between(1, CONCURRENCY_MAX), "client threads"),
        "seed": Key(int, _between(0, 2**63 - 1), "seed of every random choice"),
        "recovery_s": Key((int, float), _between(1, 600), "how long the final phase waits for recovery"),
        "store": Key(str, doc="store directory"),
        "keep_data": Key(
            str, _one_of(KEEP_DATA), "node data files after the run: always, on-failure (default), never"
        ),
    },
}


def _type_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {int: "an integer", float: "a number", str: "a string", list: "a list", bool: "true/false"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _unknown(key: str, known: list[str], where: str, section: str) -> BadInput:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    place = f"[{section}]" if section else "the top level"
    return BadInput(
        f"unknown key {key!r} in {place}; accepted: {', '.join(sorted(known))}.{hint}", where=where
    )


def validate_table(data: Mapping[str, Any], *, where: str) -> None:
    """Check every key and type of a parsed scenario table against SCHEMA."""
    for key, value in data.items():
        if isinstance(value, dict):
            if key not in SCHEMA or key == "":
                raise _unknown(key, [k for k in SCHEMA if k], where, "")
            _validate_section(key, value, where=where)
        elif key not in SCHEMA[""]:
            raise _unknown(key, list(SCHEMA[""]) + [f"[{k}]" for k in SCHEMA if k], where, "")
        else:
            _validate_value("", key, value, where=where)


def _validate_section(section: str, table: Mapping[str, Any], *, where: str) -> None:
    for key, value in table.items():
        if key not in SCHEMA[section]:
            raise _unknown(key, list(SCHEMA[section]), where, section)
        _validate_value(section, key, value, where=where)


def _validate_value(section: str, key: str, value: Any, *, where: str) -> None:
    spec = SCHEMA[section][key]
    name = f"{section}.{key}" if section else key
    kinds = spec.kind if isinstance(spec.kind, tuple) else (spec.kind,)
    if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
        raise BadInput(
            f"{name} must be {_type_name(spec.kind)}, got {value!r} ({type(value).__name__}).", where=where
        )
    if isinstance(value, list) and not all(isinstance(v, str) for v in value):
        raise BadInput(f"{name} must be a list of strings, got {value!r}.", where=where)
    reason = spec.check(value) if spec.check else None
    if reason:
        raise BadInput(f"{name} = {value!r}: {reason}.", where=where)


# -- loading ------------------------------------------------------------------


def resolve_scenario_path(name_or_path: str | None) -> Path:
    """A path to a .toml file, or the name of one under scenarios/."""
    if name_or_path is None:
        name_or_path = DEFAULT_SCENARIO
    if not name_or_path.strip():
        raise BadInput(
            "the scenario argument is empty; give a scenario name (`ratchet scenarios` lists them) "
            "or a path to a .toml file.",
            where="SCENARIO",
        )
    path = Path(name_or_path)
    if path.suffix == ".toml" or "/" in name_or_path:
        problem = _file_problem(path)
        if problem:
            raise BadInput(f"the scenario {problem}.", where=name_or_path)
        return path
    candidate = SCENARIO_DIR / f"{name_or_path}.toml"
    if candidate.is_file():
        return candidate
    if path.exists() or path.is_symlink():
        problem = _file_problem(path)
        if problem:
            raise BadInput(f"the scenario {problem}.", where=name_or_path)
        return path  # a file without the .toml suffix, named on purpose
    known = sorted(p.stem for p in SCENARIO_DIR.glob("*.toml"))
    close = difflib.get_close_matches(name_or_path, known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise BadInput(
        f"no scenario named {name_or_path!r}; known: {', '.join(known) or '(none)'}.{hint} "
        "Run `ratchet scenarios` to list them, or pass a path to a .toml file.",
        where=name_or_path,
    )


def _file_problem(path: Path) -> str | None:
    """Why ``path`` is not a readable regular file (in words), or None."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        if path.is_symlink():
            return f"file {str(path)!r} is a symlink to {os.readlink(path)!r}, which does not exist"
        return f"file {str(path)!r} does not exist"
    except OSError as exc:  # ELOOP, EACCES on a parent, ENAMETOOLONG, ...
        return f"file {str(path)!r} cannot be opened: {exc.strerror}"
    if stat.S_ISDIR(mode):
        return f"{str(path)!r} is a directory, not a scenario file; give the path to a .toml file in it"
    if not stat.S_ISREG(mode):
        return f"{str(path)!r} is not a regular file (a device, pipe or socket); give a .toml file"
    return None


SCENARIO_BYTES_MAX = 1 << 20  # a scenario is a few hundred bytes; a megabyte is not a scenario


def read_table(path: Path) -> dict[str, Any]:
    """The parsed, schema-checked table of a scenario file (BadInput naming the file otherwise)."""
    problem = _file_problem(path)
    if problem:
        raise BadInput(f"the scenario {problem}.", where=str(path))
    try:
        with path.open("rb") as handle:
            raw = handle.read(SCENARIO_BYTES_MAX + 1)
    except OSError as exc:
        raise BadInput(f"cannot read the scenario: {exc.strerror}.", where=str(path)) from exc
    if len(raw) > SCENARIO_BYTES_MAX:
        raise BadInput(
            f"the scenario file is larger than {SCENARIO_BYTES_MAX} bytes; a scenario is a small TOML file.",
            where=str(path),
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise BadInput(
            f"not UTF-8 text (byte {exc.start}, line {line}: {exc.reason}); a scenario is a TOML file.",
            where=str(path),
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BadInput(f"not valid TOML: {exc}.", where=str(path)) from None
    if not data:
        raise BadInput(
            "the scenario file is empty (no keys). Start from a named scenario such as "
            "scenarios/default.toml, or run `ratchet run no-faults` for a run without faults.",
            where=str(path),
        )
    validate_table(data, where=str(path))
    return data


def parse_fault_list(text: str, *, flag: str) -> list[str]:
    """A comma-separated flag value (``--nemesis``, ``--grudges``) as a list.

    ``none`` is the explicit way to ask for no faults; an empty value or one of
    only commas names nothing, which is a typo more often than a wish, so it is
    refused rather than silently running without faults.
    """
    if text.strip().lower() == "none":
        return []
    items = [part.strip() for part in text.split(",")]
    if not any(items):
        raise BadInput(
            f"{flag} {text!r} names nothing; give comma-separated names (e.g. {flag} partition,kill), "
            f"or {flag} none to leave them out on purpose."
        )
    if not all(items):
        raise BadInput(
            f"{flag} {text!r} has an empty item between commas; give comma-separated names "
            f"(e.g. {flag} partition,kill)."
        )
    return items


def merge_overrides(data: dict[str, Any], overrides: Mapping[tuple[str, str], Any]) -> dict[str, Any]:
    merged = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    for (section, key), value in overrides.items():
        if section:
            merged.setdefault(section, {})[key] = value
        else:
            merged[key] = value
    return merged


def build_test(
    data: Mapping[str, Any],
    *,
    source: str | None,
    seed_if_absent: int,
    flag_names: Mapping[tuple[str, str], str] | None = None,
    capabilities: Mapping[str, Any] | None = None,
    known_bugs: tuple[str, ...] | None = None,
    check_store: bool = False,
) -> Test:
    """Validate the merged table and freeze it. ``flag_names`` maps (section, key) to the CLI flag
    that set it, so an error names the flag rather than the file. ``check_store`` also asks the
    file system whether the store can hold a run (for ``ratchet run``, not for listings)."""
    flag_names = flag_names or {}
    where_file = source or "(defaults)"

    def where(section: str, key: str) -> str:
        return flag_names.get((section, key), where_file)

    for section, table in data.items():
        if isinstance(table, dict) and section and section in SCHEMA:
            for key, value in table.items():
                if key in SCHEMA[section]:
                    _validate_value(section, key, value, where=where(section, key))
    validate_table(data, where=where_file)

    cluster = data.get("cluster", {})
    workload = data.get("workload", {})
    nem = data.get("nemesis", {})
    run = data.get("run", {})
    name = data.get("name") or (Path(source).stem if source else DEFAULT_SCENARIO)
    problem = scenario_name_problem(name)
    if problem:  # a name taken from the file's name, which the schema never saw
        raise BadInput(
            f"the scenario's name {name!r} (from the file name) {problem}; set `name = ...` in the file.",
            where=where_file,
        )
    workload_name = workload.get("name", "register")
    spec = WorkloadSpec(
        name=workload_name,
        model=WORKLOAD_MODELS[workload_name],
        keys=workload.get("keys", 8),
        read=float(workload.get("read", 0.5)),
        write=float(workload.get("write", 0.3)),
        cas=float(workload.get("cas", 0.2)),
        rate_hz=float(workload.get("rate", 200.0)),
        client_timeout_s=float(workload.get("client_timeout_s", 1.0)),
        clients=workload.get("clients", "primary"),
    )
    if spec.read + spec.write + spec.cas <= 0:
        raise BadInput(
            "workload.read + workload.write + workload.cas must be more than 0: "
            "the clients would have nothing to do.",
            where=where("workload", "read"),
        )
    kind = cluster.get("kind", "local")
    hosts = tuple(cluster.get("hosts", ()))
    nodes = int(cluster.get("nodes", len(hosts) or 3))
    _check_cluster(kind, cluster, hosts, nodes, where=where)
    cluster_spec = ClusterSpec(
        hosts=hosts,
        username=cluster.get("username", "root"),
        private_key=cluster.get("private_key"),
        ssh_port=int(cluster.get("ssh_port", 22)),
        sudo=bool(cluster.get("sudo", False)),
        known_hosts=cluster.get("known_hosts"),
        strict_host_keys=bool(cluster.get("strict_host_keys", True)),
        remote_dir=cluster.get("remote_dir", "/tmp/ratchet"),
        image=cluster.get("image"),
    )
    bug = cluster.get("bug") or None
    nemesis = NemesisSpec(
        faults=tuple(dict.fromkeys(nem.get("faults", ()))),
        interval_s=float(nem.get("interval_s", 10.0)),
        # Unless named, every grudge that fits the cluster size.
        grudges=tuple(nem.get("grudges", [g for g in GRUDGES if GRUDGE_NODES_MIN[g] <= nodes])),
        loss_fraction=float(nem.get("loss_fraction", 0.3)),
        pause_targets=tuple(nem.get("pause_targets", ("one", "primary", "minority"))),
        kill_targets=tuple(nem.get("kill_targets", ("one", "primary", "minority"))),
        schedule=nem.get("schedule", "mix"),
        clock_modes=tuple(dict.fromkeys(nem.get("clock_modes", CLOCK_MODES))),
        clock_targets=tuple(nem.get("clock_targets", ("one", "primary", "minority"))),
        clock_max_ms=int(nem.get("clock_max_ms", 262_144)),
        clock_rates=tuple(float(r[1:]) for r in nem.get("clock_rates", ("x0.5", "x1.5", "x2"))),
        clock_monotonic=bool(nem.get("clock_monotonic", False)),
        message_modes=tuple(dict.fromkeys(nem.get("message_modes", MESSAGE_MODES_DEFAULT))),
        message_targets=tuple(dict.fromkeys(nem.get("message_targets", MESSAGE_TARGETS))),
        message_probability=float(nem.get("message_probability", 0.2)),
        message_delay_ms=int(nem.get("message_delay_ms", 300)),
        disk_faults=tuple(nem.get("disk_faults", DISK_MODES)),
        disk_targets=tuple(nem.get("disk_targets", ("one", "minority"))),
        power_cut_targets=tuple(nem.get("power_cut_targets", ("majority",))),
        power_cut_stall_ms=int(nem.get("power_cut_stall_ms", 0)),
        corrupt_damage=tuple(nem.get("corrupt_damage", CORRUPT_DAMAGE)),
        corrupt_targets=tuple(nem.get("corrupt_targets", CORRUPT_TARGETS)),
        corrupt_sequence=nem.get("corrupt_sequence", "plain"),
    )
    test = Test(
        name=name,
        description=data.get("description", ""),
        source=source,
        cluster=kind,
        nodes=nodes,
        bug=bug,
        workload=spec,
        nemesis=nemesis,
        time_limit_s=float(run.get("time_limit_s", 60.0)),
        concurrency=int(run.get("concurrency", 5)),
        seed=int(run.get("seed", seed_if_absent)),
        recovery_s=float(run.get("recovery_s", 10.0)),
        store_dir=run.get("store", "store"),
        keep_data=run.get("keep_data", "on-failure"),
        cluster_spec=cluster_spec,
    )
    _check_combinations(test, where=where)
    if check_store:
        problem = store_dir_problem(test.store_dir)
        if problem:
            raise BadInput(f"the store {test.store_dir!r} {problem}.", where=where("run", "store"))
    if capabilities is not None:
        check_capabilities(test, capabilities, where=where("nemesis", "faults"))
    if known_bugs is not None and bug is not None and bug not in known_bugs:
        close = difflib.get_close_matches(bug, known_bugs, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise BadInput(
            f"cluster.bug = {bug!r} is not a bug the nodes know; known: "
            f"{', '.join(known_bugs) or '(none)'}.{hint}",
            where=where("cluster", "bug"),
        )
    return test


def revalidate(test: Test, *, where: str, known_bugs: tuple[str, ...] | None = None) -> Test:
    """A stored Test (``--replay``'s test.json) checked by the same rules as a scenario file.

    A test.json is a file like any other: edited, truncated or from another version,
    it must be refused (exit 3) before it starts anything, not crash a run. The
    fields are put back into a scenario table (every field the schema names in the
    same shape) and validated; the stored test itself is returned unchanged.
    """
    w = test.workload
    nemesis: dict[str, Any] = {}
    for name in SCHEMA["nemesis"]:
        value = getattr(test.nemesis, name, None)
        if isinstance(value, tuple):
            if not all(isinstance(v, str) for v in value):
                continue  # stored in another shape than the file's (clock_rates): not re-checked
            value = list(value)
        if value is not None:
            nemesis[name] = value
    run: dict[str, Any] = {
        "time_limit_s": test.time_limit_s,
        "concurrency": test.concurrency,
        "seed": test.seed,
        "recovery_s": test.recovery_s,
        "store": test.store_dir,
    }
    if "keep_data" in SCHEMA["run"]:
        run["keep_data"] = getattr(test, "keep_data", None)
    table: dict[str, Any] = {
        "name": test.name,
        "description": test.description,
        "cluster": {"kind": test.cluster, "nodes": test.nodes},
        "workload": {
            "name": w.name,
            "keys": w.keys,
            "read": w.read,
            "write": w.write,
            "cas": w.cas,
            "rate": w.rate_hz,
            "client_timeout_s": w.client_timeout_s,
            "clients": w.clients,
        },
        "nemesis": nemesis,
        "run": {k: v for k, v in run.items() if v is not None},
    }
    if test.bug is not None:
        table["cluster"]["bug"] = test.bug
    spec = getattr(test, "cluster_spec", ClusterSpec())
    defaults = ClusterSpec()
    for key in (*SSH_ONLY, *DOCKER_ONLY):
        value = getattr(spec, key if key != "hosts" else "hosts")
        if value != getattr(defaults, key):
            table["cluster"][key] = list(value) if isinstance(value, tuple) else value
    build_test(table, source=where, seed_if_absent=test.seed, known_bugs=known_bugs, check_store=True)
    return test


SSH_ONLY = (
    "hosts",
    "username",
    "private_key",
    "ssh_port",
    "sudo",
    "known_hosts",
    "strict_host_keys",
    "remote_dir",
)
DOCKER_ONLY = ("image",)


def _check_cluster(
    kind: str,
    cluster: Mapping[str, Any],
    hosts: tuple[str, ...],
    nodes: int,
    *,
    where: Callable[[str, str], str],
) -> None:
    """The keys a home needs are there, and no key of another home is."""
    for keys, home in ((SSH_ONLY, "ssh"), (DOCKER_ONLY, "docker")):
        stray = [key for key in keys if key in cluster and kind != home]
        if stray:
            raise BadInput(
                f"cluster.{stray[0]} is for cluster.kind = {home!r}, but this scenario runs on {kind!r}; "
                f"drop it or set cluster.kind = {home!r}.",
                where=where("cluster", stray[0]),
            )
    if kind == "ssh":
        if not hosts:
            raise BadInput(
                'cluster.kind = \'ssh\' needs the hosts to run on: cluster.hosts = ["n1", "n2", "n3"] '
                "(or --nodes n1,n2,n3).",
                where=where("cluster", "kind"),
            )
        if len(hosts) != nodes:
            raise BadInput(
                f"cluster.hosts names {len(hosts)} host(s) but cluster.nodes = {nodes}; one node per host.",
                where=where("cluster", "hosts"),
            )
        problem = _replica_count(len(hosts))
        if problem:
            raise BadInput(f"cluster.hosts: the host count {problem}.", where=where("cluster", "hosts"))


def _check_combinations(test: Test, *, where: Callable[[str, str], str]) -> None:
    faults = test.nemesis.faults
    if "partition" in faults:
        if test.nodes < 2:
            raise BadInput(
                f"a {test.nodes}-node cluster has no network links to partition; "
                "use cluster.nodes >= 3 or drop 'partition'.",
                where=where("nemesis", "faults"),
            )
        too_small = [g for g in test.nemesis.grudges if GRUDGE_NODES_MIN[g] > test.nodes]
        if too_small:
            need = max(GRUDGE_NODES_MIN[g] for g in too_small)
            raise BadInput(
                f"a {test.nodes}-node cluster cannot be partitioned as {', '.join(too_small)} "
                f"(needs at least {need} nodes: e.g. 'majority' splits a majority from a minority, "
                "'majorities-ring' needs 5). Use more nodes or other nemesis.grudges.",
                where=where("nemesis", "grudges"),
            )
    if "rolling-kill" in faults and test.nodes < 3:
        raise BadInput(
            f"rolling-kill takes a backup and then the primary down; a {test.nodes}-node cluster has no "
            "majority left to run on. Use cluster.nodes >= 3 or the 'kill' fault.",
            where=where("nemesis", "faults"),
        )
    if "primary-chain" in faults and test.nodes < 3:
        raise BadInput(
            f"primary-chain isolates the primary and then its successor; a {test.nodes}-node cluster has "
            "no successor to elect. Use cluster.nodes >= 3.",
            where=where("nemesis", "faults"),
        )
    if "loss" in faults and test.nodes < 2:
        raise BadInput("packet loss between nodes needs at least 2 nodes.", where=where("nemesis", "faults"))
    if test.nemesis.interval_s * 2 > test.time_limit_s and faults:
        raise BadInput(
            f"nemesis.interval_s = {test.nemesis.interval_s} leaves no room for a fault and its heal in "
            f"run.time_limit_s = {test.time_limit_s}; make the interval at most half the time limit.",
            where=where("nemesis", "interval_s"),
        )


def check_capabilities(test: Test, capabilities: Mapping[str, Any], *, where: str) -> None:
    for fault in test.nemesis.faults:
        reason = fault_refusal(fault, dict(capabilities))
        if reason:
            raise BadInput(
                f"cannot run this scenario here: {reason} `ratchet doctor` lists what this "
                "machine can inject.",
                where=where,
            )


def describe(path: Path) -> tuple[str, str]:
    """(name, description) of a scenario file, for listings; raises BadInput if malformed."""
    data = read_table(path)
    return data.get("name", path.stem), data.get("description", "")
