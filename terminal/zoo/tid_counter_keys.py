"""tid-counter-keys: idempotency keys are the terminal id and a sale counter only.

The counter lives in the journal, so a replaced device (or a wiped journal) starts
again at 1 and reuses keys the host has already stored: the new sale is answered
with an old sale's stored approval (APPROVED, receipt printed, nothing charged), or,
for another card, refused as a duplicate.
Real-world failure: receipt printed, but no transaction record.
Invariant that catches it: ``approved-means-charged`` (the new sale is shown APPROVED
naming the old sale's RRN: no charge of its own behind it) and
``no-receipt-without-record`` (its receipt names the earlier customer's charge).
"""

from __future__ import annotations

from terminal.zoo.classic import ClassicFirmware


class TidCounterKeysFirmware(ClassicFirmware):
    """Idempotency keys are the terminal id and a sale counter only."""

    def _make_key(self, sale_no: int) -> str:
        return f"{self.config.terminal_id}-{sale_no:010d}"  # the flaw: no boot nonce
