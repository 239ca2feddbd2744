"""chip-receipt-before-card: the receipt is printed on the host's approval, before
the chip card has accepted it.

The terminal prints the APPROVED receipt as soon as the host's 0210 arrives, then
asks the card to complete (second GENERATE AC). When the card declines, the
terminal does everything else right (DECLINED, a reversal with reason 96), but the
customer already holds an APPROVED receipt for a sale the host has reversed.
Real-world failure: a receipt without a record (the printed sale is not charged).
Invariant that catches it: ``no-receipt-without-record``.
"""

from __future__ import annotations

from terminal.firmware import FEATURE_CHIP, Effect
from terminal.reference import Approval, Sale
from terminal.zoo.classic import ClassicFirmware


class ChipReceiptBeforeCardFirmware(ClassicFirmware):
    """Prints the approved receipt before the chip card completes."""

    features = frozenset({FEATURE_CHIP})

    def _chip_start(self, sale: Sale, approval: Approval) -> list[Effect]:
        self._approvals[sale.key] = approval
        # The flaw: printed from the host's answer, before the card's verdict.
        return [self._print(sale.key, copy=False), *super()._chip_start(sale, approval)]
