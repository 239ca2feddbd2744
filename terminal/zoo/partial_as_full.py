"""partial-as-full: a partial approval (RC 10) is shown like a full one.

The terminal asks for partial approvals and its approval path takes RC 10 like
RC 00, but the screen was never told: it shows APPROVED for the sale as keyed while
the host took only what the card covered. The receipt is right (it prints the
host's amount); the cashier, reading APPROVED, does not collect the rest.
Real-world failure: a wrong amount (the merchant under-collects).
Invariant that catches it: ``amount-integrity``.
"""

from __future__ import annotations

from terminal.firmware import FEATURE_PARTIAL, Display, Outcome
from terminal.reference import Approval
from terminal.zoo.classic import ClassicFirmware


class PartialAsFullFirmware(ClassicFirmware):
    """Shows a partial approval as APPROVED for the whole amount."""

    features = frozenset({FEATURE_PARTIAL})

    def _approved_display(self, text: str, approval: Approval) -> Display:
        return Display(Outcome.APPROVED, text, approval.rrn)  # the flaw: no amount, no rest
