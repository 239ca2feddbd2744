"""Incident logs: render a trace as a terminal log and a host log, and import such a
pair of logs back into a replayable scenario.

The two formats are JSON lines with wall-clock ISO 8601 timestamps; each side
writes with its own clock, so the host's clock may be skewed against the
terminal's (docs/incident-logs.md describes every field). Import:

1. parses both logs; a malformed line is reported ("file:line: problem") and skipped;
2. estimates the clock skew and the one-way network latency from matched
   request/response pairs (NTP style: offset = ((b - a) - (d - c)) / 2 over the
   pairs with the smallest round trip, since faults only ever add delay);
3. matches every message sent with its arrival on the other side;
4. infers the purchases (from the keyed amounts and card reads) and the fault plan
   (drops, delays, duplicates, forged responses, host slowness and RC bursts, host
   crashes, power cuts, printer and reader faults) from what does not match;
5. lists everything it could not explain, then replays the scenario and checks
   that the replay shows the same displays per purchase, the same host decisions
   and the same receipts as the logs.
"""

from __future__ import annotations

import dataclasses
import io
import json
import statistics
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import faults
from acquirer.catalogue import (
    AMOUNT_SLOW,
    AMOUNT_SLOW_EXTRA_MS,
    CATALOGUE_CARDS,
    amount_rule,
)
from acquirer.protocol import MTI_PURCHASE, MTI_PURCHASE_RESP, response_mti
from scenarios.model import (
    INVARIANT_NAMES,
    CardSpec,
    Expect,
    HostSpec,
    NetworkSpec,
    Scenario,
    ScenarioError,
    Step,
    TerminalSpec,
)

from .trace import Record, read_trace

LOG_VERSION = 1
# The wall-clock time a rendered trace starts at (virtual time 0), unless told.
DEFAULT_START = datetime(2024, 3, 15, 9, 0, 0, tzinfo=UTC)
# A log line longer than this is malformed (a batch upload is ~300 kB at most).
LOG_LINE_BYTES_MAX = 1024 * 1024
# At most this many lines are read from one log, and this many problems listed.
LOG_LINES_MAX = 1_000_000
PROBLEMS_MAX = 1_000
# Timestamps are whole milliseconds; skew estimation rounds to the nearest one, so
# two times closer than this are "the same".
TOLERANCE_MS = 2
# One-way latency assumed when no request/response pair can be matched.
DEFAULT_LATENCY_MS = NetworkSpec().latency_ms

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_MSG_SKIP = ("terminal_id", "merchant_id")  # carried once per line as "terminal"/"merchant"
# Host actions as the host log names them (the trace calls an RC burst "injected").
_HOST_ACTION_NAMES = {"injected": "unavailable"}
_TIMER_KEYS = {"reprint": "reprint", "batch_close": "batch_close", "confirm": "confirm"}


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
            elif ev == "card":
                term(t, "card_read", pan=rec.get("pan", ""))
            elif ev == "timer":
                term(t, "timeout", timer=rec.get("name", ""))
            elif ev in _TIMER_KEYS:
                term(t, "key", key=_TIMER_KEYS[ev])
        elif kind == "display":
            extra = {"rrn": rec["rrn"]} if rec.get("rrn") else {}
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
        elif kind == "host":
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


# ---------------------------------------------------------------------------- reading


@dataclass(frozen=True, slots=True)
class Entry:
    """One log line: its wall time in ms since the Unix epoch, its event and fields."""

    line: int
    ts_ms: int
    event: str
    data: dict[str, Any]


@dataclass(slots=True)
class Log:
    path: str
    entries: list[Entry] = field(default_factory=list)
    header: dict[str, Any] = field(default_factory=dict)


TERMINAL_EVENTS: dict[str, tuple[str, ...]] = {
    # event -> required fields
    "log_start": (),
    "power": ("state",),
    "boot": (),
    "amount_keyed": ("amount",),
    "card_read": ("pan",),
    "key": ("key",),
    "timeout": (),
    "display": ("outcome",),
    "journal": ("type",),
    "print_start": ("job",),
    "print": ("job", "status"),
    "crash": (),
    "send": ("mti", "stan"),
    "recv": ("mti", "stan"),
}
HOST_EVENTS: dict[str, tuple[str, ...]] = {
    "log_start": (),
    "recv": ("mti", "stan"),
    "send": ("mti", "stan"),
    "decision": ("action", "mti", "stan"),
    "crash": ("down_until",),
}
_INT_FIELDS = ("amount", "stan")
_STR_FIELDS = ("mti", "pan", "outcome", "state", "action", "rc", "rrn", "key", "status", "job")


