"""wallet-pending-failed: a wallet payment that is "user paying" is shown as FAILED.

Real-world failure: the wallet answers "waiting for the customer to confirm" (or
"system error, result unknown"); the terminal treats it as a failure and stops.
The customer confirms on the phone a few seconds later and is charged, with no
receipt and a "failed" screen: the wallet took the money and the POS printed nothing.
Invariant that catches it: ``no-charge-on-failure`` (and ``receipt-for-every-charge``).
"""

from __future__ import annotations

from acquirer.protocol import Message
from terminal.firmware import Display, Effect, Outcome
from terminal.reference import ReferenceFirmware, SaleStatus


class WalletPendingFailedFirmware(ReferenceFirmware):
    """Shows FAILED on a wallet's "user paying" answer, without polling or cancelling."""

    def _wallet_pending(self, msg: Message | None) -> list[Effect]:
        sale = self._sale
        if sale is None:
            return []
        effects = self._close_sale()
        self._status[sale.key] = SaleStatus.DECLINED
        effects.append(self._journal({"type": "declined", "key": sale.key, "rc": "pending"}))
        effects.append(Display(Outcome.FAILED, "PAYMENT FAILED"))
        return effects + self._after_sale()
