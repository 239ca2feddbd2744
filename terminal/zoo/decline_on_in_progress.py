"""decline-on-in-progress: RC 09 ("request in progress") is taken as a decline.

The terminal shows DECLINED while the first attempt is still running at the
host; it later completes and charges.
Real-world failure: "failed"/declined on the terminal, but the card was charged.
Invariant that catches it: ``no-charge-on-failure``.
"""

from __future__ import annotations

from acquirer.protocol import Message
from terminal.firmware import Effect
from terminal.zoo.classic import ClassicFirmware


class DeclineOnInProgressFirmware(ClassicFirmware):
    """RC 09 ("request in progress") is taken as a decline."""

    def _on_in_progress(self, msg: Message) -> list[Effect]:
        sale = self._sale
        if sale is None:
            return []
        effects = self._close_sale()
        return effects + self._decline(sale, msg.rc) + self._after_sale()  # the flaw
