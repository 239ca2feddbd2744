"""Clock faults: the terminal's crystal runs fast or slow."""

from __future__ import annotations

from dataclasses import dataclass

from .base import Fault, FaultSpecError, register

# A drift beyond +-50 % is not a clock fault any more, it is a broken board.
DRIFT_PPM_MAX = 500_000


@register
@dataclass(frozen=True, slots=True)
class ClockSkew(Fault):
    """The terminal's timers run `drift_ppm` parts per million fast (< 0) or slow (> 0):
    a 15 s timeout fires after 15 s * (1 + drift_ppm / 1e6) of host time."""

    KIND = "clock_skew"
    LAYER = "clock"
    SUMMARY = "terminal timers fire drift_ppm early or late"

    drift_ppm: int = 100_000

    def check(self) -> None:
        Fault.check(self)
        if abs(self.drift_ppm) > DRIFT_PPM_MAX:
            raise FaultSpecError(f"drift_ppm: must be within +-{DRIFT_PPM_MAX}")
