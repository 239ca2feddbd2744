"""A trace as a sequence diagram: one row per event, one lane per party.

Lanes, left to right: people (cashier and customer), terminal, network, host,
printer. A world of several terminals has one lane per terminal instead (its
people, terminal and printer), then network and host, whose rows name the
terminal. Messages are arrows in the network lane, faults and lost messages are
marked, violations are listed at the end. The same rows feed the terminal
rendering (rich) and the HTML report (harness.htmlreport).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .invariants import money
from .trace import Record, read_trace

LANES: tuple[str, ...] = ("people", "terminal", "network", "host", "printer")
# Rows shown by default: a two-purchase trace has about 100.
ROWS_MAX_DEFAULT = 400

_FAULT_LANE = {
    "network": "network",
    "forge": "network",
    "host": "host",
    "printer": "printer",
    "power": "terminal",
    "clock": "terminal",
    "reader": "people",
    "keypad": "people",
}


@dataclass(frozen=True, slots=True)
class Row:
    seq: int
    t_ms: int
    lane: str
    text: str
    # plain | fault | lost | right (message to the host) | left (to the terminal)
    # | approved | declined | failed | pending | dim | bad
    style: str = "plain"


@dataclass(slots=True)
class Diagram:
    name: str = ""
    firmware: str = ""
    seed: int = 0
    rows: list[Row] = field(default_factory=list)
    total_rows: int = 0  # rows the trace has (rows may hold fewer: the limit)
    violations: list[Record] = field(default_factory=list)
    ledger: list[Record] = field(default_factory=list)  # host records
    receipts: list[Record] = field(default_factory=list)  # print records
    plan: list[str] = field(default_factory=list)  # the scenario's faults, described
    applied: dict[int, int] = field(default_factory=dict)  # plan index -> times applied
    violating: set[int] = field(default_factory=set)  # seqs the violations cite
    lanes: tuple[str, ...] = LANES  # a world of several: one per terminal, network, host

    def fault_plan(self) -> list[str]:
        """One line per planned fault, with how often it applied."""
        out = []
        for i, text in enumerate(self.plan):
            n = self.applied.get(i, 0)
            out.append(f"faults[{i}] {text}: " + (f"applied {_times(n)}" if n else "never applied"))
        return out


def _money(value: Any) -> str:
    """Minor units as money; anything that is not an integer shows as "?" (a trace
    is untrusted input)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return money(value)
    return "?"


def _times(n: int) -> str:
    return "once" if n == 1 else "twice" if n == 2 else f"{n} times"


def _plural(n: Any, noun: str) -> str:
    return f"{n} {noun if n == 1 else noun + 's'}"


def _describe_fault(entry: Any) -> str:
    """`{"drop": {"nth": 1}}` (scenario data, untrusted) -> `drop(nth=1)`."""
    if not isinstance(entry, dict) or len(entry) != 1:
        return "?"
    ((kind, table),) = entry.items()
    params = table.items() if isinstance(table, dict) else ()
    return f"{kind}({', '.join(f'{k}={v}' for k, v in params)})"


def _pan(pan: Any) -> str:
    text = str(pan or "")
    return f"…{text[-4:]}" if text else "(misread)"


def _msg(msg: dict[str, Any]) -> str:
    parts = [str(msg.get("mti", "?")), f"stan {msg.get('stan', '?')}"]
    if msg.get("amount"):
        parts.append(_money(msg["amount"]))
    if msg.get("rc"):
        parts.append(f"rc {msg['rc']}")
    if msg.get("rrn"):
        parts.append(f"rrn {msg['rrn']}")
    if msg.get("repeat"):
        parts.append("repeat")
    if msg.get("debit_count") or msg.get("mti") in ("0500", "0510"):
        debits = _plural(msg.get("debit_count", 0), "debit")
        parts.append(f"{debits} {_money(msg.get('debit_amount', 0))}")
    return " ".join(parts)


