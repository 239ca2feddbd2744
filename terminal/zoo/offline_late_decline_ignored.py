"""offline-late-decline-ignored: a late decline of an uploaded offline sale is taken
for a booking.

The host declines an offline sale when it is uploaded (the card's balance does not
cover it): nothing is charged. The terminal reads any final 0230 as booked, keeps
the sale in its batch and tells the merchant nothing, so the money is never
collected and the batch never matches.
Real-world failure: late declines of uploaded offline sales.
Invariant that catches it: ``batch-reconciles``.
"""

from __future__ import annotations

from dataclasses import replace

from acquirer.protocol import RC_APPROVED, TRANSIENT_RCS, Message
from terminal.firmware import FEATURE_OFFLINE, Effect
from terminal.zoo.classic import ClassicFirmware


class OfflineLateDeclineIgnoredFirmware(ClassicFirmware):
    """Treats every final advice answer as approved."""

    features = frozenset({FEATURE_OFFLINE})

    def _on_advice_response(self, msg: Message) -> list[Effect]:
        if msg.rc not in TRANSIENT_RCS:
            msg = replace(msg, rc=RC_APPROVED)  # the flaw: a late decline read as booked
        return super()._on_advice_response(msg)