def parse_ts(text: Any) -> int:
    """ISO 8601 wall time -> ms since the Unix epoch (naive times are taken as UTC)."""
    if not isinstance(text, str):
        raise ValueError("ts: expected an ISO 8601 string")
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - _EPOCH) // _MS


def _check_line(obj: Any, events: dict[str, tuple[str, ...]]) -> str | None:
    if not isinstance(obj, dict):
        return "not a JSON object"
    event = obj.get("event")
    if not isinstance(event, str):
        return "missing event"
    if event not in events:
        return f"unknown event {event!r}"
    for key in events[event]:
        if key not in obj:
            return f"{event}: missing {key}"
    for key in _INT_FIELDS:
        if key in obj and (not isinstance(obj[key], int) or isinstance(obj[key], bool)):
            return f"{event}: {key} must be an integer, got {obj[key]!r}"
    for key in _STR_FIELDS:
        if key in obj and not isinstance(obj[key], str):
            return f"{event}: {key} must be a string, got {obj[key]!r}"
    return None


def parse_log(path: Path, events: dict[str, tuple[str, ...]], problems: list[str]) -> Log:
    """Read one log; every bad line becomes a "file:line: problem" entry in `problems`."""
    log = Log(str(path))
    try:
        f = path.open("rb")
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror or exc}") from None
    with f:
        for lineno, raw in enumerate(f, 1):
            if lineno > LOG_LINES_MAX:
                _problem(
                    problems, f"{path}:{lineno}: more than {LOG_LINES_MAX} lines, rest ignored"
                )
                break
            where = f"{path}:{lineno}"
            if len(raw) > LOG_LINE_BYTES_MAX:
                _problem(problems, f"{where}: line longer than {LOG_LINE_BYTES_MAX} bytes, skipped")
                continue
            if not raw.strip():
                continue
            if not raw.endswith(b"\n"):
                _problem(problems, f"{where}: truncated line (no newline at the end), skipped")
                continue
            try:
                obj = json.loads(raw)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                _problem(problems, f"{where}: not a JSON object ({exc}), skipped")
                continue
            bad = _check_line(obj, events)
            if bad is None:
                try:
                    ts_ms = parse_ts(obj.get("ts"))
                except ValueError as exc:
                    bad = f"bad timestamp {obj.get('ts')!r} ({exc})"
            if bad is not None:
                _problem(problems, f"{where}: {bad}, skipped")
                continue
            event = obj.pop("event")
            obj.pop("ts")
            if event == "log_start":
                log.header = obj
            log.entries.append(Entry(lineno, ts_ms, event, obj))
    return log


def _problem(problems: list[str], text: str) -> None:
    if len(problems) < PROBLEMS_MAX:
        problems.append(text)
    elif len(problems) == PROBLEMS_MAX:
        problems.append("... more problems not listed")


# ---------------------------------------------------------------------------- matching


def _identity(data: dict[str, Any]) -> str:
    """A message's identity: every field it carries (order-independent)."""
    msg = {k: v for k, v in data.items() if k not in ("terminal", "merchant")}
    return json.dumps(msg, sort_keys=True, separators=(",", ":"))


@dataclass(slots=True)
class Hop:
    """One message on the wire: sent at `sent` (terminal ms), received at `recv` (or -1)."""

    sender_idx: int  # ordinal among the sender's messages of this MTI (1-based)
    sent: int
    data: dict[str, Any]
    line: int
    recv: int = -1
    dups: list[int] = field(default_factory=list)


def _match(
    sends: list[tuple[int, dict[str, Any], int]],
    recvs: list[tuple[int, dict[str, Any], int]],
    latency_ms: int,
) -> tuple[list[Hop], list[tuple[int, dict[str, Any], int]]]:
    """Pair each arrival with the latest unmatched identical send before it; an
    arrival whose sends are all matched is a duplicate copy of the latest one."""
    counts: dict[str, int] = defaultdict(int)
    hops: list[Hop] = []
    by_id: dict[str, list[Hop]] = defaultdict(list)
    for t, data, line in sends:
        counts[data["mti"]] += 1
        hop = Hop(counts[data["mti"]], t, data, line)
        hops.append(hop)
        by_id[_identity(data)].append(hop)
    orphans = []
    for t, data, line in sorted(recvs, key=lambda r: r[0]):
        cands = [
            h for h in by_id.get(_identity(data), []) if h.sent + latency_ms <= t + TOLERANCE_MS
        ]
        free = [h for h in cands if h.recv < 0]
        if free:
            free[-1].recv = t
        elif cands:
            cands[-1].dups.append(t)
        else:
            orphans.append((t, data, line))
    return hops, orphans


