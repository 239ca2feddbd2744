"""Power cuts: volatile state is lost, the journal is kept."""

from __future__ import annotations

from dataclasses import dataclass

from .base import Fault, FaultSpecError, register

AFTER_POINTS = ("", "send", "receive", "journal", "print")


@register
@dataclass(frozen=True, slots=True)
class PowerCut(Fault):
    """Cut the terminal's power at `at_ms`, or right after the nth matching effect
    (`after = "send"` with `mti`, "receive" with `mti`, "journal", "print"), so a cut
    can fall between any two effects. Power comes back `off_ms` later."""

    KIND = "power_cut"
    LAYER = "power"
    SUMMARY = "the terminal loses power at at_ms or right after the nth send/receive/journal/print"

    at_ms: int = -1
    after: str = ""
    mti: str = ""
    off_ms: int = 3_000

    def check(self) -> None:
        Fault.check(self)
        if self.after not in AFTER_POINTS:
            raise FaultSpecError(
                f"after: must be one of {', '.join(repr(a) for a in AFTER_POINTS)}"
            )
        if (self.at_ms < 0) == (self.after == ""):
            raise FaultSpecError("at_ms/after: give exactly one of at_ms (>= 0) or after")
        if self.after and self.nth == 0:
            raise FaultSpecError("nth: a power cut after an effect needs nth >= 1")
