"""chip-decline-no-reversal: a chip card's decline after the host's approval is taken
for the end of the sale.

The host approved, the terminal asked the card to accept it (second GENERATE AC), and
the card declined (issuer authentication failed) or was pulled out too early. The
terminal shows DECLINED and journals the decline, but sends no reversal: the host
keeps the charge.
Real-world failure: "failed" (declined) on the terminal, but the card was charged.
Invariant that catches it: ``no-charge-on-failure``.
"""

from __future__ import annotations

from terminal.firmware import FEATURE_CHIP, Display, Effect, Outcome
from terminal.reference import Sale
from terminal.zoo.classic import ClassicFirmware


class ChipDeclineNoReversalFirmware(ClassicFirmware):
    """Shows DECLINED when the chip refuses an approved sale, without reversing it."""

    features = frozenset({FEATURE_CHIP})

    def _chip_failed(self, sale: Sale, failure: str) -> list[Effect]:
        effects = self._mark_declined(sale, "chip-" + failure)
        return [*effects, Display(Outcome.DECLINED, "DECLINED - CARD")]  # the flaw: no 0400
