"""offline-expiry-no-reversal: an offline sale shown expired keeps its charge.

An offline sale's advice reaches the host close to the terminal's upload deadline and
the issuer is slow; the terminal stops waiting and shows the sale expired (NOT
UPLOADED - COLLECT PAYMENT), so the cashier takes the payment another way. But it
does not reverse the advice: the host books it after all, and the customer pays
twice. Written from a flaw an outside tester found caught only indirectly (by a
later batch close not reconciling).
Real-world failure: "failed" (not paid) on the terminal, but the card was charged.
Invariant that catches it: ``no-charge-on-failure``.
"""

from __future__ import annotations

from terminal.firmware import FEATURE_OFFLINE, Effect
from terminal.reference import ReferenceFirmware, SaleStatus


class OfflineExpiryNoReversalFirmware(ReferenceFirmware):
    """Shows an offline sale expired without reversing what its advice charged (the
    reference otherwise: its status inquiry times the outage as the incident does)."""

    features = frozenset({FEATURE_OFFLINE})

    def _expire(self, key: str) -> list[Effect]:
        sale = self._sales[key]
        effects = self._dequeue_advice(key)
        self._status[key] = SaleStatus.DECLINED
        self._pending_receipts.pop(key, None)
        effects.append(self._journal({"type": "offline_expired", "key": key}))
        return [*effects, self._expired_display(sale)]  # the flaw: no reversal
