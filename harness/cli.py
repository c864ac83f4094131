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
import importlib.metadata
import os
import pkgutil
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any, TextIO

from rich.console import Console
from rich.text import Text

import harness.commands
from harness.errors import EXIT_BAD_INPUT, EXIT_UNKNOWN, BadInput


def _command_modules() -> list[ModuleType]:
    """Every module in harness.commands, in their declared ORDER."""
    modules = [
        importlib.import_module(f"harness.commands.{info.name}")
        for info in pkgutil.iter_modules(harness.commands.__path__)
        if not info.name.startswith("_")
    ]
    return sorted(modules, key=lambda module: (getattr(module, "ORDER", 100), module.__name__))


class _Parser(argparse.ArgumentParser):
    """argparse that raises BadInput (exit 3, one paragraph) instead of exiting 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise BadInput(f"{message}. Run `{self.prog} --help` for the accepted flags.")


def version() -> str:
    """The installed distribution's version (pyproject.toml is its one source)."""
    try:
        return importlib.metadata.version("ratchet")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed: run `pip install -e .` in the checkout)"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ratchet", description="Jepsen-style fault injection for a VR cluster.")
    parser.add_argument("--version", action="version", version=f"ratchet {version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in _command_modules():
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
    err = Console(stderr=True)
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help and --version print, then end the command successfully
            return 0 if exc.code is None else int(exc.code)
        if getattr(args, "handler", None) is None:
            parser.print_help(sys.stderr)
            return EXIT_BAD_INPUT
        return int(args.handler(args))
    except BadInput as exc:
        err.print(Text("error: ", style="bold red") + Text(exc.paragraph()), soft_wrap=True)
        return EXIT_BAD_INPUT
    except Exception as exc:  # a bug in Ratchet: never let Python's exit 1 read as "anomaly"
        where = _crash_log(argv)
        err.print(
            Text("internal error: ", style="bold red")
            + Text(
                f"{type(exc).__name__}: {exc}. This is a bug in Ratchet, not a verdict on the system "
                f"under test (exit 2, unknown); {where}."
            ),
            soft_wrap=True,
        )
        return EXIT_UNKNOWN


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
