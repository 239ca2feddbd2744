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
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

from acquirer.protocol import (
    BATCH_ITEMS_MAX,
    MTI_BATCH,
    MTI_BATCH_RESP,
    MTI_INQUIRY_RESP,
    MTI_PURCHASE,
    MTI_PURCHASE_RESP,
    MTI_REVERSAL,
    MTI_REVERSAL_RESP,
    PROC_PURCHASE,
    PROC_PURCHASE_PARTIAL,
    PROC_WALLET,
    RC_APPROVED,
    RC_DUPLICATE,
    RC_IN_PROGRESS,
    RC_PARTIAL,
    RC_RECONCILE_ERROR,
    RC_REVERSAL_REFUSED,
    RC_UNABLE_TO_LOCATE,
    RESPONSE_CODES,
    REVERSAL_NOT_COMPLETED,
    REVERSAL_REASONS,
    STAN_MAX,
    BatchItem,
    Message,
    money,
    sign,
    validate_response,
    verify,
)
from terminal.chip_flow import CHIP_TIMER, ChipFlow
from terminal.firmware import (
    FEATURE_CHIP,
    FEATURE_PARTIAL,
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
    JournalRecord,
    JournalTrim,
    MessageReceived,
    Outcome,
    Print,
    PrintFinished,
    PrintStatus,
    Receipt,
    ReprintRequested,
    Send,
    SetTimer,
    TimerExpired,
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

# Timer names. Each names one kind of waiting; re-setting a name replaces it.
RESPONSE_TIMER = "response"  # waiting for the 0210 of the sale in flight
IN_PROGRESS_TIMER = "in-progress"  # host said RC 09: wait, then resend the same key
REVERSAL_TIMER = "reversal"  # waiting for the 0410 of the head of the reversal queue
BATCH_TIMER = "batch"  # waiting for the 0510

# RC 09 means the first attempt is still running at the host: give it time, then
# ask again with the same key. Bounded, because a host stuck "in progress" must
# not keep the cashier waiting forever; after that the outcome is unknown.
IN_PROGRESS_RETRY_DELAY_MS = 2_000
IN_PROGRESS_RETRIES_MAX = 5

# Limits on everything that can grow. When one is reached new sales are refused
# (a truthful DECLINED, nothing sent) until the backlog drains; no work is dropped.
REVERSALS_QUEUED_MAX = 32
RECEIPTS_PENDING_MAX = 16
# One batch upload lists at most BATCH_ITEMS_MAX sales, so an open batch may hold
# no more; this also bounds the journal between two batch closes.
SALES_PER_BATCH_MAX = BATCH_ITEMS_MAX
BATCH_SENDS_MAX = 5
# A fresh device's first batch number is drawn from its boot nonce (see
# `_first_open_batch_no`): at most 10**11 bases of 10**6 numbers, 17 digits in all.
BATCH_NOS_PER_DEVICE = 1_000_000
BATCH_BASE_MAX = 10**11

# The only codes that close a batch; anything else (91, 96, 30) is retried.
_BATCH_CLOSING_RCS = frozenset({RC_APPROVED, RC_RECONCILE_ERROR})
# A reversal is done when the host reversed the sale (00) or holds no such sale (25: it
# keeps a tombstone, so the sale can never be charged later).
_REVERSAL_DONE_RCS = frozenset({RC_APPROVED, RC_UNABLE_TO_LOCATE})


class State(Enum):
    """Where the foreground purchase is. Background work has its own fields."""

    IDLE = "idle"  # nothing keyed
    AMOUNT_ENTERED = "amount-entered"  # a valid amount keyed, waiting for confirm
    AWAITING_CARD = "awaiting-card"  # confirmed, waiting for a tap
    AUTHORISING = "authorising"  # 0200 sent, outcome not known yet


class SaleStatus(Enum):
    """What the journal says about one sale."""

    IN_FLIGHT = "in-flight"  # no final record: outcome unknown
    APPROVED = "approved"
    DECLINED = "declined"
    COMPLETING = "completing"  # approved by the host, the chip card not done yet
    REVERSING = "reversing"
    REVERSED = "reversed"
    REVERSAL_MANUAL = "reversal-manual"


@dataclass(frozen=True, slots=True)
class Sale:
    """One purchase as journaled before its first send."""

    key: str
    stan: int
    amount: int
    pan: str
    sale_no: int
    batch_no: int
    wallet: bool = False  # a wallet (QR code) payment: `pan` is the payment code

    def record(self) -> dict[str, Any]:
        record = {
            "type": "sale",
            "key": self.key,
            "stan": self.stan,
            "amount": self.amount,
            "pan": self.pan,
            "sale_no": self.sale_no,
            "batch_no": self.batch_no,
        }
        if self.wallet:
            record["wallet"] = True
        return record


@dataclass(frozen=True, slots=True)
class Approval:
    """The host's approval of one sale, as journaled: the only source of receipts."""

    key: str
    rrn: str
    auth_code: str
    amount: int

    def record(self) -> dict[str, Any]:
        return {
            "type": "approved",
            "key": self.key,
            "rrn": self.rrn,
            "auth_code": self.auth_code,
            "amount": self.amount,
        }


@dataclass(frozen=True, slots=True)
class PendingBatch:
    """A batch upload journaled as started but not yet answered."""

    batch_no: int
    sale_no: int
    stan: int


def stan_for(sale_no: int) -> int:
    """STAN of sequence number `sale_no`: 1..STAN_MAX, wrapping.

    Deriving the STAN from the monotonic sequence number (instead of journaling a
    separate "last STAN") means a replayed or re-appended record can never move it
    backwards and make the terminal reuse a STAN the host has already seen.
    """
    return (sale_no - 1) % STAN_MAX + 1


def reversal_record(sale: Sale, reason: str = "") -> dict[str, Any]:
    """A reversal journaled as owed; `reason` (field 39 of the 0400) when it has one."""
    record = {"type": "reversal_pending", "key": sale.key, "stan": sale.stan, "amount": sale.amount}
    if reason:
        record["reason"] = reason
    return record


class ReferenceFirmware(InquiryFlow, ChipFlow):
    """The reference firmware. Construct with a `FirmwareConfig`, then send `Boot`."""

    features = frozenset({FEATURE_CHIP, FEATURE_PARTIAL, FEATURE_WALLET})

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

    # ------------------------------------------------------------ the contract

    def handle(self, event: Event) -> list[Effect]:
        """Feed one event, get the effects to carry out in order. Never raises."""
        handler = self._handlers.get(type(event))
        if handler is None:
            return []
        return handler(event)

    # ------------------------------------------------------------ boot and replay

    def _on_boot(self, event: Boot) -> list[Effect]:
        self._reset()
        journal = event.journal
        self._journal_len = len(journal)
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
                    sale = self._sales.get(key) or Sale(
                        key, int(record["stan"]), int(record["amount"]), "", 0, 0
                    )
                    self._reversals[key] = sale
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
            effects.append(Display(Outcome.RECEIPT_PENDING, "RECEIPT PENDING", approval.rrn))
            effects.append(self._print(key, copy=False))
        effects += self._pump_reversals()
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
        if mti == MTI_PURCHASE_RESP:
            sale = self._sale
            if self._state is State.AUTHORISING and sale and self._matches_sale(msg, sale):
                return self._on_purchase_response(msg)
            return self._on_unmatched_purchase_response(msg)
        if mti == MTI_REVERSAL_RESP:
            return self._on_reversal_response(msg)
        if mti == MTI_BATCH_RESP:
            return self._on_batch_response(msg)
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

    # ------------------------------------------------------------ reversals

    def _record_reversal_pending(self, sale: Sale, reason: str = "") -> list[Effect]:
        """The durable half of a reversal: without it a power cut would lose it."""
        return [self._journal(reversal_record(sale, reason))]

    def _enqueue_reversal(self, sale: Sale, reason: str = "") -> list[Effect]:
        self._reversals[sale.key] = sale
        if reason:
            self._reversal_reasons[sale.key] = reason
        self._status[sale.key] = SaleStatus.REVERSING
        return self._pump_reversals()

    def _pump_reversals(self) -> list[Effect]:
        """Start on the head of the queue if nothing is being tried."""
        if self._reversal_key or not self._reversals:
            return []
        self._reversal_key = next(iter(self._reversals))
        self._reversal_tries = 0
        return self._send_reversal()

    def _send_reversal(self) -> list[Effect]:
        sale = self._reversals[self._reversal_key]
        self._reversal_tries += 1
        cfg = self.config
        msg = Message(
            MTI_REVERSAL,
            cfg.terminal_id,
            cfg.merchant_id,
            sale.stan,
            pan=sale.pan,
            processing_code=PROC_WALLET if sale.wallet else PROC_PURCHASE,
            amount=self._wire_amount(sale.amount),
            rc=self._reversal_reasons.get(sale.key, ""),
            orig_stan=sale.stan,
            orig_key=sale.key,
            repeat=self._reversal_tries > 1,
        )
        backoff = cfg.reversal_backoff_ms
        delay_ms = backoff[min(self._reversal_tries, len(backoff) - 1)] if backoff else 0
        # A zero wait could never hear the 0410: wait at least one response timeout.
        return [
            Send(sign(msg, cfg.mac_key)),
            SetTimer(REVERSAL_TIMER, delay_ms or cfg.response_timeout_ms),
        ]

    def _on_reversal_timeout(self) -> list[Effect]:
        key = self._reversal_key
        if not key:
            return []
        if self._reversal_tries < self.config.reversal_max_tries:
            return self._send_reversal()
        # Out of tries: hand it to a human, durably, and move on to the next one.
        return self._reversal_manual(key)

    def _reversal_manual(self, key: str) -> list[Effect]:
        """Give up on reversal `key`: journal it for manual handling, move on."""
        if key == self._reversal_key:
            self._reversal_key = ""
            effects: list[Effect] = [CancelTimer(REVERSAL_TIMER)]
        else:
            effects = []
        self._reversals.pop(key, None)
        self._reversal_reasons.pop(key, None)
        self._status[key] = SaleStatus.REVERSAL_MANUAL
        effects += [
            self._journal({"type": "reversal_manual", "key": key}),
            Display(Outcome.PROMPT, "REVERSAL NEEDS MANUAL HANDLING"),
        ]
        return effects + self._after_reversal()

    def _match_reversal(self, msg: Message) -> str:
        """The queued reversal a 0410 answers: its key, STAN and amount echoed, or ""."""
        sale = self._reversals.get(msg.orig_key)
        if (
            sale is None
            or msg.orig_stan != sale.stan
            or msg.stan != sale.stan
            or msg.amount != self._wire_amount(sale.amount)
        ):
            return ""
        return sale.key

    def _on_reversal_response(self, msg: Message) -> list[Effect]:
        key = self._match_reversal(msg)
        if not key:
            return []  # not ours: the timer will try again
        if msg.rc == RC_REVERSAL_REFUSED:
            # The host holds an original that differs from this reversal (amount or
            # card): retrying cannot succeed, a human must look at it.
            return self._reversal_manual(key)
        if msg.rc not in _REVERSAL_DONE_RCS:
            return []  # refused for now: the timer will try again
        self._reversals.pop(key)
        self._reversal_reasons.pop(key, None)
        self._status[key] = SaleStatus.REVERSED
        effects: list[Effect] = [self._journal({"type": "reversed", "key": key})]
        if key == self._reversal_key:
            self._reversal_key = ""
            effects.append(CancelTimer(REVERSAL_TIMER))
        return effects + self._after_reversal()

    def _after_reversal(self) -> list[Effect]:
        effects = self._pump_reversals()
        if self._batch_wanted:
            effects += self._maybe_start_batch()
        return effects

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
        return [Display(Outcome.RECEIPT_PENDING, "RECEIPT PENDING - PRESS REPRINT", rrn)]

    def _on_reprint(self, event: ReprintRequested) -> list[Effect]:
        printing = {key for key, _ in self._print_jobs.values()}
        for key in self._pending_receipts:
            if key not in printing:
                return [self._print(key, copy=False)]
        if self._pending_receipts:
            return [Display(Outcome.PROMPT, "PRINTING")]
        key = self._last_receipt_key
        if not key or key not in self._approvals:
            return [Display(Outcome.PROMPT, "NO RECEIPT")]
        if any(copy for _, copy in self._print_jobs.values()):
            return [Display(Outcome.PROMPT, "PRINTING")]  # one copy at a time
        return [self._print(key, copy=True)]

    # ------------------------------------------------------------ batch close

    def _on_batch_close_requested(self, event: BatchCloseRequested) -> list[Effect]:
        if self._batch_wanted:
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
        items = tuple(self._batch_sales())
        cfg = self.config
        self._batch_message = Message(
            MTI_BATCH,
            cfg.terminal_id,
            cfg.merchant_id,
            batch.stan,
            batch_no=batch.batch_no,
            debit_count=len(items),
            debit_amount=sum(item.amount for item in items),
            items=items,
        )
        effects.append(Display(Outcome.PROMPT, "BATCH CLOSING"))
        return effects + self._send_batch()

    def _batch_sales(self) -> list[BatchItem]:
        """Approved, non-reversed sales of the open batch, in journal order."""
        out: list[BatchItem] = []
        open_batch_no = self._open_batch_no
        for key, sale in self._sales.items():
            if sale.batch_no == open_batch_no and self._status.get(key) is SaleStatus.APPROVED:
                approval = self._approvals.get(key)
                if approval is not None:  # a subclass may mark APPROVED before recording it
                    out.append(BatchItem(sale.stan, approval.amount, approval.rrn))
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
        self._batch_sends = 0
        self._batch_resumed = False
        ok = msg.rc == RC_APPROVED
        effects.append(Display(Outcome.PROMPT, "BATCH OK" if ok else "BATCH MISMATCH"))
        return effects

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
        if name == BATCH_TIMER:
            return self._on_batch_timeout()
        return []

    def _journal(self, record: Mapping[str, Any]) -> JournalAppend:
        """Every journal write goes through here so JournalTrim can be sized."""
        self._journal_len += 1
        return JournalAppend(record)
