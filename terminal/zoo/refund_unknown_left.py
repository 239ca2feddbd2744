"""refund-unknown-left: a refund that never got an answer is left for "manual handling".

The cashier refunds part of an earlier sale; every answer is lost. The terminal gives up,
shows REFUND NEEDS MANUAL HANDLING and moves on, without reversing the refund. The host
did credit the card on the first copy: the customer walks away credited while the
cashier was told nothing happened, and the next batch does not reconcile.
Real-world failure: money credited behind the merchant's back ("failed" but credited,
the refund side of "failed" but charged).
Invariant that catches it: ``no-charge-on-failure`` (the host refunded more than the
terminal showed REFUNDED) and ``batch-reconciles``.
"""

from __future__ import annotations

from terminal.firmware import FEATURE_REFUND, Effect
from terminal.zoo.classic import ClassicFirmware


class RefundUnknownLeftFirmware(ClassicFirmware):
    """Gives a refund up without reversing it."""

    features = frozenset({FEATURE_REFUND})

    def _refund_give_up(self, key: str) -> list[Effect]:
        # The flaw: the outcome is unknown, and nothing undoes a credit that did land.
        return self._refund_over(
            key, {"type": "refund_manual", "key": key}, "REFUND NEEDS MANUAL HANDLING"
        )
