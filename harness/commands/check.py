"""``ratchet check HISTORY``: judge a recorded history and show the evidence.

Reads Ratchet's ``history.jsonl``, Jepsen's EDN or Porcupine's etcd logs,
runs every checker (linearizability per key, stats, perf, availability), prints
the verdict with the evidence a person needs (the key, the first op that cannot
be linearized, the minimal counterexample and why, in words), and optionally
writes ``results.json``. Exit 0 valid, 1 anomaly, 2 unknown (budget), 3 bad
input (one paragraph naming the file and line, no traceback).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from core.errors import BadInput, exit_code_for_validity

TYPE_CHECKING = False  # typing is for type checkers only: importing it slows every `ratchet check`
if TYPE_CHECKING:
    from typing import Any

ORDER = 50
DEFAULT_TIME_LIMIT_S = 300.0
DEFAULT_MEMORY_MB = 2048.0


def register(subparsers: Any) -> None:
    from checkers.compose import LIST_APPEND
    from checkers.history import FORMATS
    from checkers.models import MODEL_NAMES

    parser = subparsers.add_parser(
        "check",
        help="check a history for linearizability (and stats, perf, availability)",
        description=(
            "Check HISTORY against a model, one instance per key. Exit 0 valid, 1 anomaly, "
            "2 unknown (budget ran out), 3 bad input."
        ),
    )
    parser.add_argument(
        "history",
        metavar="HISTORY",
        help="history.jsonl (or a stored run directory holding one), a Jepsen .edn, or a Porcupine etcd .log",
    )
    parser.add_argument(
        "--model",
        default=None,
        choices=(*MODEL_NAMES, LIST_APPEND),
        help="default: the model of the run's test.json for a stored run, cas-register otherwise "
        f"({LIST_APPEND} judges the append workload's histories)",
    )
    parser.add_argument("--format", choices=FORMATS, default=None, help="default: from the extension/content")
    parser.add_argument(
        "--time-limit",
        type=float,
        default=DEFAULT_TIME_LIMIT_S,
        metavar="S",
        help=f"seconds before the verdict is 'unknown' (default {DEFAULT_TIME_LIMIT_S:g})",
    )
    parser.add_argument(
        "--memory-limit",
        type=float,
        default=DEFAULT_MEMORY_MB,
        metavar="MB",
        help=f"memory budget for the search (default {DEFAULT_MEMORY_MB:g})",
    )
    parser.add_argument(
        "--initial",
        default=None,
        metavar="VALUE",
        help="the registers' initial value, as EDN (default: 0 for EDN histories, as Knossos checks them; nil otherwise)",
    )
    parser.add_argument(
        "--nil-reads",
        choices=("empty", "unknown"),
        default=None,
        help="a read returning nil means the key was empty, or matches any state "
        "(default: unknown for EDN histories, as Knossos reads them; empty otherwise)",
    )
    parser.add_argument(
        "--to-edn",
        default=None,
        metavar="PATH",
        help="also write the history as Jepsen EDN (one op map per line) for Knossos/Elle",
    )
    parser.add_argument(
        "--results",
        nargs="?",
        const="",
        default=None,
        metavar="PATH",
        help="write results.json (to PATH, or beside the history when no PATH is given)",
    )
    parser.add_argument(
        "--allow-empty",
        action="store_true",
        help="accept a history with no operations (judged valid) instead of refusing it as bad input",
    )
    parser.set_defaults(handler=run)


def _read(args: argparse.Namespace) -> list[Any]:
    from checkers.history import HistoryFormatError, read_history

    # os.path, not pathlib: ``ratchet check`` runs once per history file, and pathlib's imports
    # are a tenth of its start-up.
    path = args.history
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, "history.jsonl")):
        path = os.path.join(os.path.normpath(path), "history.jsonl")  # a stored run directory
        args.history = path
    args.run_dir = None
    parent = os.path.dirname(path) or "."
    if os.path.basename(path) == "history.jsonl" and os.path.isfile(os.path.join(parent, "test.json")):
        from pathlib import Path

        from harness import verdict  # (it brings the whole checker and the run report: only for a run)

        args.run_dir = Path(parent) if verdict.is_run_dir(Path(parent)) else None
    if not os.path.isfile(path):
        raise BadInput(
            f"history file {str(path)!r} does not exist (or is not a file); give the path to a "
            "history.jsonl, a Jepsen .edn or a Porcupine etcd .log."
        )
    try:
        ops = read_history(path, args.format)
    except HistoryFormatError as exc:
        where = f"{exc.path or path}:{exc.line}" if exc.line is not None else str(exc.path or path)
        raise BadInput(f"{exc.reason}. The history was not checked.", where=where) from None
    except OSError as exc:
        raise BadInput(f"cannot read the history: {exc.strerror}.", where=str(path)) from None
    if not ops and not getattr(args, "allow_empty", False):
        raise BadInput(_no_operations(args.format), where=str(path))
    return ops


def _sentence(text: str) -> str:
    return text if text.endswith((".", "?", "!")) else text + "."


def _check_writable(target: str, flag: str) -> None:
    """Refuse an output path whose directory is missing or is not one, before any work is done."""
    parent = os.path.dirname(target) or "."
    if os.path.isdir(target):
        raise BadInput(f"{flag} {target!r} is a directory; give a file path.", where=flag)
    if not os.path.isdir(parent):
        raise BadInput(
            f"{flag} {target!r}: the directory {parent!r} does not exist (or is not a directory).",
            where=flag,
        )


def _no_operations(format: str | None) -> str:
    """Why a history with no operations at all is refused, and how to read it anyway.

    (One with only nemesis events is a real, if dull, history: Knossos's corpus has one.)
    """
    hint = ""
    if format == "porcupine":
        hint = (
            " A Porcupine etcd log has lines with 'jepsen.util - <process> <type> <f> <value>'; "
            "this file has none, so it is probably another format (leave out --format to detect it)."
        )
    return (
        f"the history holds no operations, so there is nothing to check.{hint} Pass --allow-empty if an empty "
        "history is what you expect."
    )


def _model(args: argparse.Namespace, format: str) -> Any:
    """The model, with the register semantics of the history's source unless overridden."""
    from checkers.compose import LIST_APPEND
    from checkers.models import get_model

    if args.model is None:
        if args.run_dir is not None:
            from harness import verdict

            args.model = verdict.model_of(args.run_dir)
        else:
            args.model = "cas-register"
    if args.model == LIST_APPEND:
        return LIST_APPEND  # judged by checkers.append, no register semantics to choose
    knossos = format == "edn"
    initial: Any = 0 if knossos else None
    if args.initial is not None:
        from checkers.edn import EdnError, loads
        from checkers.readers import plain

        try:
            initial = plain(loads(args.initial))
        except EdnError as exc:
            raise BadInput(
                f"--initial {args.initial!r} is not an EDN value ({exc.reason}); e.g. --initial 0 or --initial nil."
            ) from None
    nil_reads = args.nil_reads or ("unknown" if knossos else "empty")
    return get_model(args.model, initial=initial, nil_reads_unknown=nil_reads == "unknown")


def run(args: argparse.Namespace) -> int:
    from checkers.compose import check_history
    from checkers.history import HistoryFormatError, detect_format
    from checkers.models import UnsupportedOp

    if not args.time_limit > 0:  # also NaN, which compares false with everything
        raise BadInput(f"--time-limit must be positive seconds, got {args.time_limit:g}.")
    if not args.memory_limit > 0:
        raise BadInput(f"--memory-limit must be positive megabytes, got {args.memory_limit:g}.")
    if args.results:
        _check_writable(args.results, "--results")
    if args.to_edn:
        _check_writable(args.to_edn, "--to-edn")
    ops = _read(args)
    model = _model(args, args.format or detect_format(args.history))
    try:
        results = check_history(
            ops, model=model, time_limit_s=args.time_limit, memory_mb=args.memory_limit, progress=_progress
        )
    except UnsupportedOp as exc:
        raise BadInput(_sentence(str(exc)), where=args.history) from None
    except HistoryFormatError as exc:  # pairing problems: a completion with no invocation, ...
        raise BadInput(_sentence(exc.reason), where=args.history) from None
    if args.to_edn:  # after the check, so a history refused as bad input leaves no copy behind
        from checkers.readers import write_edn

        try:
            write_edn(ops, args.to_edn)
        except OSError as exc:
            raise BadInput(f"cannot write the EDN copy: {exc.strerror}.", where=args.to_edn) from None
    if args.run_dir is not None:  # a stored run: merged into what the run recorded (harness.verdict)
        from checkers.compose import combine_validity
        from checkers.convergence import check_run_dir
        from harness import verdict

        convergence = check_run_dir(args.run_dir)  # the replicas compared directly, when the run asked
        if convergence is not None:
            results["checkers"]["convergence"] = convergence
            results["valid"] = combine_validity(c["valid"] for c in results["checkers"].values())

        results = verdict.merge(verdict.recorded(args.run_dir / verdict.RESULTS_NAME), results)
    if args.results is not None:
        target = args.results or os.path.join(os.path.dirname(args.history), "results.json")
        try:
            with open(target, "w", encoding="utf-8") as file:
                file.write(json.dumps(results, indent=2, default=_json_default) + "\n")
        except OSError as exc:
            raise BadInput(f"cannot write results.json: {exc.strerror}.", where=target) from None
    console = _Lines()  # keys and values are data, never markup
    _print(console, args.history, results)
    _print_run_end(console, results)
    return exit_code_for_validity(results["valid"])


def _print_run_end(console: _Lines, results: dict[str, Any]) -> None:
    """For a stored run that did not complete: why its verdict stays unknown whatever the history says."""
    if "completed" not in results:
        return
    from reports.run import unfinished_reason

    reason = unfinished_reason(results)
    if reason is not None:
        console.print(console.styled(f"the run's verdict stays unknown: {reason}", "bold yellow"))


def _json_default(value: Any) -> Any:
    if isinstance(value, frozenset | set):
        return sorted(value, key=repr)
    return repr(value)


def _progress(line: str) -> None:
    """A long search's progress, one line on stderr every few seconds (from a worker process too).

    Given to the checkers directly, not through :mod:`logging`: most checks never
    search long, and a check that has nothing to say should not import it. (A torn
    last line is still a warning through the ``checkers`` logger, which Python
    prints on stderr with no configuration.)
    """
    sys.stderr.write(f"{time.strftime('%H:%M:%S')} searching: {line}\n")
    sys.stderr.flush()


# The styles the verdict uses, as ANSI SGR codes.
_ANSI = {"bold green": "1;32", "bold red": "1;31", "bold yellow": "1;33", "green": "32", "yellow": "33"}
# What rich drops from printed text (bell, backspace, vertical tab, form feed, carriage return).
_CONTROL = str.maketrans("", "", "\x07\x08\x0b\x0c\x0d")


def _colour_wanted() -> bool:
    """Colour on a terminal, as rich decides it: FORCE_COLOR and NO_COLOR win; a dumb TERM has none."""
    if os.environ.get("TERM", "") in ("dumb", "unknown"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    if os.environ.get("NO_COLOR"):
        return False
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


class _Lines:
    """The verdict's lines on stdout, as plain text (styled with ANSI codes on a colour terminal).

    Writing them directly keeps rich, a large import, off the start-up of every
    check; it is imported only to draw a counterexample's table.
    """

    def __init__(self) -> None:
        self.colour = _colour_wanted()

    def styled(self, text: str, style: str) -> str:
        text = text.translate(_CONTROL)
        return f"\x1b[{_ANSI[style]}m{text}\x1b[0m" if self.colour else text

    def print(self, text: str) -> None:
        sys.stdout.write(text.translate(_CONTROL) + "\n")

    def table(self, title: str, columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
        """A table as rich draws it (its default box, a header): written directly when the output
        is not a terminal and the table is plain and fits, else by rich (imported only then)."""
        plain = _plain_table(title, columns, rows)
        if plain is not None:
            sys.stdout.write(plain)
            return
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title)
        for column in columns:
            table.add_column(column)
        for row in rows:
            table.add_row(*row)
        sys.stdout.flush()
        Console(markup=False, soft_wrap=True).print(table)


def _rich_terminal() -> bool:
    """Whether rich would treat stdout as a terminal (styles, and its own layout rules)."""
    compatible = os.environ.get("TTY_COMPATIBLE", "")
    if compatible in ("0", "1"):
        return compatible == "1"
    force = os.environ.get("FORCE_COLOR")
    if force is not None:
        return force != ""
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def _rich_width() -> int:
    """The width rich gives a console: COLUMNS, else the first standard stream's terminal, else 80."""
    columns = os.environ.get("COLUMNS")
    if columns is not None and columns.isdigit():
        return int(columns)
    for fd in (0, 1, 2):
        try:
            return os.get_terminal_size(fd).columns or 80
        except (AttributeError, ValueError, OSError):
            continue
    return 80


def _plain_table(title: str, columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> str | None:
    """The text rich prints for ``Table(title=title)`` with these cells, or None when rich must draw it.

    Only the common case: not a terminal (so no styles), printable ASCII with no ``:``
    (rich would read ``:name:`` as an emoji code), and a table no wider than the console
    (so no column is shrunk or wrapped). rich's import is most of a failed check's start-up.
    """
    cells = [title, *columns, *(cell for row in rows for cell in row)]
    if _rich_terminal() or not all(
        cell.isascii() and cell.isprintable() and ":" not in cell for cell in cells
    ):
        return None
    widths = [max(len(cell) for cell in column) for column in zip(columns, *rows, strict=True)]
    if sum(widths) + 3 * len(widths) + 1 > _rich_width() or len(title) > sum(widths) + 3 * len(widths) + 1:
        return None

    def rule(left: str, fill: str, cross: str, right: str) -> str:
        return left + cross.join(fill * (width + 2) for width in widths) + right + "\n"

    def line(edge: str, row: tuple[str, ...]) -> str:
        return (
            edge
            + edge.join(f" {cell.ljust(width)} " for cell, width in zip(row, widths, strict=True))
            + edge
            + "\n"
        )

    return (
        title
        + "\n"
        + rule("┏", "━", "┳", "┓")
        + line("┃", columns)
        + rule("┡", "━", "╇", "┩")
        + "".join(line("│", row) for row in rows)
        + rule("└", "─", "┴", "┘")
    )


def _print(console: _Lines, history: str, results: dict[str, Any]) -> None:
    valid = results["valid"]
    if "linearizable" not in results["checkers"]:
        _print_append(console, history, results)
        return
    lin = results["checkers"]["linearizable"]
    style = {True: "bold green", False: "bold red"}.get(valid, "bold yellow")
    word = {True: "VALID", False: "NOT LINEARIZABLE" if lin["valid"] is False else "ANOMALY"}.get(
        valid, "UNKNOWN"
    )
    console.print(console.styled(word, style) + f"  {history}")
    console.print(
        f"model {lin['model']} (initial {lin['initial']!r}, nil reads {lin['nil_reads']}), {lin['op_count']} operations ({lin['open_ended_op_count']} open-ended) "
        f"over {lin['key_count']} key(s), checked in {lin['seconds']:.3f} s ({', '.join(lin['methods']) or '-'})"
    )
    if valid is False and lin.get("counterexample"):
        _print_failure(console, lin)
    elif valid is False:
        lead = lin.get("first_unlinearizable")
        console.print(
            f"key {lin.get('key')!r}: not linearizable (proven by the unique-values check); the search ran out "
            f"of budget before pinning the op"
            + (f"; it got furthest at history index {lead['complete_index']}" if lead else "")
        )
    elif lin["valid"] not in (True, False):
        _print_unknown(console, lin)
    stats = results["checkers"]["stats"]
    totals = stats["totals"]
    windows = results["checkers"]["availability"]["windows"]
    console.print(
        f"client ops: {totals['ok']} ok, {totals['fail']} fail, {totals['info']} info; "
        f"{len(windows)} fault window(s)"
        + "".join(
            f"; {w['kind']}: {w['ok_fraction'] * 100:.0f}% ok"
            for w in windows[:6]
            if w["ok_fraction"] is not None
        )
    )
    if stats["never_succeeded"]:
        console.print(
            console.styled(f"note: never succeeded: {', '.join(stats['never_succeeded'])}", "yellow")
        )
    _print_convergence(console, results)


def _print_convergence(console: _Lines, results: dict[str, Any]) -> None:
    entry = results["checkers"].get("convergence")
    if isinstance(entry, dict):
        style = {True: "green", False: "bold red"}.get(entry.get("valid"), "yellow")
        console.print(console.styled(f"convergence: {entry.get('summary', '')}", style))


def _print_append(console: _Lines, history: str, results: dict[str, Any]) -> None:
    valid = results["valid"]
    entry = results["checkers"]["append"]
    style = {True: "bold green", False: "bold red"}.get(valid, "bold yellow")
    word = {True: "VALID", False: "ANOMALY"}.get(valid, "UNKNOWN")
    console.print(console.styled(word, style) + f"  {history}")
    console.print(
        f"model list-append, {entry.get('op_count')} operations over {entry.get('key_count')} key(s)"
    )
    first = entry.get("first_anomaly")
    if entry.get("valid") is False and isinstance(first, dict):
        console.print(f"key {entry.get('key')!r}: {first.get('kind')}: {first.get('explanation')}")
        counts = entry.get("anomaly_counts") or {}
        console.print("anomalies: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    _print_convergence(console, results)


def _print_failure(console: _Lines, lin: dict[str, Any]) -> None:
    from checkers.models.base import show

    first = lin["first_unlinearizable"]
    ce = lin["counterexample"]
    where = "" if lin["key"] is None else f"key {lin['key']!r}: "
    console.print(f"{where}first op that cannot be linearized: history index {first['complete_index']}")
    console.print(ce["explanation"])
    rows = [
        (
            str(op["id"]),
            str(op["process"]),
            op["f"],
            show(op["value_in"]),
            show(op["value_out"]) if op["outcome"] == "ok" else "?",
            op["outcome"],
            f"{op['invoke_index']}->{op['complete_index'] if op['complete_index'] is not None else '...'}",
        )
        for op in ce["ops"]
    ]
    console.table(
        "minimal counterexample" + ("" if ce["minimal"] else " (shrinking stopped early)"),
        ("op", "process", "f", "in", "out", "outcome", "history index"),
        rows,
    )
    console.print("orders tried (each ends where it gets stuck):")
    for order in ce["orders"]:
        console.print(f"  - {order['explanation']}")


def _print_unknown(console: _Lines, lin: dict[str, Any]) -> None:
    console.print(console.styled(f"could not decide: {lin.get('reason') or 'budget'}", "yellow"))
    for entry in lin.get("unknown_keys", [])[:5]:
        console.print(
            f"  key {entry['key']!r}: {entry.get('reason')}; linearizable through history event "
            f"{entry.get('linearizable_through_event')} ({entry.get('linearizable_prefix_ops')} of "
            f"{entry['op_count']} ops), {entry.get('steps')} search steps"
        )
