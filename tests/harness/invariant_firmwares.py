"""Firmwares with one flaw each, for the invariant tests (loaded as file.py:Class).

Each differs from the reference in one hook, so a test can show an invariant
firing on it and holding on the reference in the same scenario.
"""

from __future__ import annotations

from dataclasses import replace

from acquirer.protocol import (
    BATCH_ITEMS_MAX,
    MTI_INQUIRY_RESP,
    RC_APPROVED,
    RC_UNABLE_TO_LOCATE,
    Message,
)
from terminal.firmware import (
    AmountKeyed,
    BatchCloseRequested,
    Boot,
    CodeScanned,
    Display,
    Effect,
    FirmwareConfig,
    JournalAppend,
    MessageReceived,
    Outcome,
    PreauthKeyed,
    Print,
    Receipt,
    TipAdjustRequested,
)
from terminal.inquiry_flow import INQUIRY_TIMER, WALLET_TIMER
from terminal.ref_model import Approval, State
from terminal.reference import ReferenceFirmware, Sale, SaleStatus
from terminal.zoo.classic import ClassicFirmware
from terminal.zoo.no_reversal import NoReversalFirmware


class ApprovesDeclines(ReferenceFirmware):
    """Shows APPROVED (naming no RRN) when the host declines."""

    def _decline(self, sale: Sale, rc: str) -> list[Effect]:
        effects = super()._decline(sale, rc)
        return [*effects[:-1], Display(Outcome.APPROVED, "APPROVED")]


class FailedThenLateApproval(NoReversalFirmware):
    """Shows FAILED on a timeout without reversing, then flips to APPROVED when the
    late answer comes: the last display says approved, the customer left with FAILED."""

    def _on_unmatched_purchase_response(self, msg: Message) -> list[Effect]:
        sale = self._sales.get(msg.idem_key)
        if sale is None or msg.rc != RC_APPROVED:
            return []
        if self._status.get(sale.key) is not SaleStatus.DECLINED:
            return []
        return self._on_approved(sale, msg)


class ForgetsPendingReceiptsAtBoot(ReferenceFirmware):
    """Keeps pending receipts in volatile memory only: a reboot forgets them."""

    def _recover(self) -> list[Effect]:
        self._pending_receipts.clear()
        return super()._recover()


class WrongCardOnReceipt(ReferenceFirmware):
    """Prints another card's last four digits on the receipt."""

    def _render_receipt(self, key: str, copy: bool) -> Receipt:
        return replace(super()._render_receipt(key, copy), pan_last4="9999")


class StickyRrn(ReferenceFirmware):
    """Journals, shows and prints every approval under the first RRN it ever saw."""

    def __init__(self, config: FirmwareConfig) -> None:
        super().__init__(config)
        self._first_rrn = ""

    def _on_approved(self, sale: Sale, msg: Message) -> list[Effect]:
        self._first_rrn = self._first_rrn or msg.rrn
        return super()._on_approved(sale, replace(msg, rrn=self._first_rrn))


class IgnoresBatchClose(ReferenceFirmware):
    """Says it will close the batch, and never does."""

    def _on_batch_close_requested(self, event: BatchCloseRequested) -> list[Effect]:
        return [Display(Outcome.PROMPT, "BATCH WAITING")]


class OverfullBatch(ReferenceFirmware):
    """Uploads more sales than one 0500 may carry (as a terminal that never refuses
    the 10,001st sale of a batch would): the host refuses every upload with RC 30,
    and the batch never closes."""

    def _send_batch(self) -> list[Effect]:
        msg = self._batch_message
        if msg is not None and msg.items and len(msg.items) <= BATCH_ITEMS_MAX:
            pad = (msg.items[-1],) * (BATCH_ITEMS_MAX + 1 - len(msg.items))
            self._batch_message = replace(msg, items=msg.items + pad)
        return super()._send_batch()


