"""Device and people faults: printer, card reader, keypad, cashier and customer."""

from __future__ import annotations

from dataclasses import dataclass

from .base import Fault, register


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
