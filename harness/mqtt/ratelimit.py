"""Per-terminal limits on what one login can cost the host: frames, and log lines.

Both are sans-I/O: they take the time as an argument (tests pass a fake clock, so
they are deterministic) and never read a clock, sleep or log themselves.

`RateLimiter` is a token bucket per terminal id (the topic's, which the broker's
ACL ties to the login): `rate_per_s` frames per second on average, bursts of up to
`burst`. A frame over the limit is dropped before it is decoded or its MAC is
checked (those are what a flood would make the host spend its time on), without
an answer, and counted. A second, much smaller bucket counts the frames the host
refused as unauthentic or malformed (BAD_RATE_PER_S): when it is empty, all of
that terminal's frames are dropped unread until it refills, so a flood of forged
frames costs the host a decode and MAC check only 5 times a second. Integer
arithmetic in milli-tokens: no float drift.

`LogThrottle` turns a flood of per-frame warnings into at most one full line per
terminal per `interval_ms` plus one summary line per interval that says how many
were suppressed and why ("T0001: 48,211 frames dropped in the last 10 s:
rate-limited 48,100, bad MAC 111"). At 5,000 bad frames/s that is two lines per
10 s instead of 50,000.

Both bound their memory: at most `max_terminals` tracked ids; when full, the
least recently seen is forgotten (its bucket starts full again, which only errs
towards letting a forgotten terminal through).
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass, field

# Defaults for the MQTT host. A cashier's terminal sends a few requests per
# purchase; a fleet bench drives one purchase at a time per terminal id, at most
# ~200/s at a 5 ms round trip. A flooding login gets 500 frames/s decoded at most.
RATE_PER_S = 500
BURST = 1000
# Frames the host refuses as unauthentic or malformed (RC 30, dropped): a terminal
# with a working key sends none, a flood sends nothing else. Once a terminal has
# spent this budget, all its frames are dropped unread until the bucket refills.
BAD_RATE_PER_S = 5
BAD_BURST = 20
MAX_TERMINALS = 100_000
LOG_INTERVAL_MS = 10_000
_MILLI = 1000


class RateLimiter:
    """A token bucket per terminal id. `allow(tid, now_ms)` -> True to serve the frame."""

    __slots__ = ("_buckets", "burst", "max_terminals", "rate_per_s")

    def __init__(
        self, rate_per_s: int = RATE_PER_S, burst: int = BURST, max_terminals: int = MAX_TERMINALS
    ) -> None:
        if rate_per_s <= 0 or burst <= 0 or max_terminals <= 0:
            raise ValueError("rate_per_s, burst and max_terminals must be positive")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.max_terminals = max_terminals
        # tid -> (milli-tokens, time of the last refill in ms), least recently seen first.
        self._buckets: OrderedDict[str, tuple[int, int]] = OrderedDict()

    def allow(self, tid: str, now_ms: int) -> bool:
        """Take one token from `tid`'s bucket if there is one."""
        return self._take(tid, now_ms, _MILLI)

    def available(self, tid: str, now_ms: int) -> bool:
        """Whether `tid`'s bucket holds a token (none is taken)."""
        return self._take(tid, now_ms, 0)

    def _take(self, tid: str, now_ms: int, cost: int) -> bool:
        cap = self.burst * _MILLI
        found = self._buckets.pop(tid, None)
        if found is None:
            tokens, last = cap, now_ms
            if len(self._buckets) >= self.max_terminals:
                self._buckets.popitem(last=False)
        else:
            tokens, last = found
            # rate_per_s tokens per 1000 ms = rate_per_s milli-tokens per ms. A clock
            # that steps back refills nothing (and never drains).
            tokens = min(cap, tokens + max(0, now_ms - last) * self.rate_per_s)
            last = max(last, now_ms)
        ok = tokens >= _MILLI
        if ok:
            tokens -= cost
        self._buckets[tid] = (tokens, last)
        return ok

    def __len__(self) -> int:
        return len(self._buckets)


@dataclass(slots=True)
class _Window:
    start_ms: int
    logged: bool = False
    suppressed: Counter[str] = field(default_factory=Counter)


class LogThrottle:
    """At most one full line per terminal per interval, plus a summary of the rest."""

    __slots__ = ("_windows", "interval_ms", "max_terminals")

    def __init__(
        self, interval_ms: int = LOG_INTERVAL_MS, max_terminals: int = MAX_TERMINALS
    ) -> None:
        if interval_ms <= 0 or max_terminals <= 0:
            raise ValueError("interval_ms and max_terminals must be positive")
        self.interval_ms = interval_ms
        self.max_terminals = max_terminals
        self._windows: OrderedDict[str, _Window] = OrderedDict()

    def note(self, tid: str, reason: str, line: str, now_ms: int) -> list[str]:
        """An event for `tid` (`reason`: a short kind, e.g. "bad MAC"); the lines to log."""
        out: list[str] = []
        w = self._windows.pop(tid, None)
        if w is not None and now_ms - w.start_ms >= self.interval_ms:
            out += self._summary(tid, w)
            w = None
        if w is None:
            w = _Window(now_ms)
            if len(self._windows) >= self.max_terminals:
                old_tid, old = self._windows.popitem(last=False)
                out += self._summary(old_tid, old)
        self._windows[tid] = w
        if not w.logged:
            w.logged = True
            out.append(line)
        else:
            w.suppressed[reason] += 1
        return out

    def flush(self, now_ms: int) -> list[str]:
        """Summaries of every window that has ended by `now_ms` (call once per interval)."""
        out: list[str] = []
        for tid in [t for t, w in self._windows.items() if now_ms - w.start_ms >= self.interval_ms]:
            out += self._summary(tid, self._windows.pop(tid))
        return out

    def _summary(self, tid: str, w: _Window) -> list[str]:
        total = sum(w.suppressed.values())
        if not total:
            return []
        why = ", ".join(f"{reason} {n:,}" for reason, n in sorted(w.suppressed.items()))
        seconds = self.interval_ms / 1000
        return [f"{tid}: {total:,} more frame(s) refused or dropped within {seconds:g} s: {why}"]

    def __len__(self) -> int:
        return len(self._windows)
