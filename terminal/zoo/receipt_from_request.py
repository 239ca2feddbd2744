"""receipt-from-request: any 0210 for the sale prints an "approved" receipt from the request.

Whatever the response code, the print path builds the receipt from what the
terminal asked for (RRN taken from the response, or "" if none), so declined and
in-progress answers produce "approved" receipts.
Real-world failure: receipt printed, but no transaction record.
Invariant that catches it: ``no-receipt-without-record``.
"""

from __future__ import annotations

from acquirer.protocol import Message
from terminal.firmware import Effect, Print, Receipt
from terminal.zoo.classic import ClassicFirmware


class ReceiptFromRequestFirmware(ClassicFirmware):
    """Any 0210 for the sale prints an "approved" receipt from the request."""

    def _on_purchase_response(self, msg: Message) -> list[Effect]:
        sale = self._sale
        effects = super()._on_purchase_response(msg)
        if sale is None or any(isinstance(e, Print) for e in effects):
            return effects
        # The flaw: a receipt rendered from the request, not from an approval record.
        self._print_seq += 1
        receipt = Receipt("approved", sale.amount, msg.rrn, sale.stan, sale.pan[-4:], "", sale.key)
        effects.append(Print(f"{sale.key}/{self._epoch}.{self._print_seq}", receipt))
        return effects
