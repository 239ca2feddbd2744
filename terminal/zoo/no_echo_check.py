"""no-echo-check: any signed 0210 is taken as the answer to the sale in flight.

The MAC is checked, but not that the answer echoes the request: STAN, key, card and
amount are not compared. An attacker replays an earlier sale's request, the host
answers it (signed, from its idempotency store), and the attacker hands that answer
to the terminal while a new sale is in flight: the new sale shows APPROVED with the
old sale's RRN and amount, and is never charged.
Real-world failure: receipt printed, but no transaction record (fraud).
Invariant that catches it: ``no-receipt-without-record``.
"""

from __future__ import annotations

from acquirer.protocol import Message
from terminal.reference import Sale
from terminal.zoo.classic import ClassicFirmware


class NoEchoCheckFirmware(ClassicFirmware):
    """Any signed 0210 is taken as the answer to the sale in flight."""

    def _matches_sale(self, msg: Message, sale: Sale) -> bool:
        return True  # the flaw: echoed fields are not compared with the request
