"""Run inside a fresh network namespace: push numbered VR-shaped frames through the message proxy.

Prints JSON: for each mode, the frame numbers the receiving node got, in order, and the proxy's
counters for the link. Used by tests/harness/test_message_proxy.py.
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import time

from systems.vr.proxy import MessageProxy
from vr.message import HEADER_SIZE

FRAMES = 200


def frame(number: int) -> bytes:
    data = bytearray(HEADER_SIZE + 8)
    struct.pack_into("<I", data, 72, len(data))
    struct.pack_into("<Q", data, 88, number)  # op
    struct.pack_into("<Q", data, HEADER_SIZE, number)
    return bytes(data)


def main() -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=10)
    endpoints = {"n1": ("127.0.0.2", 7101), "n2": ("127.0.0.3", 7102)}
    server = socket.socket()
    server.bind(endpoints["n2"])
    server.listen()
    proxy = MessageProxy(endpoints, listen=("127.0.0.1", 7099))
    proxy.install()
    out = {}
    try:
        for mode in sys.argv[1:]:
            before = proxy.counters().get("n1->n2", {})
            proxy.set_plan(
                links=frozenset({("n1", "n2")}), mode=mode, probability=0.3, delay_ms_max=50, seed=7
            )
            client = socket.socket()
            client.bind((endpoints["n1"][0], 0))
            client.connect(endpoints["n2"])
            conn, peer = server.accept()
            for number in range(FRAMES):
                client.sendall(frame(number))
                time.sleep(0.001)
            time.sleep(0.5)  # held and delayed frames go out
            proxy.clear()
            client.close()
            got = b""
            conn.settimeout(5)
            while chunk := conn.recv(1 << 20):
                got += chunk
            conn.close()
            size = HEADER_SIZE + 8
            numbers = [struct.unpack_from("<Q", got, i + HEADER_SIZE)[0] for i in range(0, len(got), size)]
            after = proxy.counters()["n1->n2"]
            out[mode] = {
                "numbers": numbers,
                "whole": len(got) % size == 0,
                "peer": peer[0],
                "counters": {k: after[k] - before.get(k, 0) for k in after},
            }
    finally:
        proxy.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
