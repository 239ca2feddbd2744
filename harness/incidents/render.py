"""Render a trace as the two incident logs (`incident export`)."""

import json
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from harness.trace import Record, read_trace
from scenarios.model import (
    TerminalSpec,
)

from .parse import _HOST_ACTION_NAMES, _MS, _MSG_SKIP, _TIMER_KEYS, DEFAULT_START, LOG_VERSION

# A host that lost a reversal answered it without recording anything: no decision.
_UNLOGGED_ACTIONS = frozenset({"reversal-lost"})
# The cashier's keys naming a sale by its RRN, and the fields each carries besides it.
_CASHIER_KEYS: dict[str, tuple[str, ...]] = {
    "void": (),
    "refund": ("amount",),
    "complete": ("amount",),
    "tip": ("tip",),
}
# Displays that show an amount of their own: COMPLETED (captured), TIP ADDED (new total).
_AMOUNT_DISPLAYS = ("completed", "tip-added")

# ---------------------------------------------------------------------------- writing


def _iso(start: datetime, t_ms: int) -> str:
    return (start + t_ms * _MS).isoformat(timespec="milliseconds")


def _flat_msg(msg: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in msg.items() if k not in _MSG_SKIP}


def _line(out: IO[str], obj: dict[str, Any]) -> None:
    out.write(json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n")


def render_logs(
    records: Iterable[Record],
    terminal_out: IO[str],
    host_out: IO[str],
    skew_ms: int = 0,
    start: datetime = DEFAULT_START,
) -> None:
    """Write the terminal's and the host's view of a trace, host clock `skew_ms` ahead."""
    tid = "T0001"
    mid = ""
    host_start = start + skew_ms * _MS

    def term(t_ms: int, event: str, **fields: Any) -> None:
        _line(terminal_out, {"ts": _iso(start, t_ms), "terminal": tid, "event": event, **fields})

    def host(t_ms: int, event: str, **fields: Any) -> None:
        _line(host_out, {"ts": _iso(host_start, t_ms), "event": event, **fields})

    for rec in records:
        kind = rec["kind"]
        t = int(rec["t_ms"])
        if kind == "run":
            sc = rec.get("scenario", {})
            tconf = dict(sc.get("terminal", {}))
            tid = str(tconf.pop("id", TerminalSpec().id))
            mid = str(tconf.pop("merchant_id", TerminalSpec().merchant_id))
            term(
                t,
                "log_start",
                format="posharness-terminal-log",
                version=LOG_VERSION,
                merchant=mid,
                firmware=rec.get("firmware", "reference"),
                config=tconf,
            )
            host(t, "log_start", format="posharness-host-log", version=LOG_VERSION, host="acq-1")
        elif kind == "power":
            extra = {"reason": rec["reason"]} if "reason" in rec else {}
            term(t, "power", state=rec["state"], **extra)
        elif kind == "input":
            ev = rec["event"]
            if ev == "boot":
                term(t, "boot", journal=rec.get("journal", 0))
            elif ev == "amount_keyed":
                term(t, "amount_keyed", amount=rec["amount"])
            elif ev == "preauth_keyed":
                term(t, "amount_keyed", amount=rec["amount"], preauth=True)
            elif ev == "card":
                term(t, "card_read", pan=rec.get("pan", ""))
            elif ev == "timer":
                term(t, "timeout", timer=rec.get("name", ""))
            elif ev in _TIMER_KEYS:
                term(t, "key", key=_TIMER_KEYS[ev])
        elif kind == "cashier" and rec.get("action") in _CASHIER_KEYS:
            extra = {f: rec.get(f, 0) for f in _CASHIER_KEYS[rec["action"]]}
            term(t, "key", key=rec["action"], rrn=rec.get("rrn", ""), **extra)
        elif kind == "display":
            extra = {"rrn": rec["rrn"]} if rec.get("rrn") else {}
            if rec["outcome"] in _AMOUNT_DISPLAYS:
                extra["amount"] = rec.get("amount", 0)
            term(t, "display", outcome=rec["outcome"], text=rec.get("text", ""), **extra)
        elif kind == "journal":
            r = rec.get("record", {})
            fields = {k: r[k] for k in ("type", "key", "rrn") if k in r}
            term(t, "journal", **fields)
        elif kind == "print_start":
            term(t, "print_start", job=rec["job"])
        elif kind == "print":
            term(t, "print", job=rec["job"], status=rec["status"], receipt=rec.get("receipt", {}))
        elif kind == "crash":
            term(t, "crash", error=rec.get("error", ""))
        elif kind == "send" and rec.get("from") == "terminal":
            term(t, "send", **_flat_msg(rec["msg"]))
        elif kind == "deliver" and rec.get("to") == "terminal":
            term(t, "recv", **_flat_msg(rec["msg"]))
        elif kind == "deliver" and rec.get("to") == "host":
            host(t, "recv", terminal=rec["msg"].get("terminal_id", tid), **_flat_msg(rec["msg"]))
        elif kind == "send" and rec.get("from") == "host":
            host(t, "send", terminal=rec["msg"].get("terminal_id", tid), **_flat_msg(rec["msg"]))
        elif kind == "host" and rec["action"] not in _UNLOGGED_ACTIONS:
            fields = {
                k: rec[k]
                for k in ("rc", "rrn", "amount", "mti", "stan", "key", "detail")
                if k in rec
            }
            action = _HOST_ACTION_NAMES.get(rec["action"], rec["action"])
            host(t, "decision", terminal=tid, action=action, **fields)
        elif kind == "host_down":
            until = int(rec.get("until_ms", t))
            host(t, "crash", down_until=_iso(host_start, until))


def trace_to_logs(
    trace_path: Path,
    terminal_out: Path,
    host_out: Path,
    skew_ms: int = 0,
    start: datetime = DEFAULT_START,
) -> None:
    """Render the trace at `trace_path` as the two incident logs (the host's clock
    `skew_ms` ahead of the terminal's). Raises TraceReadError on a bad trace."""
    terminal_out.parent.mkdir(parents=True, exist_ok=True)
    host_out.parent.mkdir(parents=True, exist_ok=True)
    with (
        terminal_out.open("w", encoding="utf-8", newline="\n") as tf,
        host_out.open("w", encoding="utf-8", newline="\n") as hf,
    ):
        render_logs(read_trace(trace_path), tf, hf, skew_ms, start)
