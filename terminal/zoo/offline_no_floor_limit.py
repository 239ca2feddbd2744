"""offline-no-floor-limit: any sale is approved offline when the host is unreachable.

The terminal ignores its floor limit and its count limit: a large sale, or one more
when the queue is full, is approved offline too, so the merchant carries risk the
acquirer never agreed to (a late decline of a large sale loses the goods).
Real-world failure: offline approvals above the floor limit (or too many of them).
Invariant that catches it: ``offline-uploaded`` (its floor and count limits).
"""

from __future__ import annotations

from dataclasses import replace

from terminal.firmware import FEATURE_OFFLINE
from terminal.offline_flow import OFFLINE_QUEUE_MAX
from terminal.reference import Sale
from terminal.zoo.classic import ClassicFirmware


class OfflineNoFloorLimitFirmware(ClassicFirmware):
    """Approves offline whatever the amount and however many wait."""

    features = frozenset({FEATURE_OFFLINE})

    def _offline_allowed(self, sale: Sale) -> bool:
        if self.config.offline_floor <= 0 or len(self._offline) >= OFFLINE_QUEUE_MAX:
            return False
        limits = self.config
        self.config = replace(limits, offline_floor=sale.amount, offline_max=OFFLINE_QUEUE_MAX)
        try:
            return super()._offline_allowed(sale)  # the flaw: no floor, no count limit
        finally:
            self.config = limits