class NeverMatchesAnswers(ClassicFirmware):
    """Takes no 0210 as the answer to its sale: every sale times out, is reversed
    (no status inquiry first) and shown FAILED. Safe with money, but never the
    truthful outcome."""

    def _matches_sale(self, msg: Message, sale: Sale) -> bool:
        return False


class RefusesEverySale(ReferenceFirmware):
    """Refuses every sale as if a batch close were under way: nothing is ever sent."""

    def _sale_blocked_reason(self) -> str:
        return "BATCH CLOSING - TRY LATER"


class IgnoresBatchAnswers(ReferenceFirmware):
    """Sends its batch, ignores every answer, and sends it again until it gives up."""

    def _on_batch_response(self, msg: Message) -> list[Effect]:
        return []


class RefusesAfterBatchClose(ReferenceFirmware):
    """Closes its batch, then refuses every later sale as if the close were still
    under way (it forgets to clear the finished batch)."""

    _closed_once = False

    def _on_batch_response(self, msg: Message) -> list[Effect]:
        effects = super()._on_batch_response(msg)
        if effects:
            self._closed_once = True
        return effects

    def _sale_blocked_reason(self) -> str:
        return "BATCH CLOSING - TRY LATER" if self._closed_once else super()._sale_blocked_reason()


class IgnoresPaidInquiry(ReferenceFirmware):
    """Polls a wallet order's status and never takes "paid" for an answer: a customer
    who confirmed on the phone is refunded and told FAILED."""

    def _on_inquiry_answer(self, sale: Sale, msg: Message) -> list[Effect]:
        if msg.rc == RC_APPROVED:
            return []
        return super()._on_inquiry_answer(sale, msg)


class WaitsOutOutages(ReferenceFirmware):
    """Resends a sale with the same key for as long as no answer comes: safe with
    money, but the customer waits as long as the outage lasts."""

    def _on_response_timeout(self) -> list[Effect]:
        sale = self._sale
        if sale is not None and not sale.wallet:
            return self._resend()
        return super()._on_response_timeout()


class OwedReceiptAsCopy(ReferenceFirmware):
    """After a reboot, prints the receipt it still owes marked COPY."""

    _booting = False

    def _on_boot(self, event: Boot) -> list[Effect]:
        self._booting = True
        try:
            return super()._on_boot(event)
        finally:
            self._booting = False

    def _print(self, key: str, copy: bool) -> Print:
        return super()._print(key, copy or self._booting)


class PreauthAsSale(ReferenceFirmware):
    """Takes a pre-authorisation's amount as a sale's (asks CONFIRM AMOUNT, sends a
    0200): the customer asked for a hold and is charged."""

    def _on_preauth_keyed(self, event: PreauthKeyed) -> list[Effect]:
        return self._on_amount_keyed(AmountKeyed(event.amount))


class TipsWhileVoiding(ReferenceFirmware):
    """Sets a tip on a sale (or completion) whose void is still under way."""

    def _tip_target(self, rrn: str) -> tuple[str, str, int] | str:
        voids, status = self._voids, self._status
        self._voids = {}
        self._status = {
            k: SaleStatus.APPROVED if s is SaleStatus.REVERSING else s for k, s in status.items()
        }
        try:
            return super()._tip_target(rrn)
        finally:
            self._voids, self._status = voids, status


class ExpiresWhileUploading(ReferenceFirmware):
    """Expires an offline sale past its cutoff even while its advice is on its way."""

    def _expire_due(self, in_flight: bool = False) -> list[Effect]:
        return super()._expire_due(in_flight=True)


class OneTipOnly(ReferenceFirmware):
    """Refuses a second tip on a sale (the diner's tip can never be corrected)."""

    def __init__(self, config: FirmwareConfig) -> None:
        super().__init__(config)
        self._tipped: set[str] = set()

    def _on_tip_requested(self, event: TipAdjustRequested) -> list[Effect]:
        if event.rrn in self._tipped:
            return [Display(Outcome.PROMPT, "TIP REFUSED - ALREADY TIPPED", event.rrn)]
        self._tipped.add(event.rrn)
        return super()._on_tip_requested(event)


