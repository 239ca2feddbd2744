"""The reference terminal firmware: a purchase state machine that prevents the five failures.

Read it top to bottom. One sale is in flight at a time (`State`); three kinds of
background work run beside it: the reversal queue, pending receipts, and the
batch close. Everything that must survive a power cut is journaled *before* the
effect that depends on it, and `Boot(journal)` rebuilds all of it.

How each field failure is prevented (see docs/domain.md):

1. Duplicate charge: one idempotency key and STAN per sale, journaled before the
   first send and reused on every resend; taps and confirms are debounced by state.
2. "Failed" but charged: after the last timeout the terminal first asks the host
   what became of the sale (status inquiry, 0600): approved, it completes the sale;
   declined, it declines. Otherwise (not found, still in progress, no answer; or RC
   94, or too many RC 09) it journals a pending reversal before it shows FAILED, and
   retries the 0400 durably, across reboots, until a signed 0410 arrives. A late
   0210 is ignored.
3. Wrong amount: validation at entry; the amount stays an integer in minor units.
4. Paid, no receipt: the approval is journaled before the display and the print;
   a failed print leaves the receipt pending and visible; reprint from the journal.
5. Receipt, no record: receipts are rendered only from the journal record of a
   host-approved, non-reversed sale; responses must carry a valid MAC.

Journal records (flat mappings, "type" names the kind):

* ``sale``            key, stan, amount, pan, sale_no, batch_no (+ wallet: true)
* ``approved``        key, rrn, auth_code, amount
* ``declined``        key, rc
* ``reversal_pending`` key, stan, amount
* ``reversed``        key
* ``reversal_manual`` key (gave up after `reversal_max_tries`: a human must act)
* ``printed``         key
* ``receipt_pending`` key (written at boot before reprinting an unprinted receipt)
* ``batch_started``   batch_no, sale_no, stan
* ``batch_closed``    batch_no, rc, sale_no

A wallet (QR code) sale is the same sale with processing code 900000 (`pan` = the
payment code, the key = the order number), and one difference: when its outcome is
not known (the customer is confirming on the phone, a system error, no answer) the
terminal does not give up at once but polls the status inquiry (0600) every
`WALLET_QUERY_DELAY_MS`, `WALLET_QUERIES_MAX` times, prints from the inquiry's
answer when it says paid, and only then cancels (a 0400, retried until final) and
shows FAILED. A paid order's cancel refunds it, so FAILED is always true. Those
inquiry steps (card and wallet) live in terminal/inquiry_flow.py, a base class.

The hook methods (``_make_key``, ``_wire_amount``, ``_on_response_timeout`` ...)
are the seams the zoo of flawed firmwares overrides, one behaviour each.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from acquirer.protocol import (
    MTI_ADVICE_RESP,
    MTI_BATCH_RESP,
    MTI_INQUIRY_RESP,
    MTI_PURCHASE,
    MTI_PURCHASE_RESP,
    MTI_REVERSAL_RESP,
    PROC_PURCHASE,
    PROC_PURCHASE_PARTIAL,
    PROC_REFUND,
    PROC_WALLET,
    RC_APPROVED,
    RC_DUPLICATE,
    RC_IN_PROGRESS,
    RC_PARTIAL,
    RESPONSE_CODES,
    Message,
    money,
    sign,
    validate_response,
    verify,
)
from terminal.batch_flow import BatchFlow
from terminal.chip_flow import CHIP_TIMER, ChipFlow
from terminal.firmware import (
    FEATURE_CHIP,
    FEATURE_OFFLINE,
    FEATURE_PARTIAL,
    FEATURE_REFUND,
    FEATURE_WALLET,
    AmountKeyed,
    BatchCloseRequested,
    Boot,
    CancelPressed,
    CancelTimer,
    CardPresented,
    ChipResult,
    CodeScanned,
    ConfirmPressed,
    Display,
    Effect,
    Event,
    FirmwareConfig,
    JournalAppend,
    MessageReceived,
    Outcome,
    Print,
    PrintFinished,
    PrintStatus,
    Receipt,
    RefundRequested,
    ReprintRequested,
    Send,
    SetTimer,
    TimerExpired,
    VoidRequested,
)
from terminal.inquiry_flow import (
    _TRANSIENT_RCS,
    INQUIRY_TIMER,
    WALLET_TIMER,
    InquiryFlow,
)

# The inquiry flow's constants, where they were before it had a module of its own.
from terminal.inquiry_flow import WALLET_QUERIES_MAX as WALLET_QUERIES_MAX
from terminal.inquiry_flow import WALLET_QUERY_DELAY_MS as WALLET_QUERY_DELAY_MS
from terminal.offline_flow import ADVICE_TIMER, OFFLINE_TIMER, OfflineFlow
from terminal.recovery import RecoveryFlow
from terminal.ref_model import (
    _BATCH_CLOSING_RCS as _BATCH_CLOSING_RCS,
)
from terminal.ref_model import (
    _REVERSAL_DONE_RCS as _REVERSAL_DONE_RCS,
)
from terminal.ref_model import (
    BATCH_BASE_MAX as BATCH_BASE_MAX,
)
from terminal.ref_model import (
    BATCH_NOS_PER_DEVICE as BATCH_NOS_PER_DEVICE,
)
from terminal.ref_model import (
    BATCH_SENDS_MAX as BATCH_SENDS_MAX,
)
from terminal.ref_model import (
    BATCH_TIMER as BATCH_TIMER,
)
from terminal.ref_model import (
    IN_PROGRESS_RETRIES_MAX as IN_PROGRESS_RETRIES_MAX,
)
from terminal.ref_model import (
    IN_PROGRESS_RETRY_DELAY_MS as IN_PROGRESS_RETRY_DELAY_MS,
)
from terminal.ref_model import (
    IN_PROGRESS_TIMER as IN_PROGRESS_TIMER,
)
from terminal.ref_model import (
    RECEIPTS_PENDING_MAX as RECEIPTS_PENDING_MAX,
)

# The firmware's data, where it was before it had a module of its own.
from terminal.ref_model import (
    RESPONSE_TIMER as RESPONSE_TIMER,
)
from terminal.ref_model import (
    REVERSAL_TIMER as REVERSAL_TIMER,
)
from terminal.ref_model import (
    REVERSALS_QUEUED_MAX as REVERSALS_QUEUED_MAX,
)
from terminal.ref_model import (
    SALES_PER_BATCH_MAX as SALES_PER_BATCH_MAX,
)
from terminal.ref_model import (
    Approval as Approval,
)
from terminal.ref_model import (
    PendingBatch as PendingBatch,
)
from terminal.ref_model import (
    Sale as Sale,
)
from terminal.ref_model import (
    SaleStatus as SaleStatus,
)
from terminal.ref_model import (
    State as State,
)
from terminal.ref_model import (
    reversal_record as reversal_record,
)
from terminal.ref_model import (
    stan_for as stan_for,
)
from terminal.refund_flow import REFUND_TIMER, RefundFlow
from terminal.reversal_flow import ReversalFlow


class ReferenceFirmware(
    InquiryFlow, ChipFlow, RefundFlow, OfflineFlow, RecoveryFlow, ReversalFlow, BatchFlow
):
    """The reference firmware. Construct with a `FirmwareConfig`, then send `Boot`."""

    features = frozenset(
        {FEATURE_CHIP, FEATURE_OFFLINE, FEATURE_PARTIAL, FEATURE_REFUND, FEATURE_WALLET}
    )

    def __init__(self, config: FirmwareConfig) -> None:
        self.config = config
        self._reset()
        # Dispatch by exact event type: one dict lookup per event keeps handle() cheap.
        self._handlers: dict[type, Callable[[Any], list[Effect]]] = {
            Boot: self._on_boot,
            AmountKeyed: self._on_amount_keyed,
            ConfirmPressed: self._on_confirm,
            CancelPressed: self._on_cancel,
            CardPresented: self._on_card,
            CodeScanned: self._on_code,
            MessageReceived: self._on_message,
            TimerExpired: self._on_timer,
            PrintFinished: self._on_print_finished,
            ReprintRequested: self._on_reprint,
            BatchCloseRequested: self._on_batch_close_requested,
            ChipResult: self._on_chip_result,
            VoidRequested: self._on_void_requested,
            RefundRequested: self._on_refund_requested,
        }

    def _reset(self) -> None:
        """Forget everything volatile: what a power cut does."""
        self._state = State.IDLE
        self._amount = 0  # the fresh amount, meaningful in AMOUNT_ENTERED / AWAITING_CARD
        # Foreground sale in flight.
        self._sale: Sale | None = None
        self._request: Message | None = None  # unsigned 0200, resent with repeat=True
        self._sends = 0  # 0200 sends of this sale (bounded by config.max_sends)
        self._in_progress_retries = 0
        self._queries = 0  # status inquiries sent for the wallet sale in flight
        self._sale_timer = ""  # which timer the sale waits on ("" = none)
        self._last_sale: Sale | None = None
        # Durable facts, rebuilt from the journal at boot; pruned at batch close.
        self._journal_len = 0  # records in the journal, to size JournalTrim
        self._epoch = 0  # journal length at boot: makes print job ids unique per boot
        self._nonce = ""  # this boot's randomness (Boot.nonce): part of every new key
        self._sale_no = 0  # last sequence number used (sales and batch uploads)
        self._last_closed_batch = 0
        self._open_batch_no = 1
        self._open_batch_count = 0
        self._sales: dict[str, Sale] = {}
        self._status: dict[str, SaleStatus] = {}
        self._approvals: dict[str, Approval] = {}
        # Reversal queue, oldest first; the head is the one being sent.
        self._reversals: dict[str, Sale] = {}
        self._reversal_key = ""  # head being tried ("" = none)
        self._reversal_tries = 0
        self._reversal_reasons: dict[str, str] = {}  # key -> field 39 of its 0400
        # The chip card sale being completed (ChipComplete sent, no ChipResult yet).
        self._chip_key = ""
        self._chip_approval: Approval | None = None
        # Receipts: approved but not yet printed, oldest first; jobs in flight.
        self._pending_receipts: dict[str, None] = {}
        self._print_jobs: dict[str, tuple[str, bool]] = {}  # job_id -> (key, copy)
        self._print_seq = 0
        self._last_receipt_key = ""
        # Batch close.
        self._batch_wanted = False
        self._batch: PendingBatch | None = None
        self._batch_message: Message | None = None
        self._batch_sends = 0
        self._batch_resumed = False  # started before this boot: every send is a repeat
        self._reset_refunds()  # voids and refunds (terminal/refund_flow.py)
        # Offline approvals waiting for upload (terminal/offline_flow.py).
        self._offline_reset()

    # ------------------------------------------------------------ the contract

    def handle(self, event: Event) -> list[Effect]:
        """Feed one event, get the effects to carry out in order. Never raises."""
        handler = self._handlers.get(type(event))
        if handler is None:
            return []
        # The real-time clock, on the events that carry it (offline deadlines).
        self._now_ms = getattr(event, "clock_ms", 0)
        return handler(event)

    # ------------------------------------------------------------ keypad and reader

    def _on_amount_keyed(self, event: AmountKeyed) -> list[Effect]:
        if self._state is State.AUTHORISING:
            return [Display(Outcome.PROMPT, "BUSY")]
        if not self._amount_is_valid(event.amount):
            self._state = State.IDLE
            return [Display(Outcome.DECLINED, "INVALID AMOUNT")]
        self._amount = event.amount
        self._state = State.AMOUNT_ENTERED
        return [Display(Outcome.PROMPT, "CONFIRM AMOUNT")]

    def _on_confirm(self, event: ConfirmPressed) -> list[Effect]:
        if self._state is State.AMOUNT_ENTERED:
            self._state = State.AWAITING_CARD
            return [Display(Outcome.PROMPT, "PRESENT CARD")]
        last = self._last_sale
        if last is not None and self._debounce_accepts_confirm():
            return self._start_sale(last.amount, last.pan, wallet=last.wallet)
        return []  # a second confirm starts nothing

    def _on_cancel(self, event: CancelPressed) -> list[Effect]:
        if self._state is State.AMOUNT_ENTERED or self._state is State.AWAITING_CARD:
            self._state = State.IDLE
            # Final: nothing was sent, so nothing can have been charged.
            return [Display(Outcome.FAILED, "CANCELLED - NOT CHARGED")]
        return []  # an authorisation in flight cannot be cancelled: its outcome is pending

    def _on_card(self, event: CardPresented) -> list[Effect]:
        pan = event.pan
        if self._state is State.AWAITING_CARD:
            if not pan:
                return [Display(Outcome.PROMPT, "TRY AGAIN")]
            return self._start_sale(self._amount, pan)
        last = self._last_sale
        if pan and last is not None and self._debounce_accepts_tap():
            return self._start_sale(last.amount, pan)
        return []  # a second tap, or a tap with no fresh amount, starts nothing

    def _on_code(self, event: CodeScanned) -> list[Effect]:
        """A scanned wallet payment code: exactly like a tap, for a wallet sale."""
        code = event.code
        if self._state is State.AWAITING_CARD:
            if not code:
                return [Display(Outcome.PROMPT, "SCAN AGAIN")]
            return self._start_sale(self._amount, code, wallet=True)
        last = self._last_sale
        if code and last is not None and self._debounce_accepts_tap():
            return self._start_sale(last.amount, code, wallet=True)
        return []  # a second scan starts nothing

    def _start_sale(
        self, amount: int, pan: str, key: str = "", wallet: bool = False
    ) -> list[Effect]:
        """Journal a new sale (key, STAN) and send its 0200. The amount is used up."""
        self._state = State.IDLE
        blocked = self._sale_blocked_reason()
        if blocked:
            return [Display(Outcome.DECLINED, blocked)]
        self._sale_no += 1
        sale_no = self._sale_no
        sale = Sale(
            key or self._make_key(sale_no),
            stan_for(sale_no),
            amount,
            pan,
            sale_no,
            self._open_batch_no,
            wallet,
        )
        self._sales[sale.key] = sale
        self._status[sale.key] = SaleStatus.IN_FLIGHT
        self._open_batch_count += 1
        self._sale = self._last_sale = sale
        self._state = State.AUTHORISING
        self._sends = 1
        self._in_progress_retries = 0
        self._queries = 0
        self._sale_timer = RESPONSE_TIMER
        cfg = self.config
        request = Message(
            MTI_PURCHASE,
            cfg.terminal_id,
            cfg.merchant_id,
            sale.stan,
            pan=pan,
            processing_code=PROC_WALLET if wallet else self._purchase_code(),
            amount=self._wire_amount(amount),
            idem_key=sale.key,
        )
        self._request = request
        return [
            self._journal(sale.record()),  # the key exists durably before anything is sent
            Display(Outcome.PENDING, "PROCESSING"),
            Send(sign(request, cfg.mac_key)),
            SetTimer(RESPONSE_TIMER, cfg.response_timeout_ms),
        ]

    def _sale_blocked_reason(self) -> str:
        """Why a new sale may not start now ("" = it may)."""
        if self._batch_wanted or self._batch is not None:
            return "BATCH CLOSING - TRY LATER"
        if self._chip_key:
            return "CARD IN USE - TRY LATER"
        if len(self._reversals) >= REVERSALS_QUEUED_MAX:
            return "REVERSALS PENDING - TRY LATER"
        if len(self._pending_receipts) >= RECEIPTS_PENDING_MAX:
            return "RECEIPTS PENDING - REPRINT FIRST"
        if self._open_batch_count >= SALES_PER_BATCH_MAX:
            return "BATCH FULL - CLOSE BATCH"
        return ""

    # ------------------------------------------------------------ hooks (zoo seams)

    def _amount_is_valid(self, amount: int) -> bool:
        """Entry validation: a sale is a positive integer amount within the limit."""
        return type(amount) is int and 0 < amount <= self.config.amount_max

    def _debounce_accepts_tap(self) -> bool:
        """May a tap outside AWAITING_CARD start a sale with the last amount? Never."""
        return False

    def _debounce_accepts_confirm(self) -> bool:
        """May a confirm outside AMOUNT_ENTERED start a sale with the last amount? Never."""
        return False

    def _make_key(self, sale_no: int) -> str:
        """The idempotency key of sale `sale_no`: unique per terminal, forever.

        The boot's random nonce makes it unique even when the counter restarts (a
        lost journal, a replaced device with the same terminal id): the host would
        otherwise answer the new sale with an old sale's stored outcome.
        """
        tid = self.config.terminal_id
        if self._nonce:
            return f"{tid}-{self._nonce}-{sale_no:010d}"
        return f"{tid}-{sale_no:010d}"

    def _purchase_code(self) -> str:
        """Field 3 of a card sale: 000001 says this terminal takes a partial approval."""
        return PROC_PURCHASE_PARTIAL if self.config.partial_approval else PROC_PURCHASE

    def _answer_amount_ok(self, msg: Message, asked: int) -> bool:
        """An answer's amount is the one asked for or, for a partial approval this
        terminal asked to take, less than that and more than nothing."""
        if msg.amount == asked:
            return True
        return msg.rc == RC_PARTIAL and self.config.partial_approval and 0 < msg.amount < asked

    def _wire_amount(self, amount: int) -> int:
        """The amount put in field 4: the same integer minor units that were keyed."""
        return amount

    def _accepts_response(self, msg: Message) -> bool:
        """Only a well-formed, correctly signed response for this terminal is acted on.

        Every field is checked first (type, charset, length, range), so nothing
        malformed reaches the MAC or the state machine; an unsigned answer (the
        host's refusal of a request that failed authentication) is never acted on.
        """
        cfg = self.config
        return (
            validate_response(msg) is None
            and msg.terminal_id == cfg.terminal_id
            and msg.merchant_id == cfg.merchant_id
            and verify(msg, cfg.mac_key)
        )

    def _matches_sale(self, msg: Message, sale: Sale) -> bool:
        """Does a 0210 answer the sale in flight? Every field the host echoes must
        equal the request's: STAN, key, card, amount, processing code, currency."""
        request = self._request
        return (
            request is not None
            and msg.stan == sale.stan
            and msg.idem_key == sale.key
            and msg.pan == request.pan
            and self._answer_amount_ok(msg, request.amount)
            and msg.processing_code == request.processing_code
            and msg.currency == request.currency
        )

    # ------------------------------------------------------------ host responses

    def _on_message(self, event: MessageReceived) -> list[Effect]:
        msg = event.message
        if not self._accepts_response(msg):
            return []  # unsigned or forged: never acted on
        mti = msg.mti
        if mti == MTI_PURCHASE_RESP and msg.processing_code == PROC_REFUND:
            return self._on_refund_response(msg)
        if mti == MTI_PURCHASE_RESP:
            sale = self._sale
            if self._state is State.AUTHORISING and sale and self._matches_sale(msg, sale):
                return self._on_purchase_response(msg)
            return self._on_unmatched_purchase_response(msg)
        if mti == MTI_REVERSAL_RESP:
            return self._on_reversal_response(msg)
        if mti == MTI_BATCH_RESP:
            return self._on_batch_response(msg)
        if mti == MTI_ADVICE_RESP:
            return self._on_advice_response(msg)
        if mti == MTI_INQUIRY_RESP:
            sale = self._sale
            if (
                self._state is State.AUTHORISING
                and sale is not None
                and msg.orig_key == sale.key
                and msg.stan == sale.stan
                and self._answer_amount_ok(msg, self._wire_amount(sale.amount))
            ):
                if sale.wallet:
                    return self._on_inquiry_answer(sale, msg)
                return self._on_card_inquiry_answer(sale, msg)
            return []  # an answer to an earlier inquiry, or not ours
        return []

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

    def _on_timer(self, event: TimerExpired) -> list[Effect]:
        name = event.name
        if name in (RESPONSE_TIMER, IN_PROGRESS_TIMER):
            if self._state is not State.AUTHORISING or self._sale_timer != name:
                return []  # stale: the sale it was for is over
            if name == RESPONSE_TIMER:
                return self._on_response_timeout()
            return self._resend()
        if name == WALLET_TIMER:
            if self._state is not State.AUTHORISING or self._sale_timer != name:
                return []
            return self._on_wallet_timer()
        if name == INQUIRY_TIMER:
            if self._state is not State.AUTHORISING or self._sale_timer != name:
                return []
            return self._give_up()  # no answer to the inquiry either: reverse
        if name == REVERSAL_TIMER:
            return self._on_reversal_timeout()
        if name == CHIP_TIMER:
            return self._on_chip_timeout()
        if name == REFUND_TIMER:
            return self._on_refund_timeout()
        if name == ADVICE_TIMER:
            return self._on_advice_timeout()
        if name == OFFLINE_TIMER:
            return self._on_offline_timer()
        if name == BATCH_TIMER:
            return self._on_batch_timeout()
        return []

    def _journal(self, record: Mapping[str, Any]) -> JournalAppend:
        """Every journal write goes through here so JournalTrim can be sized."""
        self._journal_len += 1
        return JournalAppend(record)
