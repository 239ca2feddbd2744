"""no-reversal: after the last response timeout it shows FAILED and never reverses.

Real-world failure: the host approved but the 0210 was lost; the terminal says
"failed", the customer pays again or leaves, and the first debit stays.
Invariant that catches it: ``no-charge-on-failure``.
"""

from __future__ import annotations

from terminal.firmware import Display, Effect, Outcome
from terminal.reference import SaleStatus
from terminal.zoo.classic import ClassicFirmware


class NoReversalFirmware(ClassicFirmware):
    """After the last response timeout it shows FAILED and never reverses."""

    def _give_up(self) -> list[Effect]:
        sale = self._sale
        if sale is None:
            return []
        effects = self._close_sale()
        # The flaw: the unknown outcome is journaled as final and nothing is reversed.
        self._status[sale.key] = SaleStatus.DECLINED
        effects.append(self._journal({"type": "declined", "key": sale.key, "rc": "timeout"}))
        effects.append(Display(Outcome.FAILED, "TIMEOUT"))
        return effects + self._after_sale()
