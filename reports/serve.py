"""Serve a store over HTTP on 127.0.0.1: reports, logs, histories, and each run as a zip.

Reports open from disk too; serving adds directory browsing of runs and
``/zip/<scenario>/<timestamp>`` to download a whole run (history, results,
logs, data files) as one archive to attach to a bug. It binds only to the
loopback address, serves only files under the store (symlinks that leave it
are refused), caps concurrent requests and archive size, and stops cleanly on
Ctrl-C.

The store is served without authentication, so loopback alone is not enough: a
web page on another site can point a name it controls at 127.0.0.1 (DNS
rebinding) and read the store through the visitor's browser. Such a request
still names the attacker's host, so a request whose Host header is not this
server's own address (127.0.0.1:PORT or localhost:PORT) is answered 421 and
nothing else. A path that cannot name a file (a NUL byte) is answered 400.
"""

from __future__ import annotations

import html
import io
import logging
import shutil
import sys
import tempfile
import threading
import urllib.parse
import zipfile
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
REQUESTS_CONCURRENT_MAX = 16
REQUEST_TIMEOUT_S = 30
ZIP_SOURCE_BYTES_MAX = 2 * 1024**3  # a run's files, before compression
ZIP_MEMORY_BYTES_MAX = 64 * 1024**2  # spooled to a temporary file beyond this
ZIP_PREFIX = "/zip/"


class ZipRefused(Exception):
    """A zip request that names no run in the store, or a run too large to archive."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


def inside(store: Path, relative: str) -> Path:
    """The path under the store a URL path names; refused if it would leave the store."""
    root = store.resolve()
    try:
        target = (root / relative.lstrip("/")).resolve()
        if target != root and root not in target.parents:
            raise ZipRefused(HTTPStatus.NOT_FOUND, f"{relative!r} is not inside the store")
        if not target.is_dir():
            raise ZipRefused(HTTPStatus.NOT_FOUND, f"no run directory {relative!r} in the store")
    except (OSError, ValueError):  # a name too long for the filesystem, a NUL byte
        raise ZipRefused(HTTPStatus.NOT_FOUND, f"no run directory {relative!r} in the store") from None
    return target


def run_files(run_dir: Path) -> list[Path]:
    """Every regular file of a run, sorted; symlinks are left out (they may point anywhere)."""
    return sorted(p for p in run_dir.rglob("*") if p.is_file() and not p.is_symlink())


def write_zip(run_dir: Path, out: Any, *, source_bytes_max: int = ZIP_SOURCE_BYTES_MAX) -> int:
    """Write a zip of the run to the binary file ``out``; return the number of files archived."""
    files = run_files(run_dir)
    total = sum(p.stat().st_size for p in files)
    if total > source_bytes_max:
        raise ZipRefused(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            f"the run holds {total:,} bytes, over the {source_bytes_max:,}-byte limit for a zip download",
        )
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for path in files:
            archive.write(path, arcname=f"{run_dir.name}/{path.relative_to(run_dir).as_posix()}")
    return len(files)


def allowed_hosts(port: int) -> frozenset[str]:
    """The Host header values that name this server (lower case); the port may be left out
    only where it is HTTP's default."""
    hosts = {f"{HOST}:{port}", f"localhost:{port}"}
    if port == 80:
        hosts |= {HOST, "localhost"}
    return frozenset(hosts)


def path_problem(raw: str) -> str | None:
    """Why a request target's path cannot name a file in the store, or None when it can.

    The file functions take the decoded path to the filesystem: bytes that are not UTF-8, an
    encoded surrogate, or a NUL byte would raise there, mid-request, and drop the connection.
    """
    try:
        path = urllib.parse.unquote(urllib.parse.urlsplit(raw).path, errors="strict")
    except UnicodeDecodeError:
        return "the path is not UTF-8 once its %-escapes are decoded"
    if "\x00" in path:
        return "the path holds a NUL byte"
    return None


