"""refund-and-void: one sale is both refunded and voided.

The terminal checks neither way round: a sale already (partly) refunded can still be
voided while it is in the open batch. The void reverses the whole sale at the host, on
top of the refund: the card is credited more than the sale.
Real-world failure: refund + reversal of the same sale over-credits.
Invariant that catches it: ``no-over-credit``.
"""

from __future__ import annotations

from terminal.firmware import FEATURE_REFUND
from terminal.refund_flow import SaleRef
from terminal.zoo.classic import ClassicFirmware


class RefundAndVoidFirmware(ClassicFirmware):
    """Voids refunded sales (and refunds voided ones)."""

    features = frozenset({FEATURE_REFUND})

    def _credit_conflict(self, ref: SaleRef) -> str:
        return ""  # the flaw: never asks whether the sale was refunded or voided
