"""The reference firmware's answer to a sale's answer, and its receipts (moved out of
terminal/reference.py unchanged).

A 0210 that matches the sale in flight approves it (journaled before it is shown and
printed), declines it, or says "in progress" / a transient refusal (resend with the
same key, then decline, reversing in case an earlier copy charged); no answer resends
with the same key, then asks the host (status inquiry) or reverses. Receipts are
rendered from the journaled approval, printed, reprinted while owed, and marked
printed once the printer says so.
"""

from __future__ import annotations

from dataclasses import replace

from acquirer.protocol import (
    RC_APPROVED,
    RC_DUPLICATE,
    RC_IN_PROGRESS,
    RC_PARTIAL,
    RESPONSE_CODES,
    Message,
    money,
    sign,
)
from terminal.firmware import (
    CancelTimer,
    Display,
    Effect,
    Outcome,
    Print,
    PrintFinished,
    PrintStatus,
    Receipt,
    ReprintRequested,
    Send,
    SetTimer,
)
from terminal.inquiry_flow import _TRANSIENT_RCS
from terminal.ref_model import (
    IN_PROGRESS_RETRIES_MAX,
    IN_PROGRESS_RETRY_DELAY_MS,
    IN_PROGRESS_TIMER,
    RESPONSE_TIMER,
    Approval,
    Sale,
    SaleStatus,
    State,
)
from terminal.ref_state import FirmwareState


