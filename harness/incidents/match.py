"""Match stage: pair sends with arrivals and estimate the clock skew and latency."""

import json
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from acquirer.protocol import response_mti

from .parse import DEFAULT_LATENCY_MS, TOLERANCE_MS

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
