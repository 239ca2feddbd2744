"""Verify stage: replay the scenario and compare its outcome with the logs."""

import dataclasses
import io
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from acquirer.protocol import MTI_PREAUTH, MTI_PURCHASE
from harness.trace import read_trace
from scenarios.model import (
    INVARIANT_NAMES,
    Expect,
)

from .judge import segment
from .model import Imported
from .parse import HOST_EVENTS, TERMINAL_EVENTS, Log, parse_log
from .render import render_logs

# ---------------------------------------------------------------------------- outcome


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a responder compares, per intent (judge.segment): the terminal's
    sequence of final displays, responses received, receipts, power and crashes,
    and the host's decisions for it; then the host decisions outside any intent
    (batch closes). RRNs are labelled R1, R2, ... by first appearance, so a log's
    RRNs (a real host's numbering) compare with the replay's, never raw; `rrns`
    keeps each label's raw value for messages."""

    intents: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]
    other: tuple[str, ...]
    rrns: tuple[str, ...] = field(compare=False, default=())

    @property
    def displays(self) -> tuple[tuple[str, ...], ...]:
        return tuple(
            tuple(t.removeprefix("display ") for t in term if t.startswith("display "))
            for term, _ in self.intents
        )


def outcome_of(tlog: Log, hlog: Log) -> Outcome:
    labels: dict[str, str] = {}

    def lab(rrn: object) -> str:
        text = str(rrn or "")
        if not text:
            return "-"
        return labels.setdefault(text, f"R{len(labels) + 1}")

    decisions = [e for e in hlog.entries if e.event == "decision"]
    for e in decisions:
        lab(e.data.get("rrn"))
    intents = segment(tlog)
    by_key = {k: i.number for i in intents for k in i.keys}
    by_stan = {s: i.number for i in intents for s in i.stans}
    by_rrn: dict[str, int] = {}
    host: dict[int, list[str]] = {i.number: [] for i in intents}
    other: list[str] = []
    for e in decisions:
        d = e.data
        rrn = str(d.get("rrn", ""))
        token = (
            f"{d['mti']} {d['action']} rc {d.get('rc', '')} amount {d.get('amount', 0)} "
            f"rrn {lab(rrn)}"
        )
        n: int | None = None
        if d["mti"] in (MTI_PURCHASE, MTI_PREAUTH):
            key = str(d.get("key", ""))
            n = by_key.get(key) if key else by_stan.get(int(d["stan"]))
            if n is not None and rrn:
                by_rrn.setdefault(rrn, n)
        elif rrn:
            n = by_rrn.get(rrn)
        (host[n] if n is not None else other).append(token)
    term = [tuple(_relabel(t, lab) for t in i.events) for i in intents]
    return Outcome(
        tuple((t, tuple(host[i.number])) for t, i in zip(term, intents, strict=True)),
        tuple(other),
        tuple(labels),
    )


def _relabel(token: str, lab: Callable[[object], str]) -> str:
    head, sep, rrn = token.rpartition(" rrn ")
    return f"{head}{sep}{lab(rrn)}" if sep else token


def logs_of_trace(trace_path: Path) -> tuple[Log, Log]:
    """A trace rendered and parsed back as (terminal log, host log)."""
    tbuf, hbuf = io.StringIO(), io.StringIO()
    render_logs(read_trace(trace_path), tbuf, hbuf)
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="posharness-logs-") as tmp:
        tp, hp = Path(tmp) / "terminal.log", Path(tmp) / "host.log"
        tp.write_text(tbuf.getvalue(), encoding="utf-8")
        hp.write_text(hbuf.getvalue(), encoding="utf-8")
        tlog = parse_log(tp, TERMINAL_EVENTS, problems)
        hlog = parse_log(hp, HOST_EVENTS, problems)
    if problems:  # our own rendering must always parse
        raise AssertionError(f"rendered logs do not parse: {problems[0]}")
    return tlog, hlog


def compare_outcomes(logged: Outcome, replayed: Outcome) -> list[str]:
    """Differences between the logged and the replayed outcome, in words."""
    out = []
    for i in range(max(len(logged.intents), len(replayed.intents))):
        a = logged.intents[i] if i < len(logged.intents) else ((), ())
        b = replayed.intents[i] if i < len(replayed.intents) else ((), ())
        if a[0] != b[0]:
            out.append(f"purchase {i + 1}: the log shows {list(a[0])}, the replay {list(b[0])}")
        if a[1] != b[1]:
            out.append(
                f"purchase {i + 1}: host decisions in the log {list(a[1])}, in the replay "
                f"{list(b[1])}"
            )
    if logged.other != replayed.other:
        out.append(f"other host decisions: log {list(logged.other)}, replay {list(replayed.other)}")
    if out:
        pairs = [
            f"R{n + 1}={a}/{b}"
            for n, (a, b) in enumerate(zip(logged.rrns, replayed.rrns, strict=False))
        ]
        out.append(f"RRNs by first appearance (log/replay): {', '.join(pairs) or '-'}")
    return out


def _verify(imported: Imported, tlog: Log, hlog: Log) -> None:
    """Replay the inferred scenario; record mismatches and the invariants it violates."""
    from harness.runner import run_scenario

    with tempfile.TemporaryDirectory(prefix="posharness-import-") as tmp:
        trace = Path(tmp) / "replay.jsonl"
        # The firmware came from the command line or a checked header: run it as named.
        result = run_scenario(imported.scenario, imported.scenario.firmware, trace_path=trace)
        rt, rh = logs_of_trace(trace)
    imported.mismatches = compare_outcomes(outcome_of(tlog, hlog), outcome_of(rt, rh))
    imported.violated = result.violated()
    if result.crashes:
        imported.mismatches.append(f"the replay crashed the firmware {result.crashes} times")
    sc = imported.scenario
    violated = tuple(n for n in INVARIANT_NAMES if n in imported.violated)
    holds = tuple(n for n in INVARIANT_NAMES if n not in imported.violated)
    imported.scenario = dataclasses.replace(sc, expect=Expect(invariants=holds, violated=violated))


def iter_unexplained(imported: Imported) -> Iterator[str]:
    yield from imported.problems
    yield from imported.unexplained
    yield from imported.mismatches
