"""A campaign file -> a validated matrix of runs (scenario x bug x overrides x seed), and its shards.

A campaign is tests as data, Jepsen-style: the file names which scenarios to
run, with which planted bug (if any), with which flag overrides, and how many
seeds; the matrix is their product, in file order. Everything that can be
wrong with the file is found here, before any run starts (exit 3).

Sharding must give every CI runner the same slice whatever machine it is on,
so it depends only on the matrix order (file order, then seed): shard ``I/N``
takes cells ``I-1, I-1+N, I-1+2N, ...``. The union of the N shards is the
matrix and no cell is in two of them.
"""

from __future__ import annotations

import difflib
import hashlib
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from core.errors import BadInput

EXPECTATIONS = ("valid", "anomaly")
CLUSTER_KINDS = ("local",)
SEEDS_MAX = 10_000

# Campaign keys that become `ratchet run` flags: key -> (flag, python type).
RUN_FLAGS: dict[str, tuple[str, type | tuple[type, ...]]] = {
    "nodes": ("--nodes", int),
    "keys": ("--keys", int),
    "rate": ("--rate", (int, float)),
    "clients": ("--clients", str),
    "nemesis": ("--nemesis", (str, list)),
    "grudges": ("--grudges", (str, list)),
    "nemesis_interval": ("--nemesis-interval", (int, float)),
    "time_limit": ("--time-limit", (int, float)),
    "concurrency": ("--concurrency", int),
    "recovery": ("--recovery", (int, float)),
    "keep_data": ("--keep-data", str),
}
TOP_KEYS = ("name", "description", "seeds", "seed_base", "defaults", "run")
RUN_KEYS = ("scenario", "bug", "expect", "cluster", *RUN_FLAGS)
_CELL_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True, slots=True)
class RunSpec:
    """One ``[[run]]`` entry: a scenario with an optional bug, an expectation and flag overrides."""

    scenario: str
    bug: str | None = None
    expect: str = "valid"
    cluster: str = "local"
    overrides: Mapping[str, Any] = field(default_factory=dict)
    tag: str = ""  # tells apart entries with the same scenario and bug (a digest of their overrides)

    def label(self) -> str:
        return (
            Path(self.scenario).stem
            + (f"+{self.bug}" if self.bug else "")
            + (f"-{self.tag}" if self.tag else "")
        )


@dataclass(frozen=True, slots=True)
class Cell:
    """One run of the matrix."""

    index: int  # position in the whole matrix
    run: RunSpec
    seed: int

    @property
    def id(self) -> str:
        """Stable, unique within a campaign, safe as a file name."""
        raw = f"{self.run.label()}-s{self.seed}"
        return _CELL_ID_UNSAFE.sub("_", raw)

    def run_argv(self, *, store: Path) -> list[str]:
        """The ``ratchet run`` arguments for this cell (without the program name)."""
        argv = ["run", self.run.scenario, "--seed", str(self.seed), "--store", str(store), "--no-progress"]
        if self.run.bug:
            argv += ["--bug", self.run.bug]
        for key, value in self.run.overrides.items():
            flag = RUN_FLAGS[key][0]
            argv += [flag, ",".join(value) if isinstance(value, list) else str(value)]
        return argv


@dataclass(frozen=True, slots=True)
class Campaign:
    name: str
    description: str
    source: str
    digest: str  # sha256 of the file: shards of one campaign must come from the same file
    seeds: tuple[int, ...]
    runs: tuple[RunSpec, ...]

    def matrix(self) -> list[Cell]:
        cells = [Cell(0, run, seed) for run in self.runs for seed in self.seeds]
        return [Cell(i, cell.run, cell.seed) for i, cell in enumerate(cells)]


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> (I, N), 1 <= I <= N."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise BadInput(f"--shard wants I/N (for example 2/4), not {text!r}.", where="--shard")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or not 1 <= index <= count:
        raise BadInput(f"--shard {text}: I must be between 1 and N, and N at least 1.", where="--shard")
    return index, count


def shard(cells: Sequence[Cell], index: int, count: int) -> list[Cell]:
    """Shard ``index`` of ``count`` (1-based): every count-th cell, starting at index-1."""
    return list(cells[index - 1 :: count])


