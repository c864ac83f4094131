"""The docker engine for tests: use the running daemon, or start dockerd (as root), or say why not.

Tests that need docker call :func:`engine` through a session fixture; it returns
a docker SDK client or a skip reason. A dockerd started here is stopped again at
the end of the session (by its pid), so the suite leaves no daemon behind.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

START_TIMEOUT_S = 30.0


def _ping() -> Any | None:
    try:
        import docker

        client = docker.from_env(timeout=30)
        client.ping()
        return client
    except Exception:
        return None


class Engine:
    def __init__(self) -> None:
        self.client: Any = None
        self.skip_reason: str | None = None
        self.started: subprocess.Popen[bytes] | None = None
        self.start_s = 0.0

    def start(self) -> Engine:
        self.client = _ping()
        if self.client is not None:
            return self
        if shutil.which("dockerd") is None:
            self.skip_reason = "the docker engine is not installed (apt-get install docker.io)"
            return self
        if os.geteuid() != 0:
            self.skip_reason = "no docker daemon is running and starting dockerd needs root"
            return self
        log = Path(tempfile.gettempdir()) / f"ratchet-test-dockerd-{os.getpid()}.log"
        began = time.monotonic()
        with log.open("wb") as out:
            self.started = subprocess.Popen(
                ["dockerd"],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        while time.monotonic() - began < START_TIMEOUT_S:
            if self.started.poll() is not None:
                tail = log.read_text(errors="replace").strip().splitlines()[-3:]
                self.skip_reason = (
                    f"dockerd cannot run here (exit {self.started.returncode}): {' | '.join(tail)}"
                )
                self.started = None
                return self
            self.client = _ping()
            if self.client is not None:
                self.start_s = time.monotonic() - began
                return self
            time.sleep(0.2)
        self.stop()
        self.skip_reason = f"dockerd did not answer within {START_TIMEOUT_S:.0f} s (log: {log})"
        return self

    def stop(self) -> None:
        if self.started is not None and self.started.poll() is None:
            self.started.send_signal(signal.SIGTERM)
            try:
                self.started.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.started.kill()
                self.started.wait(timeout=10)
        self.started = None
