"""``ratchet serve [STORE] [--port N]``: browse the store's reports, logs and histories on 127.0.0.1."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from core.errors import BadInput

ORDER = 70
PORT_DEFAULT = 8088


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve the store's reports on 127.0.0.1 (directory browsing, runs as zips)",
        description="Serve STORE (default ./store) on 127.0.0.1 only: the index, every run's report, "
        "logs and history, directory browsing, and /zip/<scenario>/<timestamp> to download a run. "
        "Ctrl-C stops it.",
    )
    parser.add_argument("store", nargs="?", default="store", help="the store directory (default: ./store)")
    parser.add_argument(
        "--port",
        type=int,
        default=PORT_DEFAULT,
        help=f"port on 127.0.0.1 (default {PORT_DEFAULT}; 0 picks a free one)",
    )
    parser.set_defaults(handler=serve)


def serve(args: argparse.Namespace) -> int:
    from reports.serve import make_server

    store = Path(args.store)
    if not store.is_dir():
        raise BadInput(
            f"the store {str(store)!r} is not a directory. Pass the directory `ratchet run` stores runs in "
            "(default ./store), e.g. `ratchet serve store`.",
            where="STORE",
        )
    if not 0 <= args.port <= 65535:
        raise BadInput(
            f"--port {args.port} is not a TCP port; give 0..65535 (0 picks a free port).", where="--port"
        )
    try:
        server = make_server(store, port=args.port)
    except OSError as exc:
        raise BadInput(
            f"cannot listen on 127.0.0.1:{args.port}: {exc.strerror}. Pick another with --port, or --port 0 for any free one.",
            where="--port",
        ) from None
    port = server.server_address[1]
    print(
        f"serving {store.resolve()} at http://127.0.0.1:{port}/ (Ctrl-C to stop)", file=sys.stderr, flush=True
    )
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)  # Ctrl-C is how a server is meant to stop
    finally:
        server.server_close()
    return 0
