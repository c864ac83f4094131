"""The simulator judges its clients' history with the checkers, independently of the replica's code.

The state checker's reference is ``vr.state_machine`` itself, so a semantics slip there
changes the replicas and the reference together. These tests plant such slips (for the
length of one test) and show the history check, which knows only the clients' view and
the checkers' models, catches them; and that the history has the harness's format.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from checkers.compose import check_history
from checkers.history import read_history
from vr.message import Operation
from vr.state_machine import StateMachine, encode_reply_body
from vr.testing.sim import main, run_seed

_execute = StateMachine.execute


def _append_at_front(self: StateMachine, operation: int, body: bytes) -> dict[str, Any]:
    request = json.loads(body)
    current = self.kv.get(request.get("key"))
    if operation == Operation.APPEND and isinstance(current, list):
        self.kv[request["key"]] = [request.get("value"), *current]
        return {"ok": True, "value": None}
    return _execute(self, operation, body)


def _cas_nil_always_matches(self: StateMachine, operation: int, body: bytes) -> dict[str, Any]:
    request = json.loads(body)
    if operation == Operation.CAS and request.get("old") is None and request.get("key") in self.kv:
        self.kv[request["key"]] = request.get("new")
        return {"ok": True, "value": None}
    return _execute(self, operation, body)


def _first_failure(seeds: range) -> str:
    for seed in seeds:
        result = run_seed(seed)
        if not result.ok:
            return f"{result.outcome}: {result.detail}"
    return ""


@pytest.mark.parametrize(
    ("slip", "kind"),
    [(_append_at_front, "violation: list-append"), (_cas_nil_always_matches, "violation: linearizability")],
)
def test_a_state_machine_slip_is_caught_by_the_history_check(
    monkeypatch: pytest.MonkeyPatch, slip: Any, kind: str
) -> None:
    monkeypatch.setattr(StateMachine, "execute", slip)
    # The replicas' hot path encodes the reply directly; plant the same slip there.
    monkeypatch.setattr(
        StateMachine, "execute_encoded", lambda self, op, body: encode_reply_body(slip(self, op, body))
    )
    found = _first_failure(range(1, 31))
    assert found.startswith(kind), found


def test_the_history_is_in_the_harness_format_and_checks_valid(tmp_path: Path) -> None:
    result = run_seed(5)
    assert result.ok and result.history is not None
    path = tmp_path / "history.jsonl"
    path.write_text(result.history.to_jsonl(), encoding="utf-8")
    ops = read_history(path, "jsonl")
    invocations = [op for op in ops if op.type == "invoke"]
    completions = [op for op in ops if op.type != "invoke"]
    assert len(invocations) == len(completions) > 10  # every request completed after the heal
    assert {op.f for op in invocations} == {"read", "write", "cas", "append"}
    assert all(op.node is not None for op in completions if op.type == "ok")
    registers = [op for op in ops if not str(op.key).endswith("-list")]
    assert check_history(registers, model="cas-register")["valid"] is True
    assert (
        check_history([op for op in ops if str(op.key).endswith("-list")], model="list-append")["valid"]
        is True
    )


def test_cli_writes_one_seeds_history(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "h.jsonl"
    assert main(["--seed", "5", "--history", str(path)]) == 0
    assert len(read_history(path, "jsonl")) > 20
    assert main(["--seed", "5", "--seeds", "2", "--history", str(path)]) == 4
    assert "one seed" in capsys.readouterr().err
