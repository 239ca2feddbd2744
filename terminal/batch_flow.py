"""The reference firmware's batch close (moved out of terminal/reference.py).

The 0500 lists the open batch's approved sales; it is sent once no sale is in flight
and the reversal queue is empty, journaled as started, resent up to `BATCH_SENDS_MAX`
times, and on a 0510 (00 or 95) the journal is trimmed to what is still unfinished.
"""

from __future__ import annotations

from dataclasses import replace

from acquirer.protocol import (
    MTI_BATCH,
    RC_APPROVED,
    BatchItem,
    Message,
    sign,
)
from terminal.firmware import (
    BatchCloseRequested,
    CancelTimer,
    Display,
    Effect,
    JournalTrim,
    Outcome,
    Send,
    SetTimer,
)

# The inquiry flow's constants, where they were before it had a module of its own.
from terminal.inquiry_flow import WALLET_QUERIES_MAX as WALLET_QUERIES_MAX
from terminal.inquiry_flow import WALLET_QUERY_DELAY_MS as WALLET_QUERY_DELAY_MS
from terminal.ref_model import (
    _BATCH_CLOSING_RCS,
    BATCH_SENDS_MAX,
    BATCH_TIMER,
    PendingBatch,
    SaleStatus,
    State,
    reversal_record,
    stan_for,
)
from terminal.ref_state import FirmwareState


