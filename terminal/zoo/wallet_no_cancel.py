"""wallet-no-cancel: polls the wallet order, then shows FAILED without cancelling it.

Real-world failure: the terminal stops polling after its last status query and
tells the cashier the payment failed, but leaves the order open at the wallet. The
customer, still on the confirmation screen, pays a little later; the money is
taken for a sale the terminal called failed.
Invariant that catches it: ``no-charge-on-failure``.
"""

from __future__ import annotations

from terminal.firmware import Display, Effect, Outcome
from terminal.reference import ReferenceFirmware, SaleStatus


class WalletNoCancelFirmware(ReferenceFirmware):
    """After the last status inquiry: FAILED, and the order is left open."""

    def _wallet_unpaid(self) -> list[Effect]:
        sale = self._sale
        if sale is None:
            return []
        effects = self._close_sale()
        self._status[sale.key] = SaleStatus.DECLINED
        effects.append(self._journal({"type": "declined", "key": sale.key, "rc": "unpaid"}))
        effects.append(Display(Outcome.FAILED, "NOT PAID"))
        return effects + self._after_sale()