def rows_of(rec: Record) -> list[Row]:
    """The diagram rows for one trace record (none for bookkeeping records)."""
    seq, t, kind = int(rec["seq"]), int(rec["t_ms"]), rec["kind"]

    def row(lane: str, text: str, style: str = "plain") -> list[Row]:
        return [Row(seq, t, lane, text, style)]

    if kind == "intent":
        walked = f" (walked from {rec['from']})" if rec.get("from") else ""
        return row(
            "people",
            f"customer #{rec.get('intent')}{walked} wants to pay "
            f"{_money(rec.get('amount', 0))} with "
            f"{'wallet code' if rec.get('wallet') else 'card'} {_pan(rec.get('card'))}",
        )
    if kind == "input":
        ev = rec.get("event")
        if ev == "amount_keyed":
            return row("people", f"cashier keys {_money(rec.get('amount', 0))}")
        if ev == "confirm":
            return row("people", "cashier presses confirm")
        if ev == "card":
            return row("people", f"customer taps card {_pan(rec.get('pan'))}")
        if ev == "scan":
            return row("people", f"cashier scans the phone's code {_pan(rec.get('code'))}")
        if ev in ("reprint", "batch_close"):
            return row("people", f"cashier asks for {str(ev).replace('_', ' ')}")
        if ev == "boot":
            journal = _plural(rec.get("journal", 0), "record")
            return row("terminal", f"boots (journal: {journal})", "dim")
        if ev == "timer":
            return row("terminal", f"timer '{rec.get('name', '')}' fires")
        return []  # print_finished: the printer row says it
    if kind == "cashier":
        if rec.get("action") == "next-terminal":
            return row("people", f"customer #{rec.get('intent')} walks to terminal {rec.get('to')}")
        return row("people", f"cashier: {rec.get('action', '')}")
    if kind == "ignored":
        return row("people", f"{rec.get('input', '')} ignored: {rec.get('reason', '')}", "dim")
    if kind == "power":
        if rec.get("state") == "off":
            return row("terminal", f"POWER OFF ({rec.get('reason', '')})", "bad")
        return row("terminal", "power on", "dim")
    if kind == "display":
        outcome = str(rec.get("outcome", ""))
        style = {
            "approved": "approved",
            "declined": "declined",
            "failed": "failed",
            "pending": "pending",
            "receipt-pending": "pending",
        }.get(outcome, "plain")
        rrn = f" rrn {rec['rrn']}" if rec.get("rrn") else ""
        text = str(rec.get("text", ""))
        # "shows APPROVED", not "shows APPROVED: APPROVED".
        said = f": {text}" if text and text.upper() != outcome.upper() else ""
        return row("terminal", f"shows {outcome.upper()}{said}{rrn}", style)
    if kind == "journal":
        r = rec.get("record", {})
        return row(
            "terminal", f"journal: {r.get('type', '?') if isinstance(r, dict) else '?'}", "dim"
        )
    if kind == "send":
        msg = rec.get("msg", {})
        if rec.get("from") == "terminal":
            return row("network", f"{_msg(msg)} ──▶", "right")
        return row("network", f"◀── {_msg(msg)}", "left")
    if kind == "deliver":
        msg = rec.get("msg", {})
        lane = "host" if rec.get("to") == "host" else "terminal"
        return row(lane, f"receives {_msg(msg)}")
    if kind == "lost":
        msg = rec.get("msg", {})
        return row(
            "network", f"✗ LOST {_msg(msg)} to {rec.get('to')}: {rec.get('reason', '')}", "lost"
        )
    if kind == "fault":
        lane = _fault_lane(str(rec.get("fault", "")))
        detail = ", ".join(
            f"{k}={v}" for k, v in rec.items() if k not in ("seq", "t_ms", "kind", "fault", "msg")
        )
        return row(lane, f"⚡ FAULT {rec.get('fault')} ({detail})", "fault")
    if kind == "host":
        amount = f" {_money(rec['amount'])}" if rec.get("amount") else ""
        rrn = f" rrn {rec['rrn']}" if rec.get("rrn") else ""
        return row("host", f"{rec.get('action')}{amount} rc {rec.get('rc')}{rrn}")
    if kind == "host_down":
        return row("host", f"HOST DOWN until {rec.get('until_ms')} ms", "bad")
    if kind == "print_start":
        return row("printer", f"starts job {rec.get('job')}", "dim")
    if kind == "print":
        r = rec.get("receipt", {})
        r = r if isinstance(r, dict) else {}
        status = str(rec.get("status", ""))
        return row(
            "printer",
            f"receipt {str(r.get('status', '')).upper()} {_money(r.get('amount', 0))} "
            f"rrn {r.get('rrn', '') or '-'}: {status}",
            "approved" if status == "ok" else "bad",
        )
    if kind == "crash":
        return row("terminal", f"FIRMWARE CRASH: {rec.get('error', '')}", "bad")
    return []


