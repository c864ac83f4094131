"""`ratchet report` and `ratchet serve`: bad input is exit 3, a stored run re-renders, the server serves and zips."""

from __future__ import annotations

import io
import json
import threading
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.cli import main
from reports.build import write_run_report
from reports.index import write_index
from reports.serve import make_server
from tests.reports.handmade import partition_history, write_run

TEST = {"scenario": "pm", "seed": 3, "nodes": ["n1"]}


def _store(tmp_path: Path) -> tuple[Path, Path]:
    store = tmp_path / "store"
    run = write_run(
        store / "pm" / "20261122T030000",
        partition_history(),
        results={"valid": False, "checkers": {"linearizable": {"valid": False, "key": "a"}}},
        test=TEST,
        node_logs={"n1": ["line"]},
    )
    (store / "latest").symlink_to(run.relative_to(store))
    return store, run


def test_report_no_check_rerenders_the_latest_run_and_the_index(tmp_path: Path) -> None:
    store, run = _store(tmp_path)
    assert main(["report", str(store), "--no-check"]) == 1  # anomaly: exit 1
    assert (run / "report.html").is_file()
    assert (store / "index.html").is_file()


def test_report_rechecks_with_the_checkers(tmp_path: Path) -> None:
    _store_dir, run = _store(tmp_path)  # results.json claims an anomaly the history does not hold
    (run / "results.json").write_text(
        '{"valid": false, "checkers": {}, "teardown_errors": ["kept"]}', encoding="utf-8"
    )
    assert main(["report", str(run)]) == 0  # the hand-made partition history is linearizable

    results = json.loads((run / "results.json").read_text(encoding="utf-8"))
    assert results["valid"] is True and results["checkers"]["linearizable"]["valid"] is True
    assert results["teardown_errors"] == ["kept"]
    assert 'class="banner valid"' in (run / "report.html").read_text(encoding="utf-8")


def test_report_of_something_that_is_not_a_run_is_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(tmp_path / "nope")]) == 3
    assert main(["report", str(tmp_path)]) == 3
    err = capsys.readouterr().err
    assert "is not a stored run" in err and "Traceback" not in err


def test_serve_refuses_a_missing_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", str(tmp_path / "missing"), "--port", "0"]) == 3
    assert "is not a directory" in capsys.readouterr().err


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    store, run = _store(tmp_path)
    write_run_report(run)
    write_index(store)
    httpd = make_server(store, port=0)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    host, port = httpd.server_address[:2]
    try:
        yield f"http://{host}:{port}", store, run
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
    assert not thread.is_alive()


def _get(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as error:
        return error.code, error.read(), ""


def test_serve_binds_loopback_and_serves_index_reports_and_listings(server: tuple[str, Path, Path]) -> None:
    base, _store_dir, _run = server
    assert base.startswith("http://127.0.0.1:")
    status, body, _ = _get(base + "/")
    assert status == 200 and b"Ratchet runs" in body
    status, body, _ = _get(base + "/pm/20261122T030000/report.html")
    assert status == 200 and b"Anomaly found" in body
    assert b'href="../../zip/pm/20261122T030000"' in body  # shown when served; resolves to /zip/pm/...
    status, body, kind = _get(base + "/pm/20261122T030000/history.jsonl")
    assert status == 200 and kind.startswith("text/plain") and body.count(b"\n") == 19
    status, body, _ = _get(base + "/latest/")
    assert status == 200 and b"download this directory as a zip" in body and b"history.jsonl" in body


def test_serve_downloads_a_run_as_a_zip(server: tuple[str, Path, Path]) -> None:
    base, _store_dir, run = server
    status, body, kind = _get(base + "/zip/pm/20261122T030000")
    assert status == 200 and kind == "application/zip"
    names = set(zipfile.ZipFile(io.BytesIO(body)).namelist())
    assert {
        "20261122T030000/history.jsonl",
        "20261122T030000/report.html",
        "20261122T030000/nodes/n1/node.log",
    } <= names
    assert (
        zipfile.ZipFile(io.BytesIO(body)).read("20261122T030000/history.jsonl")
        == (run / "history.jsonl").read_bytes()
    )


def test_serve_refuses_paths_outside_the_store(server: tuple[str, Path, Path], tmp_path: Path) -> None:
    base, store, _run = server
    (tmp_path / "secret.txt").write_text("secret", encoding="utf-8")
    (store / "escape").symlink_to(tmp_path / "secret.txt")
    assert _get(base + "/zip/..%2F..%2F")[0] == 404
    assert _get(base + "/zip/../secret.txt")[0] == 404
    assert _get(base + "/zip/nope")[0] == 404
    status, body, _ = _get(base + "/escape")
    assert status == 404 and b"secret" not in body
    assert _get(base + "/../secret.txt")[0] == 404


def test_serve_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    store, _run = _store(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "serve", str(store), "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
        # As from a terminal: a suite started in the background (`cmd &`, nohup) hands its children
        # an ignored SIGINT, and Python then never turns Ctrl-C into KeyboardInterrupt.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()  # "serving <store> at http://127.0.0.1:<port>/ (Ctrl-C to stop)"
        assert "http://127.0.0.1:" in line, line
        url = line.split(" at ", 1)[1].split(" ", 1)[0]
        deadline = time.monotonic() + 10
        while True:
            try:
                assert _get(url)[0] == 200
                break
            except urllib.error.URLError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        rest = proc.stderr.read()
        assert "Traceback" not in rest and "stopped" in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=2)


def test_zip_refuses_a_run_over_the_size_limit(tmp_path: Path) -> None:
    from http import HTTPStatus

    from reports.serve import ZipRefused, write_zip

    run = tmp_path / "run"
    (run / "nodes" / "n1").mkdir(parents=True)
    (run / "history.jsonl").write_bytes(b"x" * 1000)
    (run / "nodes" / "n1" / "node.log").write_bytes(b"y" * 1000)
    with pytest.raises(ZipRefused) as refused:
        write_zip(run, io.BytesIO(), source_bytes_max=1999)
    assert refused.value.status == HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    out = io.BytesIO()
    assert write_zip(run, out, source_bytes_max=2000) == 2
