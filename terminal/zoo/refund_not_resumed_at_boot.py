"""refund-not-resumed-at-boot: a refund cut off by a power cut waits for ever.

The boot replays the journal and resumes the reversals, the completions and tips and
the batch; the refund queue, added later, is rebuilt from the journal too, but
nothing starts it again. A refund whose answer the power cut off is never sent again
(unless the cashier starts another refund): the host may have credited the card
while the cashier is never told, and the merchant's books do not reconcile.
Written from a flaw an outside tester found the fuzzer missing (no power cut was ever
aimed at a refund in flight).
Real-world failure: money credited behind the merchant's back, the cashier left without
an answer ("failed" but credited).
Invariant that catches it: ``no-charge-on-failure`` (the host refunded more than the
terminal showed REFUNDED) and ``eventually-settles`` (the refund is never answered).
"""

from __future__ import annotations

from terminal.firmware import FEATURE_REFUND, Boot, Effect
from terminal.zoo.classic import ClassicFirmware


class RefundNotResumedAtBootFirmware(ClassicFirmware):
    """Rebuilds its refund queue at boot without starting it."""

    features = frozenset({FEATURE_REFUND})
    _booting = False

    def _on_boot(self, event: Boot) -> list[Effect]:
        self._booting = True
        try:
            return super()._on_boot(event)
        finally:
            self._booting = False

    def _pump_refunds(self) -> list[Effect]:
        if self._booting:
            return []  # the flaw: the boot never sends a refund it rebuilt
        return super()._pump_refunds()