class VoidsWithoutTheTip(ReferenceFirmware):
    """Voids a tipped sale with the amount first approved: the 0400 names less than
    the host holds, the host refuses it, and the void becomes a refund."""

    def _enqueue_reversal(self, sale: Sale, reason: str = "") -> list[Effect]:
        approval = self._approvals.get(sale.key)
        if approval is not None and sale.amount != approval.amount:
            sale = replace(sale, amount=approval.amount)  # the flaw: the tip left out
        return super()._enqueue_reversal(sale, reason)


class ExpiresWithoutReversal(ReferenceFirmware):
    """Shows an offline sale expired (collect the payment another way) without
    reversing it: an advice or 0200 the host booked keeps the charge."""

    def _expire(self, key: str) -> list[Effect]:
        sale = self._sales[key]
        effects = self._dequeue_advice(key)
        self._status[key] = SaleStatus.DECLINED
        self._pending_receipts.pop(key, None)
        effects.append(self._journal({"type": "offline_expired", "key": key}))
        return [*effects, self._expired_display(sale)]  # the flaw: no reversal


class TrimsOwedReceipts(ReferenceFirmware):
    """On the 0510 the journal is trimmed of the sales whose receipt is still owed
    too (an outside tester's flaw): after the next power cut, or a device swap that
    the now clean journal lets happen, the owed receipt is forgotten."""

    def _on_batch_response(self, msg: Message) -> list[Effect]:
        owed = set(self._pending_receipts)
        effects = super()._on_batch_response(msg)
        kept = [
            e
            for e in effects
            if not (
                isinstance(e, JournalAppend)
                and e.record.get("type") in ("sale", "approved")
                and e.record.get("key") in owed
                and e.record.get("key") not in self._reversals
            )
        ]
        self._journal_len -= len(effects) - len(kept)
        return kept


class InquiryNotFoundIsDecline(ReferenceFirmware):
    """After the last unanswered send, the status inquiry's "not found" (RC 25) is read
    as "nothing charged": DECLINED with no reversal, though a copy of the 0200 may still
    be in the network (an outside tester's flaw)."""

    def _on_card_inquiry_answer(self, sale: Sale, msg: Message) -> list[Effect]:
        if self._sale_timer == INQUIRY_TIMER and msg.rc == RC_UNABLE_TO_LOCATE:
            effects = self._close_sale()
            effects += self._decline(sale, msg.rc)
            return effects + self._after_sale()
        return super()._on_card_inquiry_answer(sale, msg)


class LateWalletPaidPrints(ReferenceFirmware):
    """A status answer saying "paid" that arrives after the polling gave up (the cancel
    sent, FAILED shown) is shown APPROVED and printed, though the cancel gives that
    order's money back (an outside tester's flaw)."""

    def _on_message(self, event: MessageReceived) -> list[Effect]:
        msg = event.message
        if (
            msg.mti == MTI_INQUIRY_RESP
            and msg.rc == RC_APPROVED
            and self._accepts_response(msg)
            and self._state is not State.AUTHORISING
        ):
            sale = self._sales.get(msg.orig_key)
            if (
                sale is not None
                and sale.wallet
                and msg.stan == sale.stan
                and sale.key not in self._approvals
            ):
                return self._approve(sale, Approval(sale.key, msg.rrn, msg.auth_code, sale.amount))
        return super()._on_message(event)


class RescanRestartsWalletOrder(ReferenceFirmware):
    """A code scanned again while the customer confirms on the phone is taken as a
    fresh code: the waiting order is dropped without a cancel and paid again under a
    new order number (an outside tester's flaw)."""

    def _on_code(self, event: CodeScanned) -> list[Effect]:
        sale = self._sale
        if (
            event.code
            and self._state is State.AUTHORISING
            and sale is not None
            and sale.wallet
            and self._sale_timer == WALLET_TIMER
        ):
            effects = self._close_sale()
            return effects + self._start_sale(sale.amount, event.code, wallet=True)
        return super()._on_code(event)
