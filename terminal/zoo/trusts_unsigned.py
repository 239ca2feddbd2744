"""trusts-unsigned: does not verify the MAC of responses.

A forged "approved" 0210 (made-up RRN) for the sale in flight is journaled,
displayed and printed although the host never approved it.
Real-world failure: receipt printed, but no transaction record (fraud).
Invariant that catches it: ``no-receipt-without-record``.
"""

from __future__ import annotations

from acquirer.protocol import Message
from terminal.zoo.classic import ClassicFirmware


class TrustsUnsignedFirmware(ClassicFirmware):
    """Does not verify the MAC of responses."""

    def _accepts_response(self, msg: Message) -> bool:
        return msg.terminal_id == self.config.terminal_id  # the flaw: no MAC check
