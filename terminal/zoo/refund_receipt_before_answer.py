"""refund-receipt-before-answer: the refund receipt is printed before the host answered.

The cashier refunds part of an earlier sale; the terminal prints the refund receipt as
soon as it sends the refund (it has no host reference for it yet), and never again. If
the host refuses the refund, or it never gets there (the terminal gives up after its
tries), the customer leaves with a receipt for a credit that does not exist; when the
host does credit the card, the receipt names no credit of its.
Real-world failure: a receipt without a record (the customer was told "refunded" on
paper, the card was never credited).
Invariant that catches it: ``no-receipt-without-record`` (the REFUNDED receipt names no
approved host refund); when the host does credit the card, ``receipt-for-every-charge``
too (the host's refund has no receipt with its RRN).
"""

from __future__ import annotations

from terminal.credit_receipts import STATUS_REFUNDED, CreditSlip
from terminal.firmware import FEATURE_REFUND, Effect, JournalAppend
from terminal.refund_flow import SaleRef
from terminal.zoo.classic import ClassicFirmware


class RefundReceiptBeforeAnswerFirmware(ClassicFirmware):
    """Prints a refund's receipt when it sends the refund."""

    features = frozenset({FEATURE_REFUND})

    def _start_refund(self, ref: SaleRef, amount: int) -> list[Effect]:
        effects = super()._start_refund(ref, amount)
        started = any(
            isinstance(e, JournalAppend) and e.record.get("type") == "refund" for e in effects
        )
        if not started:
            return effects
        job = list(self._refunds.values())[-1]
        # The flaw: the receipt goes out with the request, before any answer.
        slip = CreditSlip(
            job.key, STATUS_REFUNDED, job.amount, "", job.orig_rrn, job.stan, job.pan[-4:]
        )
        return [*effects, self._print_credit(slip)]

    def _credit_receipt(self, slip: CreditSlip) -> list[Effect]:
        if slip.status == STATUS_REFUNDED:
            return []  # printed when it was sent
        return super()._credit_receipt(slip)
