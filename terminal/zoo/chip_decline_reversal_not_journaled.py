"""chip-decline-reversal-not-journaled: a chip decline's reversal is kept in memory.

The host approved, the card declined the approval (or was pulled out too early): the
terminal shows DECLINED and sends the reversal, but it wrote no `reversal_pending`
record first (the timeout path does; the chip path was added later and reuses only
the decline). A power cut before the reversal is answered loses it: after the reboot
nothing says the charge must be undone. Written from a flaw an outside tester found
the fuzzer missing (no power cut was aimed at a chip decline's reversal).
Real-world failure: "failed" (declined) on the terminal, but the card was charged.
Invariant that catches it: ``no-charge-on-failure``.
"""

from __future__ import annotations

from acquirer.protocol import REVERSAL_NOT_COMPLETED
from terminal.chip_flow import _CHIP_TEXT
from terminal.firmware import FEATURE_CHIP, Display, Effect, Outcome
from terminal.reference import Sale
from terminal.zoo.classic import ClassicFirmware


class ChipDeclineReversalNotJournaledFirmware(ClassicFirmware):
    """Sends a chip decline's reversal without journaling it first."""

    features = frozenset({FEATURE_CHIP})

    def _chip_failed(self, sale: Sale, failure: str) -> list[Effect]:
        # The flaw: no reversal_pending record before DECLINED and the 0400.
        effects = self._mark_declined(sale, "chip-" + failure)
        effects.append(Display(Outcome.DECLINED, _CHIP_TEXT[failure]))
        return effects + self._enqueue_reversal(sale, REVERSAL_NOT_COMPLETED)
