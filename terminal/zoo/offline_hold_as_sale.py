"""offline-hold-as-sale: a pre-authorisation is approved offline and uploaded as a sale.

The terminal's offline stand-in was written before pre-authorisations existed: its
guard leaves out wallet sales only. A hotel check-in during an outage is shown
APPROVED OFFLINE, and its advice (a 0220 with the purchase processing code) is booked
by the host as a sale: the guest's card is charged the whole hold at once instead of
holding it, and the check-out's completion has no hold to capture. A hold is never
placed offline (the reference reverses it and shows FAILED). Written from an outside
tester's firmware that was caught only by a later batch close not reconciling.
Real-world failure: the wrong amount taken (a hold charged in full).
Invariant that catches it: ``amount-integrity``.
"""

from __future__ import annotations

from dataclasses import replace

from terminal.ref_model import Sale
from terminal.reference import ReferenceFirmware


class OfflineHoldAsSaleFirmware(ReferenceFirmware):
    """Approves a pre-authorisation offline like a sale (the reference otherwise)."""

    def _offline_allowed(self, sale: Sale) -> bool:
        # The flaw: the guard is asked about the hold as if it were a sale.
        return super()._offline_allowed(replace(sale, preauth=False))
