"""The anomaly section: a checker's evidence turned into words, a small drawing and links.

The checkers own the evidence (contracts §5); this module only presents it.
For the linearizability checker that is the key, the first op that cannot be
linearized and a minimal counterexample (its ops, the candidate orders tried,
the states they reach, an explanation in words). Fields are read by the names
the checker uses and each missing one is simply not shown: a report of a run
whose checker recorded less must still open and say what it can. Any op the
evidence names is resolved against the history, so it can be drawn on its own
and linked to its place in the timeline.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup, escape

from checkers.history import Op
from checkers.perf import FaultWindow, fault_windows
from reports.timeline import Bar, pair_bars

PROSE_FIELDS = ("explanation", "explanations", "story", "reason", "message", "summary", "error")
OPS_FIELDS = ("ops", "operations", "history", "sub_history", "window")
PREFIX_FIELDS = ("longest_prefix", "longest_linearizable_prefix", "linearizable_prefix", "prefix")
ORDER_FIELDS = ("orders", "candidate_orders", "candidates", "attempts")
INDEX_FIELDS = ("index", "invoke_index", "complete_index", "call_index")
OPS_DRAWN_MAX = 40


@dataclass(frozen=True, slots=True)
class OpRow:
    label: str
    link_index: int
    process: str
    text: str
    outcome: str
    start: str
    end: str
    start_ns: int
    end_ns: int


@dataclass(frozen=True, slots=True)
class Order:
    text: str
    ok: bool | None
    steps: list[str]


@dataclass(frozen=True, slots=True)
class Anomaly:
    checker: str
    key: Any
    key_text: str
    story: list[str]
    first: OpRow | None
    ops: list[OpRow]
    svg: Markup | None
    prefix: list[str]
    orders: list[Order]
    rest: str
    history_indices: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    through_event: int | None = None  # position in the history of the end of the longest linearizable prefix
    node: str | None = None  # the node whose reply completed the first bad op (None: no reply did)
    answered_s: float | None = (
        None  # when that op completed (or was invoked, if it never did), since the first op
    )
    faults: list[str] = field(default_factory=list)  # fault windows in force while that op ran


class BarIndex:
    """Finds the bar (invocation + completion) of any history index, invoke or completion."""

    def __init__(self, ops: Sequence[Op], bars: Sequence[Bar] | None = None) -> None:
        self.t0_ns = min((op.time_ns for op in ops), default=0)
        self.end_ns = max((op.time_ns for op in ops), default=0)
        self.windows: list[FaultWindow] = fault_windows(ops)
        self._bars: dict[int, Bar] = {}
        for bar in pair_bars(ops) if bars is None else bars:
            self._bars[bar.invoke.index] = bar
            if bar.completion is not None:
                self._bars[bar.completion.index] = bar

    def faults_during(self, start_ns: int, end_ns: int) -> list[str]:
        """Labels of the fault windows in force at any moment of ``[start_ns, end_ns]`` (absolute)."""
        from reports.perfdata import window_label  # perfdata builds on this module

        return [
            window_label(w)
            for w in self.windows
            if w.start_ns <= end_ns and (w.stop_ns is None or w.stop_ns >= start_ns)
        ]

    def find(self, reference: Any) -> Bar | None:
        if isinstance(reference, bool):
            return None
        if isinstance(reference, int):
            return self._bars.get(reference)
        if isinstance(reference, dict):
            for name in INDEX_FIELDS:
                value = reference.get(name)
                if isinstance(value, int) and not isinstance(value, bool) and value in self._bars:
                    return self._bars[value]
        return None


def compact(value: Any, limit: int = 120) -> str:
    """A value as short JSON text, cut at ``limit`` characters."""
    text = value if isinstance(value, str) else json.dumps(value, default=str, separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def op_text(bar: Bar) -> str:
    """``write k1 17``, ``read k1 → 16``, ``cas k1 [3,4]``: what the op did, in one line."""
    invoke, done = bar.invoke, bar.completion
    parts = [str(invoke.f)]
    if invoke.key is not None:
        parts.append(compact(invoke.key, 40))
    if invoke.value is not None:
        parts.append(compact(invoke.value, 60))
    text = " ".join(parts)
    if done is not None and done.type == "ok" and invoke.f == "read":
        text += f" → {compact(done.value, 60)}"
    if done is not None and done.error:
        text += f" ({compact(done.error, 40)})"
    return text


def format_ns(relative_ns: float) -> str:
    return f"{relative_ns / 1e9:.6f} s"


def op_row(bar: Bar, index: BarIndex, label: str) -> OpRow:
    start = bar.invoke.time_ns - index.t0_ns
    end = (bar.completion.time_ns if bar.completion is not None else index.end_ns) - index.t0_ns
    return OpRow(
        label=label,
        link_index=bar.invoke.index,
        process=str(bar.process),
        text=op_text(bar),
        outcome=bar.outcome,
        start=format_ns(start),
        end=format_ns(end) if bar.completion is not None else "never",
        start_ns=start,
        end_ns=end,
    )


def _first_present(record: dict[str, Any], names: Sequence[str]) -> tuple[str | None, Any]:
    for name in names:
        if name in record and record[name] not in (None, "", [], {}):
            return name, record[name]
    return None, None


def _prose(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [item if isinstance(item, str) else compact(item, 400) for item in value]
    return [compact(value, 400)] if value is not None else []


class Resolver:
    """Turns the evidence's op references into bars of the history.

    The linearizability checker names ops in its orders by their ``id`` (the
    op's number in the checker's pairing), and lists each op of the
    counterexample with that id and its history indices; other evidence may
    use history indices directly. Ids are tried first where the evidence
    defines them.
    """

    def __init__(self, index: BarIndex, evidence_ops: Any) -> None:
        self.index = index
        self.by_id: dict[int, Any] = {}
        for op in evidence_ops if isinstance(evidence_ops, list) else []:
            if isinstance(op, dict) and isinstance(op.get("id"), int):
                self.by_id[op["id"]] = op

    def find(self, reference: Any) -> Bar | None:
        if isinstance(reference, int) and not isinstance(reference, bool) and reference in self.by_id:
            return self.index.find(self.by_id[reference])
        return self.index.find(reference)

    def text(self, reference: Any) -> str:
        bar = self.find(reference)
        if bar is not None:
            return f"{op_text(bar)} by p{bar.process} [{bar.outcome}] (op {bar.invoke.index})"
        return compact(reference, 200)


def _order(item: Any, resolver: Resolver) -> Order:
    """One candidate order: the ops in turn with the state after each, then where it got stuck."""
    if isinstance(item, list):
        return Order(" → ".join(resolver.text(ref) for ref in item), None, [])
    if not isinstance(item, dict):
        return Order(compact(item, 300), None, [])
    _name, sequence = _first_present(item, ("order", "ops", "sequence", "linearization"))
    sequence = sequence if isinstance(sequence, list) else []
    raw_states = item.get("states")
    states: list[Any] = raw_states if isinstance(raw_states, list) else []
    steps = [
        f"{n}. {resolver.text(ref)}" + (f" → state {compact(states[n - 1], 120)}" if n <= len(states) else "")
        for n, ref in enumerate(sequence, start=1)
    ]
    if not sequence and "fails_at" in item:
        steps.append("nothing can be placed first")
    if "fails_at" in item:
        at = compact(item["state_at_failure"], 120) if "state_at_failure" in item else "unknown"
        steps.append(f"stuck: {resolver.text(item['fails_at'])} cannot come next while the state is {at}")
    ok = next((item[k] for k in ("ok", "valid", "possible", "legal") if isinstance(item.get(k), bool)), None)
    if ok is None and "fails_at" in item:
        ok = False  # the checker lists dead ends: orders that cannot be completed
    prose = _prose(item.get("explanation") or item.get("reason"))
    headline = prose[0] if prose else " → ".join(resolver.text(ref) for ref in sequence) or compact(item, 300)
    return Order(headline, ok, steps)


def counterexample_svg(rows: Sequence[OpRow]) -> Markup | None:
    """The counterexample's ops drawn alone: one lane per process, bars scaled to their window.

    Built as a string of SVG elements; every piece of text from the history
    goes through ``escape``, so the result is safe to embed as markup.
    """
    rows = list(rows)[:OPS_DRAWN_MAX]
    if not rows:
        return None
    processes = list(dict.fromkeys(row.process for row in rows))
    start = min(row.start_ns for row in rows)
    end = max(row.end_ns for row in rows)
    span = max(end - start, 1)
    width, gutter, lane_h = 900, 70, 34
    plot_w = width - gutter - 20
    height = 30 + lane_h * len(processes)
    colours = {"ok": "#3f9b68", "fail": "#d1495b", "info": "#e99d19", "open": "#9aa0a6"}
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img">'
    ]
    parts.append(f'<text x="{gutter}" y="14" fill="#5f6b7a">{escape(format_ns(start))}</text>')
    parts.append(
        f'<text x="{width - 20}" y="14" fill="#5f6b7a" text-anchor="end">{escape(format_ns(end))}</text>'
    )
    for lane, process in enumerate(processes):
        y = 24 + lane * lane_h
        parts.append(f'<text x="4" y="{y + 18}" fill="#333">p{escape(process)}</text>')
        parts.append(
            f'<line x1="{gutter}" x2="{width - 20}" y1="{y + lane_h - 2}" y2="{y + lane_h - 2}" stroke="#e3e6ea"/>'
        )
    for row in rows:
        lane = processes.index(row.process)
        y = 24 + lane * lane_h
        x0 = gutter + (row.start_ns - start) / span * plot_w
        x1 = gutter + (row.end_ns - start) / span * plot_w
        w = max(x1 - x0, 3)
        colour = colours.get(row.outcome, "#9aa0a6")
        label = escape(f"{row.label}: {row.text}")
        parts.append(
            f'<a href="#timeline" data-history-index="{row.link_index}"><title>{label} [{escape(row.outcome)}]</title>'
            f'<rect x="{x0:.1f}" y="{y + 4}" width="{w:.1f}" height="12" rx="2" fill="{colour}"/>'
            + (
                f'<text x="{x0 + w:.1f}" y="{y + 28}" fill="#1f2328" text-anchor="end">{label}</text></a>'
                if x0 > gutter + plot_w * 0.6
                else f'<text x="{x0:.1f}" y="{y + 28}" fill="#1f2328">{label}</text></a>'
            )
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def _prefix(entry: dict[str, Any], evidence: dict[str, Any], resolver: Resolver) -> list[str]:
    """The longest linearizable prefix, as the checker states it (a list of ops or an event position)."""
    _name, listed = _first_present(evidence, PREFIX_FIELDS)
    if isinstance(listed, list):
        return [resolver.text(ref) for ref in listed]
    through = entry.get("linearizable_through_event")
    if isinstance(through, int) and not isinstance(through, bool):
        return [
            f"Every event before history event {through} has a legal order: the longest linearizable "
            f"prefix ends where that event's op returns (marked on the timeline)."
        ]
    return _prose(listed)


def _notes(entry: dict[str, Any], evidence: dict[str, Any]) -> list[str]:
    notes = []
    if evidence.get("minimal") is False:
        notes.append("Not proven minimal: shrinking the counterexample ran out of time.")
    failed = entry.get("failed_keys")
    if isinstance(failed, list) and len(failed) > 1:
        notes.append(
            f"{len(failed)} keys failed: "
            + ", ".join(compact(k, 30) for k in failed[:20])
            + "; the first is shown."
        )
    return notes


def anomaly_of(name: str, entry: dict[str, Any], index: BarIndex) -> Anomaly:
    """Present one checker's evidence; fields it lacks are left out."""
    counterexample = entry.get("counterexample")
    evidence = counterexample if isinstance(counterexample, dict) else {}
    shown = {
        "valid",
        "key",
        "first_unlinearizable",
        "counterexample",
        "linearizable_through_event",
        "failed_keys",
    }
    story: list[str] = []
    for holder in (evidence, entry):
        field_name, value = _first_present(holder, PROSE_FIELDS)
        if field_name is not None:
            story.extend(_prose(value))
            break
    _ops_name, ops_value = _first_present(evidence, OPS_FIELDS)
    resolver = Resolver(index, ops_value)
    orders_value = _first_present(evidence, ORDER_FIELDS)[1]
    orders_value = orders_value if isinstance(orders_value, list) else []
    orders = [_order(item, resolver) for item in orders_value]
    # the order that got furthest says it best: lead with its words when the checker gave them
    furthest = orders_value[0] if orders_value else None
    if (
        isinstance(furthest, dict)
        and isinstance(furthest.get("explanation"), str)
        and furthest["explanation"] not in story
    ):
        story.insert(0, furthest["explanation"])
    first = None
    first_bar = resolver.find(entry.get("first_unlinearizable"))
    first_anomaly = entry.get("first_anomaly")
    if first_bar is None and isinstance(first_anomaly, dict):  # the append checker names its op there
        first_bar = resolver.find(first_anomaly.get("op"))
        if isinstance(first_anomaly.get("explanation"), str) and first_anomaly["explanation"] not in story:
            story.insert(0, first_anomaly["explanation"])
    node, answered_s, faults = None, None, []
    if first_bar is not None:
        first = op_row(first_bar, index, f"op {first_bar.invoke.index}")
        done = first_bar.completion
        node = done.node if done is not None else None
        answered_ns = done.time_ns if done is not None else first_bar.invoke.time_ns
        answered_s = (answered_ns - index.t0_ns) / 1e9
        faults = index.faults_during(first_bar.invoke.time_ns, answered_ns)
    rows: list[OpRow] = []
    seen: set[int] = set()
    for reference in ops_value if isinstance(ops_value, list) else []:
        bar = resolver.find(reference)
        if bar is not None and bar.invoke.index not in seen:
            seen.add(bar.invoke.index)
            rows.append(op_row(bar, index, f"op {bar.invoke.index}"))
    rows.sort(key=lambda row: row.start_ns)
    used = {
        n for n in (*PROSE_FIELDS, *OPS_FIELDS, *PREFIX_FIELDS, *ORDER_FIELDS, "minimal") if n in evidence
    }
    rest_fields = {k: v for k, v in evidence.items() if k not in used}
    rest_fields.update({k: v for k, v in entry.items() if k not in shown and k not in PROSE_FIELDS})
    key = entry.get("key")
    indices = sorted({row.link_index for row in rows} | ({first.link_index} if first else set()))
    through = entry.get("linearizable_through_event")
    return Anomaly(
        checker=name,
        key=key,
        key_text=compact(key, 80),
        story=story,
        first=first,
        ops=rows,
        svg=counterexample_svg(rows),
        prefix=_prefix(entry, evidence, resolver),
        orders=orders,
        rest=json.dumps(rest_fields, indent=2, default=str) if rest_fields else "",
        history_indices=indices,
        notes=_notes(entry, evidence),
        through_event=through if isinstance(through, int) and not isinstance(through, bool) else None,
        node=str(node) if node is not None else None,
        answered_s=answered_s,
        faults=faults,
    )