class BatchFlow(FirmwareState):
    """See the module doc: a base of `ReferenceFirmware`, using its state."""

    def _on_batch_close_requested(self, event: BatchCloseRequested) -> list[Effect]:
        if self._batch_wanted:
            # Asked again while one is under way: if its sends run out, start over
            # rather than drop this request (the cashier was told it is in progress).
            self._batch_again = True
            return [Display(Outcome.PROMPT, "BATCH IN PROGRESS")]
        self._batch_wanted = True
        effects = self._maybe_start_batch()
        return effects or [Display(Outcome.PROMPT, "BATCH WAITING")]

    def _maybe_start_batch(self) -> list[Effect]:
        """Send the 0500 once no sale is in flight and the reversal queue is empty."""
        if (
            not self._batch_wanted
            or self._batch_sends
            or self._state is State.AUTHORISING
            or self._chip_key
            or self._reversals
            or self._refunds
            or self._adjusts  # completions and tips are booked first
            or self._offline  # offline sales are uploaded first: no race with the 0500
        ):
            return []
        effects: list[Effect] = []
        batch = self._batch
        if batch is None:
            self._sale_no += 1
            batch = PendingBatch(self._open_batch_no, self._sale_no, stan_for(self._sale_no))
            self._batch = batch
            effects.append(
                self._journal(
                    {
                        "type": "batch_started",
                        "batch_no": batch.batch_no,
                        "sale_no": batch.sale_no,
                        "stan": batch.stan,
                    }
                )
            )
        sales = self._batch_sales() + self._batch_captures()  # completions are debits
        credits = self._batch_credits()  # approved refunds (terminal/refund_flow.py)
        items = (*sales, *credits)
        cfg = self.config
        self._batch_message = Message(
            MTI_BATCH,
            cfg.terminal_id,
            cfg.merchant_id,
            batch.stan,
            batch_no=batch.batch_no,
            debit_count=len(sales),
            debit_amount=sum(item.amount for item in sales),
            credit_count=len(credits),
            credit_amount=sum(item.amount for item in credits),
            items=items,
        )
        effects.append(Display(Outcome.PROMPT, "BATCH CLOSING"))
        return effects + self._send_batch()

    def _batch_sales(self) -> list[BatchItem]:
        """Approved, non-reversed sales of the open batch, in journal order."""
        out: list[BatchItem] = []
        open_batch_no = self._open_batch_no
        for key, sale in self._sales.items():
            if (
                sale.batch_no == open_batch_no
                and self._status.get(key) is SaleStatus.APPROVED
                and not sale.preauth  # a hold is not settled: its completion is
            ):
                approval = self._approvals.get(key)
                if approval is not None:  # a subclass may mark APPROVED before recording it
                    amount = self._sale_total(key, approval.amount)  # a tip set: the total
                    out.append(BatchItem(sale.stan, amount, approval.rrn))
        return out

    def _send_batch(self) -> list[Effect]:
        msg = self._batch_message
        if msg is None:
            return []
        repeat = self._batch_resumed or self._batch_sends > 0
        self._batch_sends += 1
        return [
            Send(sign(replace(msg, repeat=repeat), self.config.mac_key)),
            SetTimer(BATCH_TIMER, self.config.response_timeout_ms),
        ]

    def _on_batch_timeout(self) -> list[Effect]:
        if not self._batch_sends:
            return []
        if self._batch_sends < BATCH_SENDS_MAX:
            return self._send_batch()
        if self._batch_again:
            # The cashier asked again during these sends: a fresh round, same content.
            self._batch_again = False
            self._batch_sends = 0
            self._batch_resumed = True
            return self._send_batch()
        # Give up for now. The started batch stays journaled and new sales stay
        # blocked, so the next request resends exactly the same content.
        self._batch_wanted = False
        self._batch_sends = 0
        self._batch_resumed = True
        return [Display(Outcome.PROMPT, "BATCH NOT CONFIRMED - CLOSE AGAIN")]

    def _on_batch_response(self, msg: Message) -> list[Effect]:
        batch = self._batch
        sent = self._batch_message
        if (
            batch is None
            or sent is None
            or not self._batch_sends
            or msg.batch_no != batch.batch_no
            or msg.stan != batch.stan
            or (msg.debit_count, msg.debit_amount, msg.credit_count, msg.credit_amount)
            != (sent.debit_count, sent.debit_amount, sent.credit_count, sent.credit_amount)
            or msg.rc not in _BATCH_CLOSING_RCS
        ):
            return []
        effects: list[Effect] = [CancelTimer(BATCH_TIMER)]
        # Everything journaled so far is settled by this close, except unfinished
        # work: re-append its records after the old ones, then trim the old ones.
        trim_count = self._journal_len
        keep: set[str] = set()
        for key in self._pending_receipts:
            keep.add(key)
            sale = self._sales.get(key)
            if sale is not None:
                effects.append(self._journal(sale.record()))
            effects.append(self._journal(self._approvals[key].record()))
        for key, sale in self._reversals.items():
            keep.add(key)
            if sale.sale_no:
                effects.append(self._journal(sale.record()))
            effects.append(self._journal(reversal_record(sale)))
        effects += self._carry_refunds()  # settled sales stay refundable
        carried, holds = self._carry_adjusts()  # standing holds stay completable
        effects += carried
        keep |= holds
        effects.append(
            self._journal(
                {
                    "type": "batch_closed",
                    "batch_no": batch.batch_no,
                    "rc": msg.rc,
                    "sale_no": self._sale_no,
                }
            )
        )
        effects.append(JournalTrim(trim_count))
        self._journal_len -= trim_count
        # Prune memory to match the journal (keep the last receipt for a copy).
        if self._last_receipt_key:
            keep.add(self._last_receipt_key)
        self._sales = {k: v for k, v in self._sales.items() if k in keep}
        self._status = {k: v for k, v in self._status.items() if k in keep}
        self._approvals = {k: v for k, v in self._approvals.items() if k in keep}
        self._last_closed_batch = batch.batch_no
        self._open_batch_no = batch.batch_no + 1
        self._open_batch_count = 0
        self._batch = None
        self._batch_message = None
        self._batch_wanted = False
        self._batch_again = False
        self._batch_sends = 0
        self._batch_resumed = False
        ok = msg.rc == RC_APPROVED
        effects.append(Display(Outcome.PROMPT, "BATCH OK" if ok else "BATCH MISMATCH"))
        return effects
