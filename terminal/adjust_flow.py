"""The reference firmware's completions of pre-authorisations and tip adjusts (issue 15).

A **pre-authorisation** is a sale with one difference (`Sale.preauth`): it is asked with
a 0100 and the host places a hold instead of charging. It is never approved offline
and never in a batch: a hold still standing at a batch close is carried into the next
batch's journal, so it can be completed days later (a hotel stay).

Both flows here send a 0220 advice naming the sale it changes (`orig_key`), under a key
of its own that is journaled (`adjust`) before the first send and reused on every
resend and after every reboot, so the host books it once however often it is sent:

* A **completion** (`CompletionRequested`, processing code 000000) captures at most
  the hold, once: a second completion of one pre-authorisation is refused here, and by
  the host. COMPLETED is shown (naming the pre-authorisation's RRN, with the amount
  captured) only once the host approved it (`adjust_done` journaled first); the
  capture is a debit of the open batch.
* A **tip adjust** (`TipAdjustRequested`, processing code 020000) carries the sale's
  NEW TOTAL (its amount plus the tip), never the tip alone: the host sets the total, so
  a resend can never add the tip twice. Only inside the batch window: once a batch
  close has settled the sale, the tip is refused here (TIP REFUSED - BATCH CLOSED).
  TIP ADDED is shown (naming the sale's RRN, with the new total) once the host set it;
  the sale's batch item then carries the new total.

Every request is answered with a display naming the RRN the cashier gave: COMPLETED /
TIP ADDED, or a PROMPT saying why not (refused here or by the host, or left to manual
handling), so the cashier always learns what became of it. The display comes right
after the outcome's journal record, before anything else the answer sets off (the next
adjust, a batch close that waited): a power cut can only fall between the two, and then
the boot shows the outcome again (its record is the journal's last). An adjust is retried every
response timeout until the host answers (transient codes
are retried, any other code refuses it, shown as REFUSED), at most `ADJUST_TRIES_MAX`
times (about half an hour with the reversal back-off), then left to manual handling
(`adjust_manual`), shown as such. A batch close waits for adjusts in flight.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from acquirer.protocol import (
    MTI_ADVICE,
    PROC_ADJUST,
    PROC_PURCHASE,
    RC_APPROVED,
    RESPONSE_CODES,
    TRANSIENT_RCS,
    BatchItem,
    Message,
    money,
)
from terminal.firmware import (
    CancelTimer,
    CompletionRequested,
    Display,
    Effect,
    JournalRecord,
    Outcome,
    TipAdjustRequested,
)
from terminal.ref_model import SaleStatus, send_and_wait, stan_for
from terminal.ref_state import FirmwareState

ADJUST_TIMER = "adjust"  # waiting for the 0230 of the head of the adjust queue
ADJUSTS_QUEUED_MAX = 16  # completions and tips waiting for the host at once
ADJUST_TRIES_MAX = 60  # sends of one adjust before it is left to manual handling
KIND_COMPLETION = "completion"
KIND_TIP = "tip"
ADJUST_RECORDS = frozenset({"adjust", "adjust_done", "adjust_refused", "adjust_manual"})


@dataclass(frozen=True, slots=True)
class AdjustJob:
    """One completion or tip adjust, as journaled before its first send."""

    kind: str  # KIND_COMPLETION | KIND_TIP
    key: str
    orig_key: str  # the pre-authorisation's key (completion) or the sale's (tip)
    orig_rrn: str
    pan: str
    amount: int  # a completion: what to capture; a tip: the sale's new total
    tip: int  # a tip: the tip keyed (0 for a completion)
    stan: int
    sale_no: int
    batch_no: int

    def record(self) -> dict[str, Any]:
        return {
            "type": "adjust",
            "kind": self.kind,
            "key": self.key,
            "orig_key": self.orig_key,
            "orig_rrn": self.orig_rrn,
            "pan": self.pan,
            "amount": self.amount,
            "tip": self.tip,
            "stan": self.stan,
            "sale_no": self.sale_no,
            "batch_no": self.batch_no,
        }

    @staticmethod
    def from_record(r: JournalRecord) -> AdjustJob:
        return AdjustJob(
            str(r["kind"]),
            str(r["key"]),
            str(r["orig_key"]),
            str(r["orig_rrn"]),
            str(r["pan"]),
            int(r["amount"]),
            int(r["tip"]),
            int(r["stan"]),
            int(r["sale_no"]),
            int(r["batch_no"]),
        )


@dataclass(frozen=True, slots=True)
class Capture:
    """A completion the host approved: a debit of its batch (tips raise `amount`)."""

    key: str
    stan: int
    amount: int
    rrn: str
    pan: str
    batch_no: int
    preauth_key: str
    base: int  # what was captured, before any tip


class AdjustFlow(FirmwareState):
    """See the module doc: a base of `ReferenceFirmware`, using its state."""

    def _reset_adjusts(self) -> None:
        self._adjusts: dict[str, AdjustJob] = {}  # queued, oldest first; head is sent
        self._adjust_key = ""
        self._adjust_tries = 0
        self._completions: dict[str, str] = {}  # preauth key -> its completion's key
        self._captures: dict[str, Capture] = {}  # approved completions of the open batch
        self._tips: dict[str, int] = {}  # sale (or completion) key -> its new total
        # The last outcome record replayed at boot, and its job: shown again at boot if
        # it is the journal's last record (the power may have failed before its display).
        self._adjust_outcome: tuple[JournalRecord, AdjustJob] | None = None

    # ------------------------------------------------------------ the cashier

    def _on_completion_requested(self, event: CompletionRequested) -> list[Effect]:
        key = self._preauth_key(event.rrn)
        if not key:
            return [Display(Outcome.PROMPT, "COMPLETION REFUSED - NO SUCH PRE-AUTH", event.rrn)]
        if key in self._completions:
            return [Display(Outcome.PROMPT, "COMPLETION REFUSED - ALREADY COMPLETED", event.rrn)]
        hold = self._approvals[key].amount
        amount = event.amount
        if type(amount) is not int or not 0 < amount <= hold:
            return [Display(Outcome.PROMPT, "COMPLETION REFUSED - INVALID AMOUNT", event.rrn)]
        sale = self._sales[key]
        job = self._new_adjust(KIND_COMPLETION, key, event.rrn, sale.pan, amount, 0)
        if isinstance(job, str):
            return [Display(Outcome.PROMPT, job, event.rrn)]
        self._completions[key] = job.key
        return self._start_adjust(job, "COMPLETING")

    def _on_tip_requested(self, event: TipAdjustRequested) -> list[Effect]:
        found = self._tip_target(event.rrn)
        if isinstance(found, str):
            return [Display(Outcome.PROMPT, f"TIP REFUSED - {found}", event.rrn)]
        key, pan, base = found
        tip = event.tip
        if type(tip) is not int or not 0 <= tip <= base:
            return [Display(Outcome.PROMPT, "TIP REFUSED - INVALID AMOUNT", event.rrn)]
        if any(j.orig_key == key for j in self._adjusts.values()):
            return [Display(Outcome.PROMPT, "TIP REFUSED - TIP PENDING", event.rrn)]
        job = self._new_adjust(KIND_TIP, key, event.rrn, pan, self._tip_total(base, tip), tip)
        if isinstance(job, str):
            return [Display(Outcome.PROMPT, job, event.rrn)]
        return self._start_adjust(job, "ADDING TIP")

    def _preauth_key(self, rrn: str) -> str:
        """The key of the standing (approved) pre-authorisation with RRN `rrn`, or ""."""
        for key, approval in self._approvals.items():
            if approval.rrn != rrn or not rrn:
                continue
            sale = self._sales.get(key)
            if sale is not None and sale.preauth and self._status.get(key) is SaleStatus.APPROVED:
                return key
        return ""

    def _tip_target(self, rrn: str) -> tuple[str, str, int] | str:
        """The sale a tip names (key, card, amount without tip), or why there is none.
        A completed pre-authorisation may be named by its completion's RRN or its own."""
        if not rrn:
            return "NO SUCH SALE"
        for cap in self._captures.values():
            held = self._approvals.get(cap.preauth_key)
            if cap.rrn == rrn or (held is not None and held.rrn == rrn):
                status = self._status.get(cap.key, SaleStatus.APPROVED)
                if cap.key in self._voids or status is not SaleStatus.APPROVED:
                    return "SALE NOT APPROVED"  # voided (or being voided)
                if self._credited.get(cap.key, 0):
                    return "SALE REFUNDED"
                return cap.key, cap.pan, cap.base  # a completion, or the hold it captured
        for key, approval in self._approvals.items():
            if approval.rrn != rrn:
                continue
            sale = self._sales.get(key)
            if sale is None or sale.preauth or sale.wallet:
                return "NOT A CARD SALE"
            if self._status.get(key) is not SaleStatus.APPROVED or key in self._voids:
                return "SALE NOT APPROVED"
            if sale.batch_no != self._open_batch_no:
                return "BATCH CLOSED"
            if self._credited.get(key, 0):
                return "SALE REFUNDED"
            return key, sale.pan, approval.amount
        return "BATCH CLOSED" if rrn in self._sale_refs else "NO SUCH SALE"

    def _new_adjust(
        self, kind: str, orig_key: str, orig_rrn: str, pan: str, amount: int, tip: int
    ) -> AdjustJob | str:
        """A new journaled adjust, or why none may start now."""
        if len(self._adjusts) >= ADJUSTS_QUEUED_MAX:
            return "ADJUSTS PENDING - TRY LATER"
        if self._batch is not None:
            return "BATCH CLOSING - TRY LATER"
        self._sale_no += 1
        sale_no = self._sale_no
        return AdjustJob(
            kind,
            self._make_key(sale_no),
            orig_key,
            orig_rrn,
            pan,
            amount,
            tip,
            stan_for(sale_no),
            sale_no,
            self._open_batch_no,
        )

    def _start_adjust(self, job: AdjustJob, text: str) -> list[Effect]:
        self._adjusts[job.key] = job
        effects: list[Effect] = [
            self._journal(job.record()),  # the key exists durably before anything is sent
            Display(Outcome.PENDING, text),
        ]
        return effects + self._pump_adjusts()

    # ------------------------------------------------------------ hooks (zoo seams)

    def _tip_total(self, base: int, tip: int) -> int:
        """Field 4 of a tip adjust: the sale's new total (never the tip alone)."""
        return base + tip

    def _adjust_wire_amount(self, job: AdjustJob) -> int:
        """Field 4 of every send of `job`: what was journaled, however often it is sent."""
        return job.amount

    def _adjust_resend_key(self, job: AdjustJob) -> str:
        """The key a resend of `job` goes under: always its journaled key."""
        return job.key

    def _adjust_refused_shown(self, job: AdjustJob, msg: Message) -> list[Effect] | None:
        """What a refusal of `job` shows (None: the reference's REFUSED prompt)."""
        return None

    # ------------------------------------------------------------ the queue

    def _pump_adjusts(self) -> list[Effect]:
        if self._adjust_key or not self._adjusts:
            return []
        self._adjust_key = next(iter(self._adjusts))
        self._adjust_tries = 0
        return self._send_adjust()

    def _send_adjust(self) -> list[Effect]:
        job = self._adjusts[self._adjust_key]
        self._adjust_tries += 1
        cfg = self.config
        repeat = self._adjust_tries > 1
        msg = Message(
            MTI_ADVICE,
            cfg.terminal_id,
            cfg.merchant_id,
            job.stan,
            pan=job.pan,
            processing_code=PROC_PURCHASE if job.kind == KIND_COMPLETION else PROC_ADJUST,
            amount=self._adjust_wire_amount(job),
            idem_key=self._adjust_resend_key(job) if repeat else job.key,
            orig_key=job.orig_key,
            repeat=repeat,
        )
        return send_and_wait(cfg, msg, ADJUST_TIMER, self._adjust_tries)

    def _on_adjust_timeout(self) -> list[Effect]:
        key = self._adjust_key
        if not key or key not in self._adjusts:
            return []
        if self._adjust_tries < ADJUST_TRIES_MAX:
            return self._send_adjust()
        job = self._adjusts[key]
        return self._adjust_over(job, {"type": "adjust_manual", "key": key})

    def _is_adjust_answer(self, msg: Message) -> bool:
        """Is this 0230 an answer to a completion or tip (not to an offline advice)?"""
        return bool(msg.orig_key) or msg.processing_code == PROC_ADJUST

    def _on_adjust_response(self, msg: Message) -> list[Effect]:
        job = self._adjusts.get(msg.idem_key)
        if (
            job is None
            or msg.stan != job.stan
            or msg.orig_key != job.orig_key
            or msg.amount != job.amount
            or msg.pan != job.pan
        ):
            return []  # not ours, or an answer to an adjust already over
        if msg.rc in TRANSIENT_RCS:
            return []  # nothing booked: the timer sends it again, same key
        if msg.rc != RC_APPROVED:
            shown = self._adjust_refused_shown(job, msg)
            if shown is not None:
                return shown
            return self._adjust_over(job, {"type": "adjust_refused", "key": job.key, "rc": msg.rc})
        return self._adjust_approved(job, msg.rrn)

    def _adjust_approved(self, job: AdjustJob, rrn: str) -> list[Effect]:
        """The host booked `job`: journal it, then show it."""
        self._apply_adjust_done(job, rrn)
        return self._adjust_over(job, {"type": "adjust_done", "key": job.key, "rrn": rrn})

    def _adjust_shown(self, job: AdjustJob, record: JournalRecord) -> Display:
        """What the outcome `record` of `job` shows, naming the sale the cashier named."""
        kind = record["type"]
        if kind == "adjust_done" and job.kind == KIND_COMPLETION:
            return Display(Outcome.COMPLETED, "COMPLETED", job.orig_rrn, job.amount)
        if kind == "adjust_done":
            text = f"TIP {money(job.tip)} ADDED - TOTAL {money(job.amount)}"
            return Display(Outcome.TIP_ADDED, text, job.orig_rrn, job.amount)
        what = "COMPLETION" if job.kind == KIND_COMPLETION else "TIP"
        if kind == "adjust_manual":
            text = f"{what} NOT CONFIRMED - CALL THE ACQUIRER"
            return Display(Outcome.PROMPT, text, job.orig_rrn)
        rc = str(record["rc"])
        reason = RESPONSE_CODES.get(rc, f"code {rc}").upper()
        return Display(Outcome.PROMPT, f"{what} REFUSED - {reason}", job.orig_rrn)

    def _apply_adjust_done(self, job: AdjustJob, rrn: str) -> None:
        if job.kind == KIND_COMPLETION:
            self._captures[job.key] = Capture(
                job.key, job.stan, job.amount, rrn, job.pan, job.batch_no, job.orig_key, job.amount
            )
            self._status[job.orig_key] = SaleStatus.CAPTURED
        else:
            self._tips[job.orig_key] = job.amount
            cap = self._captures.get(job.orig_key)
            if cap is not None:
                self._captures[job.orig_key] = replace(cap, amount=job.amount)

    def _adjust_over(self, job: AdjustJob, record: dict[str, Any]) -> list[Effect]:
        """`job` is over: its outcome journaled, then shown at once (before anything the
        next adjust or a waiting batch close does, which a power cut could cut short)."""
        self._adjusts.pop(job.key, None)
        if record["type"] != "adjust_done" and job.kind == KIND_COMPLETION:
            self._completions.pop(job.orig_key, None)
        effects: list[Effect] = [self._journal(record), self._adjust_shown(job, record)]
        if job.key == self._adjust_key:
            self._adjust_key = ""
            effects.append(CancelTimer(ADJUST_TIMER))
        effects += self._pump_adjusts()
        if self._batch_wanted:
            effects += self._maybe_start_batch()
        return effects

    # ------------------------------------------------------------ batch and boot

    def _sale_total(self, key: str, amount: int) -> int:
        """A sale's batch amount: its new total once a tip was set, else `amount`."""
        return self._tips.get(key, amount)

    def _batch_captures(self) -> list[BatchItem]:
        """Approved completions of the open batch (tips included): debits of the 0500."""
        return [
            BatchItem(c.stan, c.amount, c.rrn)
            for c in self._captures.values()
            if c.batch_no == self._open_batch_no
            # (not voided: a void's reversal marks it REVERSING, then REVERSED)
            and self._status.get(c.key, SaleStatus.APPROVED) is SaleStatus.APPROVED
        ]

    def _carry_adjusts(self) -> tuple[list[Effect], set[str]]:
        """At a batch close (before the journal is trimmed): re-journal the holds still
        standing, so they can be completed in a later batch. Returns the effects and
        the keys to keep."""
        effects: list[Effect] = []
        keep: set[str] = set()
        for key, sale in self._sales.items():
            if not sale.preauth or self._status.get(key) is not SaleStatus.APPROVED:
                continue
            keep.add(key)
            if key in self._pending_receipts:
                continue  # carried with the receipts owed (batch_flow.py)
            effects.append(self._journal(sale.record()))
            effects.append(self._journal(self._approvals[key].record()))
            # Its receipt was printed: say so again, or a reboot would print it again.
            effects.append(self._journal({"type": "printed", "key": key}))
        self._captures = {}
        self._tips = {}
        self._completions = {k: v for k, v in self._completions.items() if k in keep}
        return effects, keep

    def _replay_adjust(self, kind: str, record: JournalRecord) -> None:
        """Apply one adjust journal record (see ADJUST_RECORDS)."""
        key = str(record["key"])
        if kind == "adjust":
            job = AdjustJob.from_record(record)
            self._adjusts[key] = job
            if job.kind == KIND_COMPLETION:
                self._completions[job.orig_key] = key
            self._sale_no = max(self._sale_no, job.sale_no)
            return
        job_done = self._adjusts.pop(key, None)
        if job_done is None:
            return
        self._adjust_outcome = (record, job_done)
        if kind == "adjust_done":
            self._apply_adjust_done(job_done, str(record["rrn"]))
        elif job_done.kind == KIND_COMPLETION:
            self._completions.pop(job_done.orig_key, None)

    def _adjust_recover(self) -> list[Effect]:
        """At boot: show again the outcome the power may have cut off (its record is the
        journal's last), then go on with the queue."""
        outcome = self._adjust_outcome
        effects: list[Effect] = []
        if outcome is not None and outcome[0] is self._last_record:
            effects.append(self._adjust_shown(outcome[1], outcome[0]))
        return effects + self._pump_adjusts()
