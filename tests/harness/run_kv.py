"""Run one full session against the KV test system, in a fresh run namespace.

``python tests/harness/run_kv.py STORE SCENARIO.toml [--volatile] [flags...]`` resolves the scenario like
``ratchet run`` (same validation) and runs it with :class:`KVSystem` instead of VR; exit code as ratchet's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from kvsystem import KVSystem

from clusters import namespace
from core.errors import BadInput
from harness import session
from harness.commands import run as run_command


def main() -> int:
    volatile = "--volatile" in sys.argv
    broken = "--broken" in sys.argv  # servers that exit at once: setup fails
    args_in = [a for a in sys.argv[1:] if a not in ("--volatile", "--broken")]
    store, rest = args_in[0], args_in[1:]
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    run_command.register(sub)
    args = parser.parse_args(["run", *rest, "--store", store])
    try:
        test = run_command.resolve_test(args)
    except BadInput as exc:
        print(f"error: {exc.paragraph()}", file=sys.stderr)
        return 3
    namespace.enter()

    def factory(cluster, run, test):  # type: ignore[no-untyped-def]
        return KVSystem(
            cluster,
            nodes_dir=run.nodes,
            volatile=volatile,
            broken=broken,
            client_timeout_s=test.workload.client_timeout_s,
        )

    return session.execute(test, argv=sys.argv, progress=False, system_factory=factory)


if __name__ == "__main__":
    sys.exit(main())
