"""Infer stage (devices, network, host): the fault plan that explains the logs."""

import statistics
from collections import defaultdict
from typing import Any

import faults
from acquirer.catalogue import (
    AMOUNT_SLOW,
    AMOUNT_SLOW_EXTRA_MS,
    CATALOGUE_CARDS,
)
from acquirer.protocol import MTI_PURCHASE, MTI_PURCHASE_RESP
from scenarios.model import (
    HostSpec,
)

from .match import JITTER_SIGMAS, Hop, _mad
from .parse import TOLERANCE_MS, Entry, Log

# A host slower than usual by less than this is noise (issuer and network latency
# vary by hundreds of ms); the terminal's timeouts are 10 s and more.
SLOW_HOST_MIN_MS = 1_000
# Likewise a message later than usual by less than this is network jitter (GPRS
# spikes reach several hundred ms): too small to move a terminal timeout.
DELAY_NOISE_MS = 1_000


def _power_fault(
    log: Log, off: Entry, t_off: int, off_ms: int, notes: list[str], inferred: bool = False
) -> faults.Fault:
    """A power cut right after the last cut point logged at the same millisecond
    (a send, a receive, a journal write, a print), else at that time. `inferred`:
    `off` is the last line before a boot with no power-off line (a terminal cannot
    log its own power loss), and the cut comes right after it."""
    same_ms = [
        e
        for e in log.entries
        if e.ts_ms == off.ts_ms and (e.line < off.line or (inferred and e.line == off.line))
    ]
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
    if inferred:
        notes.append(
            f"{log.path}:{off.line}: boot without a power-off line: power lost after this line "
            f"for {off_ms} ms -> {fault.describe()} [likely: the cut may have come later, "
            "before the next line]"
        )
    else:
        notes.append(
            f"{log.path}:{off.line}: power lost for {off_ms} ms -> {fault.describe()} [sure]"
        )
    return fault


def _host_inference(
    hlog: Log,
    entries: list[Entry],
    hrel: Any,
    unexplained: list[str],
    notes: list[str],
    test_amounts: bool = True,
) -> tuple[int, list[tuple[int, faults.Fault]]]:
    """processing_ms and the host faults: slow_host, rc_burst, host_crash."""
    arrivals: list[Entry] = [e for e in entries if e.event == "recv"]
    decided, doubled = _pair_decisions(hlog, arrivals, entries, unexplained)
    slow_cards = {c.pan: c.slow_ms for c in CATALOGUE_CARDS}
    waits = []
    for a in arrivals:
        d = decided.get(a.line)
        if d is not None and d.ts_ms > a.ts_ms and d.data["action"] != "unavailable":
            waits.append(d.ts_ms - a.ts_ms - _catalogue_extra(a.data, slow_cards, test_amounts))
    processing = _typical(waits) if waits else HostSpec().processing_ms
    # Variation of the host's time below this is latency noise, not a slow host.
    # (the spread of the lower half: the slow ones would widen it themselves).
    lower = [w for w in waits if w <= statistics.median(waits)] if waits else [0]
    slow_min = max(SLOW_HOST_MIN_MS, round(JITTER_SIGMAS * 1.4826 * _mad(lower)))
    plan: list[tuple[int, faults.Fault]] = []
    nth: dict[str, int] = defaultdict(int)
    nth_crash: dict[str, int] = defaultdict(int)
    crashes = [e for e in entries if e.event == "crash"]
    sends = [e for e in entries if e.event == "send"]
    bursts: dict[tuple[str, str], list[tuple[int, int, int]]] = defaultdict(list)
    for a in arrivals:
        mti = a.data["mti"]
        nth[mti] += 1
        d = decided.get(a.line)
        if d is not None and d.data["action"] == "unavailable":
            bursts[(mti, str(d.data.get("rc", "91")))].append((nth[mti], hrel(a), d.line))
            continue
        nth_crash[mti] += 1
        defect = _host_defect(a, d, sends)
        if defect is not None:
            f = faults.build_fault(defect[0], {"mti": mti, "nth": nth[mti]})
            plan.append((hrel(a), f))
            notes.append(
                f"{hlog.path}:{defect[1]}: {defect[2]}: a host-side fault -> {f.describe()}"
            )
        if a.line in doubled:
            f = faults.build_fault("host_double_charge", {"mti": mti, "nth": nth[mti]})
            plan.append((hrel(a), f))
            notes.append(
                f"{hlog.path}:{doubled[a.line].line}: the host charged key "
                f"{a.data.get('idem_key', '')!r} a second time (rrn "
                f"{doubled[a.line].data.get('rrn', '')}) with one answer: a host-side fault "
                f"-> {f.describe()} [sure]"
            )
        if d is not None and d.ts_ms > a.ts_ms:
            extra = (
                d.ts_ms - a.ts_ms - processing - _catalogue_extra(a.data, slow_cards, test_amounts)
            )
            if extra > slow_min:
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
            until = int(crash.data["down_until_ms"])
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


