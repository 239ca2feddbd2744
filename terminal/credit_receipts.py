"""The reference firmware's receipts for voids and refunds (issue 15).

A real terminal prints a receipt for a credit as it does for a sale: the merchant's
and the customer's copy showing the credit (VOIDED or REFUNDED), the amount given
back, the host's reference and the original sale's RRN. Here, as for sales:

* The receipt is journaled (`credit_receipt`, everything it prints) when the host has
  done the credit and before anything is printed; it is printed only from that record.
  A void's receipt names the sale's RRN (the host reversed the sale itself); a
  refund's names the refund's own RRN and, as `orig_rrn`, the sale's.
* It stays owed until a print of it succeeds (`credit_printed`): a failed print
  shows it pending (RECEIPT_PENDING naming its RRN) and REPRINT prints it; after a
  power cut the boot shows it pending again and prints it (`credit_receipt_pending`
  is journaled first, so the boot's print jobs are named apart from the last boot's).
* A batch close carries owed credit receipts over into the trimmed journal.
* A refund answered twice (a resend after a power cut before `refund_done`) is
  journaled once: a receipt owed under the same key is not owed again.

Never before the host answered, never for a refused credit: a credit receipt says
the card has been credited.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from terminal.firmware import (
    Display,
    Effect,
    JournalRecord,
    Outcome,
    Print,
    PrintFinished,
    PrintStatus,
    Receipt,
)
from terminal.ref_state import FirmwareState

# Credit receipts owed at once (the oldest is dropped beyond it: the journal still
# holds it for the back office). The reference owes one at a time in practice.
CREDIT_RECEIPTS_MAX = 64
CREDIT_RECEIPT_RECORDS = frozenset({"credit_receipt", "credit_printed", "credit_receipt_pending"})
STATUS_VOIDED = "voided"
STATUS_REFUNDED = "refunded"


@dataclass(frozen=True, slots=True)
class CreditSlip:
    """One credit receipt as journaled before it is printed."""

    key: str  # the refund's key, or "void:" + the sale's key
    status: str  # STATUS_VOIDED | STATUS_REFUNDED
    amount: int  # what the credit gave back
    rrn: str  # the host's reference of the credit (a void: the sale's)
    orig_rrn: str  # the original sale's RRN
    stan: int
    pan_last4: str
    auth_code: str = ""

    def record(self) -> dict[str, Any]:
        return {
            "type": "credit_receipt",
            "key": self.key,
            "status": self.status,
            "amount": self.amount,
            "rrn": self.rrn,
            "orig_rrn": self.orig_rrn,
            "stan": self.stan,
            "pan_last4": self.pan_last4,
            "auth_code": self.auth_code,
        }

    @classmethod
    def from_record(cls, record: JournalRecord) -> CreditSlip:
        status = str(record["status"])
        if status not in (STATUS_VOIDED, STATUS_REFUNDED):
            raise ValueError(f"credit receipt status {status!r}")
        return cls(
            str(record["key"]),
            status,
            int(record["amount"]),
            str(record["rrn"]),
            str(record["orig_rrn"]),
            int(record["stan"]),
            str(record["pan_last4"]),
            str(record.get("auth_code", "")),
        )

    def receipt(self, copy: bool = False) -> Receipt:
        return Receipt(
            status=self.status,
            amount=self.amount,
            rrn=self.rrn,
            stan=self.stan,
            pan_last4=self.pan_last4,
            auth_code=self.auth_code,
            idem_key=self.key,
            copy=copy,
            orig_rrn=self.orig_rrn,
        )


class CreditReceipts(FirmwareState):
    """See the module doc: a base of `RefundFlow`, using the firmware's state."""

    def _reset_credit_receipts(self) -> None:
        self._credit_slips: dict[str, CreditSlip] = {}  # owed, oldest first
        self._credit_jobs: dict[str, str] = {}  # print job id -> slip key

    def _credit_receipt(self, slip: CreditSlip) -> list[Effect]:
        """Journal `slip` (unless it is owed already), then print it."""
        if slip.key in self._credit_slips:
            return []  # journaled before: its print (or the boot's) is on its way
        while len(self._credit_slips) >= CREDIT_RECEIPTS_MAX:
            del self._credit_slips[next(iter(self._credit_slips))]
        self._credit_slips[slip.key] = slip
        return [self._journal(slip.record()), self._print_credit(slip)]

    def _print_credit(self, slip: CreditSlip) -> Print:
        self._print_seq += 1
        job_id = f"credit:{slip.key}/{self._epoch}.{self._print_seq}"
        self._credit_jobs[job_id] = slip.key
        return Print(job_id, slip.receipt())

    def _credit_print_finished(self, event: PrintFinished) -> list[Effect] | None:
        """The end of a credit receipt's print job (None: not one)."""
        key = self._credit_jobs.pop(event.job_id, None)
        if key is None:
            return None
        slip = self._credit_slips.get(key)
        if slip is None:
            return []
        if event.status == PrintStatus.OK:
            del self._credit_slips[key]
            return [self._journal({"type": "credit_printed", "key": key})]
        text = "CREDIT RECEIPT PENDING - PRESS REPRINT"
        return [Display(Outcome.RECEIPT_PENDING, text, slip.rrn)]

    def _credit_reprint(self) -> list[Effect]:
        """REPRINT: the first owed credit receipt not printing now (none: [])."""
        printing = set(self._credit_jobs.values())
        for key, slip in self._credit_slips.items():
            if key not in printing:
                return [self._print_credit(slip)]
        return []

    def _credit_recover(self) -> list[Effect]:
        """At boot: every credit receipt still owed is shown pending and printed."""
        effects: list[Effect] = []
        for key, slip in self._credit_slips.items():
            effects.append(self._journal({"type": "credit_receipt_pending", "key": key}))
            effects.append(Display(Outcome.RECEIPT_PENDING, "CREDIT RECEIPT PENDING", slip.rrn))
            effects.append(self._print_credit(slip))
        return effects

    def _carry_credit_receipts(self) -> list[Effect]:
        """At a batch close: owed credit receipts survive the journal's trim."""
        return [self._journal(slip.record()) for slip in self._credit_slips.values()]

    def _replay_credit_receipt(self, kind: str, record: JournalRecord) -> None:
        if kind == "credit_receipt":
            slip = CreditSlip.from_record(record)
            while len(self._credit_slips) >= CREDIT_RECEIPTS_MAX:
                del self._credit_slips[next(iter(self._credit_slips))]
            self._credit_slips[slip.key] = slip
        elif kind == "credit_printed":
            self._credit_slips.pop(str(record["key"]), None)
