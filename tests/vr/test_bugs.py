"""Each planted bug is found by the simulation, and the same seed passes with the bug off.

For every bug in ``vr.bugs.BUGS`` the simulation, with the fault mix tuned for that bug
(its profile), must break an invariant (a checker violation or a replica assertion; a
stall alone does not count) within ``SEEDS_MAX`` seeds; and the correct replica must
pass that very seed under the same profile, so the finding is the bug's doing.
"""

from __future__ import annotations

import pytest

from vr.bugs import BUGS, describe, parse_bugs
from vr.testing.sim import run_seed

SEEDS_MAX = 150
LIVENESS_TICKS_BUGGY = 300


@pytest.mark.parametrize("name", sorted(BUGS))
def test_simulation_finds_planted_bug(name: str) -> None:
    bugs = frozenset({name})
    for seed in range(1, SEEDS_MAX + 1):
        # Only safety counts here, so a run the bug merely stalls need not wait out liveness.
        result = run_seed(seed, bugs=bugs, liveness_ticks_max=LIVENESS_TICKS_BUGGY)
        if result.outcome in ("violation", "assertion"):
            clean = run_seed(seed, profile=bugs)
            assert clean.ok, f"seed {seed} also fails without {name}: {clean.outcome} {clean.detail}"
            return
    pytest.fail(f"{name}: no invariant violation in {SEEDS_MAX} seeds")


def test_parse_bugs_rejects_unknown_with_did_you_mean() -> None:
    assert parse_bugs(["no-client-table"]) == frozenset({"no-client-table"})
    assert parse_bugs([]) == frozenset()
    with pytest.raises(ValueError, match="Did you mean 'stale-view-votes'"):
        parse_bugs(["stale-view-vote"])


def test_describe_lists_every_bug_with_its_fault() -> None:
    text = describe()
    for bug in BUGS.values():
        assert bug.name in text
        assert bug.exposed_by in text
    assert len(BUGS) >= 8
