"""no-debounce: every extra tap or confirm starts another sale with the last amount.

A second tap (or confirm) while the sale is in flight or just after it starts a
new sale with a new key, so the host charges twice.
Real-world failure: double tap / double confirm -> duplicate charge.
Invariant that catches it: ``no-duplicate-charge``.
"""

from __future__ import annotations

from terminal.zoo.classic import ClassicFirmware


class NoDebounceFirmware(ClassicFirmware):
    """Every extra tap or confirm starts another sale with the last amount."""

    def _debounce_accepts_tap(self) -> bool:
        return True  # the flaw

    def _debounce_accepts_confirm(self) -> bool:
        return True  # the flaw
