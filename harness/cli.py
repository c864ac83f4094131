"""The ``ratchet`` command: parse, dispatch to a subcommand, map failures to exit codes.

Each subcommand lives in its own module under ``harness.commands`` and exposes
``register(subparsers) -> None`` and an integer ``ORDER`` (its place in
``ratchet --help``); the parser it adds sets ``handler`` (a callable taking the
parsed args and returning an exit code). Modules are discovered, so adding a
command touches no shared file. Only this module and the command modules print;
libraries log.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

import harness.commands
from core.errors import EXIT_BAD_INPUT, EXIT_UNKNOWN, BadInput

# typing is imported by type checkers only: at run time it is a tenth of `ratchet check`'s start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import ModuleType
    from typing import Any, TextIO


def _command_names() -> list[str]:
    """The name of every command: each module in harness.commands is one, named as the module."""
    import pkgutil

    return [
        info.name for info in pkgutil.iter_modules(harness.commands.__path__) if not info.name.startswith("_")
    ]


def _command_modules(only: str | None = None) -> list[ModuleType]:
    """The modules of harness.commands (just ``only`` when given), in their declared ORDER."""
    names = [only] if only is not None else _command_names()
    modules = [importlib.import_module(f"harness.commands.{name}") for name in names]
    return sorted(modules, key=lambda module: (getattr(module, "ORDER", 100), module.__name__))


def _named_command(argv: Sequence[str]) -> str | None:
    """The command the arguments name first, when it is one; None for --help, --version or a typo.

    Importing only that command's module keeps start-up short (``ratchet check``
    is run once per history file); the other paths need every command, to list
    them or to suggest the nearest name.
    """
    name = argv[0] if argv else ""
    if not name.isidentifier() or name.startswith("_"):
        return None
    module = f"harness.commands.{name}"
    try:  # (importlib.util.find_spec would cost more to import than the command's module)
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            return None
        raise
    return name


def _columns() -> int:
    """The terminal's width as shutil.get_terminal_size finds it (COLUMNS, then stdout's terminal, then 80)."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class _Formatter(argparse.HelpFormatter):
    """argparse's help layout, with the width found without importing shutil.

    argparse builds a formatter for every argument it adds (to validate its
    metavar), and each one imports shutil (with bz2 and lzma) to ask the width:
    a few ms of every ``ratchet check``, which prints no help.
    """

    def __init__(
        self, prog: str, indent_increment: int = 2, max_help_position: int = 24, width: int | None = None
    ) -> None:
        super().__init__(
            prog, indent_increment, max_help_position, _columns() - 2 if width is None else width
        )


class _Parser(argparse.ArgumentParser):
    """argparse that raises BadInput (exit 3, one paragraph) instead of exiting 2."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        raise BadInput(f"{message}. Run `{self.prog} --help` for the accepted flags.")


def version() -> str:
    """The installed distribution's version (pyproject.toml is its one source)."""
    import importlib.metadata  # only when asked: reading the metadata is a large share of start-up

    try:
        return importlib.metadata.version("ratchet")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed: run `pip install -e .` in the checkout)"


class _VersionAction(argparse.Action):
    """``--version``: like argparse's, but the version is looked up only when the flag is given."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(
            option_strings,
            dest,
            default=argparse.SUPPRESS,
            nargs=0,
            help="show program's version number and exit",
        )

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        parser._print_message(f"ratchet {version()}\n", sys.stdout)
        parser.exit()


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or of the command ``only`` alone (the same parser for its arguments)."""
    parser = _Parser(prog="ratchet", description="Jepsen-style fault injection for a VR cluster.")
    parser.add_argument("--version", action=_VersionAction)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in _command_modules(only):
        module.register(subparsers)
    return parser


class _ClosedPipeSafe:
    """A text stream whose reader may leave early (``ratchet ... | head``).

    The first write or flush that meets a closed pipe points the stream's file
    descriptor at /dev/null, so the command finishes its work and exits with its
    own code (a verdict, not 1 for a BrokenPipeError), and the interpreter's
    final flush has nothing to complain about.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.closed_pipe = False

    def _drop_output(self) -> None:
        self.closed_pipe = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError):  # no real descriptor (a test's capture): just stop writing
            pass

    def write(self, text: str) -> int:
        if self.closed_pipe:
            return len(text)
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._drop_output()
            return len(text)

    def flush(self) -> None:
        if self.closed_pipe:
            return
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._drop_output()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _guard_pipes() -> tuple[TextIO, TextIO]:
    """Wrap stdout and stderr (once); returns the originals, restored when the command ends."""
    original = (sys.stdout, sys.stderr)
    if not isinstance(sys.stdout, _ClosedPipeSafe):
        sys.stdout = _ClosedPipeSafe(sys.stdout)  # type: ignore[assignment]
    if not isinstance(sys.stderr, _ClosedPipeSafe):
        sys.stderr = _ClosedPipeSafe(sys.stderr)  # type: ignore[assignment]
    return original


def main(argv: Sequence[str] | None = None) -> int:
    original = _guard_pipes()
    try:
        return _main(argv)
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        sys.stdout, sys.stderr = original


def _main(argv: Sequence[str] | None) -> int:
    try:
        parser = build_parser(_named_command(sys.argv[1:] if argv is None else argv))
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help and --version print, then end the command successfully
            return 0 if exc.code is None else int(exc.code)
        if getattr(args, "handler", None) is None:
            parser.print_help(sys.stderr)
            return EXIT_BAD_INPUT
        return int(args.handler(args))
    except BadInput as exc:
        _print_error("error: ", exc.paragraph())
        return EXIT_BAD_INPUT
    except Exception as exc:  # a bug in Ratchet: never let Python's exit 1 read as "anomaly"
        where = _crash_log(argv)
        _print_error(
            "internal error: ",
            f"{type(exc).__name__}: {exc}. This is a bug in Ratchet, not a verdict on the system "
            f"under test (exit 2, unknown); {where}.",
        )
        return EXIT_UNKNOWN


def _print_error(lead: str, paragraph: str) -> None:
    """One paragraph on stderr, its lead in bold red on a terminal (rich only here, off the valid path)."""
    from rich.console import Console
    from rich.text import Text

    Console(stderr=True).print(Text(lead, style="bold red") + Text(paragraph), soft_wrap=True)


def _crash_log(argv: Sequence[str] | None) -> str:
    """Write the current exception's traceback to a file; returns where it went, in words."""
    import tempfile
    import traceback

    text = f"ratchet {' '.join(sys.argv[1:] if argv is None else argv)}\n{traceback.format_exc()}"
    try:
        fd, path = tempfile.mkstemp(prefix="ratchet-crash-", suffix=".log")
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
    except OSError:
        sys.stderr.write(text)
        return "the traceback is above"
    return f"the traceback is in {path}"


if __name__ == "__main__":
    sys.exit(main())
