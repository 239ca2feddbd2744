"""wallet-cancels-success: cancels a wallet order after its status inquiry said paid.

Real-world failure: the polling loop ends with a cancel whatever the last query
said ("cancel in a finally block"). The order was paid, the terminal printed an
APPROVED receipt, and then the cancel refunded it: the customer leaves with the
goods and the money, the receipt names a sale the books no longer hold.
Invariant that catches it: ``approved-means-charged``.
"""

from __future__ import annotations

from acquirer.protocol import RC_APPROVED, Message
from terminal.firmware import Effect
from terminal.reference import ReferenceFirmware, Sale


class WalletCancelsSuccessFirmware(ReferenceFirmware):
    """A wallet sale approved by a status inquiry is cancelled right after."""

    def _on_inquiry_answer(self, sale: Sale, msg: Message) -> list[Effect]:
        effects = super()._on_inquiry_answer(sale, msg)
        if msg.rc == RC_APPROVED:
            # The flaw: the loop's cancel runs even though the order was paid.
            effects += self._record_reversal_pending(sale)
            effects += self._enqueue_reversal(sale)
        return effects