def _host_defect(a: Entry, d: Entry | None, sends: list[Entry]) -> tuple[str, int, str] | None:
    """A host answer that contradicts the host's own decision: (fault kind, line,
    what the log shows), or None.

    * a reversal answered RC 00 with no decision at all: the host acknowledged it
      and never applied it (`host_lose_reversal`) [likely: a host that forgot to log
      a reversal it did apply would look the same, the batch totals tell them apart];
    * a charge answered with an RRN other than the one charged
      (`host_foreign_rrn`) [sure].
    """
    mti, stan = a.data["mti"], a.data["stan"]
    answer = next(
        (
            e
            for e in sends
            if e.ts_ms >= a.ts_ms
            and e.data.get("stan") == stan
            and e.data.get("mti") == mti[:2] + "10"
        ),
        None,
    )
    if answer is None:
        return None
    if d is None and mti == "0400" and answer.data.get("rc") == "00":
        return (
            "host_lose_reversal",
            answer.line,
            f"reversal of stan {a.data.get('orig_stan', stan)} answered rc 00 with no decision "
            "logged [likely]",
        )
    if d is not None and d.data["action"] == "charge" and answer.ts_ms >= d.ts_ms:
        rrn, told = d.data.get("rrn", ""), answer.data.get("rrn", "")
        if rrn and told and told != rrn:
            return (
                "host_foreign_rrn",
                answer.line,
                f"charged under rrn {rrn} but answered rrn {told} [sure]",
            )
    return None


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


def _pair_decisions(
    hlog: Log, arrivals: list[Entry], entries: list[Entry], unexplained: list[str]
) -> tuple[dict[int, Entry], dict[int, Entry]]:
    """Each decision with the arrival it answers: (arrival line -> decision, and
    arrival line -> a second charge of the same request, a host_double_charge)."""
    decided: dict[int, Entry] = {}
    doubled: dict[int, Entry] = {}
    for dec in (e for e in entries if e.event == "decision"):
        if dec.data["action"] == "abandoned":
            continue
        ref = (dec.data["mti"], dec.data["stan"], dec.data.get("key", ""))
        mine = [
            a
            for a in arrivals
            if a.ts_ms <= dec.ts_ms
            and (a.data["mti"], a.data["stan"], a.data.get("idem_key", "")) == ref
        ]
        cands = [a for a in mine if a.line not in decided]
        same = [a for a in cands if a.ts_ms == dec.ts_ms]
        # An answer given at once (a stored replay, RC 09 while the original is
        # still processing, RC 94) answers the latest arrival, which a real host
        # logs a few ms before it; a charge or decline answers the earliest.
        at_once = dec.data["action"] in ("in-progress", "replay", "duplicate", "unavailable")
        if same:
            decided[same[0].line] = dec
        elif cands:
            decided[(cands[-1] if at_once else cands[0]).line] = dec
        elif dec.data["action"] == "charge" and any(
            decided[a.line].data["action"] == "charge" for a in mine if a.line in decided
        ):
            first = next(a for a in mine if decided[a.line].data["action"] == "charge")
            doubled[first.line] = dec
        else:
            unexplained.append(f"{hlog.path}:{dec.line}: decision for a request never received")
    return decided, doubled


def _typical(values: list[int]) -> int:
    """The median of the lower half: faults only ever add time."""
    cutoff = statistics.median(values)
    return round(statistics.median(v for v in values if v <= cutoff))


def _catalogue_extra(
    data: dict[str, Any], slow_cards: dict[str, int], test_amounts: bool = True
) -> int:
    """Processing time the test-card catalogue adds to this request by itself."""
    extra = slow_cards.get(str(data.get("pan", "")), 0)
    if test_amounts and data.get("mti") == MTI_PURCHASE and data.get("amount") == AMOUNT_SLOW:
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
    jitter: int = TOLERANCE_MS,
) -> None:
    """Drop, delay and duplicate faults for one hop. Only a delay beyond the jitter
    the logs show (match.Clock.jitter_ms) and DELAY_NOISE_MS is a fault; below
    that, it is the network."""
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
    if late > max(jitter, DELAY_NOISE_MS):
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
