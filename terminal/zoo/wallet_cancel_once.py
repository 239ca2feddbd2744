"""wallet-cancel-once: sends the cancel of an unpaid wallet order once and trusts it.

Real-world failure: the cancel itself fails (the wallet answers "system error,
retry", or the answer is lost) and the terminal marks the sale FAILED anyway,
without retrying the cancel. The order stays open; the customer confirms late and
is charged for a sale the terminal called failed.
Invariant that catches it: ``no-charge-on-failure``.
"""

from __future__ import annotations

from terminal.firmware import CancelTimer, Effect
from terminal.reference import REVERSAL_TIMER, ReferenceFirmware, SaleStatus


class WalletCancelOnceFirmware(ReferenceFirmware):
    """A wallet sale's cancel is sent once; whatever happens, it counts as done."""

    def _send_reversal(self) -> list[Effect]:
        key = self._reversal_key
        sale = self._reversals.get(key)
        if sale is None or not sale.wallet:
            return super()._send_reversal()
        effects = super()._send_reversal()
        # The flaw: no waiting for the answer, no retry.
        self._reversals.pop(key)
        self._status[key] = SaleStatus.REVERSED
        self._reversal_key = ""
        effects += [CancelTimer(REVERSAL_TIMER), self._journal({"type": "reversed", "key": key})]
        return effects + self._after_reversal()
