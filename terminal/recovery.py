"""The reference firmware's boot: replaying the journal and finishing what a power cut
interrupted (moved out of terminal/reference.py).
"""

from __future__ import annotations

from dataclasses import replace

from acquirer.protocol import (
    REVERSAL_NOT_COMPLETED,
    REVERSAL_REASONS,
)
from terminal.adjust_flow import ADJUST_RECORDS
from terminal.firmware import (
    Boot,
    Display,
    Effect,
    JournalRecord,
    Outcome,
)

# The inquiry flow's constants, where they were before it had a module of its own.
from terminal.inquiry_flow import WALLET_QUERIES_MAX as WALLET_QUERIES_MAX
from terminal.inquiry_flow import WALLET_QUERY_DELAY_MS as WALLET_QUERY_DELAY_MS
from terminal.offline_flow import OFFLINE_RECORDS
from terminal.ref_model import (
    BATCH_BASE_MAX,
    BATCH_NOS_PER_DEVICE,
    Approval,
    PendingBatch,
    Sale,
    SaleStatus,
)
from terminal.ref_state import FirmwareState
from terminal.refund_flow import REFUND_RECORDS


class RecoveryFlow(FirmwareState):
    """See the module doc: a base of `ReferenceFirmware`, using its state."""

    def _on_boot(self, event: Boot) -> list[Effect]:
        self._reset()
        journal = event.journal
        self._journal_len = len(journal)
        self._last_record = journal[-1] if journal else None
        self._epoch = len(journal)
        nonce = event.nonce
        # Only a well-formed nonce (1-16 hex digits) goes into keys and batch numbers.
        hex_nonce = 0 < len(nonce) <= 16 and not nonce.strip("0123456789abcdef")
        self._nonce = nonce if hex_nonce else ""
        for record in journal:
            self._replay(record)
        self._open_batch_no = self._first_open_batch_no()
        self._open_batch_count = sum(
            1 for sale in self._sales.values() if sale.batch_no == self._open_batch_no
        )
        return self._recover()

    def _first_open_batch_no(self) -> int:
        """The batch sales go into now: the one after the last closed batch.

        A device that has never closed a batch (new, replaced, or its journal wiped)
        must not restart at batch 1: the host would take its close for the old
        device's batch 1 and replay that settlement. Its first batch number comes
        from the boot nonce (nonce * 10**6 + 1; room for a million closes), or from
        the sales and batch upload it has already journaled under that number.
        """
        if self._last_closed_batch:
            return self._last_closed_batch + 1
        if self._batch is not None:
            return self._batch.batch_no
        journaled = [sale.batch_no for sale in self._sales.values() if sale.batch_no]
        if journaled:
            return max(journaled)
        if self._nonce:
            return int(self._nonce, 16) % BATCH_BASE_MAX * BATCH_NOS_PER_DEVICE + 1
        return 1

    def _replay(self, record: JournalRecord) -> None:
        """Apply one journal record. Re-applying a record changes nothing (idempotent)."""
        try:
            kind = record.get("type")
            if kind == "batch_closed" or kind == "batch_started":
                self._replay_batch(kind, record)
                return
            if kind in REFUND_RECORDS:
                self._replay_refund(str(kind), record)  # terminal/refund_flow.py
                return
            if kind in ADJUST_RECORDS:
                self._replay_adjust(str(kind), record)  # terminal/adjust_flow.py
                return
            if kind in OFFLINE_RECORDS:
                self._replay_offline(kind, record)
                return
            key = str(record["key"])
            if kind == "sale":
                sale = Sale(
                    key,
                    int(record["stan"]),
                    int(record["amount"]),
                    str(record["pan"]),
                    int(record["sale_no"]),
                    int(record.get("batch_no", 0)),
                    record.get("wallet") is True,
                    record.get("preauth") is True,
                )
                self._sales[key] = sale
                # A re-appended (carried) sale record must not undo a later outcome.
                self._status.setdefault(key, SaleStatus.IN_FLIGHT)
                self._sale_no = max(self._sale_no, sale.sale_no)
            elif kind == "approved":
                approval = Approval(
                    key, str(record["rrn"]), str(record["auth_code"]), int(record["amount"])
                )
                self._approvals[key] = approval
                self._status[key] = SaleStatus.APPROVED
                self._pending_receipts[key] = None
                self._last_receipt_key = key
            elif kind == "declined":
                self._status[key] = SaleStatus.DECLINED
            elif kind == "chip_pending":
                if self._status.get(key) is SaleStatus.IN_FLIGHT:
                    self._status[key] = SaleStatus.COMPLETING
            elif kind == "reversal_pending":
                reason = record.get("reason", "")
                if reason in REVERSAL_REASONS:
                    self._reversal_reasons[key] = reason
                if self._status.get(key) not in (SaleStatus.REVERSED, SaleStatus.REVERSAL_MANUAL):
                    amount = int(record["amount"])
                    sale = self._sales.get(key) or Sale(key, int(record["stan"]), amount, "", 0, 0)
                    # The 0400 names what the record says: a void of a tipped sale, the
                    # total (the host refuses a reversal for any other amount).
                    self._reversals[key] = replace(sale, amount=amount)
                    self._status[key] = SaleStatus.REVERSING
            elif kind == "reversed":
                self._status[key] = SaleStatus.REVERSED
                self._reversals.pop(key, None)
                self._reversal_reasons.pop(key, None)
            elif kind == "reversal_manual":
                self._status[key] = SaleStatus.REVERSAL_MANUAL
                self._reversals.pop(key, None)
                self._reversal_reasons.pop(key, None)
            elif kind == "printed":
                self._pending_receipts.pop(key, None)
        except (KeyError, TypeError, ValueError, AttributeError):
            # A malformed record (a user's tool wrote it, or storage rot) is skipped:
            # refusing to boot would strand every other record's unfinished work.
            return

    def _replay_batch(self, kind: object, record: JournalRecord) -> None:
        batch_no = int(record["batch_no"])
        self._sale_no = max(self._sale_no, int(record["sale_no"]))
        if kind == "batch_started":
            if batch_no > self._last_closed_batch:
                self._batch = PendingBatch(batch_no, int(record["sale_no"]), int(record["stan"]))
        else:
            self._last_closed_batch = max(self._last_closed_batch, batch_no)
            if self._batch is not None and self._batch.batch_no <= batch_no:
                self._batch = None

    def _recover(self) -> list[Effect]:
        """Finish whatever the journal says was left unfinished."""
        effects: list[Effect] = []
        unresolved = [
            sale
            for key, sale in self._sales.items()
            if self._status[key] in (SaleStatus.IN_FLIGHT, SaleStatus.COMPLETING)
        ]
        for sale in unresolved:
            # A chip card cut off mid-completion never accepted the approval: reason 96.
            completing = self._status[sale.key] is SaleStatus.COMPLETING
            effects += self._on_boot_unresolved_sale(
                sale, REVERSAL_NOT_COMPLETED if completing else ""
            )
        effects += self._chip_recover(unresolved)
        for key in list(self._pending_receipts):
            approval = self._approvals[key]
            # Journaled first: it records that the receipt is still owed, and it moves
            # the epoch so this boot's print job ids differ from the last boot's.
            effects.append(self._journal({"type": "receipt_pending", "key": key}))
            # The power may have failed between journaling the approval and showing
            # it: show it again, naming the sale, so nobody runs the sale twice.
            effects.append(self._approved_display("LAST SALE APPROVED", approval))
            rrn = approval.rrn
            pending = Display(
                Outcome.RECEIPT_PENDING, "RECEIPT PENDING", rrn, key="" if rrn else key
            )
            effects.append(pending)
            effects.append(self._print(key, copy=False))
        effects += self._credit_recover()  # owed void/refund receipts
        effects += self._refund_recover()  # a REFUND FAILED the power cut off
        effects += self._offline_recover()
        effects += self._pump_reversals()
        effects += self._pump_refunds()
        effects += self._adjust_recover()
        if self._batch is not None:
            # A batch upload started before the power cut is finished first, with the
            # same batch_no and STAN, marked as a repeat.
            self._batch_wanted = True
            self._batch_resumed = True
            effects += self._maybe_start_batch()
        return effects

    def _on_boot_unresolved_sale(self, sale: Sale, reason: str = "") -> list[Effect]:
        """A sale with no final record: it may or may not have been charged. Reverse it."""
        effects = self._record_reversal_pending(sale, reason)
        effects.append(Display(Outcome.FAILED, "LAST SALE NOT COMPLETED - REVERSED"))
        effects += self._enqueue_reversal(sale, reason)
        return effects
