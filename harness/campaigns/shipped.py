"""Shipped campaigns (``nightly``, ``smoke``, ``selftest``) and finding a campaign by name or path.

Shipped campaign files live beside the named scenarios, in ``scenarios/campaigns/``,
so they travel with the package like the scenarios do.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from core.errors import BadInput
from core.scenario import SCENARIO_DIR
from harness.campaigns.spec import Campaign, read_campaign

CAMPAIGN_DIR = SCENARIO_DIR / "campaigns"


def shipped_names() -> list[str]:
    return sorted(p.stem for p in CAMPAIGN_DIR.glob("*.toml"))


def resolve(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix == ".toml" or "/" in name_or_path:
        if not path.exists():
            raise BadInput("campaign file does not exist.", where=name_or_path)
        return path
    candidate = CAMPAIGN_DIR / f"{name_or_path}.toml"
    if candidate.is_file():
        return candidate
    known = shipped_names()
    close = difflib.get_close_matches(name_or_path, known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise BadInput(
        f"no campaign named {name_or_path!r}; shipped: {', '.join(known) or '(none)'}.{hint} "
        "Or pass a path to a campaign .toml file.",
        where=name_or_path,
    )


def scenario_names() -> list[str]:
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.toml"))


def load(name_or_path: str, *, seeds: int | None = None, seed_base: int | None = None) -> Campaign:
    from vr.bugs import BUGS

    return read_campaign(
        resolve(name_or_path),
        known_scenarios=scenario_names(),
        known_bugs=tuple(BUGS),
        seeds_override=seeds,
        seed_base_override=seed_base,
    )
