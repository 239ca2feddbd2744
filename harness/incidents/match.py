"""Match stage: pair each message sent with its arrival on the other side, and
estimate the host clock's skew, the network latency and its jitter.

Messages are paired by content first (MTI, STAN, idempotency key, amount, response
code, RRN and the other identifying fields; never the MAC or the PAN, which one side
may mask) and by time second, so GPRS/4G jitter of whole seconds never breaks a pair.
"""

import itertools
import json
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from acquirer.protocol import response_mti

from .parse import DEFAULT_LATENCY_MS, TOLERANCE_MS, Entry

# The fields that identify a message on both sides. The MAC is left out (a log may
# not carry it), and so is the PAN (terminal logs mask it, host logs may not).
CONTENT_FIELDS = (
    "mti",
    "stan",
    "idem_key",
    "orig_stan",
    "orig_key",
    "amount",
    "rc",
    "rrn",
    "repeat",
    "batch_no",
    "debit_count",
    "debit_amount",
    "credit_count",
    "credit_amount",
)
# A change of the offset between the two clocks larger than this, lasting, is a
# clock step (NTP steps a clock only when it is off by 128 ms or more; GPRS jitter
# reaches a few hundred ms, so one second keeps jitter out).
CLOCK_STEP_MIN_MS = 1_000
# Jitter above the typical latency still counted as on time: this many robust
# standard deviations (1.4826 x the median absolute deviation) of one-way delays,
# and at least the latency itself.
JITTER_SIGMAS = 4

Msg = tuple[int, dict[str, Any], int]  # (time in terminal ms, fields, log line)


def content(data: dict[str, Any]) -> str:
    """A message's identity on the wire (see CONTENT_FIELDS)."""
    return json.dumps([data.get(k) for k in CONTENT_FIELDS], separators=(",", ":"))


@dataclass(slots=True)
class Hop:
    """One message on the wire: sent at `sent` (terminal ms), received at `recv` (or -1)."""

    sender_idx: int  # ordinal among the sender's messages of this MTI (1-based)
    sent: int
    data: dict[str, Any]
    line: int
    recv: int = -1
    dups: list[int] = field(default_factory=list)


def _match(sends: list[Msg], recvs: list[Msg], slack_ms: int) -> tuple[list[Hop], list[Msg]]:
    """Pair each arrival with the latest unpaired send of the same content sent no
    later than `slack_ms` after it (the clock estimate's error); an arrival whose
    sends are all paired is a duplicate copy of the latest one."""
    counts: dict[str, int] = defaultdict(int)
    hops: list[Hop] = []
    by_content: dict[str, list[Hop]] = defaultdict(list)
    for t, data, line in sends:
        counts[data["mti"]] += 1
        hop = Hop(counts[data["mti"]], t, data, line)
        hops.append(hop)
        by_content[content(data)].append(hop)
    orphans = []
    for t, data, line in sorted(recvs, key=lambda r: r[0]):
        cands = [h for h in by_content.get(content(data), []) if h.sent <= t + slack_ms]
        free = [h for h in cands if h.recv < 0]
        if free:
            free[-1].recv = t
        elif cands:
            cands[-1].dups.append(t)
        else:
            orphans.append((t, data, line))
    return hops, orphans


@dataclass(frozen=True, slots=True)
class Quad:
    """One request/response exchange seen on both sides: terminal sent at a, host
    received at b, host answered at c, terminal received at d (each on its own clock)."""

    a: int
    b: int
    c: int
    d: int
    line: int  # the terminal log line of the request

    @property
    def offset2(self) -> int:  # twice the host clock's offset, NTP style
        return (self.b - self.a) - (self.d - self.c)

    @property
    def rtt(self) -> int:  # round trip minus the host's own time
        return (self.b - self.a) + (self.d - self.c)


@dataclass(frozen=True, slots=True)
class Clock:
    """The two clocks and the network, as estimated from the exchanges."""

    skew_ms: int  # host clock minus terminal clock
    latency_ms: int  # typical one-way latency
    jitter_ms: int  # extra one-way delay still counted as normal
    pairs: int  # exchanges the estimate rests on
    spread_ms: int  # median absolute deviation of the per-exchange offsets


