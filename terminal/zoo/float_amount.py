"""float-amount: the wire amount goes through float major units and int() truncation.

Real-world failure: an encoding/scaling bug (units vs minor units); 4.35 becomes
434 cents on the wire, so the host authorises a different amount than was keyed.
Invariant that catches it: ``amount-integrity``.
"""

from __future__ import annotations

from terminal.zoo.classic import ClassicFirmware


class FloatAmountFirmware(ClassicFirmware):
    """The wire amount goes through float major units and int() truncation."""

    def _wire_amount(self, amount: int) -> int:
        major = amount / 100  # the flaw: money as a binary float
        return int(major * 100)  # and truncation back: 4.35 * 100 = 434.999... -> 434
