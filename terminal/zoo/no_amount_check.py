"""no-amount-check: no validation at entry; zero and negative amounts are sent.

Real-world failure: a keying error (0, a stray minus, a huge number) leaves the
terminal as a real transaction with the wrong amount.
Invariant that catches it: ``amount-integrity`` (no zero or negative sale leaves the terminal).
"""

from __future__ import annotations

from terminal.zoo.classic import ClassicFirmware


class NoAmountCheckFirmware(ClassicFirmware):
    """No validation at entry; zero and negative amounts are sent."""

    def _amount_is_valid(self, amount: int) -> bool:
        return True  # the flaw: whatever was keyed is sent
