"""offline-batch-before-upload: the batch close does not wait for the offline queue.

The terminal counts offline sales as approved in its batch and sends the 0500 while
they still wait for upload, so the host settles the batch without them (and books
them, when they arrive, into a batch the terminal never counts them in).
Real-world failure: uploads racing the batch close (the totals never match).
Invariant that catches it: ``batch-reconciles``.
"""

from __future__ import annotations

from acquirer.protocol import BatchItem
from terminal.firmware import FEATURE_OFFLINE, Effect
from terminal.reference import SaleStatus
from terminal.zoo.classic import ClassicFirmware


class OfflineBatchBeforeUploadFirmware(ClassicFirmware):
    """Closes the batch with offline sales still queued, counting them."""

    features = frozenset({FEATURE_OFFLINE})

    def _maybe_start_batch(self) -> list[Effect]:
        queue, self._offline = self._offline, {}
        try:
            return super()._maybe_start_batch()  # the flaw: the queue is not waited for
        finally:
            self._offline = queue

    def _batch_sales(self) -> list[BatchItem]:
        items = super()._batch_sales()
        for key, sale in self._sales.items():
            if self._status.get(key) is SaleStatus.OFFLINE:
                items.append(BatchItem(sale.stan, sale.amount, ""))
        return items
