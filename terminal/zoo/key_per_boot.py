"""key-per-boot: after a reboot the unfinished sale is re-sent under a new key.

Instead of reversing, the terminal sends the sale again with a key regenerated
from a boot counter (and a fresh STAN), so the host sees a second payment.
Real-world failure: power cut mid-transaction -> duplicate charge.
Invariant that catches it: ``no-duplicate-charge``.
"""

from __future__ import annotations

from terminal.firmware import Effect
from terminal.reference import Sale, SaleStatus
from terminal.zoo.classic import ClassicFirmware


class KeyPerBootFirmware(ClassicFirmware):
    """After a reboot the unfinished sale is re-sent under a new key."""

    def _on_boot_unresolved_sale(self, sale: Sale, reason: str = "") -> list[Effect]:
        # The old record is closed so it is not re-sent on every boot.
        self._status[sale.key] = SaleStatus.DECLINED
        effects: list[Effect] = [
            self._journal({"type": "declined", "key": sale.key, "rc": "resent"})
        ]
        boot_no = self._epoch  # the flaw: the key depends on the boot, not the purchase
        key = f"{self.config.terminal_id}-b{boot_no}-{self._sale_no + 1}"
        return effects + self._start_sale(sale.amount, sale.pan, key=key)