class StoreServer(ThreadingHTTPServer):
    """A threading server that knows which Host headers name it."""

    daemon_threads = True
    hosts: frozenset[str] = frozenset()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-answer is one log line; anything else keeps its traceback."""
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError):
            logger.info("client=%s went away: %s", client_address[0], error)
            return
        super().handle_error(request, client_address)


class StoreHandler(SimpleHTTPRequestHandler):
    """Static files from the store, plus ``/zip/<run>`` and a zip link in directory listings."""

    timeout = REQUEST_TIMEOUT_S
    extensions_map = {  # noqa: RUF012 (the base class declares it as a class attribute)
        **SimpleHTTPRequestHandler.extensions_map,
        ".jsonl": "text/plain; charset=utf-8",
        ".log": "text/plain; charset=utf-8",
        ".json": "application/json",
        ".toml": "text/plain; charset=utf-8",
    }

    def __init__(self, *args: Any, directory: str, slots: threading.BoundedSemaphore, **kwargs: Any) -> None:
        self._slots = slots
        super().__init__(*args, directory=directory, **kwargs)

    def log_message(self, format: str, *args: Any) -> None:
        logger.info("client=%s %s", self.address_string(), format % args)

    def parse_request(self) -> bool:
        """Parse as usual, then refuse a Host that is not this server (DNS rebinding) and a path
        holding a NUL byte (no file can be named by it; the file functions would raise)."""
        if not super().parse_request():
            return False
        host = self.headers.get("Host")
        hosts = getattr(self.server, "hosts", frozenset())
        # A request without Host (HTTP/1.0) is no browser's: rebinding needs the browser's Host.
        if host is not None and host.strip().lower() not in hosts:
            self.close_connection = True
            self.send_error(
                HTTPStatus.MISDIRECTED_REQUEST,
                "this server answers only requests addressed to itself",
                f"Host {host[:100]!r} is not {' or '.join(sorted(hosts))}",
            )
            return False
        problem = path_problem(self.path)
        if problem is not None:
            self.close_connection = True
            self.send_error(HTTPStatus.BAD_REQUEST, problem)
            return False
        return True

    def handle_one_request(self) -> None:
        if not self._slots.acquire(timeout=REQUEST_TIMEOUT_S):
            self.close_connection = True
            return
        try:
            super().handle_one_request()
        finally:
            self._slots.release()

    def _outside_store(self) -> bool:
        """Whether the request's path resolves (through symlinks) outside the store; ``latest`` stays inside."""
        root = Path(self.directory).resolve()
        try:
            resolved = Path(self.translate_path(self.path)).resolve()
        except (OSError, ValueError):  # no file can have this name: answered as not found
            return True
        return resolved != root and root not in resolved.parents

    def do_GET(self) -> None:
        if self.path.startswith(ZIP_PREFIX):
            self._send_zip()
        elif self._outside_store():
            self.send_error(HTTPStatus.NOT_FOUND, "not inside the store")
        else:
            super().do_GET()

    def do_HEAD(self) -> None:
        if self.path.startswith(ZIP_PREFIX) or self._outside_store():
            self.send_error(HTTPStatus.NOT_FOUND, "HEAD is served for store files only")
        else:
            super().do_HEAD()

    def _send_zip(self) -> None:
        relative = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path[len(ZIP_PREFIX) :]).rstrip("/")
        try:
            if not relative:
                raise ZipRefused(HTTPStatus.NOT_FOUND, "name a run directory: /zip/<scenario>/<timestamp>")
            run_dir = inside(Path(self.directory), relative)
            with tempfile.SpooledTemporaryFile(max_size=ZIP_MEMORY_BYTES_MAX) as spool:
                write_zip(run_dir, spool)
                size = spool.tell()
                spool.seek(0)
                name = "-".join(Path(relative).parts[-2:]) or "run"
                self.send_response(HTTPStatus.OK)
                self.send_header("Content-Type", "application/zip")
                self.send_header("Content-Length", str(size))
                self.send_header("Content-Disposition", f'attachment; filename="{name}.zip"')
                self.end_headers()
                shutil.copyfileobj(spool, self.wfile)
        except ZipRefused as refused:
            # The reason goes in the page, not the status line: it quotes the path, and a status
            # line must be Latin-1.
            self.send_error(refused.status, None, str(refused))

    def list_directory(self, path: str | Any) -> io.BytesIO | None:
        """A listing of one store directory: its entries, and a link to download it as a zip."""
        directory = Path(path)
        try:
            entries = sorted(directory.iterdir(), key=lambda p: (not p.is_dir(), p.name))
        except OSError:
            self.send_error(HTTPStatus.NOT_FOUND, "cannot list this directory")
            return None
        root = Path(self.directory).resolve()
        relative = directory.resolve().relative_to(root).as_posix()
        title = "store" if relative == "." else relative
        lines = [
            '<!DOCTYPE html><html><head><meta charset="utf-8">',
            f"<title>{html.escape(title)}</title></head><body><h1>{html.escape(title)}</h1>",
        ]
        if relative != ".":
            zip_link = urllib.parse.quote(f"{ZIP_PREFIX}{relative}")
            lines.append(f'<p><a href="{html.escape(zip_link)}">download this directory as a zip</a></p>')
            lines.append('<p><a href="../">parent directory</a></p>')
        lines.append("<ul>")
        for entry in entries:
            name = entry.name + ("/" if entry.is_dir() else "")
            size = "" if entry.is_dir() else f" ({entry.stat().st_size:,} bytes)" if entry.exists() else ""
            href = html.escape(urllib.parse.quote(name))
            lines.append(f'<li><a href="{href}">{html.escape(name)}</a>{html.escape(size)}</li>')
        lines.append("</ul></body></html>")
        encoded = "\n".join(lines).encode("utf-8", "surrogateescape")
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(encoded)))
        self.end_headers()
        return io.BytesIO(encoded)


def make_server(store: Path, *, port: int) -> StoreServer:
    """A server bound to 127.0.0.1 (``port=0`` picks a free port); call ``serve_forever``."""
    slots = threading.BoundedSemaphore(REQUESTS_CONCURRENT_MAX)
    handler = partial(StoreHandler, directory=str(store), slots=slots)
    server = StoreServer((HOST, port), handler)
    server.hosts = allowed_hosts(server.server_address[1])
    return server
