"""Host faults: the acquirer crashes, slows down, or answers with errors."""

from __future__ import annotations

from dataclasses import dataclass

from acquirer.protocol import RESPONSE_CODES

from .base import Fault, FaultSpecError, register


@dataclass(frozen=True, slots=True)
class HostFault(Fault):
    """Matches requests arriving at the host by MTI ("" = any)."""

    LAYER = "host"

    mti: str = "0200"

    def check(self) -> None:
        Fault.check(self)
        if self.mti and (len(self.mti) != 4 or not self.mti.isdigit()):
            raise FaultSpecError('mti: must be 4 digits, e.g. "0200"')


@register
@dataclass(frozen=True, slots=True)
class HostCrash(HostFault):
    KIND = "host_crash"
    SUMMARY = "the host commits (or not) and dies before replying; it is down for down_ms"

    when: str = "after_commit"  # or "before_commit"
    down_ms: int = 5_000

    def check(self) -> None:
        HostFault.check(self)
        if self.when not in ("after_commit", "before_commit"):
            raise FaultSpecError("when: must be after_commit or before_commit")


@register
@dataclass(frozen=True, slots=True)
class SlowHost(HostFault):
    KIND = "slow_host"
    SUMMARY = "the host takes extra_ms longer to answer"

    extra_ms: int = 20_000


@register
@dataclass(frozen=True, slots=True)
class RcBurst(HostFault):
    KIND = "rc_burst"
    SUMMARY = "the host answers rc (e.g. 91 issuer unavailable, 96 system error) without processing"

    rc: str = "91"

    def check(self) -> None:
        HostFault.check(self)
        if self.rc not in RESPONSE_CODES or self.rc == "00":
            raise FaultSpecError('rc: must be a known non-approval code such as "91" or "96"')


@register
@dataclass(frozen=True, slots=True)
class HostDoubleCharge(HostFault):
    """A host-side defect seen in the field (a lost idempotency write, a retry inside
    the acquirer's own pipeline): the request is charged a second time under the
    same key, with a second RRN; the terminal gets one answer."""

    # The second charge's key: the original's plus this suffix (invariants strip it
    # to attribute the charge to the purchase it belongs to).
    TWIN_SUFFIX = "#twin"

    SWARM = False
    KIND = "host_double_charge"
    SUMMARY = "the host charges the request twice (same key, a second RRN); one answer"


@register
@dataclass(frozen=True, slots=True)
class HostLoseReversal(HostFault):
    """A host that acknowledges a reversal it never applies (a lost write, a
    reversal queue dropped in a failover): the terminal is told RC 00, the charge
    stays on the card."""

    SWARM = False
    KIND = "host_lose_reversal"
    SUMMARY = "the host answers a reversal RC 00 without reversing anything"

    mti: str = "0400"


@register
@dataclass(frozen=True, slots=True)
class HostForeignRrn(HostFault):
    """A host that answers a sale with another sale's reference (a cache keyed on
    the wrong field, a mixed-up response in a connection pool): the charge is made
    under its own RRN, the answer names the previous sale's."""

    SWARM = False
    KIND = "host_foreign_rrn"
    SUMMARY = "the host charges the sale but answers with another sale's RRN"
