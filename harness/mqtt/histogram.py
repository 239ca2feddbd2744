"""Latency histograms that merge exactly: the fleet's percentiles over several
processes or machines.

Averaging the p99s of two workers is not the p99 of the run (a worker with few slow
purchases and one with many fast ones average to a number neither saw). Each worker
therefore reports its latencies as counts in logarithmic buckets (the HdrHistogram
idea): bucket `i` holds values in [GROWTH**i, GROWTH**(i+1)) ms, 1 % wide. Merging
adds counts, so a merged histogram is exactly the histogram of all the values, and
its percentiles are those of all the values to within 1 %. Memory is bounded: values
are clamped to [MIN_MS, MAX_MS], at most about 2,100 buckets whatever the load.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

GROWTH = 1.01  # each bucket is 1 % wider than the one before
MIN_MS = 0.01
MAX_MS = 3_600_000.0  # an hour: nothing a fleet waits for is longer
_LOG = math.log(GROWTH)
_LOWEST = math.floor(math.log(MIN_MS) / _LOG)
_HIGHEST = math.floor(math.log(MAX_MS) / _LOG)


class HistogramError(ValueError):
    """A histogram received from another process is malformed."""


@dataclass(slots=True)
class Histogram:
    counts: dict[int, int] = field(default_factory=dict)  # bucket -> values in it
    n: int = 0
    max_ms: float = 0.0

    @staticmethod
    def of(values_ms: Iterable[float]) -> Histogram:
        h = Histogram()
        for v in values_ms:
            h.add(v)
        return h

    def add(self, value_ms: float) -> None:
        v = min(MAX_MS, max(MIN_MS, value_ms))
        i = min(_HIGHEST, max(_LOWEST, math.floor(math.log(v) / _LOG)))
        self.counts[i] = self.counts.get(i, 0) + 1
        self.n += 1
        self.max_ms = max(self.max_ms, v)

    def merge(self, other: Histogram) -> None:
        for i, c in other.counts.items():
            self.counts[i] = self.counts.get(i, 0) + c
        self.n += other.n
        self.max_ms = max(self.max_ms, other.max_ms)

    def percentile(self, q: float) -> float:
        """The value at quantile q (0..1): the middle of the bucket holding the
        ceil(q * n)-th smallest value (within 1 % of it); 0.0 when empty."""
        if self.n == 0:
            return 0.0
        rank = max(1, math.ceil(q * self.n))
        seen = 0
        for i in sorted(self.counts):
            seen += self.counts[i]
            if seen >= rank:
                return min(self.max_ms, float(GROWTH ** (i + 0.5)))
        return self.max_ms

    def summary(self) -> dict[str, float]:
        return {
            "p50": self.percentile(0.50),
            "p95": self.percentile(0.95),
            "p99": self.percentile(0.99),
            "max": self.max_ms,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "counts": {str(i): c for i, c in sorted(self.counts.items())},
            "max_ms": self.max_ms,
        }

    @staticmethod
    def from_json(data: Any) -> Histogram:
        """Read what `to_json` wrote (another process's: checked, bounded)."""
        if not isinstance(data, Mapping):
            raise HistogramError("histogram: expected an object")
        counts = data.get("counts")
        max_ms = data.get("max_ms")
        if not isinstance(counts, Mapping) or len(counts) > _HIGHEST - _LOWEST + 1:
            raise HistogramError("histogram.counts: expected an object of bucket counts")
        if not isinstance(max_ms, int | float) or isinstance(max_ms, bool) or max_ms < 0:
            raise HistogramError("histogram.max_ms: expected a number >= 0")
        h = Histogram(max_ms=float(min(max_ms, MAX_MS)))
        for key, c in counts.items():
            try:
                i = int(key)
            except ValueError:
                raise HistogramError(f"histogram.counts: bad bucket {key!r}") from None
            count_ok = isinstance(c, int) and not isinstance(c, bool) and c >= 0
            if not _LOWEST <= i <= _HIGHEST or not count_ok:
                raise HistogramError(f"histogram.counts: bad bucket {key!r}: {c!r}")
            h.counts[i] = c
            h.n += c
        return h