class SaleFlow(FirmwareState):
    """See the module doc: a base of `ReferenceFirmware`, using its state."""

    def _on_purchase_response(self, msg: Message) -> list[Effect]:
        """A signed 0210 for the sale in flight."""
        sale = self._sale
        if sale is None:
            return []
        rc = msg.rc
        if sale.wallet and (rc == RC_IN_PROGRESS or rc in _TRANSIENT_RCS):
            # Not final: the customer may be confirming, or the wallet does not know
            # yet. Never a decline: ask what became of the order.
            return self._wallet_pending(msg)
        if rc == RC_IN_PROGRESS:
            return self._on_in_progress(msg)
        if rc in _TRANSIENT_RCS:
            return self._on_transient(msg)
        if rc == RC_DUPLICATE:
            # The key was reused with different content: the outcome is unknown.
            return self._give_up()
        effects = self._close_sale()
        if rc in (RC_APPROVED, RC_PARTIAL):
            effects += self._on_approved(sale, msg)
        else:
            effects += self._decline(sale, rc)
        effects += self._after_sale()
        return effects

    def _on_unmatched_purchase_response(self, msg: Message) -> list[Effect]:
        """A signed 0210 for no sale in flight: a duplicate, or late after a timeout.

        Ignored. A late approval for a sale being reversed must never turn into an
        APPROVED display or a receipt: the reversal is already on its way.
        """
        return []

    def _on_approved(self, sale: Sale, msg: Message) -> list[Effect]:
        """The host approved: a chip card must accept it first (terminal/chip_flow.py)."""
        approval = Approval(
            sale.key, msg.rrn, msg.auth_code, msg.amount if msg.amount > 0 else sale.amount
        )
        if self.config.chip and not sale.wallet:
            return self._chip_start(sale, approval)
        return self._approve(sale, approval)

    def _approve(self, sale: Sale, approval: Approval) -> list[Effect]:
        """Journal the approval, then show it, then print from the journal record."""
        self._approvals[sale.key] = approval
        self._status[sale.key] = SaleStatus.APPROVED
        self._pending_receipts[sale.key] = None
        self._last_receipt_key = sale.key
        return [
            self._journal(approval.record()),
            self._approved_display("APPROVED", approval),
            self._print(sale.key, copy=False),
        ]

    def _approved_display(self, text: str, approval: Approval) -> Display:
        """APPROVED; for a partial approval with the amount approved and what is left
        to collect, so the cashier takes the rest another way."""
        if not approval.rrn:  # approved offline: named by its key until it is uploaded
            return Display(Outcome.APPROVED, f"{text} OFFLINE", key=approval.key)
        sale = self._sales.get(approval.key)
        asked = self._wire_amount(sale.amount) if sale is not None else approval.amount
        if approval.amount >= asked:
            return Display(Outcome.APPROVED, text, approval.rrn)
        rest = asked - approval.amount
        return Display(
            Outcome.APPROVED,
            f"PARTIAL {text}: {money(approval.amount)} - COLLECT {money(rest)}",
            approval.rrn,
            approval.amount,
        )

    def _decline(self, sale: Sale, rc: str) -> list[Effect]:
        reason = RESPONSE_CODES.get(rc, f"code {rc}").upper()
        return [*self._mark_declined(sale, rc), Display(Outcome.DECLINED, f"DECLINED - {reason}")]

    def _mark_declined(self, sale: Sale, rc: str) -> list[Effect]:
        """The durable half of a decline (its display follows)."""
        self._status[sale.key] = SaleStatus.DECLINED
        return [self._journal({"type": "declined", "key": sale.key, "rc": rc})]

    def _on_in_progress(self, msg: Message) -> list[Effect]:
        """RC 09: the first attempt still runs at the host. Wait, then ask again."""
        self._in_progress_retries += 1
        if self._in_progress_retries > IN_PROGRESS_RETRIES_MAX:
            return self._give_up()
        self._sale_timer = IN_PROGRESS_TIMER
        return [
            CancelTimer(RESPONSE_TIMER),
            SetTimer(IN_PROGRESS_TIMER, IN_PROGRESS_RETRY_DELAY_MS),
        ]

    def _on_transient(self, msg: Message) -> list[Effect]:
        """RC 91/96/30: nothing charged by this frame, the key not stored. Resend,
        then decline (reversing, in case an earlier copy did charge)."""
        if self._sends < self.config.max_sends:
            self._sends += 1
            return self._resend()
        sale = self._sale
        if sale is None:
            return []
        multiple_sends = self._sends > 1
        effects = self._close_sale()
        if multiple_sends:
            # An earlier copy of the 0200 may have charged (its answer lost), or may
            # still be delayed in the network and charge when it lands: reverse it
            # (a tombstone at the host if it has not landed). Journaled before the
            # decline: a power cut between the two must not leave a declined sale
            # whose charged copy nobody reverses (found by fuzzing).
            effects += self._record_reversal_pending(sale)
        effects += self._decline(sale, msg.rc)
        if multiple_sends:
            effects += self._enqueue_reversal(sale)
        effects += self._after_sale()
        return effects

    def _resend(self) -> list[Effect]:
        """The same 0200 again (same key, same STAN), flagged as a repeat."""
        request = self._request
        if request is None:
            return []
        self._sale_timer = RESPONSE_TIMER
        return [
            Send(sign(replace(request, repeat=True), self.config.mac_key)),
            SetTimer(RESPONSE_TIMER, self.config.response_timeout_ms),
        ]

    def _on_response_timeout(self) -> list[Effect]:
        """No 0210 in time: resend with the same key, or give up and reverse."""
        sale = self._sale
        if sale is not None and sale.wallet:
            return self._wallet_pending(None)
        if self._sends < self.config.max_sends:
            self._sends += 1
            return self._resend()
        return self._inquire() if self.config.status_inquiry else self._give_up()

    def _give_up(self) -> list[Effect]:
        """Outcome unknown: journal the reversal BEFORE showing FAILED, then send it."""
        sale = self._sale
        if sale is None:
            return []
        if self._offline_allowed(sale):
            return self._approve_offline(sale)  # terminal/offline_flow.py
        effects = self._close_sale()
        effects += self._record_reversal_pending(sale)
        effects.append(Display(Outcome.FAILED, "NOT CHARGED - REVERSING"))
        effects += self._enqueue_reversal(sale)
        effects += self._after_sale()
        return effects

    def _close_sale(self) -> list[Effect]:
        """The sale in flight is over: stop its timer, back to IDLE."""
        timer = self._sale_timer
        self._sale = None
        self._request = None
        self._sale_timer = ""
        self._state = State.IDLE
        return [CancelTimer(timer)] if timer else []

    def _after_sale(self) -> list[Effect]:
        return self._maybe_start_batch() if self._batch_wanted else []

    # ------------------------------------------------------------ receipts

    def _render_receipt(self, key: str, copy: bool) -> Receipt:
        """A receipt built only from the journaled approval (host RRN and amount)."""
        approval = self._approvals[key]
        sale = self._sales.get(key)
        return Receipt(
            status="approved",
            amount=approval.amount,
            rrn=approval.rrn,
            stan=sale.stan if sale else 0,
            pan_last4=sale.pan[-4:] if sale else "",
            auth_code=approval.auth_code,
            idem_key=key,
            copy=copy,
        )

    def _print(self, key: str, copy: bool) -> Print:
        self._print_seq += 1
        job_id = f"{key}/{self._epoch}.{self._print_seq}"
        self._print_jobs[job_id] = (key, copy)
        return Print(job_id, self._render_receipt(key, copy))

    def _on_print_finished(self, event: PrintFinished) -> list[Effect]:
        credit = self._credit_print_finished(event)  # terminal/credit_receipts.py
        if credit is not None:
            return credit
        job = self._print_jobs.pop(event.job_id, None)
        if job is None:
            return []
        key, copy = job
        if event.status == PrintStatus.OK:
            if not copy and key in self._pending_receipts:
                del self._pending_receipts[key]
                return [self._journal({"type": "printed", "key": key})]
            return []
        if copy or key not in self._pending_receipts:
            return [Display(Outcome.PROMPT, "PRINT FAILED")]
        # The approval is journaled; only the paper is missing. Keep it visible.
        rrn = self._approvals[key].rrn
        text = "RECEIPT PENDING - PRESS REPRINT"
        # An offline sale not uploaded yet has no RRN: it is named by its key.
        return [Display(Outcome.RECEIPT_PENDING, text, rrn, key="" if rrn else key)]

    def _on_reprint(self, event: ReprintRequested) -> list[Effect]:
        printing = {key for key, _ in self._print_jobs.values()}
        for key in self._pending_receipts:
            if key not in printing:
                return [self._print(key, copy=False)]
        credit = self._credit_reprint()  # an owed void/refund receipt
        if credit:
            return credit
        if self._pending_receipts or self._credit_slips:
            return [Display(Outcome.PROMPT, "PRINTING")]
        key = self._last_receipt_key
        if not key or key not in self._approvals:
            return [Display(Outcome.PROMPT, "NO RECEIPT")]
        if any(copy for _, copy in self._print_jobs.values()):
            return [Display(Outcome.PROMPT, "PRINTING")]  # one copy at a time
        return [self._print(key, copy=True)]

    # ------------------------------------------------------------ timers and journal
