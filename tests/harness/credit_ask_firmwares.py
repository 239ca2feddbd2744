"""Firmwares with one flaw each in carrying out voids and refunds, after surviving
mutants of terminal/refund_flow.py (loaded as module:Class by
tests/harness/test_credit_asks.py). Each is truthful with money: only
`eventually-settles` can catch it."""

from __future__ import annotations

from acquirer.protocol import Message
from terminal.firmware import Effect
from terminal.reference import ReferenceFirmware
from terminal.refund_flow import SaleRef


class VoidNeverShown(ReferenceFirmware):
    """Forgets a void once its reversal is sent (refund_flow m0063: the void not kept):
    the host reverses the sale, the terminal never shows VOIDED."""

    def _void_done(self, key: str) -> list[Effect]:
        if self._voids.pop(key, None) is not None:
            return []
        return super()._void_done(key)


class RefundAnswersIgnored(ReferenceFirmware):
    """Matches no refund answer (refund_flow m0157: answers matched only when the
    amount differs): every refund is given up, reversed and shown REFUND FAILED."""

    def _on_refund_response(self, msg: Message) -> list[Effect]:
        return []


class SettledSalesForgotten(ReferenceFirmware):
    """Keeps no sale refundable once a batch close settled it (the symptom of
    refund_flow m0225 after a reboot, here without one): a refund after the close is
    refused, NO SUCH SALE."""

    def _sale_ref(self, rrn: str) -> SaleRef | None:
        ref = super()._sale_ref(rrn)
        return None if ref is not None and ref.settled else ref