def _fault_lane(kind: str) -> str:
    import faults

    cls = faults.REGISTRY.get(kind)
    return _FAULT_LANE.get(cls.LAYER if cls is not None else "", "network")


def build(records: Iterable[Record], limit: int = ROWS_MAX_DEFAULT) -> Diagram:
    """The diagram of a trace's records (at most `limit` rows kept)."""
    d = Diagram()
    for rec in records:
        kind = rec["kind"]
        if kind == "run":
            d.name = str(rec.get("name", ""))
            d.firmware = str(rec.get("firmware", ""))
            seed = rec.get("seed", 0)
            d.seed = seed if isinstance(seed, int) else 0
            sc = rec.get("scenario")
            plan = sc.get("faults", []) if isinstance(sc, dict) else []
            d.plan = [_describe_fault(f) for f in plan] if isinstance(plan, list) else []
            d.lanes = _lanes(sc)
            continue
        if kind == "violation":
            d.violations.append(rec)
            first = rec.get("first")
            seqs = first.get("seqs", []) if isinstance(first, dict) else []
            if isinstance(seqs, list):
                d.violating.update(s for s in seqs if isinstance(s, int))
            continue
        if kind == "fault" and isinstance(rec.get("index"), int):
            d.applied[rec["index"]] = d.applied.get(rec["index"], 0) + 1
        if kind == "host":
            d.ledger.append(rec)
        elif kind == "print":
            d.receipts.append(rec)
        term = rec.get("term")
        for r in rows_of(rec):
            if term is not None and d.lanes is not LANES:
                r = _in_lane(r, str(term), d.lanes)
            d.total_rows += 1
            if len(d.rows) < limit:
                d.rows.append(r)
    return d


def _lanes(sc: Any) -> tuple[str, ...]:
    """The diagram's lanes for a run's scenario data (untrusted): the five, or one
    per terminal of a world of several, then network and host."""
    terminals = sc.get("terminals") if isinstance(sc, dict) else None
    if not isinstance(terminals, list) or not terminals:
        return LANES
    names = [str(t.get("name") or t.get("id")) for t in terminals if isinstance(t, dict)]
    return (*dict.fromkeys(n for n in names if n not in ("network", "host")), "network", "host")


def _in_lane(r: Row, term: str, lanes: tuple[str, ...]) -> Row:
    """Row `r` of terminal `term`: in its terminal's lane, or naming it."""
    if r.lane in ("network", "host") or term not in lanes:
        return Row(r.seq, r.t_ms, r.lane, f"{term}: {r.text}", r.style)
    return Row(r.seq, r.t_ms, term, r.text, r.style)


def load(path: Path, limit: int = ROWS_MAX_DEFAULT) -> Diagram:
    """Read a trace (TraceReadError on a bad line) and build its diagram."""
    from .replay import header_from_record

    def checked() -> Iterator[Record]:
        for rec in read_trace(path):
            if rec["seq"] == 1 or rec["kind"] == "run":
                header_from_record(path, rec)  # the header must be a valid run record
            yield rec

    return build(checked(), limit)


_RICH_STYLE = {
    "fault": "bold red",
    "lost": "bold red",
    "bad": "red",
    "right": "cyan",
    "left": "magenta",
    "approved": "green",
    "declined": "yellow",
    "failed": "bold yellow",
    "pending": "blue",
    "dim": "dim",
    "plain": "",
}


@dataclass(frozen=True, slots=True)
class ViolationSummary:
    """One `violation` trace record, read defensively (a trace is untrusted input)."""

    invariant: str
    count: str
    message: str
    seqs: str  # "12, 40" or "-"