def _type_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {int: "a whole number", float: "a number", str: "a string", list: "a list", bool: "true/false"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _unknown_key(key: str, allowed: Sequence[str], where: str) -> BadInput:
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return BadInput(f"unknown key {key!r}{hint}; accepted: {', '.join(allowed)}.", where=where)


def _overrides(table: Mapping[str, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in table.items():
        if key not in RUN_FLAGS:
            continue
        kind = RUN_FLAGS[key][1]
        ok = isinstance(value, kind) and not isinstance(value, bool)
        if ok and isinstance(value, list):
            ok = all(isinstance(item, str) for item in value)
        if not ok:
            raise BadInput(f"{key} must be {_type_name(kind)}, not {value!r}.", where=f"{where}.{key}")
        out[key] = value
    return out


def _choice(value: Any, choices: Sequence[str], key: str, where: str) -> str:
    if not isinstance(value, str) or value not in choices:
        close = difflib.get_close_matches(str(value), choices, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise BadInput(f"{key} {value!r} is not one of {', '.join(choices)}{hint}.", where=f"{where}.{key}")
    return value


def build_campaign(
    data: Mapping[str, Any],
    *,
    source: str,
    digest: str,
    known_scenarios: Sequence[str] | None = None,
    known_bugs: Sequence[str] = (),
    seeds_override: int | None = None,
    seed_base_override: int | None = None,
) -> Campaign:
    """Validate a parsed campaign table. ``known_scenarios`` None: scenario names are not checked."""
    for key in data:
        if key not in TOP_KEYS:
            raise _unknown_key(key, TOP_KEYS, source)
    name = data.get("name", Path(source).stem)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name):
        raise BadInput(
            f"name {name!r} must be 1-64 letters, digits, '.', '_' or '-' (it names a directory).",
            where=f"{source}: name",
        )
    description = data.get("description", "")
    if not isinstance(description, str):
        raise BadInput("description must be a string.", where=f"{source}: description")
    seeds_count = data.get("seeds", 1) if seeds_override is None else seeds_override
    if isinstance(seeds_count, bool) or not isinstance(seeds_count, int) or not 1 <= seeds_count <= SEEDS_MAX:
        raise BadInput(
            f"seeds must be a whole number from 1 to {SEEDS_MAX}, not {seeds_count!r}.", where=source
        )
    seed_base = data.get("seed_base", 1) if seed_base_override is None else seed_base_override
    if isinstance(seed_base, bool) or not isinstance(seed_base, int) or not 0 <= seed_base < 1 << 31:
        raise BadInput(f"seed_base must be a whole number from 0 to 2^31-1, not {seed_base!r}.", where=source)
    if seed_base + seeds_count > 1 << 31:
        raise BadInput("seed_base + seeds must stay below 2^31.", where=source)
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise BadInput("[defaults] must be a table of `ratchet run` settings.", where=source)
    for key in defaults:
        if key not in RUN_FLAGS:
            raise _unknown_key(key, tuple(RUN_FLAGS), f"{source}: [defaults]")
    default_overrides = _overrides(defaults, f"{source}: defaults")
    entries = data.get("run")
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise BadInput(
            'a campaign needs at least one [[run]] table, e.g. [[run]] scenario = "default".', where=source
        )
    runs: list[RunSpec] = []
    for number, entry in enumerate(entries, start=1):
        where = f"{source}: run #{number}"
        for key in entry:
            if key not in RUN_KEYS:
                raise _unknown_key(key, RUN_KEYS, where)
        scenario = entry.get("scenario")
        if not isinstance(scenario, str) or not scenario:
            raise BadInput("scenario (a name from `ratchet scenarios`) is required.", where=where)
        if scenario.endswith(".toml") or "/" in scenario:
            # A scenario file beside the campaign file: the child runs from anywhere.
            scenario_path = (Path(source).parent / scenario).resolve()
            if not scenario_path.is_file():
                raise BadInput(
                    f"scenario file {scenario!r} does not exist (next to the campaign file).", where=where
                )
            scenario = str(scenario_path)
        elif known_scenarios is not None and scenario not in known_scenarios:
            _choice(scenario, known_scenarios, "scenario", where)
        bug = entry.get("bug")
        if bug is not None:
            _choice(bug, known_bugs, "bug", where)
        expect = _choice(entry.get("expect", "anomaly" if bug else "valid"), EXPECTATIONS, "expect", where)
        cluster = _choice(entry.get("cluster", "local"), CLUSTER_KINDS, "cluster", where)
        overrides = {**default_overrides, **_overrides(entry, where)}
        runs.append(RunSpec(scenario=scenario, bug=bug, expect=expect, cluster=cluster, overrides=overrides))
    labels = [run.label() for run in runs]
    runs = [
        replace(run, tag=hashlib.sha256(repr(sorted(run.overrides.items())).encode()).hexdigest()[:6])
        if labels.count(run.label()) > 1
        else run
        for run in runs
    ]
    seeds = tuple(range(seed_base, seed_base + seeds_count))
    campaign = Campaign(
        name=name, description=description, source=source, digest=digest, seeds=seeds, runs=tuple(runs)
    )
    ids = [cell.id for cell in campaign.matrix()]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise BadInput(f"the matrix names the same run twice: {', '.join(duplicates[:5])}.", where=source)
    return campaign


def read_campaign(path: Path, **kwargs: Any) -> Campaign:
    """Read and validate a campaign file (BadInput on anything wrong with it)."""
    if path.is_dir():
        raise BadInput("is a directory, not a campaign file.", where=str(path))
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BadInput(f"cannot read the campaign file: {exc.strerror}.", where=str(path)) from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise BadInput(f"not UTF-8 text (byte {exc.start}).", where=str(path)) from exc
    except tomllib.TOMLDecodeError as exc:
        raise BadInput(f"not valid TOML: {exc}.", where=str(path)) from exc
    return build_campaign(data, source=str(path), digest=hashlib.sha256(raw).hexdigest(), **kwargs)