def quads(
    term_sends: list[Msg], term_recvs: list[Msg], host_recvs: list[Msg], host_sends: list[Msg]
) -> list[Quad]:
    """Exchanges whose request and response are each unique in both logs, in
    terminal log order (not time order: the terminal's clock may have stepped)."""

    def unique(items: list[Msg]) -> dict[str, int]:
        seen: dict[str, list[int]] = defaultdict(list)
        for t, data, _ in items:
            seen[content(data)].append(t)
        return {k: v[0] for k, v in seen.items() if len(v) == 1}

    lines = {content(data): line for _, data, line in term_sends}

    ts, hr, hs, tr = unique(term_sends), unique(host_recvs), unique(host_sends), unique(term_recvs)
    resp_by_ref: dict[tuple[str, int, str], list[tuple[int, int]]] = defaultdict(list)
    for k in sorted(hs.keys() & tr.keys()):
        m = dict(zip(CONTENT_FIELDS, json.loads(k), strict=True))
        resp_by_ref[(m["mti"], m["stan"], m["idem_key"] or "")].append((hs[k], tr[k]))
    out: list[Quad] = []
    for k in sorted(ts.keys() & hr.keys()):
        m = dict(zip(CONTENT_FIELDS, json.loads(k), strict=True))
        a, b = ts[k], hr[k]
        for c, d in resp_by_ref.get((response_mti(m["mti"]), m["stan"], m["idem_key"] or ""), []):
            if c >= b:
                out.append(Quad(a, b, c, d, lines[k]))
                break
    return sorted(out, key=lambda q: q.line)


def _mad(values: list[int]) -> float:
    med = statistics.median(values)
    return float(statistics.median(abs(v - med) for v in values))


def estimate_clock(qs: list[Quad], one_way_requests: list[tuple[int, int]]) -> Clock:
    """Skew: the median offset over the exchanges whose round trip is in the lower
    half (faults and jitter only ever add delay, so the fast exchanges are the
    honest ones). Latency: half their median round trip. Jitter: JITTER_SIGMAS
    robust deviations of all one-way delays. Without any exchange, a default latency
    is assumed against the fastest request seen on both sides."""
    if qs:
        cutoff = statistics.median(q.rtt for q in qs)
        fast = [q for q in qs if q.rtt <= cutoff]
        skew = round(statistics.median(q.offset2 for q in fast) / 2)
        latency = max(0, round(statistics.median(q.rtt for q in fast) / 2))
        delays = [q.b - skew - q.a for q in qs] + [q.d - (q.c - skew) for q in qs]
        # A few exchanges estimate the spread poorly: a one-way delay up to twice
        # the typical latency is never a fault by itself.
        jitter = max(TOLERANCE_MS, latency, round(JITTER_SIGMAS * 1.4826 * _mad(delays)))
        spread = round(_mad([q.offset2 // 2 for q in qs]))
        return Clock(skew, latency, jitter, len(qs), spread)
    if one_way_requests:
        one_way = min(b - a for a, b in one_way_requests)
        return Clock(one_way - DEFAULT_LATENCY_MS, DEFAULT_LATENCY_MS, TOLERANCE_MS, 0, 0)
    return Clock(0, DEFAULT_LATENCY_MS, TOLERANCE_MS, 0, 0)


@dataclass(frozen=True, slots=True)
class ClockStep:
    """The terminal's clock jumped by `step_ms` (negative: back) just before the log
    line `line`; later terminal times are corrected by subtracting it."""

    line: int
    step_ms: int
    before: int  # exchanges seen before the step
    after: int  # and after it


def detect_step(qs: list[Quad], entries: list[Entry]) -> ClockStep | None:
    """A lasting change of the clock offset between two runs of exchanges, larger
    than CLOCK_STEP_MIN_MS and than the spread within each run. The step is placed
    at a line whose time goes backwards, else at the largest gap between lines."""
    best: tuple[float, int] | None = None
    for k in range(1, len(qs)):
        before = [q.offset2 / 2 for q in qs[:k]]
        after = [q.offset2 / 2 for q in qs[k:]]
        diff = statistics.median(after) - statistics.median(before)
        noise = max(max(before) - min(before), max(after) - min(after), CLOCK_STEP_MIN_MS / 2)
        big = abs(diff) >= CLOCK_STEP_MIN_MS and abs(diff) > 2 * noise
        if big and (best is None or abs(diff) > abs(best[0])):
            best = (diff, k)
    if best is None:
        return None
    diff, k = best
    lo, hi = qs[k - 1].line, qs[k].line
    pick: Entry | None = None
    gap_best = -(1 << 62)
    for prev, e in itertools.pairwise(entries):
        if not lo < e.line <= hi:
            continue
        gap = e.ts_ms - prev.ts_ms
        # The terminal stepped back (the offset grew): the first line whose time
        # goes backwards is the step; stepped forward: the largest gap.
        if diff > 0 and gap < -TOLERANCE_MS:
            pick = e
            break
        if gap > gap_best:
            gap_best, pick = gap, e
    if pick is None:
        return None
    # offset = host - terminal; after a step of s the offset changes by -s.
    return ClockStep(pick.line, -round(diff), k, len(qs) - k)