def violation_summaries(d: Diagram) -> list[ViolationSummary]:
    out = []
    for v in d.violations:
        first = v.get("first", {})
        first = first if isinstance(first, dict) else {}
        seqs = ", ".join(str(s) for s in first.get("seqs", [])) or "-"
        out.append(
            ViolationSummary(
                str(v.get("invariant", "")),
                str(v.get("count", "")),
                str(first.get("message", "")),
                seqs,
            )
        )
    return out


def violation_lines(d: Diagram) -> list[str]:
    return [
        f"{v.invariant} ({v.count}x): {v.message} (trace lines {v.seqs})"
        for v in violation_summaries(d)
    ]


def render(d: Diagram, console: Console) -> None:
    """Print the diagram as a rich table, then the violations. Rows that a violation
    cites are marked `!` and, on a terminal, highlighted. A console too narrow for
    five lanes without splitting words gets one line per row instead."""
    if not _fits(d, console.width):
        _render_lines(d, console)
        _render_tail(d, console)
        return
    table = Table(
        title=f"{d.name} · firmware {d.firmware} · seed {d.seed}",
        box=box.SIMPLE if console.is_terminal else box.ASCII,
        show_lines=False,
        expand=False,
    )
    table.add_column("seq", justify="right", style="dim", no_wrap=True)
    table.add_column("t (s)", justify="right", style="dim", no_wrap=True)
    for lane in d.lanes:
        table.add_column(lane, overflow="fold", ratio=1)
    for r in d.rows:
        cells: list[Text | str] = ["" for _ in d.lanes]
        cells[d.lanes.index(r.lane)] = Text(r.text, style=_RICH_STYLE.get(r.style, ""))
        cited = r.seq in d.violating
        table.add_row(
            f"!{r.seq}" if cited else str(r.seq),
            f"{r.t_ms / 1000:.3f}",
            *cells,
            style=VIOLATING_ROW_STYLE if cited else None,
        )
    console.print(table)
    _render_tail(d, console)


def _fits(d: Diagram, width: int) -> bool:
    """Whether the lane table fits `width` columns without splitting a word."""
    longest = dict.fromkeys(d.lanes, 0)
    for r in d.rows:
        word = max((len(w) for w in r.text.split()), default=0)
        longest[r.lane] = max(longest[r.lane], word)
    lanes = sum(max(len(lane), longest[lane]) for lane in d.lanes)
    fixed = len(str(d.rows[-1].seq if d.rows else 0)) + 1 + len("t (s)") + 3
    return fixed + lanes + 3 * (len(d.lanes) + 2) + 1 <= width


def _render_lines(d: Diagram, console: Console) -> None:
    console.print(
        Text(f"{d.name} · firmware {d.firmware} · seed {d.seed}", style="bold"), soft_wrap=True
    )
    for r in d.rows:
        cited = r.seq in d.violating
        seq = f"!{r.seq}" if cited else str(r.seq)
        line = Text(f"{seq:>6} {r.t_ms / 1000:9.3f}  {r.lane:<8} ")
        line.append(r.text, style=_RICH_STYLE.get(r.style, ""))
        if cited:
            line.stylize(VIOLATING_ROW_STYLE)
        console.print(line, soft_wrap=True)


def _render_tail(d: Diagram, console: Console) -> None:
    if d.total_rows > len(d.rows):
        console.print(
            f"... {d.total_rows - len(d.rows)} more rows not shown (--limit N to show more)",
            markup=False,
            highlight=False,
        )
    if d.plan:
        console.print(Text("fault plan:", style="bold"))
        for line in d.fault_plan():
            console.print(Text(f"  {line}"), soft_wrap=True)
    if d.violations:
        console.print(Text("violated invariants:", style="bold red"))
        for line in violation_lines(d):
            console.print(Text(f"  - {line}", style="red"), soft_wrap=True)
        console.print(Text("  (rows marked ! are the trace lines these cite)", style="dim"))
    else:
        console.print(Text("no invariant violated", style="green"))


# The background of a row a violation cites, in the terminal.
VIOLATING_ROW_STYLE = "on #4a1010"
