"""Each seed's client history, judged by ``checkers/``: an oracle written apart from the replica.

The state checker replays the canonical log through ``vr.state_machine.StateMachine``,
the very code the replicas run, so a slip in the state machine's semantics would change
the replicas and the reference together and never show. This history is what the clients
saw, recorded in the harness's own format (docs/contracts.md §4: one invocation and one
completion per request, in real-time order, time in simulated nanoseconds) and checked at
the end of every seed with the harness's checkers: linearizability against the
cas-register model for the register keys, and the list-append checker for the list keys.
Neither checker knows anything about VR or the replica's code.

A completion is ``ok`` for a reply that says ok, ``fail`` for a cas whose compare failed
(it definitely did not take effect), ``info`` for an eviction (the outcome is unknown);
a request still pending at the end stays open-ended, as in a real run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from checkers.append import check_append
from checkers.history import Op, freeze
from checkers.linearizable import check_linearizable

TICK_NS = 10_000_000  # one simulated tick is 10 ms
CHECK_TIME_S = 30.0  # a seed's history is a few dozen ops: far below this, so never "unknown" in practice


class HistoryViolation(Exception):
    """The clients' history is not what a linearizable key-value store can produce."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


@dataclass(slots=True)
class ClientHistory:
    """Invocations and completions of the simulated clients, split at check time by key kind."""

    list_keys: frozenset[str]
    ops: list[Op] = field(default_factory=list)

    def invoke(self, *, process: int, tick: int, f: str, key: str, value: Any) -> None:
        self._append(process=process, tick=tick, type="invoke", f=f, key=key, value=value)

    def complete_reply(
        self, *, process: int, tick: int, f: str, key: str, value: Any, body: bytes, node: int
    ) -> None:
        """Turn a REPLY body into the completion a client would record."""
        try:
            result = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            result = None
        if not isinstance(result, dict):
            self._append(
                process=process,
                tick=tick,
                type="info",
                f=f,
                key=key,
                value=value,
                error="bad-reply",
                node=node,
            )
            return
        if result.get("ok") is True:
            out = result.get("value") if f == "read" else value
            self._append(process=process, tick=tick, type="ok", f=f, key=key, value=out, node=node)
            return
        error = str(result.get("error"))
        self._append(
            process=process, tick=tick, type="fail", f=f, key=key, value=value, error=error, node=node
        )

    def complete_unknown(self, *, process: int, tick: int, f: str, key: str, value: Any, error: str) -> None:
        self._append(process=process, tick=tick, type="info", f=f, key=key, value=value, error=error)

    def _append(
        self,
        *,
        process: int,
        tick: int,
        type: str,
        f: str,
        key: str,
        value: Any,
        error: str | None = None,
        node: int | None = None,
    ) -> None:
        self.ops.append(
            Op(
                index=len(self.ops),
                time_ns=tick * TICK_NS,
                process=process,
                type=type,
                f=f,
                key=key,
                value=freeze(value),
                error=error,
                node=None if node is None else f"r{node}",
            )
        )

    def check(self) -> None:
        """Raise :class:`HistoryViolation` unless both checkers accept the history."""
        registers = [op for op in self.ops if op.key not in self.list_keys]
        lists = [op for op in self.ops if op.key in self.list_keys]
        if registers:
            result = check_linearizable(
                registers,
                model="cas-register",
                time_limit_s=CHECK_TIME_S,
                processes=1,
                counterexample_time_s=5.0,
            )
            if result["valid"] is not True:
                raise HistoryViolation("linearizability", _linearizable_detail(result))
        if lists:
            result = check_append(lists)
            if not result["valid"]:
                first = result["first_anomaly"]
                raise HistoryViolation(
                    f"list-append {first['kind']}",
                    f"key {result['key']!r}: {first['explanation']} ({_op_words(first['op'])})",
                )

    def to_jsonl(self) -> str:
        """The history as ``history.jsonl`` lines, to read it with ``ratchet check`` or by eye."""
        return "".join(json.dumps(op.to_json(), separators=(",", ":")) + "\n" for op in self.ops)


def _op_words(op: dict[str, Any]) -> str:
    value = op["value_out"] if op["f"] == "read" else op["value_in"]
    returned = "" if op["return_ns"] is None else f"-{op['return_ns'] // TICK_NS}"
    return f"client {op['process']} {op['f']} {value!r} ticks {op['call_ns'] // TICK_NS}{returned}"


def _linearizable_detail(result: dict[str, Any]) -> str:
    if result["valid"] is False:
        first = result.get("first_unlinearizable")
        where = f" at {_op_words(first)}" if first else ""
        counterexample = result.get("counterexample")
        explanation = ""
        if isinstance(counterexample, dict) and counterexample.get("explanation"):
            explanation = f": {counterexample['explanation']}"
        return f"key {result.get('key')!r} is not linearizable{where}{explanation}"
    return f"the check could not decide key {result.get('key')!r} ({result.get('reason')})"