def estimate_clock(
    term_sends: list[tuple[int, dict[str, Any], int]],
    term_recvs: list[tuple[int, dict[str, Any], int]],
    host_recvs: list[tuple[int, dict[str, Any], int]],
    host_sends: list[tuple[int, dict[str, Any], int]],
) -> tuple[int, int, int]:
    """(skew_ms, latency_ms, pairs): the host clock's offset against the terminal's
    and the one-way latency, from request/response pairs that are unique in both logs."""

    def unique(items: list[tuple[int, dict[str, Any], int]]) -> dict[str, int]:
        seen: dict[str, list[int]] = defaultdict(list)
        for t, data, _ in items:
            seen[_identity(data)].append(t)
        return {k: v[0] for k, v in seen.items() if len(v) == 1}

    ts, hr, hs, tr = unique(term_sends), unique(host_recvs), unique(host_sends), unique(term_recvs)
    requests = {k: (ts[k], hr[k]) for k in ts.keys() & hr.keys()}
    responses = {k: (hs[k], tr[k]) for k in hs.keys() & tr.keys()}
    resp_by_ref: dict[tuple[str, int, str], list[tuple[int, int]]] = defaultdict(list)
    for k, (c, d) in responses.items():
        m = json.loads(k)
        resp_by_ref[(m["mti"], m["stan"], m.get("idem_key", ""))].append((c, d))
    quads: list[tuple[int, int]] = []  # (round trip minus host time, 2 * offset)
    for k, (a, b) in requests.items():
        m = json.loads(k)
        ref = (response_mti(m["mti"]), m["stan"], m.get("idem_key", ""))
        for c, d in resp_by_ref.get(ref, []):
            if c >= b:
                quads.append(((b - a) + (d - c), (b - a) - (d - c)))
                break
    if quads:
        best = min(q[0] for q in quads)
        offsets = [q[1] for q in quads if q[0] <= best + TOLERANCE_MS]
        skew = round(statistics.median(offsets) / 2)
        return skew, max(0, round(best / 2)), len(quads)
    if requests:
        one_way = min(b - a for a, b in requests.values())
        return one_way - DEFAULT_LATENCY_MS, DEFAULT_LATENCY_MS, 0
    return 0, DEFAULT_LATENCY_MS, 0


# ---------------------------------------------------------------------------- inference


@dataclass(slots=True)
class Imported:
    scenario: Scenario
    skew_ms: int
    latency_ms: int
    pairs: int
    problems: list[str]  # malformed lines
    unexplained: list[str]  # things the logs show that no inferred fault explains
    notes: list[str]  # how things were explained (one line per inferred fault)
    mismatches: list[str] = field(default_factory=list)  # replay vs logs
    violated: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Purchase:
    at_ms: int
    amount: int
    card: str
    line: int
    displays: list[str] = field(default_factory=list)


def _faults_sorted(plan: list[tuple[int, faults.Fault]]) -> list[faults.Fault]:
    # Host faults in a fixed order (slow_host, rc_burst, host_crash) so their nth
    # counters see the arrivals the importer counted; the rest in time order.
    order = {"slow_host": 0, "rc_burst": 1, "host_crash": 2}
    return [f for _, f in sorted(plan, key=lambda p: (order.get(p[1].KIND, -1), p[0]))]


def _merge(plan: list[tuple[int, faults.Fault]]) -> list[tuple[int, faults.Fault]]:
    """Merge faults that differ only by consecutive nth into one with a count."""
    out: list[tuple[int, faults.Fault]] = []
    for t, f in plan:
        if out and f.nth >= 1:
            pt, prev = out[-1]
            same = prev.to_table() | {"nth": 0, "count": 1} == f.to_table() | {"nth": 0, "count": 1}
            if same and prev.KIND == f.KIND and prev.nth + prev.count == f.nth:
                merged = faults.build_fault(f.KIND, prev.to_table() | {"count": prev.count + 1})
                out[-1] = (pt, merged)
                continue
        out.append((t, f))
    return out


