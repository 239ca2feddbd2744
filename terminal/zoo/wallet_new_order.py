"""wallet-new-order: retries a wallet payment under a new order number.

Real-world failure: the pay call times out; the terminal, instead of asking what
became of the order it sent, pays again under a fresh merchant order number (the
classic re-scan). The wallet sees two different orders and takes the money twice.
Invariant that catches it: ``no-duplicate-charge``.
"""

from __future__ import annotations

from acquirer.protocol import Message
from terminal.firmware import CodeScanned, Effect
from terminal.reference import ReferenceFirmware, SaleStatus, State


class WalletNewOrderFirmware(ReferenceFirmware):
    """On a wallet sale with no answer, pays again under a new order number, once."""

    def _wallet_pending(self, msg: Message | None) -> list[Effect]:
        sale = self._sale
        if msg is not None or sale is None or self._sends >= self.config.max_sends:
            return super()._wallet_pending(msg)
        # The flaw: the first order is forgotten (never queried, never cancelled) and
        # the same code is paid again as a new sale, with a new order number.
        self._status[sale.key] = SaleStatus.DECLINED
        effects = self._close_sale()
        self._state = State.AWAITING_CARD
        self._amount = sale.amount
        effects += self._on_code(CodeScanned(sale.pan))
        self._sends = self.config.max_sends  # only once
        return effects
