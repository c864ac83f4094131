"""Makes one real VR replica trip its own ``_execute`` assertion (tests only, never the product).

A test puts this directory first on ``PYTHONPATH`` and sets
``RATCHET_TEST_TRIP="<replica>:<op>"``; every Python process it starts then
imports this module at startup. In a ``vr.node`` process whose replica has that
index, the first time it is about to execute an op at or past ``<op>`` its
``commit_min`` is moved one ahead, so the replica's own first assertion in
``_execute`` (``header.op == self.commit_min + 1``) fails: a real assertion in
the real code path, logged and exited on exactly as a bug would be.
"""

from __future__ import annotations

import os
from typing import Any

_SPEC = os.environ.get("RATCHET_TEST_TRIP", "")

if _SPEC:
    from vr import replica as _replica

    _index, _op = (int(part) for part in _SPEC.split(":"))
    _original = _replica.Replica._execute

    def _execute(self: Any, prepare: Any) -> None:
        if self.replica == _index and prepare.header.op >= _op:
            self.commit_min += 1  # the replica now believes it executed an op it never did
        _original(self, prepare)

    _replica.Replica._execute = _execute  # type: ignore[method-assign]
