"""Firmwares with one flaw each in their void and refund receipts (loaded as
module:Class by tests/harness/test_credit_receipts.py)."""

from __future__ import annotations

from dataclasses import replace

from terminal.credit_receipts import CreditSlip
from terminal.firmware import Effect
from terminal.reference import ReferenceFirmware


class NoCreditReceipts(ReferenceFirmware):
    """Shows VOIDED / REFUNDED but prints no receipt for them."""

    def _credit_receipt(self, slip: CreditSlip) -> list[Effect]:
        return []


class CreditReceiptWrongAmount(ReferenceFirmware):
    """Prints the credit's receipt for 1.00 more than the credit."""

    def _credit_receipt(self, slip: CreditSlip) -> list[Effect]:
        return super()._credit_receipt(replace(slip, amount=slip.amount + 100))


class CreditReceiptSaleRrn(ReferenceFirmware):
    """Prints a refund's receipt under the sale's RRN instead of the refund's."""

    def _credit_receipt(self, slip: CreditSlip) -> list[Effect]:
        return super()._credit_receipt(replace(slip, rrn=slip.orig_rrn))


class ForgetsOwedCreditReceipts(ReferenceFirmware):
    """After a power cut, neither shows nor prints the credit receipts it owes."""

    def _credit_recover(self) -> list[Effect]:
        return []
