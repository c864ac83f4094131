"""The KV state machine and client table: every op's result, clean cas failure, deterministic snapshots."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from vr.message import Operation
from vr.state_machine import ClientTable, StateMachine, encode_reply_body


def _run(machine: StateMachine, operation: Operation, **body: object) -> dict[str, object]:
    return machine.execute(operation, json.dumps(body).encode())


def test_read_write_cas_append() -> None:
    machine = StateMachine()
    assert _run(machine, Operation.READ, key="k") == {"ok": True, "value": None}
    assert _run(machine, Operation.WRITE, key="k", value=1) == {"ok": True, "value": None}
    assert _run(machine, Operation.READ, key="k") == {"ok": True, "value": 1}
    assert _run(machine, Operation.CAS, key="k", old=1, new=2) == {"ok": True, "value": None}
    assert _run(machine, Operation.READ, key="k") == {"ok": True, "value": 2}
    assert _run(machine, Operation.APPEND, key="l", value="a") == {"ok": True, "value": None}
    assert _run(machine, Operation.APPEND, key="l", value="b") == {"ok": True, "value": None}
    assert _run(machine, Operation.READ, key="l") == {"ok": True, "value": ["a", "b"]}


def test_cas_mismatch_fails_cleanly_with_current_value_and_changes_nothing() -> None:
    machine = StateMachine()
    _run(machine, Operation.WRITE, key="k", value=5)
    assert _run(machine, Operation.CAS, key="k", old=4, new=9) == {
        "ok": False,
        "error": "cas-mismatch",
        "value": 5,
    }
    assert machine.kv == {"k": 5}


def test_bad_requests_get_error_replies_not_exceptions() -> None:
    machine = StateMachine()
    assert machine.execute(Operation.READ, b"\xff")["error"] == "bad-request"
    assert machine.execute(Operation.READ, b"[1]")["error"] == "bad-request"
    assert machine.execute(Operation.WRITE, b'{"value": 1}')["error"] == "bad-request"
    assert machine.execute(99, b'{"key": "k"}')["error"] == "bad-operation"
    _run(machine, Operation.WRITE, key="k", value=1)
    assert _run(machine, Operation.APPEND, key="k", value=2)["error"] == "not-a-list"
    assert machine.kv == {"k": 1}


def test_snapshot_is_deterministic_and_restores_exactly() -> None:
    a, b = StateMachine(), StateMachine()
    _run(a, Operation.WRITE, key="x", value=1)
    _run(a, Operation.WRITE, key="y", value=2)
    _run(b, Operation.WRITE, key="y", value=2)
    _run(b, Operation.WRITE, key="x", value=1)
    a.clients.record(client=7, request=1, request_checksum=b"c" * 16, reply=b"reply")
    b.clients.record(client=7, request=1, request_checksum=b"c" * 16, reply=b"reply")
    assert a.snapshot() == b.snapshot()
    restored = StateMachine.restore(a.snapshot())
    assert restored.kv == a.kv
    assert restored.snapshot() == a.snapshot()
    entry = restored.clients.get(7)
    assert entry is not None
    assert (entry.request, entry.request_checksum, entry.reply) == (1, b"c" * 16, b"reply")


def test_client_table_keeps_latest_request_per_client() -> None:
    table = ClientTable()
    table.record(client=1, request=1, request_checksum=b"a" * 16, reply=b"r1")
    table.record(client=1, request=2, request_checksum=b"b" * 16, reply=b"r2")
    table.record(client=2, request=1, request_checksum=b"c" * 16, reply=b"r3")
    assert len(table) == 2
    entry = table.get(1)
    assert entry is not None and entry.request == 2 and entry.reply == b"r2"
    assert table.get(3) is None
    assert ClientTable.from_json(table.to_json()).to_json() == table.to_json()


def test_client_table_evicts_least_recently_executed_and_survives_a_snapshot() -> None:
    from vr.state_machine import ClientTable, StateMachine, client_seq

    table = ClientTable(clients_max=2)
    assert (
        table.record(client=7, request=1, request_checksum=b"a" * 16, reply=b"r", seq=client_seq(1, 0))
        is None
    )
    assert (
        table.record(client=8, request=1, request_checksum=b"b" * 16, reply=b"r", seq=client_seq(1, 1))
        is None
    )
    # Client 7 runs again, so 8 is now the least recent and goes when 9 arrives.
    assert (
        table.record(client=7, request=2, request_checksum=b"c" * 16, reply=b"r", seq=client_seq(2, 0))
        is None
    )
    assert (
        table.record(client=9, request=1, request_checksum=b"d" * 16, reply=b"r", seq=client_seq(3, 0)) == 8
    )
    assert table.admits(8, 2) is False, "an evicted session's next request is refused"
    assert table.admits(8, 1) and table.admits(7, 3) and table.admits(10, 1)
    # The order survives a checkpoint: a restored table evicts the same client next.
    machine = StateMachine(clients_max=2)
    machine.clients = table
    restored = StateMachine.restore(machine.snapshot(), clients_max=2)
    assert restored.snapshot() == machine.snapshot()
    assert (
        restored.clients.record(
            client=11, request=1, request_checksum=b"e" * 16, reply=b"r", seq=client_seq(4, 0)
        )
        == 7
    )
    assert (
        table.record(client=11, request=1, request_checksum=b"e" * 16, reply=b"r", seq=client_seq(4, 0)) == 7
    )


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=8,
)
BODIES = st.one_of(
    st.builds(
        lambda key, value, old, new: json.dumps(
            {"key": key, "value": value, "old": old, "new": new}
        ).encode(),
        st.sampled_from(["a", "b", "l"]),
        JSON_VALUES,
        JSON_VALUES,
        JSON_VALUES,
    ),
    st.builds(lambda value: json.dumps(value).encode(), JSON_VALUES),  # not an object, or no key
    st.binary(max_size=8),  # not JSON, not UTF-8
    st.just(b'{"key": "a", "value": NaN}'),  # JSON the standard library accepts beyond the RFC
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([*Operation, 99]), BODIES), max_size=20))
def test_execute_encoded_is_byte_for_byte_the_encoded_execute(steps: list[tuple[int, bytes]]) -> None:
    """The replica's hot path (``execute_encoded``) against the definition: the same state
    changes and the same reply bytes as ``encode_reply_body(execute(...))`` for any input."""
    reference, fast = StateMachine(), StateMachine()
    for operation, body in steps:
        assert fast.execute_encoded(operation, body) == encode_reply_body(reference.execute(operation, body))
        assert fast.snapshot() == reference.snapshot()


def test_a_reply_stored_as_a_recipe_is_built_once_and_snapshots_the_same() -> None:
    built: list[int] = []

    def recipe() -> bytes:
        built.append(1)
        return b"reply"

    lazy, eager = StateMachine(), StateMachine()
    lazy.clients.record(client=7, request=1, request_checksum=b"c" * 16, reply=recipe)
    eager.clients.record(client=7, request=1, request_checksum=b"c" * 16, reply=b"reply")
    assert built == []
    assert lazy.snapshot() == eager.snapshot()
    assert lazy.digest() == eager.digest()
    entry = lazy.clients.get(7)
    assert entry is not None and entry.reply == b"reply" and built == [1]
