"""print-before-journal: shows APPROVED and prints straight from the 0210; journals later.

The approval is journaled only when the print succeeds, so a printer jam, paper
out or a power cut during printing loses the approval: no pending receipt, no
reprint, the customer was charged and has no receipt.
Real-world failure: paid, but no receipt.
Invariant that catches it: ``receipt-for-every-charge``.
"""

from __future__ import annotations

from acquirer.protocol import Message
from terminal.firmware import Display, Effect, Outcome, Print, PrintFinished, PrintStatus, Receipt
from terminal.reference import Approval, Sale, SaleStatus
from terminal.zoo.classic import ClassicFirmware


class PrintBeforeJournalFirmware(ClassicFirmware):
    """Shows APPROVED and prints straight from the 0210; journals later."""

    def _reset(self) -> None:
        super()._reset()
        # Approvals that exist only in memory until their print succeeds.
        self._unjournaled: dict[str, tuple[Sale, Approval]] = {}

    def _on_approved(self, sale: Sale, msg: Message) -> list[Effect]:
        # The sale's status stays unknown in memory until the print succeeds, as in
        # the journal: nothing records the approval yet.
        approval = Approval(sale.key, msg.rrn, msg.auth_code, msg.amount or sale.amount)
        self._print_seq += 1
        job_id = f"{sale.key}/{self._epoch}.{self._print_seq}"
        self._unjournaled[job_id] = (sale, approval)
        receipt = Receipt(
            "approved", approval.amount, msg.rrn, sale.stan, sale.pan[-4:], msg.auth_code, sale.key
        )
        return [Display(Outcome.APPROVED, "APPROVED", msg.rrn), Print(job_id, receipt)]

    def _on_print_finished(self, event: PrintFinished) -> list[Effect]:
        entry = self._unjournaled.pop(event.job_id, None)
        if entry is None:
            return super()._on_print_finished(event)
        if event.status != PrintStatus.OK:
            return [Display(Outcome.PROMPT, "PRINT FAILED")]  # the flaw: the approval is gone
        sale, approval = entry
        self._approvals[sale.key] = approval
        self._status[sale.key] = SaleStatus.APPROVED
        self._last_receipt_key = sale.key
        return [
            self._journal(approval.record()),
            self._journal({"type": "printed", "key": sale.key}),
        ]
