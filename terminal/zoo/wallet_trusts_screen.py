"""wallet-trusts-screen: takes the customer's phone screen for the wallet's word.

Real-world failure: while the terminal waits for the wallet, the customer shows a
"payment successful" screen (an old one, or a fake), and the cashier presses confirm.
The terminal marks the sale paid and prints a receipt that no payment stands behind;
the order itself is never paid.
Invariant that catches it: ``approved-means-charged`` (and ``no-receipt-without-record``).
"""

from __future__ import annotations

from terminal.firmware import ConfirmPressed, Display, Effect, Outcome
from terminal.reference import Approval, ReferenceFirmware, SaleStatus, State


class WalletTrustsScreenFirmware(ReferenceFirmware):
    """Confirm pressed while a wallet payment is pending counts as paid."""

    def _on_confirm(self, event: ConfirmPressed) -> list[Effect]:
        sale = self._sale
        if self._state is not State.AUTHORISING or sale is None or not sale.wallet:
            return super()._on_confirm(event)
        # The flaw: the cashier's word (the phone's screen) stands in for the wallet's.
        effects = self._close_sale()
        approval = Approval(sale.key, "", "", sale.amount)
        self._approvals[sale.key] = approval
        self._status[sale.key] = SaleStatus.APPROVED
        self._pending_receipts[sale.key] = None
        self._last_receipt_key = sale.key
        effects += [
            self._journal(approval.record()),
            Display(Outcome.APPROVED, "PAID (CUSTOMER SCREEN)"),
            self._print(sale.key, copy=False),
        ]
        return effects + self._after_sale()