def import_logs(
    terminal_log: Path,
    host_log: Path,
    *,
    firmware: str | None = None,
    name: str = "",
    description: str = "",
    seed: int = 0,
    verify: bool = True,
) -> Imported:
    """Infer a scenario from a terminal log and a host log (see the module doc)."""
    problems: list[str] = []
    tlog = parse_log(terminal_log, TERMINAL_EVENTS, problems)
    hlog = parse_log(host_log, HOST_EVENTS, problems)
    unexplained: list[str] = []
    notes: list[str] = []
    if not tlog.entries:
        raise ScenarioError(f"{terminal_log}: no readable terminal log lines")
    origin = tlog.entries[0].ts_ms
    tsp = TerminalSpec()
    header = tlog.header
    config = header.get("config", {}) if isinstance(header.get("config"), dict) else {}
    tid = next(
        (str(e.data["terminal"]) for e in tlog.entries if isinstance(e.data.get("terminal"), str)),
        tsp.id,
    )
    term_kwargs: dict[str, Any] = {"id": tid}
    if isinstance(header.get("merchant"), str) and header["merchant"]:
        term_kwargs["merchant_id"] = header["merchant"]
    for key, value in config.items():
        if key in TerminalSpec.__dataclass_fields__ and isinstance(value, int):
            term_kwargs[key] = value
        else:
            unexplained.append(f"{terminal_log}: config {key}={value!r} not understood, ignored")
    fw = firmware or (header.get("firmware") if isinstance(header.get("firmware"), str) else None)
    fw = fw or "reference"

    def rel(e: Entry) -> int:
        return e.ts_ms - origin

    def where(log: Log, e: Entry) -> str:
        return f"{log.path}:{e.line}"

    t_sends = [(rel(e), e.data, e.line) for e in tlog.entries if e.event == "send"]
    t_recvs = [(rel(e), e.data, e.line) for e in tlog.entries if e.event == "recv"]
    h_recvs_raw = [(rel(e), e.data, e.line) for e in hlog.entries if e.event == "recv"]
    h_sends_raw = [(rel(e), e.data, e.line) for e in hlog.entries if e.event == "send"]
    skew, latency, pairs = estimate_clock(t_sends, t_recvs, h_recvs_raw, h_sends_raw)
    if pairs == 0:
        unexplained.append(
            f"no request/response pair found in both logs: clock skew {skew} ms assumes a "
            f"one-way latency of {latency} ms"
        )

    def hrel(e: Entry) -> int:
        return e.ts_ms - origin - skew

    h_recvs = [(hrel(e), e.data, e.line) for e in hlog.entries if e.event == "recv"]
    h_sends = [(hrel(e), e.data, e.line) for e in hlog.entries if e.event == "send"]

    plan: list[tuple[int, faults.Fault]] = []

    # Terminal power: off windows (a message arriving then is lost, not dropped).
    off_windows: list[tuple[int, int]] = []
    power_entries = [e for e in tlog.entries if e.event == "power"]
    for i, e in enumerate(power_entries):
        if e.data["state"] != "off":
            continue
        on = next((p for p in power_entries[i + 1 :] if p.data["state"] == "on"), None)
        t_off = rel(e)
        t_on = rel(on) if on is not None else 1 << 62
        off_windows.append((t_off, t_on))
        if e.data.get("reason") == "watchdog":
            notes.append(
                f"{where(tlog, e)}: the firmware crashed and the watchdog rebooted it: "
                "not a fault, the firmware reproduces it"
            )
            continue
        if on is None:
            unexplained.append(f"{where(tlog, e)}: power went off and never came back")
            continue
        plan.append((t_off, _power_fault(tlog, e, t_off, t_on - t_off, notes)))

    def terminal_off(t: int) -> bool:
        return any(a <= t < b for a, b in off_windows)

    # Host crashes: down windows (a request arriving then is lost, not dropped).
    down_windows: list[tuple[int, int]] = []
    host_entries = sorted(hlog.entries, key=lambda e: e.ts_ms)
    for e in host_entries:
        if e.event == "crash":
            try:
                until = parse_ts(e.data["down_until"]) - origin - skew
            except ValueError:
                unexplained.append(f"{where(hlog, e)}: bad down_until, crash ignored")
                continue
            down_windows.append((hrel(e), until))

    # Host timing: decisions paired with the arrival they answer.
    processing, host_faults = _host_inference(hlog, host_entries, hrel, unexplained, notes)
    plan.extend(host_faults)

    # Requests: terminal -> host.
    hops, orphans = _match(t_sends, h_recvs, latency)
    for hop in hops:
        _network_faults(
            hop,
            "to_host",
            latency,
            plan,
            notes,
            tlog.path,
            lambda t: any(a <= t < b for a, b in down_windows),
            unexplained,
        )
    for _t, data, line in orphans:
        unexplained.append(
            f"{hlog.path}:{line}: host received {data['mti']} stan {data['stan']} that the "
            "terminal never logged sending (corrupted in flight?)"
        )
    # Responses: host -> terminal.
    hops, orphans = _match(h_sends, t_recvs, latency)
    for hop in hops:
        _network_faults(
            hop, "to_terminal", latency, plan, notes, hlog.path, terminal_off, unexplained
        )
    purchase_sends = [(t, d) for t, d, _ in t_sends if d["mti"] == MTI_PURCHASE]
    for t, data, line in orphans:
        forged = _forge(t, data, purchase_sends, latency)
        if forged is None:
            unexplained.append(
                f"{tlog.path}:{line}: terminal received {data['mti']} stan {data['stan']} "
                "that the host never logged sending"
            )
            continue
        plan.append((t, forged))
        notes.append(
            f"{tlog.path}:{line}: {data['mti']} rc {data.get('rc', '')} rrn {data.get('rrn', '')} "
            "was never sent by the host: forged response -> "
            f"{forged.describe()}"
        )

    purchases, steps_extra, close_batch = _people(tlog, origin, plan, notes, unexplained)
    cards = _cards(purchases, hlog, unexplained)
    _prints_without_approval(tlog, hlog, plan, unexplained)

    plan_sorted = _faults_sorted(_merge(sorted(plan, key=lambda p: p[0])))
    steps = [Step(p.at_ms, "purchase", p.card, p.amount) for p in purchases] + steps_extra
    steps.sort(key=lambda s: s.at_ms)
    scenario = Scenario(
        name=name or Path(terminal_log).stem,
        description=description
        or f"Imported from {terminal_log} and {host_log} by posharness incident import.",
        seed=seed,
        firmware=fw,
        terminal=TerminalSpec(**term_kwargs),
        host=HostSpec(processing_ms=processing),
        network=NetworkSpec(latency_ms=latency),
        cards=tuple(cards),
        steps=tuple(steps),
        faults=tuple(plan_sorted),
        expect=Expect(invariants=INVARIANT_NAMES),
        close_batch=close_batch,
    )
    imported = Imported(scenario, skew, latency, pairs, problems, unexplained, notes)
    if verify:
        _verify(imported, tlog, hlog)
    return imported