def sentence(found: Anomaly) -> str:
    """The anomaly in one sentence: what, which key, which node answered the bad op, when, under which faults.

    The report's banner and the terminal both print this, so they never disagree.
    """
    parts = [found.checker]
    if found.key is not None:
        parts.append(f"key {found.key_text}")
    head = ": ".join(parts)
    if found.first is not None:
        op = found.first.text
        who = f"answered by {found.node}" if found.node else "with no node's reply"
        when = f"at {found.answered_s:.2f} s into the run" if found.answered_s is not None else ""
        under = "under " + "; ".join(found.faults) if found.faults else "with no fault active"
        head += f": {op} (p{found.first.process}, {found.first.outcome}) {who} {when}, {under}".replace(
            "  ", " "
        )
    else:
        head += " found an anomaly" if found.key is None else ""
    return head + (f": {found.story[0]}" if found.story else "")


def anomalies(results: dict[str, Any], index: BarIndex) -> list[Anomaly]:
    """One entry per checker that found an anomaly, the linearizability checker first."""
    checkers = results.get("checkers")
    if not isinstance(checkers, dict):
        return []
    found = [
        (name, entry)
        for name, entry in checkers.items()
        if isinstance(entry, dict) and entry.get("valid") is False
    ]
    found.sort(key=lambda item: (item[0] != "linearizable", item[0]))
    return [anomaly_of(name, entry, index) for name, entry in found]


