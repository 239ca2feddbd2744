"""Verify stage: replay the scenario and compare its outcome with the logs."""

import dataclasses
import io
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from harness.trace import read_trace
from scenarios.model import (
    INVARIANT_NAMES,
    Expect,
)

from .model import Imported
from .parse import HOST_EVENTS, TERMINAL_EVENTS, Log, parse_log
from .render import render_logs

# ---------------------------------------------------------------------------- outcome


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a responder compares: displays per purchase, host decisions, receipts."""

    displays: tuple[tuple[str, ...], ...]
    decisions: tuple[tuple[str, str, str, int, str], ...]  # mti, action, rc, amount, rrn
    receipts: tuple[tuple[str, str, int, str], ...]  # print status, receipt status, amount, rrn


def outcome_of(tlog: Log, hlog: Log) -> Outcome:
    displays: list[list[str]] = []
    rebooted = False
    finished = True
    for e in tlog.entries:
        if e.event == "power" and e.data["state"] == "on" and displays:
            rebooted = True
        elif e.event == "amount_keyed":
            if not (displays and not finished and rebooted):
                displays.append([])
            finished = False
            rebooted = False
        elif e.event == "display" and displays:
            outcome = str(e.data["outcome"])
            if outcome in ("approved", "declined", "failed", "receipt-pending"):
                displays[-1].append(outcome)
                if outcome != "receipt-pending":
                    finished = True
    decisions = tuple(
        (
            str(e.data["mti"]),
            str(e.data["action"]),
            str(e.data.get("rc", "")),
            int(e.data.get("amount", 0)),
            str(e.data.get("rrn", "")),
        )
        for e in hlog.entries
        if e.event == "decision"
    )
    receipts = []
    for e in tlog.entries:
        if e.event == "print":
            r = e.data.get("receipt", {})
            r = r if isinstance(r, dict) else {}
            receipts.append(
                (
                    str(e.data["status"]),
                    str(r.get("status", "")),
                    int(r.get("amount", 0)),
                    str(r.get("rrn", "")),
                )
            )
    return Outcome(tuple(tuple(d) for d in displays), decisions, tuple(receipts))


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
    if logged.displays != replayed.displays:
        for i in range(max(len(logged.displays), len(replayed.displays))):
            a = logged.displays[i] if i < len(logged.displays) else ()
            b = replayed.displays[i] if i < len(replayed.displays) else ()
            if a != b:
                out.append(f"purchase {i + 1}: logged displays {list(a)}, replay shows {list(b)}")
    if logged.decisions != replayed.decisions:
        out.append(
            f"host decisions differ: logged {[d[:4] for d in logged.decisions]}, "
            f"replay {[d[:4] for d in replayed.decisions]}"
        )
    if logged.receipts != replayed.receipts:
        out.append(
            f"receipts differ: logged {list(logged.receipts)}, replay {list(replayed.receipts)}"
        )
    return out


def _verify(imported: Imported, tlog: Log, hlog: Log) -> None:
    """Replay the inferred scenario; record mismatches and the invariants it violates."""
    from harness.runner import run_scenario

    with tempfile.TemporaryDirectory(prefix="posharness-import-") as tmp:
        trace = Path(tmp) / "replay.jsonl"
        result = run_scenario(imported.scenario, trace_path=trace)
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
