"""offline-new-key-per-upload: every upload of a queued offline sale carries a new
idempotency key.

The terminal approves a sale offline and uploads it as an advice, but each try
(after a lost 0230, or a timeout) is sent under a fresh key, so the host cannot tell
it is the same sale and charges it again.
Real-world failure: a public Android terminal SDK forwarded one queued offline
payment 2-4 times, each with a new idempotency key (8 orders, 19 charges).
Invariant that catches it: ``no-duplicate-charge``.
"""

from __future__ import annotations

from acquirer.protocol import Message
from terminal.firmware import FEATURE_OFFLINE
from terminal.reference import Sale
from terminal.zoo.classic import ClassicFirmware


class OfflineNewKeyPerUploadFirmware(ClassicFirmware):
    """Uploads each try of an offline sale under a new key."""

    features = frozenset({FEATURE_OFFLINE})

    def _advice_idem_key(self, sale: Sale) -> str:
        return f"{sale.key}-u{self._advice_tries}"  # the flaw: a new key per try

    def _match_advice(self, msg: Message) -> str:
        key = msg.idem_key.rpartition("-u")[0]
        sale = self._sales.get(key)
        ok = sale is not None and key in self._offline and msg.stan == sale.stan
        return key if ok else ""
