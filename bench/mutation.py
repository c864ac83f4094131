"""Mutation score of the replica: how many small faults planted in vr/ the simulator and the vr tests kill.

``python bench/mutation.py [--sample N] [--seed S] [--timeout-s T] [--jobs J]``

Cosmic Ray (its operators and its parser, which keeps the source's formatting) lists
every mutant of ``vr/replica.py``, ``vr/journal.py`` and ``vr/state_machine.py``; a
sample of N, drawn from ``--seed``, is run, each in a private copy of the source tree so
the checkout is never modified. The killer, in order and stopping at the first failure:
the simulator's seeds (``--sim-seeds`` plain seeds from 1, then storage-stressed seeds
from 5000), then the in-process vr tests (``KILLER_TESTS``). A mutant that outlives
``--timeout-s`` is killed (it hung or crawled); one whose module no longer imports is
counted apart (incompetent) and left out of the score, as Cosmic Ray does.

Prints the score over the whole sample and over the protocol paths (prepare/commit, view
change, repair, recovery: the section of the module a mutant's line lies in), then every
surviving mutant by path and function with its diff line, and writes everything to
``--out`` (JSON) for docs/mutation.md. Bounded: N mutants x the per-mutant timeout.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MODULES = ("vr/replica.py", "vr/journal.py", "vr/state_machine.py")
KILLER_TESTS = (
    "tests/vr/test_state_machine.py",
    "tests/vr/test_state_machine_model.py",
    "tests/vr/test_recovery_cases.py",
    "tests/vr/test_journal.py",
    "tests/vr/test_snapshot.py",
    "tests/vr/test_superblock.py",
    "tests/vr/test_replica_view_change.py",
    "tests/vr/test_replica_scenarios.py",
    "tests/vr/test_replica_fuzz.py",
    "tests/vr/test_sim_paths.py",
    "tests/vr/test_mutation_kills.py",
    "tests/vr/test_mutation_kills_direct.py",
    # The simulator's regression seeds (seconds each; not the 200-seed sweeps of the same file).
    "tests/vr/test_sim.py::test_regression_seeds",
    "tests/vr/test_sim.py::test_regression_intact_prepare_in_a_faulty_slot_is_served",
    "tests/vr/test_sim.py::test_regression_committed_op_only_in_a_checkpoint_is_reached_by_state_sync",
    "tests/vr/test_sim.py::test_regression_new_primary_counts_the_intact_prepare_it_holds_without_a_header",
    "tests/vr/test_sim.py::test_regression_repair_from_an_intact_local_prepare_rewrites_only_its_header",
    "tests/vr/test_sim.py::test_regression_seeds_misdirected_writes",
)
COPIED = (
    "vr",
    "checkers",
    "tests/__init__.py",
    "tests/vr",
    "tests/conftest.py",
    "pyproject.toml",
    "bench/mutation.py",
)
PROTOCOL_PATHS = ("prepare/commit", "view change", "repair", "recovery")

# replica.py is laid out in sections under "    # Title" comments; journal.py by function.
REPLICA_SECTIONS = {
    "Opening from disk": "recovery",
    "Inputs": "other",
    "Status for the harness": "other",
    "Helpers": "other",
    "Requests": "requests",
    "Prepares and acks": "prepare/commit",
    "Commit and execution": "prepare/commit",
    "Timeouts": "view change",
    "View change": "view change",
    "Repair and state transfer": "repair",
    "Invariants": "other",
}
JOURNAL_PREPARE = {
    "write_prepare",
    "set_header_as_dirty",
    "flush",
    "_flush_group",
    "_flush_reserved",
    "_write_header_sectors",
    "remove_entries_from",
    "set_op_checkpoint",
}
JOURNAL_REPAIR = {
    "read_prepare",
    "_read_fault",
    "_read_slot_message",
    "_invalid_reason",
    "_read_body",
    "has_prepare",
    "holds_intact",
    "is_dirty",
    "is_faulty",
    "faulty_ops",
    "faulty_slots",
    "header_for_op",
    "headers",
}


# Survivors read as equivalent (no behaviour of the correct replica can differ), each with its
# reason in docs/mutation.md: (module, function, line before, line after), lines stripped.
EQUIVALENT = {
    (
        "vr/journal.py",
        "<module>",
        "assert len(_CASES_BY_LABEL) == len(RECOVERY_CASES)",
        "assert len(_CASES_BY_LABEL) >= len(RECOVERY_CASES)",
    ),
    (
        "vr/journal.py",
        "__init__",
        "self._headers: list[Header | None] = [None] * n  # belief: the prepare header each slot holds",
        "self._headers: list[Header ** None] = [None] * n  # belief: the prepare header each slot holds",
    ),
    (
        "vr/replica.py",
        "_on_repair",
        "and self.journal.header_for_op(header.op) is not None",
        "and self.journal.header_for_op(header.op) is None",
    ),
    (
        "vr/replica.py",
        "_on_durable",
        "if h is not None and h.checksum == entry.header.checksum:",
        "if h is not None and h.checksum <= entry.header.checksum:",
    ),
    (
        "vr/replica.py",
        "_send_prepare_oks",
        "if self.status_name != Status.NORMAL or self._is_primary() or self.log_view != self.view:",
        "if self.status_name != Status.NORMAL or self._is_primary() or self.log_view > self.view:",
    ),
    (
        "vr/replica.py",
        "_transition_to_view_change",
        "assert view > self.view or (restarted and view == self.view), (view, self.view)",
        "assert view > self.view or (restarted or view == self.view), (view, self.view)",
    ),
    (
        "vr/replica.py",
        "_dvc_range",
        "low = max(low, self.op - self.options.pipeline_max - 1, self.commit_min - 1, 0)",
        "low = max(low, self.op - self.options.pipeline_max - 1, self.commit_min >> 1, 0)",
    ),
    (
        "vr/journal.py",
        "_recover_prepare",
        "def _recover_prepare(self, slot: int) -> Header | None:",
        "def _recover_prepare(self, slot: int) -> Header & None:",
    ),
    (
        "vr/replica.py",
        "_suffix_headers",
        "low = max(min(self.commit_max, self.op), self.op - self.options.pipeline_max - 1, 0)",
        "low = max(min(self.commit_max, self.op), self.op - self.options.pipeline_max / 1, 0)",
    ),
    (
        "vr/replica.py",
        "_ignore_prepare_ok",
        "def _ignore_prepare_ok(self, message: Message) -> str | None:",
        "def _ignore_prepare_ok(self, message: Message) -> str * None:",
    ),
    (
        "vr/replica.py",
        "_on_request_start_view_timeout",
        "if self.status_name == Status.RECOVERING_HEAD:",
        "if self.status_name is Status.RECOVERING_HEAD:",
    ),
    (
        "vr/replica.py",
        "_open",
        "for candidate in range(max(self.commit_min, self.op - self.options.pipeline_max * 2), self.op + 1):",
        "for candidate in range(max(self.commit_min, self.op - self.options.pipeline_max * 1), self.op + 1):",
    ),
    (
        "vr/replica.py",
        "_repair",
        "self._send_request_headers(self.commit_min + 1, op)",
        "self._send_request_headers(self.commit_min * 1, op)",
    ),
    (
        "vr/replica.py",
        "_on_do_view_change",
        "if header.view == self.view and self.status_name == Status.NORMAL:",
        "if header.view <= self.view and self.status_name == Status.NORMAL:",
    ),
    (
        "vr/replica.py",
        "_execute",
        "if built is not None and built[0] == header.checksum:",
        "if built is not None and built[ 1] == header.checksum:",
    ),
    (
        "vr/journal.py",
        "write_prepare",
        "assert header.command == Command.PREPARE, header.short()",
        "assert header.command is Command.PREPARE, header.short()",
    ),
}


def is_equivalent(mutant: Mutant) -> bool:
    removed, _, added = mutant.diff.partition(" | +")
    return (mutant.module, mutant.function, removed[1:].strip(), added.strip()) in EQUIVALENT


@dataclass(slots=True)
class Mutant:
    module: str
    operator: str
    occurrence: int
    line: int
    function: str
    path: str
    diff: str = ""
    outcome: str = ""  # killed | survived | incompetent
    killed_by: str = ""
    seconds: float = 0.0


def _replica_sections(source: str) -> list[tuple[int, str]]:
    starts = []
    for number, line in enumerate(source.splitlines(), start=1):
        if line.startswith("    # ") and line[6:].strip() in REPLICA_SECTIONS:
            starts.append((number, REPLICA_SECTIONS[line[6:].strip()]))
    return starts


def _path_of(module: str, line: int, function: str, sections: list[tuple[int, str]]) -> str:
    if module.endswith("state_machine.py"):
        return "state machine"
    if module.endswith("journal.py"):
        if function in JOURNAL_PREPARE:
            return "prepare/commit"
        if function in JOURNAL_REPAIR:
            return "repair"
        return "recovery"  # recover() and the slot classification it runs
    path = "other"
    for start, name in sections:
        if start <= line:
            path = name
    if function in ("choose_new_view_log",):
        return "view change"
    return path


def read_originals(root: Path = ROOT) -> dict[str, str]:
    return {module: (root / module).read_text(encoding="utf-8") for module in MODULES}


def list_mutants(originals: dict[str, str]) -> list[Mutant]:
    """Every (module, operator, occurrence) Cosmic Ray would run, with its line and function."""
    import cosmic_ray.plugins
    from cosmic_ray.ast import ast_nodes, get_ast
    from cosmic_ray.ast.ast_query import ASTQuery

    mutants: list[Mutant] = []
    for module in MODULES:
        sections = _replica_sections(originals[module])
        tree = get_ast(originals[module])
        nodes = list(ast_nodes(tree))
        for name in sorted(cosmic_ray.plugins.operator_names()):
            operator_class = cosmic_ray.plugins.get_operator(name)
            if operator_class.arguments():
                continue  # parameterized operators need a configuration; the defaults cover the rest
            operator = operator_class()
            occurrence = 0
            for node in nodes:
                for start, _end in operator.mutation_positions(node):
                    function = ASTQuery(node).get_definition_name() or "<module>"
                    function = function.rsplit(".", 1)[-1]
                    mutants.append(
                        Mutant(
                            module,
                            name,
                            occurrence,
                            start[0],
                            function,
                            _path_of(module, start[0], function, sections),
                        )
                    )
                    occurrence += 1
    return mutants


def _mutated_source(mutant: Mutant, originals: dict[str, str]) -> tuple[str, str | None]:
    """The mutant applied to the module as it was when the run began (the checkout may move on)."""
    import cosmic_ray.plugins
    from cosmic_ray.mutating import mutate_code

    original = originals[mutant.module]
    operator = cosmic_ray.plugins.get_operator(mutant.operator)()
    return original, mutate_code(original, operator, mutant.occurrence)


def _diff_line(original: str, mutated: str) -> str:
    import difflib

    changed = [
        line
        for line in difflib.unified_diff(original.splitlines(), mutated.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    return " | ".join(line.strip() for line in changed[:4])


def find_mutant(
    module: str, function: str, before: str, after: str, *, nth: int | None = None, near_line: int = 0
) -> tuple[Mutant, str]:
    """The one mutant of ``function`` in ``module`` that turns line ``before`` into ``after``; and its source.

    Lines compare stripped. Named by what it changes rather than by (operator, occurrence), so
    a test that pins a mutant down keeps finding it while the rest of the module moves. When
    the same line occurs more than once in the function, ``nth`` picks one (0: the first in
    the file), else ``near_line`` the one nearest that line (an earlier run's record).
    """
    import difflib

    originals = read_originals()
    lines = originals[module].splitlines()
    found: list[tuple[Mutant, str]] = []
    for mutant in list_mutants({module: originals[module]} | {m: "" for m in MODULES if m != module}):
        if mutant.module != module or mutant.function != function:
            continue
        if lines[mutant.line - 1].strip() != before.strip():
            continue  # its node starts on another line (applying every mutant would take minutes)
        try:
            original, mutated = _mutated_source(mutant, originals)
        except Exception:  # an operator that cannot apply here (ExceptionReplacer on some handlers)
            continue
        if mutated is None:
            continue
        diff = list(difflib.unified_diff(original.splitlines(), mutated.splitlines(), lineterm="", n=0))
        removed = [line[1:].strip() for line in diff if line[:1] == "-" and not line.startswith("---")]
        added = [line[1:].strip() for line in diff if line[:1] == "+" and not line.startswith("+++")]
        if removed == [before.strip()] and added == [after.strip()]:
            found.append((mutant, mutated))
    found.sort(key=lambda pair: pair[0].line)
    if len(found) > 1 and nth is not None and 0 <= nth < len(found):
        return found[nth]
    if len(found) > 1 and near_line:
        return min(found, key=lambda pair: abs(pair[0].line - near_line))
    if len(found) != 1:
        raise LookupError(f"{len(found)} mutants of {module} {function} turn {before!r} into {after!r}")
    return found[0]


def run_tests_on_mutant(
    module: str,
    function: str,
    before: str,
    after: str,
    tests: list[str],
    *,
    nth: int | None = None,
    timeout_s: float = 900.0,
) -> subprocess.CompletedProcess[str]:
    """Run pytest ``tests`` in a private copy of the tree with that one mutant applied (a kill's control)."""
    _, mutated = find_mutant(module, function, before, after, nth=nth)
    copy = _make_copy()
    try:
        (copy / module).write_text(mutated, encoding="utf-8")
        env = {**os.environ, "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1"}
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-x",
                "-q",
                "-p",
                "no:cacheprovider",
                "-p",
                "no:randomly",
                *tests,
            ],
            cwd=copy,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    finally:
        shutil.rmtree(copy, ignore_errors=True)


def _make_copy() -> Path:
    copy = Path(tempfile.mkdtemp(prefix="ratchet-mutation-"))
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.exists():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    return copy


def _run_killer(copy: Path, timeout_s: float, sim_seeds: int, stress_seeds: int) -> tuple[str, str]:
    env = {**os.environ, "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1"}
    command = [
        sys.executable,
        str(copy / "bench/mutation.py"),
        "--killer",
        "--sim-seeds",
        str(sim_seeds),
        "--stress-seeds",
        str(stress_seeds),
    ]
    try:
        done = subprocess.run(
            command, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired:
        return "killed", "timeout"
    lines = done.stdout.strip().splitlines()
    verdict = lines[-1] if lines else ""
    if done.returncode == 0:
        return "survived", ""
    if done.returncode == 4:
        return "incompetent", verdict
    return "killed", verdict or f"exit {done.returncode}"


def killer(sim_seeds: int, stress_seeds: int) -> int:
    """Run inside a copy: exit 0 if everything passes, 1 when something failed, 4 if vr does not import."""
    try:
        import vr.journal
        import vr.replica
        import vr.state_machine
        from vr.testing.sim import run_seed
    except Exception as error:  # any failure to import makes the mutant incompetent
        print(f"import: {type(error).__name__}: {error}")
        return 4
    here = Path.cwd().resolve()
    assert Path(vr.replica.__file__).resolve().is_relative_to(here), vr.replica.__file__
    for seed in range(1, sim_seeds + 1):
        try:
            result = run_seed(seed)
        except Exception as error:  # the mutant made the simulation itself raise
            print(f"sim seed {seed}: raised {type(error).__name__}")
            return 1
        if not result.ok:
            print(f"sim seed {seed}: {result.outcome}: {result.detail[:120]}")
            return 1
    for seed in range(5000, 5000 + stress_seeds):
        try:
            result = run_seed(
                seed,
                power_cut_probability=0.03,
                corrupt_probability=0.01,
                misdirect_probability=0.01,
                superblock_corrupt_probability=0.01,
            )
        except Exception as error:  # the mutant made the simulation itself raise
            print(f"stress seed {seed}: raised {type(error).__name__}")
            return 1
        if not result.ok:
            print(f"stress seed {seed}: {result.outcome}: {result.detail[:120]}")
            return 1
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *KILLER_TESTS],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        failed = [line for line in done.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
        print(f"tests: {failed[0][:160] if failed else 'exit ' + str(done.returncode)}")
        return 1
    return 0


def run_sample(args: argparse.Namespace) -> dict[str, Any]:
    copies = [_make_copy() for _ in range(args.jobs)]
    originals = read_originals(copies[0])  # every mutant and every copy start from these sources
    everything = list_mutants(originals)
    pool = [m for m in everything if m.path in PROTOCOL_PATHS] if args.protocol_only else everything
    rng = random.Random(args.seed)
    sample = rng.sample(pool, min(args.sample, len(pool)))
    for copy in copies[1:]:
        for module, text in originals.items():
            (copy / module).write_text(text, encoding="utf-8")
    free = list(copies)
    where = " protocol-path" if args.protocol_only else ""
    print(
        f"mutants: {len(everything)} in {', '.join(MODULES)}; sample {len(sample)}{where} (seed {args.seed})"
    )
    started = time.perf_counter()
    baseline, why = _run_killer(copies[0], args.timeout_s, args.sim_seeds, args.stress_seeds)
    if baseline != "survived":
        raise SystemExit(f"the unmutated tree does not pass the killer ({why}); fix that first")
    print(f"unmutated killer run: {time.perf_counter() - started:.0f} s")

    def one(mutant: Mutant) -> Mutant:
        copy = free.pop()
        try:
            original, mutated = _mutated_source(mutant, originals)
            if mutated is None:
                mutant.outcome, mutant.killed_by = "incompetent", "no mutation applied"
                return mutant
            mutant.diff = _diff_line(original, mutated)
            (copy / mutant.module).write_text(mutated, encoding="utf-8")
            began = time.perf_counter()
            mutant.outcome, mutant.killed_by = _run_killer(
                copy, args.timeout_s, args.sim_seeds, args.stress_seeds
            )
            mutant.seconds = round(time.perf_counter() - began, 1)
            (copy / mutant.module).write_text(original, encoding="utf-8")
            print(
                f"  {mutant.outcome:11} {mutant.path:14} {mutant.module}:{mutant.line} {mutant.function} "
                f"{mutant.operator} ({mutant.seconds:.0f} s) {mutant.killed_by[:80] or mutant.diff[:160]}",
                flush=True,
            )
            return mutant
        finally:
            free.append(copy)

    results: list[Mutant] = []
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for mutant in pool.map(one, sample):
            results.append(mutant)
            if args.out:  # so far, so a run stopped early still leaves its figures
                _write(args.out, results, len(everything), time.perf_counter() - started, args)
    for copy in copies:
        shutil.rmtree(copy, ignore_errors=True)
    return report(results, len(everything), time.perf_counter() - started, args)


def rerun_survivors(args: argparse.Namespace) -> dict[str, Any]:
    """Judge an earlier run's survivors again with today's killer; its killed mutants stay killed.

    A bigger killer can only kill more, so this gives the "after" score of a sample without
    running its killed mutants again. Survivors are found again by their one-line diff (their
    occurrence numbers move when vr/ changes); one that no longer applies is reported and kept.
    """
    before = json.loads(Path(args.rerun).read_text(encoding="utf-8"))
    results = [Mutant(**m) for m in before["mutants"]]
    print(
        f"before: {before['protocol_score']['killed']}/{before['protocol_score']['judged']} protocol-path killed"
    )
    _report_paths(results)
    copy = _make_copy()
    started = time.perf_counter()
    try:
        for mutant in results:
            if mutant.outcome != "survived" or is_equivalent(mutant):
                continue  # an equivalent mutant survives any killer
            removed, _, added = mutant.diff.partition(" | +")
            try:
                _, mutated = find_mutant(
                    mutant.module, mutant.function, removed[1:], added, near_line=mutant.line
                )
            except LookupError as error:
                print(f"  not found again, kept as survived: {mutant.module}:{mutant.line} ({error})")
                continue
            original = (copy / mutant.module).read_text(encoding="utf-8")
            (copy / mutant.module).write_text(mutated, encoding="utf-8")
            began = time.perf_counter()
            outcome, killed_by = _run_killer(copy, args.timeout_s, args.sim_seeds, args.stress_seeds)
            (copy / mutant.module).write_text(original, encoding="utf-8")
            mutant.outcome, mutant.killed_by = outcome, killed_by
            mutant.seconds = round(time.perf_counter() - began, 1)
            print(
                f"  {outcome:11} {mutant.path:14} {mutant.module}:{mutant.line} {mutant.function} "
                f"({mutant.seconds:.0f} s) {killed_by[:80] or mutant.diff[:120]}",
                flush=True,
            )
    finally:
        shutil.rmtree(copy, ignore_errors=True)
    print("after:")
    return report(results, before["mutants_total"], time.perf_counter() - started, args)


def _report_paths(results: list[Mutant]) -> None:
    for path in sorted({m.path for m in results}):
        k, j, s = _score([m for m in results if m.path == path])
        print(f"  {path:15} {k}/{j} killed ({s:.0f}%)")


def _score(mutants: list[Mutant]) -> tuple[int, int, float]:
    killed = sum(m.outcome == "killed" for m in mutants)
    judged = sum(m.outcome in ("killed", "survived") for m in mutants)
    return killed, judged, (100.0 * killed / judged) if judged else 0.0


def report(results: list[Mutant], total: int, wall_s: float, args: argparse.Namespace) -> dict[str, Any]:
    killed, judged, score = _score(results)
    protocol = [m for m in results if m.path in PROTOCOL_PATHS]
    p_killed, p_judged, p_score = _score(protocol)
    print(f"\nwall time: {wall_s:.0f} s for {len(results)} mutants ({args.jobs} at a time)")
    print(
        f"mutation score: {killed}/{judged} = {score:.1f}% (incompetent, left out: {len(results) - judged})"
    )
    print(f"protocol paths: {p_killed}/{p_judged} = {p_score:.1f}%")
    equivalent = [m for m in protocol if m.outcome == "survived" and is_equivalent(m)]
    e_judged = p_judged - len(equivalent)
    print(
        f"protocol paths, non-equivalent: {p_killed}/{e_judged} = "
        f"{100.0 * p_killed / e_judged if e_judged else 0.0:.1f}% ({len(equivalent)} survivors equivalent)"
    )
    by_path: dict[str, list[Mutant]] = defaultdict(list)
    for mutant in results:
        by_path[mutant.path].append(mutant)
    for path, group in sorted(by_path.items()):
        k, j, s = _score(group)
        print(f"  {path:15} {k}/{j} killed ({s:.0f}%)")
    kills = Counter(m.killed_by.split(":")[0].split(" seed")[0] for m in results if m.outcome == "killed")
    print("killed by: " + ", ".join(f"{name} {count}" for name, count in kills.most_common()))
    survivors = sorted(
        (m for m in results if m.outcome == "survived"), key=lambda m: (m.path, m.module, m.function, m.line)
    )
    print(f"\nsurviving mutants ({len(survivors)}), by path and function:")
    for mutant in survivors:
        mark = " (equivalent)" if is_equivalent(mutant) else ""
        print(f"  [{mutant.path}] {mutant.module}:{mutant.line} {mutant.function} {mutant.operator}{mark}")
        print(f"      {mutant.diff}")
    out = _write(args.out, results, total, wall_s, args) if args.out else {}
    return out


def _write(
    path: str, results: list[Mutant], total: int, wall_s: float, args: argparse.Namespace
) -> dict[str, Any]:
    killed, judged, score = _score(results)
    p_killed, p_judged, p_score = _score([m for m in results if m.path in PROTOCOL_PATHS])
    out = {
        "mutants_total": total,
        "sample": len(results),
        "seed": args.seed,
        "sim_seeds": args.sim_seeds,
        "stress_seeds": args.stress_seeds,
        "timeout_s": args.timeout_s,
        "score": {"killed": killed, "judged": judged, "percent": round(score, 1)},
        "protocol_score": {"killed": p_killed, "judged": p_judged, "percent": round(p_score, 1)},
        "wall_s": round(wall_s),
        "mutants": [asdict(m) for m in results],
    }
    Path(path).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=40, help="mutants to run, drawn at random from all")
    parser.add_argument("--seed", type=int, default=1, help="seed of the sample")
    parser.add_argument(
        "--timeout-s", type=float, default=600.0, help="per mutant: past this it counts as killed"
    )
    parser.add_argument("--jobs", type=int, default=1, help="mutants run at once (each in its own copy)")
    parser.add_argument("--sim-seeds", type=int, default=60, help="plain simulator seeds in the killer")
    parser.add_argument("--stress-seeds", type=int, default=20, help="storage-stressed seeds in the killer")
    parser.add_argument("--protocol-only", action="store_true", help="sample only protocol-path mutants")
    parser.add_argument(
        "--list", action="store_true", help="count the mutants by path and operator, run none"
    )
    parser.add_argument("--out", default="", help="write the results as JSON here")
    parser.add_argument(
        "--rerun", default="", help="judge the survivors of this earlier --out JSON again with today's killer"
    )
    parser.add_argument(
        "--report",
        default="",
        help="print the score of an earlier --out JSON again (today's EQUIVALENT list)",
    )
    parser.add_argument("--killer", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.killer:
        return killer(args.sim_seeds, args.stress_seeds)
    if args.list:
        everything = list_mutants(read_originals())
        print(f"mutants: {len(everything)}")
        for (module, path), count in sorted(Counter((m.module, m.path) for m in everything).items()):
            print(f"  {module:22} {path:15} {count}")
        for name, count in Counter(m.operator for m in everything).most_common():
            print(f"  {name:50} {count}")
        return 0
    if args.rerun:
        rerun_survivors(args)
        return 0
    if args.report:
        saved = json.loads(Path(args.report).read_text(encoding="utf-8"))
        args.jobs, args.out = 1, ""
        report([Mutant(**m) for m in saved["mutants"]], saved["mutants_total"], saved["wall_s"], args)
        return 0
    run_sample(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
