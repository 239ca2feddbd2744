"""Attacker faults: an on-path attacker without the key, and a second device.

They model what docs/security.md's threat model allows an attacker: read every
frame, replay it, splice frames together, rewrite any field (which breaks the MAC),
and put a replacement device with the same terminal id on a fresh journal. A
correct terminal and host shrug all of them off; the zoo firmwares that trust too
much (`zoo:no-echo-check`, `zoo:tid-counter-keys`, `zoo:trusts-unsigned`) are caught.
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import Fault, FaultSpecError, register

REPLAY_LEGS = ("request", "answer")
# An RRN the attacker writes into a spliced approval.
SPLICE_RRN = "SPLICED00001"


@dataclass(frozen=True, slots=True)
class AttackerFault(Fault):
    """Base of the attacker kinds (the world dispatches on LAYER "attacker")."""

    LAYER = "attacker"


@register
@dataclass(frozen=True, slots=True)
class Splice(AttackerFault):
    """On the nth purchase the attacker obtains a signed answer meant for another
    request and delivers it to the terminal `delay_ms` later, ahead of the real one:
    it replays the previous purchase request to the host (answered from the
    idempotency store, or refused stale), or, when there is none, sends a tampered
    copy of this one (refused). `rc` rewrites the answer's code ("" keeps it; a
    rewrite breaks the MAC unless the codec is ambiguous)."""

    KIND = "splice"
    SUMMARY = "a signed answer to another request is spliced into the nth purchase"

    rc: str = ""
    delay_ms: int = 5

    def check(self) -> None:
        Fault.check(self)
        if self.rc and not (len(self.rc) == 2 and self.rc.isascii() and self.rc.isalnum()):
            raise FaultSpecError("rc: must be 2 letters or digits (or empty)")


@register
@dataclass(frozen=True, slots=True)
class Replay(AttackerFault):
    """The attacker records the nth frame of `mti` on one leg and plays it again
    `after_ms` later: a terminal request to the host (`leg = "request"`), or a host
    answer to the terminal (`leg = "answer"`; `mti` then names the answer)."""

    KIND = "replay"
    SUMMARY = "the nth request (or answer) is played again after_ms later"

    leg: str = "request"
    mti: str = "0200"
    after_ms: int = 2_000

    def check(self) -> None:
        Fault.check(self)
        if self.leg not in REPLAY_LEGS:
            raise FaultSpecError(f"leg: must be one of {', '.join(map(repr, REPLAY_LEGS))}")
        if not (len(self.mti) == 4 and self.mti.isdigit()):
            raise FaultSpecError("mti: must be 4 digits")
        if self.nth == 0:
            raise FaultSpecError("nth: a replay needs nth >= 1 (which frame to record)")


@register
@dataclass(frozen=True, slots=True)
class DeviceSwap(AttackerFault):
    """At `at_ms` the cashier closes the day and the terminal is replaced by a second
    device with the same terminal id and an empty journal (a swapped or wiped device):
    once the batch has closed cleanly (nothing unfinished is lost, only the sale
    counter), power goes off, the journal is lost, the new device boots `off_ms`
    later. A swap whose batch never closes cleanly does not happen."""

    KIND = "device_swap"
    SUMMARY = "after a batch close at at_ms the terminal is replaced by a fresh device"

    at_ms: int = 0
    off_ms: int = 3_000
