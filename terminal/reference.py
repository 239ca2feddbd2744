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
from typing import Any

from acquirer.protocol import (
    MTI_ADVICE_RESP,
    MTI_BATCH_RESP,
    MTI_INQUIRY_RESP,
    MTI_PREAUTH,
    MTI_PREAUTH_RESP,
    MTI_PURCHASE,
    MTI_PURCHASE_RESP,
    MTI_REVERSAL_RESP,
    PROC_PURCHASE,
    PROC_PURCHASE_PARTIAL,
    PROC_REFUND,
    PROC_WALLET,
    RC_PARTIAL,
    Message,
    sign,
    validate_response,
    verify,
)
from terminal.adjust_flow import ADJUST_TIMER, AdjustFlow
from terminal.batch_flow import BatchFlow
from terminal.chip_flow import CHIP_TIMER, ChipFlow
from terminal.firmware import (
    FEATURE_CHIP,
    FEATURE_OFFLINE,
    FEATURE_PARTIAL,
    FEATURE_PREAUTH,
    FEATURE_REFUND,
    FEATURE_WALLET,
    AmountKeyed,
    BatchCloseRequested,
    Boot,
    CancelPressed,
    CardPresented,
    ChipResult,
    CodeScanned,
    CompletionRequested,
    ConfirmPressed,
    Display,
    Effect,
    Event,
    FirmwareConfig,
    JournalAppend,
    JournalRecord,
    MessageReceived,
    Outcome,
    PreauthKeyed,
    PrintFinished,
    RefundRequested,
    ReprintRequested,
    Send,
    SetTimer,
    TimerExpired,
    TipAdjustRequested,
    VoidRequested,
)
from terminal.inquiry_flow import (
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
from terminal.sale_flow import SaleFlow


class ReferenceFirmware(
    SaleFlow,
    InquiryFlow,
    ChipFlow,
    RefundFlow,
    AdjustFlow,
    OfflineFlow,
    RecoveryFlow,
    ReversalFlow,
    BatchFlow,
):
    """The reference firmware. Construct with a `FirmwareConfig`, then send `Boot`."""

    features = frozenset(
        {
            FEATURE_CHIP,
            FEATURE_OFFLINE,
            FEATURE_PARTIAL,
            FEATURE_PREAUTH,
            FEATURE_REFUND,
            FEATURE_WALLET,
        }
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
            PreauthKeyed: self._on_preauth_keyed,
            CompletionRequested: self._on_completion_requested,
            TipAdjustRequested: self._on_tip_requested,
        }

    def _reset(self) -> None:
        """Forget everything volatile: what a power cut does."""
        self._state = State.IDLE
        self._amount = 0  # the fresh amount, meaningful in AMOUNT_ENTERED / AWAITING_CARD
        self._preauth_mode = False  # the fresh amount is a pre-authorisation's
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
        self._last_record: JournalRecord | None = None  # the journal's last, at boot
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
        self._batch_again = False  # the cashier asked again while it was under way
        self._reset_refunds()  # voids and refunds (terminal/refund_flow.py)
        self._reset_adjusts()  # completions and tips (terminal/adjust_flow.py)
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
        self._preauth_mode = False
        self._state = State.AMOUNT_ENTERED
        return [Display(Outcome.PROMPT, "CONFIRM AMOUNT")]

    def _on_preauth_keyed(self, event: PreauthKeyed) -> list[Effect]:
        """A pre-authorisation's amount: then confirm and card, exactly as for a sale."""
        effects = self._on_amount_keyed(AmountKeyed(event.amount))
        if self._state is State.AMOUNT_ENTERED:
            self._preauth_mode = True
            return [Display(Outcome.PROMPT, "CONFIRM PRE-AUTH")]
        return effects

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
            return self._start_sale(self._amount, pan, preauth=self._preauth_mode)
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
            if self._preauth_mode:
                # A hold is placed on a card; a wallet order would charge at once.
                return [Display(Outcome.PROMPT, "PRE-AUTH: PRESENT A CARD")]
            return self._start_sale(self._amount, code, wallet=True)
        last = self._last_sale
        if code and last is not None and self._debounce_accepts_tap():
            return self._start_sale(last.amount, code, wallet=True)
        return []  # a second scan starts nothing

    def _start_sale(
        self, amount: int, pan: str, key: str = "", wallet: bool = False, preauth: bool = False
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
            preauth,
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
        code = PROC_WALLET if wallet else PROC_PURCHASE if preauth else self._purchase_code()
        request = Message(
            MTI_PREAUTH if preauth else MTI_PURCHASE,
            cfg.terminal_id,
            cfg.merchant_id,
            sale.stan,
            pan=pan,
            processing_code=code,
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
            and msg.mti[:2] == request.mti[:2]  # a 0110 answers a 0100, a 0210 a 0200
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
        if mti in (MTI_PURCHASE_RESP, MTI_PREAUTH_RESP):
            sale = self._sale
            if self._state is State.AUTHORISING and sale and self._matches_sale(msg, sale):
                return self._on_purchase_response(msg)
            return self._on_unmatched_purchase_response(msg)
        if mti == MTI_REVERSAL_RESP:
            return self._on_reversal_response(msg)
        if mti == MTI_BATCH_RESP:
            return self._on_batch_response(msg)
        if mti == MTI_ADVICE_RESP:
            if self._is_adjust_answer(msg):
                return self._on_adjust_response(msg)  # terminal/adjust_flow.py
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
        if name == ADJUST_TIMER:
            return self._on_adjust_timeout()
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