def _power_fault(log: Log, off: Entry, t_off: int, off_ms: int, notes: list[str]) -> faults.Fault:
    """A power cut right after the last cut point logged at the same millisecond
    (a send, a receive, a journal write, a print), else at that time."""
    same_ms = [e for e in log.entries if e.ts_ms == off.ts_ms and e.line < off.line]
    counts: dict[str, int] = defaultdict(int)
    fault: faults.Fault | None = None
    point = {"send": "send", "recv": "receive", "journal": "journal", "print_start": "print"}
    for e in reversed(same_ms):
        if e.event == "display":
            continue
        if e.event in point:
            after = point[e.event]
            mti = str(e.data.get("mti", "")) if after in ("send", "receive") else ""
            for x in log.entries:
                if x.line > e.line:
                    break
                if x.event == e.event and (not mti or x.data.get("mti") == mti):
                    counts[after] += 1
            table: dict[str, Any] = {"after": after, "nth": counts[after], "off_ms": off_ms}
            if mti:
                table["mti"] = mti
            fault = faults.build_fault("power_cut", table)
        break
    if fault is None:
        fault = faults.build_fault("power_cut", {"at_ms": t_off, "off_ms": off_ms})
    notes.append(f"{log.path}:{off.line}: power lost for {off_ms} ms -> {fault.describe()}")
    return fault


