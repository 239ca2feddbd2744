"""Device and people faults: printer, card reader, keypad, cashier and customer."""

from __future__ import annotations

from dataclasses import dataclass

from .base import Fault, FaultSpecError, register


@register
@dataclass(frozen=True, slots=True)
class PrinterJam(Fault):
    KIND = "printer_jam"
    LAYER = "printer"
    SUMMARY = "the nth print job jams"


@register
@dataclass(frozen=True, slots=True)
class PaperOut(Fault):
    KIND = "paper_out"
    LAYER = "printer"
    SUMMARY = "every print job in the window fails: no paper"


@register
@dataclass(frozen=True, slots=True)
class PrintFailure(Fault):
    KIND = "print_failure"
    LAYER = "printer"
    SUMMARY = "the nth print job fails mid-print (a partial receipt does not count)"


@register
@dataclass(frozen=True, slots=True)
class Misread(Fault):
    KIND = "misread"
    LAYER = "reader"
    SUMMARY = "the reader misreads the nth tap; the customer taps again"


@register
@dataclass(frozen=True, slots=True)
class DoubleTap(Fault):
    KIND = "double_tap"
    LAYER = "reader"
    SUMMARY = "the customer taps the card twice, gap_ms apart, on the nth purchase"

    gap_ms: int = 400


@register
@dataclass(frozen=True, slots=True)
class DoubleConfirm(Fault):
    KIND = "double_confirm"
    LAYER = "keypad"
    SUMMARY = "the cashier presses confirm twice, gap_ms apart, on the nth purchase"

    gap_ms: int = 300


@register
@dataclass(frozen=True, slots=True)
class KeyingError(Fault):
    KIND = "keying_error"
    LAYER = "keypad"
    SUMMARY = "the cashier keys `amount` instead of the intended amount on the nth purchase"

    amount: int = 0


@register
@dataclass(frozen=True, slots=True)
class LateConfirm(Fault):
    """The customer's phone: the nth wallet order that waits for its customer (RC 09)
    is confirmed `extra_ms` later than the customer would have (or never)."""

    KIND = "late_confirm"
    LAYER = "phone"
    SUMMARY = "the customer confirms the nth waiting wallet order extra_ms late (or never)"
    NEEDS = "wallet"

    extra_ms: int = 30_000
    never: bool = False


# What a chip card does instead of accepting the approval (`ChipRefusal.reason`).
CHIP_REFUSALS = ("decline", "removed")


@register
@dataclass(frozen=True, slots=True)
class ChipRefusal(Fault):
    """The chip card in the reader: the nth completion of an approved sale (the EMV
    second GENERATE AC) is refused, whatever the card's own `chip` says. Only on a
    chip terminal (`[terminal] chip = true`)."""

    KIND = "chip_refusal"
    LAYER = "chip"
    SUMMARY = "the chip card declines the nth approval it is asked to complete, or is pulled"
    NEEDS = "chip"
    SWARM = False  # drawn with the chip terminal, last (harness/strategies.py)

    reason: str = "decline"

    def check(self) -> None:
        Fault.check(self)
        if self.reason not in CHIP_REFUSALS:
            raise FaultSpecError(f"reason: must be one of {', '.join(CHIP_REFUSALS)}")
