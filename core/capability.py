"""What a fault needs from the machine (or container, or host) it runs on, and the refusal when it is missing.

The probes live with the controller (``harness.capabilities``, and each cluster
home for its own nodes); the vocabulary is here so scenario validation can
refuse a fault before anything starts, whichever home is asked.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Capability:
    name: str
    available: bool
    detail: str
    how_to_enable: str = ""


FAULT_NEEDS: dict[str, tuple[str, ...] | None] = {
    "partition": ("namespaces", "packet-filter"),
    "primary-chain": ("namespaces", "packet-filter"),
    "loss": ("namespaces", "packet-filter"),
    "pause": ("namespaces", "signals"),
    "kill": ("namespaces", "signals"),
    "rolling-kill": ("namespaces", "signals"),
    "clock": ("namespaces", "libfaketime"),
    "messages": ("namespaces", "message-proxy"),
    "disk": ("namespaces", "fuse"),
    "power-cut": ("namespaces", "fuse"),
    "dm-flakey": ("namespaces", "dm-flakey"),
    "corrupt": ("namespaces", "signals", "packet-filter"),
}


def fault_refusal(fault: str, caps: dict[str, Capability]) -> str | None:
    """Why ``fault`` cannot be injected here (None: it can)."""
    needs = FAULT_NEEDS.get(fault)
    if needs is None:
        return (
            f"the {fault!r} fault is planned but not implemented in this version of Ratchet; "
            f"choose from {', '.join(kind for kind, need in FAULT_NEEDS.items() if need is not None)}"
        )
    for need in needs:
        cap = caps.get(need)
        if cap is None or not cap.available:
            detail = cap.detail if cap else "not probed"
            how = f" To enable it: {cap.how_to_enable}." if cap and cap.how_to_enable else ""
            return f"the {fault!r} fault needs {need}, which this machine lacks ({detail}).{how}"
    return None
