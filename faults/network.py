"""Network faults: each looks at one message on one direction of the link.

A message on the link becomes a list of deliveries `(extra_delay_ms, message)`;
each fault that matches transforms that list, in plan order. The base latency is
added by the link itself.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from acquirer.protocol import Message

from .base import Fault, FaultSpecError, register

Deliveries = list[tuple[int, Message]]

DIRECTIONS = ("to_host", "to_terminal", "any")
# A silent (half-open) TCP connection is closed after at most this long.
HALF_OPEN_HOLD_MAX_MS = 600_000


@dataclass(frozen=True, slots=True)
class NetworkFault(Fault):
    """Matches messages by direction and MTI ("" = any MTI)."""

    LAYER = "network"

    direction: str = "any"
    mti: str = ""

    def check(self) -> None:
        Fault.check(self)
        if self.direction not in DIRECTIONS:
            raise FaultSpecError(f"direction: must be one of {', '.join(DIRECTIONS)}")
        if self.mti and (len(self.mti) != 4 or not self.mti.isdigit()):
            raise FaultSpecError('mti: must be 4 digits, e.g. "0210"')

    def matches(self, direction: str, msg: Message) -> bool:
        return (self.direction == "any" or self.direction == direction) and (
            not self.mti or self.mti == msg.mti
        )

    def apply(self, deliveries: Deliveries) -> Deliveries:
        raise NotImplementedError


@register
@dataclass(frozen=True, slots=True)
class Drop(NetworkFault):
    KIND = "drop"
    SUMMARY = "the message is lost"

    def apply(self, deliveries: Deliveries) -> Deliveries:
        return []


@register
@dataclass(frozen=True, slots=True)
class Delay(NetworkFault):
    KIND = "delay"
    SUMMARY = "the message arrives delay_ms late (possibly after the terminal's timeout)"

    delay_ms: int = 20_000

    def apply(self, deliveries: Deliveries) -> Deliveries:
        return [(d + self.delay_ms, m) for d, m in deliveries]


@register
@dataclass(frozen=True, slots=True)
class Duplicate(NetworkFault):
    KIND = "duplicate"
    SUMMARY = "the message arrives twice, the copy gap_ms after the original"

    gap_ms: int = 100

    def apply(self, deliveries: Deliveries) -> Deliveries:
        return deliveries + [(d + self.gap_ms, m) for d, m in deliveries]


@register
@dataclass(frozen=True, slots=True)
class Reorder(NetworkFault):
    KIND = "reorder"
    SUMMARY = "the message is held hold_ms so that messages sent after it overtake it"

    hold_ms: int = 3_000

    def check(self) -> None:
        NetworkFault.check(self)
        if self.hold_ms < 1:
            raise FaultSpecError("hold_ms: must be >= 1")

    def apply(self, deliveries: Deliveries) -> Deliveries:
        return [(d + self.hold_ms, m) for d, m in deliveries]


CORRUPTIBLE = ("amount", "stan", "mac", "rc", "mti")


@register
@dataclass(frozen=True, slots=True)
class Corrupt(NetworkFault):
    KIND = "corrupt"
    SUMMARY = "one field of the message is damaged in flight (the MAC no longer matches)"

    field: str = "amount"

    def check(self) -> None:
        NetworkFault.check(self)
        if self.field not in CORRUPTIBLE:
            raise FaultSpecError(f"field: must be one of {', '.join(CORRUPTIBLE)}")

    def apply(self, deliveries: Deliveries) -> Deliveries:
        return [(d, corrupt(m, self.field)) for d, m in deliveries]


def corrupt(msg: Message, field: str) -> Message:
    """`msg` with `field` damaged the way a flipped bit would damage it."""
    if field == "amount":
        return dataclasses.replace(msg, amount=msg.amount ^ 0x10)
    if field == "stan":
        return dataclasses.replace(msg, stan=msg.stan ^ 0x1)
    if field == "mac":
        return dataclasses.replace(msg, mac="0" * 16)
    if field == "rc":
        return dataclasses.replace(msg, rc="00" if msg.rc != "00" else "05")
    return dataclasses.replace(msg, mti="9" + msg.mti[1:])


@register
@dataclass(frozen=True, slots=True)
class Partition(NetworkFault):
    KIND = "partition"
    SUMMARY = "nothing gets through between from_ms and to_ms"

    def check(self) -> None:
        NetworkFault.check(self)
        if self.to_ms == -1:
            raise FaultSpecError("to_ms: a partition needs an end (to_ms > from_ms)")

    def apply(self, deliveries: Deliveries) -> Deliveries:
        return []


# Link faults: what a TCP connection can do that a message bus cannot. On a TCP link
# (the TCP fault proxy, harness/tcp/proxy.py) they act on the connection that carries
# the message; in the simulation and over MQTT, which have no connections, they are a
# lost message (reset, half_open) or a late one (slow_reader), which drop and delay
# already draw: SWARM is False.


@register
@dataclass(frozen=True, slots=True)
class Reset(NetworkFault):
    KIND = "reset"
    SUMMARY = (
        "TCP: the connection carrying the message is reset (RST both ways), the message and "
        "anything else in flight on it lost; elsewhere the message is lost"
    )
    SWARM = False

    def apply(self, deliveries: Deliveries) -> Deliveries:
        return []


@register
@dataclass(frozen=True, slots=True)
class HalfOpen(NetworkFault):
    KIND = "half_open"
    SUMMARY = (
        "TCP: the connection goes silent from the message on, neither side told, for hold_ms, "
        "then is closed; elsewhere the message is lost"
    )
    SWARM = False

    hold_ms: int = 30_000

    def check(self) -> None:
        NetworkFault.check(self)
        if not 1 <= self.hold_ms <= HALF_OPEN_HOLD_MAX_MS:
            raise FaultSpecError(f"hold_ms: must be 1-{HALF_OPEN_HOLD_MAX_MS}")

    def apply(self, deliveries: Deliveries) -> Deliveries:
        return []


@register
@dataclass(frozen=True, slots=True)
class SlowReader(NetworkFault):
    KIND = "slow_reader"
    SUMMARY = (
        "TCP: the receiving side stops reading for pause_ms at the message (the sender's "
        "writes back up; nothing overtakes it); elsewhere the message is pause_ms late"
    )
    SWARM = False

    pause_ms: int = 2_000

    def apply(self, deliveries: Deliveries) -> Deliveries:
        return [(d + self.pause_ms, m) for d, m in deliveries]


@register
@dataclass(frozen=True, slots=True)
class Forge(Fault):
    """An attacker (or a broken proxy) answers the nth purchase with an "approved"
    the host never sent: unsigned, with a made-up RRN."""

    KIND = "forge"
    LAYER = "forge"
    SUMMARY = "an 'approved' 0210 the host never sent reaches the terminal"

    delay_ms: int = 10
    rrn: str = "FORGED000001"

    def check(self) -> None:
        Fault.check(self)
        if not (1 <= len(self.rrn) <= 12):
            raise FaultSpecError("rrn: must be 1-12 characters")
