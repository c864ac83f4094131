"""The replicated state machine agrees, op by op, with the checkers' independent models.

``vr/state_machine.py`` is what the replicas execute; ``checkers/models`` and
``checkers/append.py`` were written apart from it to judge histories. Driving both
with the same random sequence of operations and comparing every result keeps a
semantics slip in either one from hiding behind the other (the simulator's state
checker replays the log through the state machine itself, so it cannot see one).
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from checkers.append import check_append
from checkers.history import Op, freeze
from checkers.linearizable import check_linearizable
from checkers.models import ILLEGAL, get_model
from vr.message import Operation
from vr.state_machine import StateMachine

REGISTERS = ("a", "b")
LISTS = ("la", "lb")
VALUES = st.one_of(st.none(), st.integers(-3, 3), st.text(max_size=2))

register_ops = st.one_of(
    st.tuples(st.just("read"), st.sampled_from(REGISTERS), st.none()),
    st.tuples(st.just("write"), st.sampled_from(REGISTERS), VALUES),
    st.tuples(st.just("cas"), st.sampled_from(REGISTERS), st.tuples(VALUES, VALUES)),
)
list_ops = st.one_of(
    st.tuples(st.just("read"), st.sampled_from(LISTS), st.none()),
    st.tuples(st.just("append"), st.sampled_from(LISTS), st.none()),  # the value is made unique below
)

OPERATIONS = {
    "read": Operation.READ,
    "write": Operation.WRITE,
    "cas": Operation.CAS,
    "append": Operation.APPEND,
}


def _execute(machine: StateMachine, f: str, key: str, value: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"key": key}
    if f in ("write", "append"):
        body["value"] = value
    elif f == "cas":
        body["old"], body["new"] = value
    return machine.execute(OPERATIONS[f], json.dumps(body).encode())


@settings(max_examples=200, deadline=None)
@given(st.lists(register_ops, max_size=40))
def test_registers_step_like_the_cas_register_model(ops: list[tuple[str, str, Any]]) -> None:
    """Each register op's reply is exactly what the cas-register model allows from its state."""
    machine = StateMachine()
    model = get_model("cas-register")
    states = dict.fromkeys(REGISTERS, model.init())
    for f, key, value in ops:
        reply = _execute(machine, f, key, value)
        state = states[key]
        if f == "read":
            assert reply == {"ok": True, "value": state}
            assert model.step(state, "read", None, reply["value"], True) == state
        elif f == "write":
            assert reply["ok"] is True
            states[key] = model.step(state, "write", value, None, True)
        else:
            after = model.step(state, "cas", tuple(value), None, True)
            if reply["ok"]:
                assert after is not ILLEGAL, (state, value)
                states[key] = after
            else:
                # A failed cas did not take effect, and the model agrees it could not have.
                assert reply == {"ok": False, "error": "cas-mismatch", "value": state}
                assert after is ILLEGAL, (state, value)
        assert {k: machine.kv.get(k) for k in REGISTERS} == states


def _sequential_history(ops: list[tuple[str, str, Any]]) -> tuple[list[Op], StateMachine]:
    """Run ops one at a time through the state machine, recorded as one client's history."""
    machine = StateMachine()
    history: list[Op] = []
    for i, (f, key, _) in enumerate(ops):
        value = i if f == "append" else None
        reply = _execute(machine, f, key, value)
        out = reply["value"] if f == "read" else value
        completion = "ok" if reply["ok"] else "fail"
        history.append(Op(len(history), 2 * i, 0, "invoke", f, key, value))
        history.append(Op(len(history), 2 * i + 1, 0, completion, f, key, freeze(out), reply.get("error")))
    return history, machine


@settings(max_examples=200, deadline=None)
@given(st.lists(list_ops, max_size=40))
def test_lists_pass_the_list_append_checker(ops: list[tuple[str, str, Any]]) -> None:
    """Appends and reads executed in order form a valid list-append history, and the lists hold
    exactly the appended values in order."""
    history, machine = _sequential_history(ops)
    assert check_append(history)["valid"] is True
    for key in LISTS:
        appended = [i for i, (f, k, _) in enumerate(ops) if f == "append" and k == key]
        assert machine.kv.get(key, []) == appended


@settings(max_examples=200, deadline=None)
@given(st.lists(register_ops, max_size=30))
def test_register_histories_are_linearizable(ops: list[tuple[str, str, Any]]) -> None:
    """The state machine's replies, recorded as a sequential history, satisfy the linearizability
    checker against the cas-register model (the simulator judges its clients the same way)."""
    history: list[Op] = []
    machine = StateMachine()
    for i, (f, key, value) in enumerate(ops):
        reply = _execute(machine, f, key, value)
        invoke_value = None if f == "read" else freeze(list(value) if f == "cas" else value)
        out = reply["value"] if f == "read" else invoke_value
        history.append(Op(len(history), 2 * i, 0, "invoke", f, key, invoke_value))
        history.append(Op(len(history), 2 * i + 1, 0, "ok" if reply["ok"] else "fail", f, key, out))
    assert check_linearizable(history, model="cas-register", processes=1)["valid"] is True


def test_a_semantics_slip_is_caught_by_the_models() -> None:
    """The comparison has teeth: an append applied at the front reads back out of order."""
    history, _ = _sequential_history([("append", "la", None), ("append", "la", None), ("read", "la", None)])
    read = history[-1]
    reversed_read = Op(read.index, read.time_ns, 0, "ok", "read", "la", tuple(reversed(read.value)))
    assert check_append([*history[:-1], reversed_read])["valid"] is False
