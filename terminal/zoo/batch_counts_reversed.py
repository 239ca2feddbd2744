"""batch-counts-reversed: the batch totals include reversed sales.

Sales that were reversed (net zero at the host) are still counted and summed in
the 0500, so the terminal's totals exceed the host's settlement.
Real-world failure: settlement / reconciliation error (wrong amount).
Invariant that catches it: ``batch-reconciles``.
"""

from __future__ import annotations

from acquirer.protocol import BatchItem
from terminal.reference import SaleStatus
from terminal.zoo.classic import ClassicFirmware

_REVERSED = (SaleStatus.REVERSING, SaleStatus.REVERSED, SaleStatus.REVERSAL_MANUAL)


class BatchCountsReversedFirmware(ClassicFirmware):
    """The batch totals include reversed sales."""

    def _batch_sales(self) -> list[BatchItem]:
        items = super()._batch_sales()
        for key, sale in self._sales.items():
            if sale.batch_no == self._open_batch_no and self._status.get(key) in _REVERSED:
                items.append(BatchItem(sale.stan, sale.amount, ""))  # the flaw
        return items
