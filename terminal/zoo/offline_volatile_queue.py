"""offline-volatile-queue: the queue of offline sales lives in memory only.

The terminal approves a sale offline, shows APPROVED and prints the receipt, but
journals nothing of the offline approval: a power cut (or a storage wipe) before the
upload loses it. At boot the sale looks unfinished and is reversed; the host never
books it, and the customer holds a receipt for a sale nobody will ever charge.
Real-world failure: a receipt with no host record (offline sales lost before upload).
Invariant that catches it: ``offline-uploaded``.
"""

from __future__ import annotations

from terminal.firmware import FEATURE_OFFLINE, Effect
from terminal.reference import Sale
from terminal.zoo.classic import ClassicFirmware


class OfflineVolatileQueueFirmware(ClassicFirmware):
    """Keeps offline approvals in memory only."""

    features = frozenset({FEATURE_OFFLINE})

    def _record_offline(self, sale: Sale, at_ms: int) -> list[Effect]:
        return []  # the flaw: nothing durable before the receipt prints