def _host_inference(
    hlog: Log,
    entries: list[Entry],
    hrel: Any,
    unexplained: list[str],
    notes: list[str],
) -> tuple[int, list[tuple[int, faults.Fault]]]:
    """processing_ms and the host faults: slow_host, rc_burst, host_crash."""
    arrivals: list[Entry] = [e for e in entries if e.event == "recv"]
    decided: dict[int, Entry] = {}  # arrival line -> its decision
    for dec in (e for e in entries if e.event == "decision"):
        if dec.data["action"] == "abandoned":
            continue
        ref = (dec.data["mti"], dec.data["stan"], dec.data.get("key", ""))
        cands = [
            a
            for a in arrivals
            if a.line not in decided
            and a.ts_ms <= dec.ts_ms
            and (a.data["mti"], a.data["stan"], a.data.get("idem_key", "")) == ref
        ]
        same = [a for a in cands if a.ts_ms == dec.ts_ms]
        pick = same[0] if same else (cands[0] if cands else None)
        if pick is None:
            unexplained.append(f"{hlog.path}:{dec.line}: decision for a request never received")
            continue
        decided[pick.line] = dec
    slow_cards = {c.pan: c.slow_ms for c in CATALOGUE_CARDS}
    waits = []
    for a in arrivals:
        d = decided.get(a.line)
        if d is not None and d.ts_ms > a.ts_ms and d.data["action"] != "unavailable":
            waits.append(d.ts_ms - a.ts_ms - _catalogue_extra(a.data, slow_cards))
    processing = min(waits) if waits else HostSpec().processing_ms
    plan: list[tuple[int, faults.Fault]] = []
    nth: dict[str, int] = defaultdict(int)
    nth_crash: dict[str, int] = defaultdict(int)
    crashes = [e for e in entries if e.event == "crash"]
    bursts: dict[tuple[str, str], list[tuple[int, int, int]]] = defaultdict(list)
    for a in arrivals:
        mti = a.data["mti"]
        nth[mti] += 1
        d = decided.get(a.line)
        if d is not None and d.data["action"] == "unavailable":
            bursts[(mti, str(d.data.get("rc", "91")))].append((nth[mti], hrel(a), d.line))
            continue
        nth_crash[mti] += 1
        if d is not None and d.ts_ms > a.ts_ms:
            extra = d.ts_ms - a.ts_ms - processing - _catalogue_extra(a.data, slow_cards)
            if extra > 0:
                f = faults.build_fault(
                    "slow_host", {"mti": mti, "nth": nth[mti], "extra_ms": extra}
                )
                plan.append((hrel(a), f))
                notes.append(
                    f"{hlog.path}:{a.line}: host took {d.ts_ms - a.ts_ms} ms "
                    f"(normally {processing}) -> {f.describe()}"
                )
        crash = next(
            (
                c
                for c in crashes
                if (d is not None and c.ts_ms == d.ts_ms and c.line > d.line)
                or (d is None and c.ts_ms == a.ts_ms and c.line > a.line)
            ),
            None,
        )
        if crash is not None:
            crashes.remove(crash)
            until = parse_ts(crash.data["down_until"])
            f = faults.build_fault(
                "host_crash",
                {
                    "mti": mti,
                    "nth": nth_crash[mti],
                    "when": "after_commit" if d is not None else "before_commit",
                    "down_ms": until - crash.ts_ms,
                },
            )
            plan.append((hrel(a), f))
            notes.append(f"{hlog.path}:{crash.line}: host crashed -> {f.describe()}")
    for c in crashes:
        unexplained.append(f"{hlog.path}:{c.line}: host crash not tied to a request")
    for (mti, rc), hits in sorted(bursts.items()):
        for nth_, count, t, line in _consumed_runs(hits):
            f = faults.build_fault("rc_burst", {"mti": mti, "rc": rc, "nth": nth_, "count": count})
            plan.append((t, f))
            notes.append(
                f"{hlog.path}:{line}: host answered rc {rc} without processing -> {f.describe()}"
            )
    return processing, plan


def _consumed_runs(hits: list[tuple[int, int, int]]) -> list[tuple[int, int, int, int]]:
    """Faults that consume the item they hit (an RC burst answers the request, a
    misread eats the tap) hide it from later faults of the same kind, so each run of
    consecutive hits becomes one fault whose nth skips the items earlier runs ate:
    (ordinal, time, line) hits -> (nth, count, time, line)."""
    out: list[tuple[int, int, int, int]] = []
    last = -2
    for eaten, (ordinal, t, line) in enumerate(sorted(hits)):
        if out and ordinal == last + 1:
            nth, count, t0, line0 = out[-1]
            out[-1] = (nth, count + 1, t0, line0)
        else:
            out.append((ordinal - eaten, 1, t, line))
        last = ordinal
    return out


def _catalogue_extra(data: dict[str, Any], slow_cards: dict[str, int]) -> int:
    """Processing time the test-card catalogue adds to this request by itself."""
    extra = slow_cards.get(str(data.get("pan", "")), 0)
    if data.get("mti") == MTI_PURCHASE and data.get("amount") == AMOUNT_SLOW:
        extra += AMOUNT_SLOW_EXTRA_MS
    return extra


def _network_faults(
    hop: Hop,
    direction: str,
    latency: int,
    plan: list[tuple[int, faults.Fault]],
    notes: list[str],
    path: str,
    receiver_down: Any,
    unexplained: list[str],
) -> None:
    mti = hop.data["mti"]
    what = f"{path}:{hop.line}: {mti} stan {hop.data['stan']}"
    if hop.recv < 0:
        if receiver_down(hop.sent + latency):
            notes.append(f"{what} arrived while the receiver was down: lost, no fault needed")
            return
        f = faults.build_fault("drop", {"direction": direction, "mti": mti, "nth": hop.sender_idx})
        plan.append((hop.sent, f))
        notes.append(f"{what} sent but never received -> {f.describe()}")
        return
    late = hop.recv - hop.sent - latency
    if late > TOLERANCE_MS:
        f = faults.build_fault(
            "delay", {"direction": direction, "mti": mti, "nth": hop.sender_idx, "delay_ms": late}
        )
        plan.append((hop.sent, f))
        notes.append(f"{what} arrived {late} ms late -> {f.describe()}")
    for dup in hop.dups[:1]:
        f = faults.build_fault(
            "duplicate",
            {"direction": direction, "mti": mti, "nth": hop.sender_idx, "gap_ms": dup - hop.recv},
        )
        plan.append((hop.sent, f))
        notes.append(f"{what} arrived twice -> {f.describe()}")
    if len(hop.dups) > 1:
        unexplained.append(f"{what} arrived {len(hop.dups) + 1} times; only one copy modelled")


