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
import pkgutil
import sys
from collections.abc import Sequence
from types import ModuleType

from rich.console import Console
from rich.text import Text

import harness.commands
from harness.errors import EXIT_BAD_INPUT, BadInput


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


def main(argv: Sequence[str] | None = None) -> int:
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


if __name__ == "__main__":
    sys.exit(main())
