"""late-approval-flips: a late approved 0210 flips a timed-out sale to APPROVED.

After the timeout the reversal already went out; the late approval is journaled,
shown and printed anyway, so a receipt exists for a reversed transaction.
Real-world failure: receipt printed, but no (valid) transaction record.
Invariant that catches it: ``no-receipt-without-record``.
"""

from __future__ import annotations

from acquirer.protocol import RC_APPROVED, Message
from terminal.firmware import Effect
from terminal.reference import SaleStatus
from terminal.zoo.classic import ClassicFirmware


class LateApprovalFlipsFirmware(ClassicFirmware):
    """A late approved 0210 flips a timed-out sale to APPROVED."""

    def _on_unmatched_purchase_response(self, msg: Message) -> list[Effect]:
        sale = self._sales.get(msg.idem_key)
        if sale is None or msg.rc != RC_APPROVED:
            return []
        if self._status.get(sale.key) not in (SaleStatus.REVERSING, SaleStatus.REVERSED):
            return []
        return self._on_approved(sale, msg)  # the flaw: the reversal is not consulted
