"""The reference firmware's voids and refunds of a named earlier sale (issue 15).

The cashier names the sale by its host reference (RRN, printed on its receipt):

* A **void** (`VoidRequested`) cancels the sale in full while it is still in the open
  batch: it is a reversal (0400) of the sale, journaled (`void`, then the usual
  `reversal_pending`) before it is sent and retried through the reversal queue until
  the host answers; VOIDED is shown when the host has reversed it. A sale already
  settled by a batch close cannot be voided: the void becomes a refund of the whole
  sale. So does a void the host refuses (RC 12: it settled the sale in a close whose
  answer the terminal never got).
* A **refund** (`RefundRequested`) is a new credit (0200, processing code 200000)
  naming the sale (`orig_key`). Its idempotency key and STAN are journaled (`refund`)
  before the first send and reused on every retry and after every reboot, so a retried
  refund is credited once; it is retried until the host answers (transient codes
  retry, anything else refuses it) and REFUNDED is shown once the host approved it.
  A refund still unanswered after `max_sends` sends (as for a sale: the customer is
  waiting at the counter) has an unknown outcome
  (the host may have credited it, every answer lost): it is reversed like a sale whose
  outcome is unknown (`refund_reversing`, then the usual `reversal_pending`, journaled
  before REFUND FAILED is shown), so the card is never credited behind the cashier's
  back; once the host confirms the reversal (`refund_reversed`) the amount may be
  refunded again.
* Never both: a voided sale is not refunded, a refunded sale is not voided, and the
  refunds of one sale never total more than the sale (what was approved).
* Every request is answered: a refusal at once (a prompt), or, once under way (VOIDING,
  REFUNDING), VOIDED / REFUNDED or a refusal naming the sale's RRN (REFUND FAILED - NOT
  CREDITED, REFUND REFUSED - ..., REVERSAL NEEDS MANUAL HANDLING), so that the cashier
  knows which request it answers. A `void` record alone queues its reversal at boot
  (the power may fail before the reversal's own record), and a boot whose journal ends
  with a refund given up on shows REFUND FAILED again.

Refunds are credits in the batch upload (0500 credit count and amount). A batch close
waits for refunds in flight. The sales it settles stay refundable (the latest
`SALE_REFS_MAX`) in memory only, so that the journal a close leaves behind is the one it
always was (the example firmwares in C and JavaScript write the same journal): after a
power cut, a sale settled before it is no longer known here ("NO SUCH SALE") and must be
refunded from the acquirer's back office. Nothing can be credited twice for that: what
the terminal does not know it refuses.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from acquirer.protocol import (
    MTI_PURCHASE,
    PROC_REFUND,
    RC_APPROVED,
    RESPONSE_CODES,
    TRANSIENT_RCS,
    BatchItem,
    Message,
)
from terminal.credit_receipts import (
    CREDIT_RECEIPT_RECORDS,
    STATUS_REFUNDED,
    STATUS_VOIDED,
    CreditReceipts,
    CreditSlip,
)
from terminal.firmware import (
    CancelTimer,
    Display,
    Effect,
    JournalRecord,
    Outcome,
    RefundRequested,
    VoidRequested,
)
from terminal.ref_model import REVERSAL_TIMER, Sale, SaleStatus, send_and_wait, stan_for

REFUND_TIMER = "refund"  # waiting for the 0210 of the head of the refund queue
# Refunds waiting for the host at once; more are refused until the queue drains.
REFUNDS_QUEUED_MAX = 16
# Settled sales kept refundable across batch closes, in memory (the newest; older ones,
# and all of them after a power cut, are refunded by the acquirer's back office).
SALE_REFS_MAX = 64
REFUND_RECORDS = (
    frozenset(
        {
            "void",
            "void_refused",
            "refund",
            "refund_done",
            "refund_refused",
            "refund_manual",
            "refund_reversing",
            "refund_reversed",
        }
    )
    | CREDIT_RECEIPT_RECORDS
)


@dataclass(frozen=True, slots=True)
class SaleRef:
    """What a void or refund needs of an approved sale."""

    key: str
    rrn: str
    pan: str
    amount: int  # what the host approved
    settled: bool  # a batch close has settled it: refund only
    stan: int = 0


@dataclass(frozen=True, slots=True)
class RefundJob:
    """One refund as journaled before its first send."""

    key: str
    orig_key: str
    orig_rrn: str
    pan: str
    amount: int
    stan: int
    sale_no: int
    batch_no: int

    def record(self) -> dict[str, Any]:
        return {
            "type": "refund",
            "key": self.key,
            "orig_key": self.orig_key,
            "orig_rrn": self.orig_rrn,
            "pan": self.pan,
            "amount": self.amount,
            "stan": self.stan,
            "sale_no": self.sale_no,
            "batch_no": self.batch_no,
        }


class RefundFlow(CreditReceipts):
    """See the module doc: a base of `ReferenceFirmware`, using its state."""

    def _reset_refunds(self) -> None:
        self._reset_credit_receipts()  # terminal/credit_receipts.py
        self._refunds: dict[str, RefundJob] = {}  # queued, oldest first; head is sent
        self._refund_key = ""
        self._refund_tries = 0
        self._credited: dict[str, int] = {}  # sale key -> refunds asked, not refused
        self._voids: dict[str, SaleRef] = {}  # sales the cashier voided (or is voiding)
        # Refunds given up on and being reversed: refund key -> the job.
        self._refund_reversals: dict[str, RefundJob] = {}
        self._sale_refs: dict[str, SaleRef] = {}  # rrn -> settled sale, oldest first
        # Approved refunds of the open batch: key -> (stan, amount, host rrn, batch_no).
        self._refund_credits: dict[str, tuple[int, int, str, int]] = {}

    # ------------------------------------------------------------ the cashier

    def _sale_ref(self, rrn: str) -> SaleRef | None:
        """The approved card sale with host reference `rrn` (None: none this terminal
        holds)."""
        if not rrn:
            return None
        for key, approval in self._approvals.items():
            if approval.rrn != rrn:
                continue
            if key in self._voids:
                return self._voids[key]  # voided, or being voided
            sale = self._sales.get(key)
            if sale is None or sale.wallet or self._status.get(key) is not SaleStatus.APPROVED:
                return None
            # A hold is in no batch: it is released (voided) whenever.
            settled = sale.batch_no != self._open_batch_no and not sale.preauth
            if settled and rrn in self._sale_refs:
                return self._sale_refs[rrn]  # as the close kept it: its total, tip included
            # A tip set since counts: a void gives back (and a 0400 names) the total.
            amount = self._sale_total(key, approval.amount)
            return SaleRef(key, rrn, sale.pan, amount, settled, sale.stan)
        for cap in self._captures.values():  # a completion: voided or refunded as a sale
            if cap.rrn == rrn:
                if cap.key in self._voids:
                    return self._voids[cap.key]
                if self._status.get(cap.key, SaleStatus.APPROVED) is not SaleStatus.APPROVED:
                    return None
                settled = cap.batch_no != self._open_batch_no
                return SaleRef(cap.key, rrn, cap.pan, cap.amount, settled, cap.stan)
        return self._sale_refs.get(rrn)

    def _on_void_requested(self, event: VoidRequested) -> list[Effect]:
        ref = self._sale_ref(event.rrn)
        if ref is None:
            return [Display(Outcome.PROMPT, "VOID REFUSED - NO SUCH SALE")]
        conflict = self._credit_conflict(ref)
        if conflict:
            return [Display(Outcome.PROMPT, f"VOID REFUSED - {conflict}")]
        if self._batch_wanted or self._batch is not None:
            return [Display(Outcome.PROMPT, "BATCH CLOSING - TRY LATER")]
        if ref.key in self._pending_receipts:
            return [Display(Outcome.PROMPT, "VOID REFUSED - PRINT THE RECEIPT FIRST")]
        pending = next((j for j in self._adjusts.values() if j.orig_key == ref.key), None)
        if pending is not None:
            # A tip (or completion) of it not answered yet: the 0400 could not name the
            # total the host will hold, so the void would give back too little.
            what = "COMPLETION" if pending.kind == "completion" else "TIP"
            return [Display(Outcome.PROMPT, f"VOID REFUSED - {what} PENDING")]
        if self._void_too_late(ref):
            # Outside the batch window: a void is no longer possible, refund it all.
            return self._start_refund(ref, ref.amount)
        sale = self._sales.get(ref.key) or Sale(ref.key, ref.stan, ref.amount, ref.pan, 0, 0)
        if sale.amount != ref.amount:
            sale = replace(sale, amount=ref.amount)  # a tip set since: the 0400 names the total
        self._voids[ref.key] = ref
        record = {
            "type": "void",
            "key": ref.key,
            "rrn": ref.rrn,
            "pan": ref.pan,
            "amount": ref.amount,
            "stan": ref.stan,
        }
        effects: list[Effect] = [self._journal(record)]
        effects += self._record_reversal_pending(sale)
        effects.append(Display(Outcome.PENDING, "VOIDING"))
        return effects + self._enqueue_reversal(sale)

    def _on_refund_requested(self, event: RefundRequested) -> list[Effect]:
        ref = self._sale_ref(event.rrn)
        if ref is None:
            return [Display(Outcome.PROMPT, "REFUND REFUSED - NO SUCH SALE")]
        if ref.key in self._voids and self._credit_conflict(ref):
            return [Display(Outcome.PROMPT, "REFUND REFUSED - SALE VOIDED")]
        held = self._sales.get(ref.key)
        if held is not None and held.preauth:
            return [Display(Outcome.PROMPT, "REFUND REFUSED - A HOLD: VOID IT")]
        amount = event.amount
        if type(amount) is not int or amount <= 0:
            return [Display(Outcome.PROMPT, "REFUND REFUSED - INVALID AMOUNT")]
        if self._credited.get(ref.key, 0) + amount > ref.amount:
            return [Display(Outcome.PROMPT, "REFUND REFUSED - MORE THAN THE SALE")]
        return self._start_refund(ref, amount)

    def _start_refund(self, ref: SaleRef, amount: int) -> list[Effect]:
        """Journal a refund (its own key and STAN) before anything is sent, then queue it."""
        if len(self._refunds) >= REFUNDS_QUEUED_MAX:
            return [Display(Outcome.PROMPT, "REFUNDS PENDING - TRY LATER")]
        if self._batch is not None:
            # An upload under way lists the batch's credits: none may join it now. (A
            # close only asked for waits for refunds in flight.)
            return [Display(Outcome.PROMPT, "BATCH CLOSING - TRY LATER")]
        self._sale_no += 1
        sale_no = self._sale_no
        job = RefundJob(
            self._refund_key_for(ref, sale_no),
            ref.key,
            ref.rrn,
            ref.pan,
            amount,
            stan_for(sale_no),
            sale_no,
            self._open_batch_no,
        )
        self._refunds[job.key] = job
        self._credited[ref.key] = self._credited.get(ref.key, 0) + amount
        effects: list[Effect] = [
            self._journal(job.record()),  # the key exists durably before anything is sent
            Display(Outcome.PENDING, "REFUNDING"),
        ]
        return effects + self._pump_refunds()

    # ------------------------------------------------------------ hooks (zoo seams)

    def _credit_conflict(self, ref: SaleRef) -> str:
        """Why sale `ref` may not be voided now ("" = it may): never both a void and a
        refund of one sale. (Refunding a voided sale is refused when this says why.)"""
        if ref.key in self._voids:
            return "ALREADY VOIDED"
        if self._credited.get(ref.key, 0):
            return "ALREADY REFUNDED"
        return ""

    def _void_too_late(self, ref: SaleRef) -> bool:
        """Is sale `ref` outside the batch window (settled by a batch close)?"""
        return ref.settled

    def _refund_key_for(self, ref: SaleRef, sale_no: int) -> str:
        """The idempotency key of a refund: made once, journaled, reused on every send."""
        return self._make_key(sale_no)

    def _refund_resend_key(self, job: RefundJob) -> str:
        """The key a retry of `job` is sent under: always its journaled key."""
        return job.key

    # ------------------------------------------------------------ the queue

    def _pump_refunds(self) -> list[Effect]:
        if self._refund_key or not self._refunds:
            return []
        self._refund_key = next(iter(self._refunds))
        self._refund_tries = 0
        return self._send_refund()

    def _send_refund(self) -> list[Effect]:
        job = self._refunds[self._refund_key]
        self._refund_tries += 1
        cfg = self.config
        msg = Message(
            MTI_PURCHASE,
            cfg.terminal_id,
            cfg.merchant_id,
            job.stan,
            pan=job.pan,
            processing_code=PROC_REFUND,
            amount=self._wire_amount(job.amount),
            idem_key=self._refund_resend_key(job) if self._refund_tries > 1 else job.key,
            orig_key=job.orig_key,
            repeat=self._refund_tries > 1,
        )
        return send_and_wait(cfg, msg, REFUND_TIMER, self._refund_tries)

    def _on_refund_timeout(self) -> list[Effect]:
        key = self._refund_key
        if not key or key not in self._refunds:
            return []
        if self._refund_tries < self.config.max_sends:
            return self._send_refund()
        return self._refund_give_up(key)

    def _refund_give_up(self, key: str) -> list[Effect]:
        """Out of sends, the outcome unknown (the host may have credited it, every answer
        lost): reverse the refund, journaled before REFUND FAILED is shown. The amount
        stays counted against the sale until the host confirms the reversal."""
        job = self._refunds.pop(key)
        self._refund_reversals[key] = job
        sale = Sale(key, job.stan, job.amount, job.pan, job.sale_no, job.batch_no)
        effects: list[Effect] = [
            self._journal({"type": "refund_reversing", "key": key}),
            *self._record_reversal_pending(sale),
            Display(Outcome.PROMPT, "REFUND FAILED - NOT CREDITED", job.orig_rrn),
        ]
        if key == self._refund_key:
            self._refund_key = ""
            effects.append(CancelTimer(REFUND_TIMER))
        # Queued before anything else may start: a batch close waits for it.
        effects += self._enqueue_reversal(sale)
        effects += self._pump_refunds()
        if self._batch_wanted:
            effects += self._maybe_start_batch()
        return effects

    def _on_refund_response(self, msg: Message) -> list[Effect]:
        job = self._refunds.get(msg.idem_key)
        if (
            job is None
            or msg.stan != job.stan
            or msg.orig_key != job.orig_key
            or msg.amount != self._wire_amount(job.amount)
        ):
            return []  # not ours, or an answer to a refund already over
        if msg.rc in TRANSIENT_RCS:
            return []  # nothing credited: the timer sends it again, same key
        if msg.rc != RC_APPROVED:
            self._credited[job.orig_key] = self._credited.get(job.orig_key, 0) - job.amount
            reason = RESPONSE_CODES.get(msg.rc, f"code {msg.rc}").upper()
            record = {"type": "refund_refused", "key": job.key, "rc": msg.rc}
            text = f"REFUND REFUSED - {reason}"
            return self._refund_over(job.key, record, text, job.orig_rrn)
        self._refund_credits[job.key] = (job.stan, job.amount, msg.rrn, job.batch_no)
        # Shown before it is journaled: a power cut in between sends it again under
        # the same key, the host replays its approval, and it is shown again. Its
        # receipt is journaled before `refund_done` (owed once, whatever is resent).
        shown = Display(Outcome.REFUNDED, "REFUNDED", job.orig_rrn, job.amount)
        slip = CreditSlip(
            job.key,
            STATUS_REFUNDED,
            job.amount,
            msg.rrn,
            job.orig_rrn,
            job.stan,
            job.pan[-4:],
            msg.auth_code,
        )
        receipt = self._credit_receipt(slip)
        record = {"type": "refund_done", "key": job.key, "rrn": msg.rrn}
        return [shown, *receipt[:1], *self._refund_over(job.key, record, ""), *receipt[1:]]

    def _refund_over(
        self, key: str, record: dict[str, Any], text: str, rrn: str = ""
    ) -> list[Effect]:
        """Refund `key` is over (journaled `record`); `text`: the refusal shown, naming
        the sale's RRN `rrn` (an answer to the cashier's refund, made long after it)."""
        self._refunds.pop(key, None)
        effects: list[Effect] = [self._journal(record)]
        if text:
            effects.append(Display(Outcome.PROMPT, text, rrn))
        if key == self._refund_key:
            self._refund_key = ""
            effects.append(CancelTimer(REFUND_TIMER))
        effects += self._pump_refunds()
        if self._batch_wanted:
            effects += self._maybe_start_batch()
        return effects

    # ------------------------------------------------------------ voids

    def _void_done(self, key: str) -> list[Effect]:
        """The reversal of `key` is done: if it was the cashier's void, show it and
        print its receipt (journaled first); if it was a refund given up on, its amount
        may be refunded again."""
        job = self._refund_reversals.pop(key, None)
        if job is not None:
            self._credited[job.orig_key] = self._credited.get(job.orig_key, 0) - job.amount
            return [self._journal({"type": "refund_reversed", "key": key})]
        ref = self._voids.get(key)
        if ref is None:
            return []
        slip = CreditSlip(
            "void:" + key, STATUS_VOIDED, ref.amount, ref.rrn, ref.rrn, ref.stan, ref.pan[-4:]
        )
        return [Display(Outcome.VOIDED, "VOIDED", ref.rrn, ref.amount), *self._credit_receipt(slip)]

    def _void_refused(self, key: str) -> list[Effect] | None:
        """The host refused the reversal of `key` (RC 12). A void it refuses came too
        late (the sale is settled): refund the whole sale instead. None: not a void."""
        ref = self._voids.pop(key, None)
        if ref is None:
            return None
        self._reversals.pop(key, None)
        self._reversal_reasons.pop(key, None)
        self._status[key] = SaleStatus.APPROVED
        effects: list[Effect] = [self._journal({"type": "void_refused", "key": key})]
        if key == self._reversal_key:
            self._reversal_key = ""
            effects += [CancelTimer(REVERSAL_TIMER), *self._pump_reversals()]
        return effects + self._start_refund(ref, ref.amount)

    # ------------------------------------------------------------ batch and boot

    def _batch_credits(self) -> list[BatchItem]:
        """Approved refunds of the open batch, oldest first: the 0500's credits."""
        return [
            BatchItem(stan, amount, rrn)
            for stan, amount, rrn, batch_no in self._refund_credits.values()
            if batch_no == self._open_batch_no
        ]

    def _carry_refunds(self) -> list[Effect]:
        """At a batch close (before the journal is trimmed): keep the sales it settles
        refundable, in memory (the latest `SALE_REFS_MAX`, with what was refunded of
        them), and re-journal refunds in flight (a close waits for them: none, unless
        a subclass does otherwise)."""
        refs = dict(self._sale_refs)
        for key, sale in self._sales.items():
            approval = self._approvals.get(key)
            if approval is None or sale.wallet or self._status.get(key) is not SaleStatus.APPROVED:
                continue
            if sale.preauth:
                continue  # a hold stays in the journal (adjust_flow.py), not settled
            refs.pop(approval.rrn, None)
            amount = self._sale_total(key, approval.amount)  # with its tip
            refs[approval.rrn] = SaleRef(key, approval.rrn, sale.pan, amount, True, sale.stan)
        for cap in self._captures.values():  # completions settled: refundable too
            if self._status.get(cap.key, SaleStatus.APPROVED) is SaleStatus.APPROVED:
                refs.pop(cap.rrn, None)
                refs[cap.rrn] = SaleRef(cap.key, cap.rrn, cap.pan, cap.amount, True, cap.stan)
        while len(refs) > SALE_REFS_MAX:
            del refs[next(iter(refs))]
        self._sale_refs = refs
        keys = {ref.key for ref in refs.values()} | {j.orig_key for j in self._refunds.values()}
        self._credited = {k: v for k, v in self._credited.items() if k in keys}
        self._refund_credits = {}
        self._voids = {}
        self._refund_reversals = {}  # a close waits for reversals: none is in flight
        effects = [self._journal(job.record()) for job in self._refunds.values()]
        return effects + self._carry_credit_receipts()

    def _refund_recover(self) -> list[Effect]:
        """At boot: show again a refund given up on (REFUND FAILED) if the power may have
        cut it off: its record, or the reversal record that follows it, is the journal's
        last. (VOIDED and REFUNDED need no such care: their 0400 or 0200 is sent again
        and the host's replayed answer shows them.)"""
        last = self._last_record
        if last is None or last.get("type") not in ("refund_reversing", "reversal_pending"):
            return []
        job = self._refund_reversals.get(str(last.get("key", "")))
        if job is None:
            return []
        return [Display(Outcome.PROMPT, "REFUND FAILED - NOT CREDITED", job.orig_rrn)]

    def _replay_refund(self, kind: str, record: JournalRecord) -> None:
        """Apply one void/refund journal record (see REFUND_RECORDS)."""
        if kind in CREDIT_RECEIPT_RECORDS:
            self._replay_credit_receipt(kind, record)
            return
        key = str(record["key"])
        if kind == "void":
            ref = SaleRef(
                key,
                str(record["rrn"]),
                str(record["pan"]),
                int(record["amount"]),
                False,
                int(record["stan"]),
            )
            self._voids[key] = ref
            # Its reversal: the reversal_pending record that follows says the same, but
            # the power may fail between the two writes, and this record alone must
            # still carry out the void (else the cashier's void is lost, the sale kept).
            if self._status.get(key) not in (SaleStatus.REVERSED, SaleStatus.REVERSAL_MANUAL):
                sale = self._sales.get(key) or Sale(key, ref.stan, ref.amount, ref.pan, 0, 0)
                self._reversals[key] = replace(sale, amount=ref.amount)
                self._status[key] = SaleStatus.REVERSING
        elif kind == "void_refused":
            self._voids.pop(key, None)
            self._reversals.pop(key, None)
            self._reversal_reasons.pop(key, None)
            self._status[key] = SaleStatus.APPROVED
        elif kind == "refund":
            job = RefundJob(
                key,
                str(record["orig_key"]),
                str(record["orig_rrn"]),
                str(record["pan"]),
                int(record["amount"]),
                int(record["stan"]),
                int(record["sale_no"]),
                int(record["batch_no"]),
            )
            if key not in self._refunds:
                self._credited[job.orig_key] = self._credited.get(job.orig_key, 0) + job.amount
            self._refunds[key] = job
            self._sale_no = max(self._sale_no, job.sale_no)
        else:
            self._replay_refund_outcome(kind, key, record)

    def _replay_refund_outcome(self, kind: str, key: str, record: JournalRecord) -> None:
        if kind == "refund_reversed":
            job = self._refund_reversals.pop(key, None)
            if job is not None:
                self._credited[job.orig_key] = self._credited.get(job.orig_key, 0) - job.amount
            return
        job = self._refunds.pop(key, None)
        if job is None:
            return
        if kind == "refund_reversing":
            self._refund_reversals[key] = job
            # Its reversal: the reversal_pending record that follows says the same, but
            # the power may fail between the two writes, and this record alone must
            # still reverse the refund (else the host keeps a credit nobody was told of).
            if self._status.get(key) not in (SaleStatus.REVERSED, SaleStatus.REVERSAL_MANUAL):
                self._reversals[key] = Sale(
                    key, job.stan, job.amount, job.pan, job.sale_no, job.batch_no
                )
                self._status[key] = SaleStatus.REVERSING
            return
        if kind == "refund_done":
            self._refund_credits[key] = (job.stan, job.amount, str(record["rrn"]), job.batch_no)
        elif kind == "refund_refused":
            self._credited[job.orig_key] = self._credited.get(job.orig_key, 0) - job.amount
