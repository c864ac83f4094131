"""What clients do against the system under test: register, list-append, ...

A workload is a module with ``generator(spec)``, ``invoke(client, op)`` and
``final_reads(keys)``; :func:`by_name` picks one by the scenario's
``workload.name``.
"""

from __future__ import annotations

from types import ModuleType


def by_name(name: str) -> ModuleType:
    """The workload module called ``name`` (validated by the scenario: register or append)."""
    if name == "register":
        from workloads import register

        return register
    if name == "append":
        from workloads import append

        return append
    raise ValueError(f"unknown workload {name!r}")
