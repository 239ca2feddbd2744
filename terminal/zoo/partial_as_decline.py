"""partial-as-decline: a partial approval (RC 10) is taken for a decline.

The terminal asks for partial approvals, but its response code table has only
"00 = approved": RC 10 falls through to the decline path. It shows DECLINED and
sends nothing back, while the host has charged what the card covered.
Real-world failure: "failed" (declined) on the terminal, but the card was charged.
Invariant that catches it: ``no-charge-on-failure``.
"""

from __future__ import annotations

from acquirer.protocol import RC_PARTIAL, Message
from terminal.firmware import FEATURE_PARTIAL, Effect
from terminal.zoo.classic import ClassicFirmware


class PartialAsDeclineFirmware(ClassicFirmware):
    """Shows DECLINED on a partial approval, without reversing it."""

    features = frozenset({FEATURE_PARTIAL})

    def _on_purchase_response(self, msg: Message) -> list[Effect]:
        sale = self._sale
        if msg.rc != RC_PARTIAL or sale is None:
            return super()._on_purchase_response(msg)
        effects = self._close_sale()
        return effects + self._decline(sale, msg.rc) + self._after_sale()  # the flaw
