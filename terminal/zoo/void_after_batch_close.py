"""void-after-batch-close: a sale is voided after the batch close settled it.

The terminal does not check the batch window: a sale settled by the last batch close
is "voided" with a reversal like one still in the open batch. The host refuses it (RC
12: settled, refund it instead), and the terminal, taking any answer to a void for
done, shows VOIDED: the customer leaves believing the sale cancelled and is never
given the money back.
Real-world failure: a void shown done that the host never booked.
Invariant that catches it: ``approved-means-charged`` (a sale shown VOIDED must be
reversed at the host); its VOIDED receipt, too: ``no-receipt-without-record``.
"""

from __future__ import annotations

from terminal.firmware import FEATURE_REFUND, Effect
from terminal.refund_flow import SaleRef
from terminal.zoo.classic import ClassicFirmware


class VoidAfterBatchCloseFirmware(ClassicFirmware):
    """Voids settled sales, and shows any answer to a void as VOIDED."""

    features = frozenset({FEATURE_REFUND})

    def _void_too_late(self, ref: SaleRef) -> bool:
        return False  # the flaw: no batch window

    def _void_refused(self, key: str) -> list[Effect] | None:
        if key not in self._voids:
            return None
        # ...and a refused void is shown as done, like an acknowledged one.
        effects = self._void_done(key)
        self._voids.pop(key, None)
        self._reversals.pop(key, None)
        if key == self._reversal_key:
            self._reversal_key = ""
        return [*effects, self._journal({"type": "reversal_manual", "key": key})]
