"""naive-retry: a response timeout resends the purchase as a brand-new sale.

Real-world failure: the 0210 is lost or slow, the terminal "retries" with a fresh
STAN and a fresh idempotency key, so the host sees two payments and charges twice;
after the last try it shows FAILED and never reverses.
Invariant that catches it: ``no-duplicate-charge``.
"""

from __future__ import annotations

from terminal.firmware import Display, Effect, Outcome
from terminal.reference import SaleStatus
from terminal.zoo.classic import ClassicFirmware


class NaiveRetryFirmware(ClassicFirmware):
    """A response timeout resends the purchase as a brand-new sale."""

    def _on_response_timeout(self) -> list[Effect]:
        sale = self._sale
        if sale is None:
            return []
        if self._sends < self.config.max_sends:
            sends = self._sends
            # The flaw: a new key and a new STAN for the same purchase.
            effects = self._start_sale(sale.amount, sale.pan)
            self._sends = sends + 1
            return effects
        effects = self._close_sale()
        self._status[sale.key] = SaleStatus.DECLINED
        effects.append(self._journal({"type": "declined", "key": sale.key, "rc": "timeout"}))
        effects.append(Display(Outcome.FAILED, "TIMEOUT"))
        return effects
