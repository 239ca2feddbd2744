"""offline-no-expiry: an offline sale that cannot be uploaded is retried forever.

The terminal keeps uploading a queued offline sale while the host stays unreachable
and never tells the merchant that its upload deadline has passed. When the host is
back, the advice is refused as too late (RC EX): the sale is never charged, and the
merchant learns of it only then, if at all.
Real-world failure: Square's offline mode lost sales on 7-8 Sep 2023 (offline
payments must be uploaded within 24 hours there).
Invariant that catches it: ``offline-uploaded``.
"""

from __future__ import annotations

from terminal.firmware import FEATURE_OFFLINE, Effect
from terminal.zoo.classic import ClassicFirmware


class OfflineNoExpiryFirmware(ClassicFirmware):
    """Never expires a queued offline sale."""

    features = frozenset({FEATURE_OFFLINE})

    def _expire_due(self, in_flight: bool = False) -> list[Effect]:
        return []  # the flaw: the deadline is never looked at
