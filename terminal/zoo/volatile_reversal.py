"""volatile-reversal: the pending reversal lives in memory only.

A power cut before the 0410 loses the reversal, and on boot an unfinished sale is
shown as failed without reversing it, so an approved-but-unanswered sale stays
charged while the terminal said "failed".
Real-world failure: "failed" on the terminal, but the card was charged.
Invariant that catches it: ``no-charge-on-failure``.
"""

from __future__ import annotations

from terminal.firmware import Display, Effect, Outcome
from terminal.reference import Sale, SaleStatus
from terminal.zoo.classic import ClassicFirmware


class VolatileReversalFirmware(ClassicFirmware):
    """The pending reversal lives in memory only."""

    def _record_reversal_pending(self, sale: Sale, reason: str = "") -> list[Effect]:
        return []  # the flaw: nothing durable

    def _on_boot_unresolved_sale(self, sale: Sale, reason: str = "") -> list[Effect]:
        self._status[sale.key] = SaleStatus.DECLINED
        return [
            self._journal({"type": "declined", "key": sale.key, "rc": "boot"}),
            Display(Outcome.FAILED, "LAST SALE FAILED"),  # the flaw: no reversal
        ]
