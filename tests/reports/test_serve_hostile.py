"""``ratchet serve`` under hostile requests, over real HTTP on 127.0.0.1.

The store is served without authentication, so two things must hold: a request that names
another host (DNS rebinding: a page on evil.example whose name now points at 127.0.0.1)
gets 421 and none of the store; and a path no file can have (a NUL byte, bytes that are not
UTF-8, a name too long for the filesystem) gets 400 or 404, never a dropped connection with
a traceback in the server's log.
"""

from __future__ import annotations

import http.client
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from reports.serve import make_server

SECRET = b"the store's contents"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[int]:
    run = tmp_path / "pm" / "20261122T030000"
    run.mkdir(parents=True)
    (run / "history.jsonl").write_bytes(SECRET + b"\n")
    httpd = make_server(tmp_path, port=0)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield int(httpd.server_address[1])
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
    assert not thread.is_alive()


def fetch(port: int, path: str, *, host: str | None = None, method: str = "GET") -> tuple[int, bytes]:
    """One request; ``host`` replaces the Host header http.client would send."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.putrequest(method, path, skip_host=host is not None, skip_accept_encoding=True)
        if host is not None:
            connection.putheader("Host", host)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


BAD_PATHS = [
    "/%00",
    "/pm%00/",
    "/pm/20261122T030000/history.jsonl%00.html",
    "/zip/%00",
    "/zip/pm/20261122T030000%00",
    "/%ff",
    "/%ed%a0%80",  # an encoded UTF-16 surrogate
    "/pm/%ed%a0%80/",
    "/zip/%ff",
    "/zip/%ed%a0%80",
    "/zip/%E2%82%AC",  # a name outside Latin-1 quoted back in the refusal
    "/zip/" + "a" * 5000,
    "/" + "a" * 5000,
    "/pm/" + "b" * 300 + "/x",
]


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_paths_no_file_can_have_are_answered_not_dropped(
    served: int, method: str, capfd: pytest.CaptureFixture[str]
) -> None:
    for path in BAD_PATHS:
        status, body = fetch(served, path, method=method)
        assert status in (400, 404), (path, status)
        assert SECRET not in body
    status, body = fetch(served, "/pm/20261122T030000/history.jsonl", method=method)
    assert status == 200  # the server still answers
    assert body == (SECRET + b"\n" if method == "GET" else b"")
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Exception occurred" not in err, err


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "evil.example:{port}",
        "127.0.0.1.evil.example:{port}",
        "localhost:1",
        "127.0.0.1:{other}",
    ],
)
def test_a_request_naming_another_host_gets_421_and_nothing_of_the_store(served: int, host: str) -> None:
    named = host.format(port=served, other=served + 1 if served < 65535 else served - 1)
    for path in ["/", "/pm/20261122T030000/history.jsonl", "/zip/pm/20261122T030000"]:
        status, body = fetch(served, path, host=named)
        assert status == 421, (named, path, status)
        assert SECRET not in body and b"20261122T030000" not in body


def test_requests_naming_this_server_are_served(served: int) -> None:
    for host in [f"127.0.0.1:{served}", f"localhost:{served}", f"LOCALHOST:{served}", None]:
        status, body = fetch(served, "/pm/20261122T030000/history.jsonl", host=host)
        assert (status, body) == (200, SECRET + b"\n"), host
    # HTTP/1.0 without a Host header is no browser's request (rebinding needs one): served.
    with socket.create_connection(("127.0.0.1", served), timeout=10) as raw:
        raw.sendall(b"GET /pm/20261122T030000/history.jsonl HTTP/1.0\r\n\r\n")
        answer = b""
        while chunk := raw.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.0 200") and answer.endswith(SECRET + b"\n")