def _forge(
    t: int, data: dict[str, Any], purchase_sends: list[tuple[int, dict[str, Any]]], latency: int
) -> faults.Fault | None:
    """A forged approval: a 0210 the host never sent, answering a terminal 0200."""
    if data["mti"] != MTI_PURCHASE_RESP or data.get("rc") != "00":
        return None
    best = None
    for i, (ts, req) in enumerate(purchase_sends, 1):
        if (
            ts <= t
            and req["stan"] == data["stan"]
            and req.get("idem_key", "") == data.get("idem_key", "")
        ):
            best = (i, ts)
    if best is None:
        return None
    nth, sent = best
    table: dict[str, Any] = {"nth": nth, "delay_ms": max(0, t - sent - latency)}
    if data.get("rrn"):
        table["rrn"] = str(data["rrn"])[:12]
    return faults.build_fault("forge", table)


def _people(
    tlog: Log,
    origin: int,
    plan: list[tuple[int, faults.Fault]],
    notes: list[str],
    unexplained: list[str],
) -> tuple[list[_Purchase], list[Step], bool]:
    """Purchases (one per keyed amount, except a restart after a power cut), batch
    closes and reprints the cashier asked for, and reader/keypad/printer faults."""
    purchases: list[_Purchase] = []
    current: _Purchase | None = None
    finished = True  # the current purchase reached a final display
    rebooted = False
    attempt = 0
    taps = 0
    jobs = 0
    attempt_cards: list[Entry] = []
    attempt_confirms: list[Entry] = []
    batch_closes: list[Entry] = []
    reprints: list[Entry] = []
    pending_seen = False
    misreads: list[tuple[int, int, int]] = []

    def close_attempt() -> None:
        good = [c for c in attempt_cards if c.data["pan"]]
        if len(good) >= 2:
            f = faults.build_fault(
                "double_tap", {"nth": attempt, "gap_ms": good[1].ts_ms - good[0].ts_ms}
            )
            plan.append((good[0].ts_ms - origin, f))
            notes.append(f"{tlog.path}:{good[1].line}: card read twice -> {f.describe()}")
        if len(attempt_confirms) >= 2:
            c0, c1 = attempt_confirms[0], attempt_confirms[1]
            f = faults.build_fault(
                "double_confirm", {"nth": attempt, "gap_ms": c1.ts_ms - c0.ts_ms}
            )
            plan.append((c0.ts_ms - origin, f))
            notes.append(f"{tlog.path}:{c1.line}: confirm pressed twice -> {f.describe()}")

    for e in tlog.entries:
        t = e.ts_ms - origin
        if e.event == "power" and e.data["state"] == "on" and t > 0:
            rebooted = True
        elif e.event == "amount_keyed":
            if attempt:
                close_attempt()
            attempt += 1
            attempt_cards, attempt_confirms = [], []
            if current is not None and not finished and rebooted:
                notes.append(
                    f"{tlog.path}:{e.line}: amount keyed again after a reboot: same purchase"
                )
            else:
                current = _Purchase(t, int(e.data["amount"]), "", e.line)
                purchases.append(current)
            finished = False
            rebooted = False
        elif e.event == "card_read":
            taps += 1
            attempt_cards.append(e)
            if not e.data["pan"]:
                misreads.append((taps, t, e.line))
            elif current is not None and not current.card:
                current.card = str(e.data["pan"])
        elif e.event == "key" and e.data["key"] == "confirm":
            attempt_confirms.append(e)
        elif e.event == "key" and e.data["key"] == "batch_close":
            batch_closes.append(e)
        elif e.event == "key" and e.data["key"] == "reprint":
            if not pending_seen:
                reprints.append(e)
        elif e.event == "display":
            outcome = str(e.data["outcome"])
            if outcome == "receipt-pending":
                pending_seen = True
            if current is not None and outcome in (
                "approved",
                "declined",
                "failed",
                "receipt-pending",
            ):
                current.displays.append(outcome)
                if outcome != "receipt-pending":
                    finished = True
        elif e.event == "print_start":
            jobs += 1
        elif e.event == "print" and e.data["status"] != "ok":
            kind = {
                "jammed": "printer_jam",
                "no_paper": "paper_out",
                "failed": "print_failure",
            }.get(str(e.data["status"]))
            if kind is None:
                unexplained.append(
                    f"{tlog.path}:{e.line}: unknown print status {e.data['status']!r}"
                )
                continue
            f = faults.build_fault(kind, {"nth": _job_index(tlog, e)})
            plan.append((t, f))
            notes.append(f"{tlog.path}:{e.line}: print {e.data['status']} -> {f.describe()}")
    if attempt:
        close_attempt()
    for nth, count, t, line in _consumed_runs(misreads):
        f = faults.build_fault("misread", {"nth": nth, "count": count})
        plan.append((t, f))
        notes.append(f"{tlog.path}:{line}: card misread -> {f.describe()}")
    kept = []
    for p in purchases:
        if not p.card:
            unexplained.append(
                f"{tlog.path}:{p.line}: purchase of {p.amount} with no card read: left out"
            )
            continue
        kept.append(p)
    steps = [Step(e.ts_ms - origin, "batch_close") for e in batch_closes[:-1]]
    steps += [Step(e.ts_ms - origin, "reprint") for e in reprints]
    if batch_closes:
        notes.append(
            f"{tlog.path}:{batch_closes[-1].line}: last batch close taken as the end-of-day close"
        )
    return kept, steps, bool(batch_closes)