@dataclass(frozen=True, slots=True)
class Undecided:
    """A checker that could not reach a verdict, and how far it got."""

    checker: str
    reason: str
    keys: list[dict[str, Any]]


def undecided(results: dict[str, Any], index: BarIndex) -> list[Undecided]:
    """Checkers whose verdict is unknown: their reason and, per key, where the search stopped."""
    checkers = results.get("checkers")
    if not isinstance(checkers, dict):
        return []
    found = []
    for name, entry in checkers.items():
        if not isinstance(entry, dict) or entry.get("valid") in (True, False):
            continue
        keys = []
        for item in entry.get("unknown_keys") or []:
            if not isinstance(item, dict):
                continue
            bar = index.find(item.get("stuck_at"))
            keys.append(
                {
                    "key": compact(item.get("key"), 60),
                    "reason": compact(item.get("reason") or item.get("method") or "", 200),
                    "prefix_ops": item.get("linearizable_prefix_ops"),
                    "op_count": item.get("op_count"),
                    "stuck": op_row(bar, index, f"op {bar.invoke.index}") if bar is not None else None,
                }
            )
        reason = next(
            (str(entry[k]) for k in ("reason", "error", "message") if entry.get(k)), "no reason recorded"
        )
        found.append(Undecided(name, reason, keys))
    return found