def _job_index(tlog: Log, e: Entry) -> int:
    """The ordinal of the print job `e` finished, counted at print start."""
    n = 0
    for x in tlog.entries:
        if x.event == "print_start":
            n += 1
            if x.data["job"] == e.data["job"]:
                return n
    return max(1, n)


def _cards(purchases: list[_Purchase], hlog: Log, unexplained: list[str]) -> list[CardSpec]:
    """One card per PAN used; a card the host always declined with one code gets it."""
    decisions: dict[str, list[tuple[str, str, int]]] = defaultdict(list)
    recv_pan: dict[tuple[int, str], str] = {}
    for e in hlog.entries:
        if e.event == "recv" and e.data["mti"] == MTI_PURCHASE:
            recv_pan[(e.data["stan"], str(e.data.get("idem_key", "")))] = str(e.data.get("pan", ""))
    for e in hlog.entries:
        if e.event == "decision" and e.data["mti"] == MTI_PURCHASE:
            pan = recv_pan.get((e.data["stan"], str(e.data.get("key", ""))), "")
            decisions[pan].append(
                (str(e.data["action"]), str(e.data.get("rc", "")), int(e.data.get("amount", 0)))
            )
    slow_cards = {c.pan: c.slow_ms for c in CATALOGUE_CARDS}
    out = []
    for pan in sorted({p.card for p in purchases}):
        ds = [d for d in decisions.get(pan, []) if amount_rule(d[2]) is None]
        charged = [d for d in ds if d[0] == "charge"]
        declined = {d[1] for d in ds if d[0] == "decline"}
        rc = ""
        balance = CardSpec().balance
        if declined and not charged and len(declined) == 1:
            rc = declined.pop()
        elif "51" in declined:
            balance = sum(d[2] for d in charged)
            unexplained.append(
                f"card {pan}: declined for funds after charges: balance guessed as {balance}"
            )
        balance = max(balance, sum(d[2] for d in charged))
        if not (12 <= len(pan) <= 19 and pan.isdigit()):
            unexplained.append(f"card {pan!r}: not a PAN the simulator accepts")
            continue
        out.append(CardSpec(pan=pan, balance=balance, rc=rc, slow_ms=slow_cards.get(pan, 0)))
    return out


def _prints_without_approval(
    tlog: Log, hlog: Log, plan: list[tuple[int, faults.Fault]], unexplained: list[str]
) -> None:
    """An approved receipt whose RRN the host never approved, with no forged response to
    explain it, is a print-path fault in the firmware: listed, never guessed."""
    approved = {
        str(e.data.get("rrn", ""))
        for e in hlog.entries
        if e.event == "decision" and e.data.get("rc") == "00"
    }
    forged = {f.rrn for _, f in plan if f.KIND == "forge"}  # type: ignore[attr-defined]
    for e in tlog.entries:
        if e.event != "print" or e.data["status"] != "ok":
            continue
        receipt = e.data.get("receipt", {})
        if not isinstance(receipt, dict) or receipt.get("status") != "approved":
            continue
        rrn = str(receipt.get("rrn", ""))
        if rrn in approved:
            continue
        if rrn in forged:
            continue
        unexplained.append(
            f"{tlog.path}:{e.line}: approved receipt rrn {rrn!r} amount {receipt.get('amount')} "
            "has no host approval and no forged response explains it: a print-path fault "
            "in the firmware (it prints without a host approval), not a network fault"
        )


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
    from .runner import run_scenario

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
