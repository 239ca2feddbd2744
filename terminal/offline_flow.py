"""The reference firmware's offline approvals (store-and-forward, deferred authorisation).

A terminal configured with `offline_floor` > 0 approves a card sale offline when the
host does not answer it (the last send and the status inquiry timed out) and the
sale is within the limits: at most `offline_floor` minor units, fewer than
`offline_max` offline sales waiting for upload. Then, in this order:

1. the offline approval is journaled (`offline_approved`: key, at_ms) BEFORE the
   APPROVED display (naming the sale by its key) and BEFORE the receipt prints, so no
   power cut can leave a receipt whose sale the terminal forgot;
2. the sale is uploaded as an advice (0220) with the sale's own idempotency key and
   STAN, the time it was approved offline (`offline_ms`) and rc Y3, one at a time,
   oldest first, resent with the same key (a lost 0230 is answered on the resend with
   the host's stored answer, so the sale is charged once) until the host answers;
3. the 0230 is journaled (`offline_uploaded`): 00 books it (it goes into the batch
   with the host's RRN); any other final code is a late decline (or, RC EX, too late)
   and is shown to the merchant (`OFFLINE_DECLINED` / `OFFLINE_EXPIRED`, naming the
   sale), who must collect the money another way;
4. a sale still not uploaded shortly before its deadline (twice the longest wait between
   two uploads, see `_offline_cutoff`) is expired: journaled (`offline_expired`), its
   reversal journaled, shown (`OFFLINE_EXPIRED`), and the reversal sent until answered,
   like every reversal: the sale's 0200 (or an advice still on its way) may have
   charged the card, and nothing of it may stand once the merchant is told to collect
   the money another way. One whose advice is on its way is expired only when that
   advice's wait is over;
5. the batch close waits until the queue is empty, so no upload races the 0500.

The deadline outlives a power cut: the approval time comes from the real-time clock
(`TimerExpired.clock_ms`, `Boot.clock_ms`), and at boot the queue is rebuilt from the
journal, overdue sales expired at once, the rest uploaded. A sale is approved offline
only on a timer event (the firmware then knows the time); a host that answers is
reachable, and its answers are acted on as usual.
"""

from __future__ import annotations

from acquirer.protocol import (
    MTI_ADVICE,
    RC_ADVICE_EXPIRED,
    RC_APPROVED,
    RC_OFFLINE_APPROVED,
    RESPONSE_CODES,
    TRANSIENT_RCS,
    Message,
    money,
)
from terminal.firmware import (
    CancelTimer,
    Display,
    Effect,
    JournalRecord,
    Outcome,
    SetTimer,
)
from terminal.ref_model import (
    RECEIPTS_PENDING_MAX,
    Approval,
    Sale,
    SaleStatus,
    send_and_wait,
)
from terminal.ref_state import FirmwareState

ADVICE_TIMER = "advice"  # waiting for the 0230 of the head of the upload queue
OFFLINE_TIMER = "offline-expiry"  # the next look at the upload deadlines
# However many the configuration allows, no more offline sales wait than this.
OFFLINE_QUEUE_MAX = 100
# A sale is expired this many of its longest waits (response timeout, retry backoff)
# before its deadline: an advice sent later might reach the host after it, and the
# wait for an advice already on its way may still run (slower by clock drift).
OFFLINE_CUTOFF_WAITS = 2
# The deadline timer is re-armed for half the time left (at least this long), so a
# timer that runs slow (clock drift) still fires before the cutoff.
OFFLINE_RECHECK_MIN_MS = 1_000
OFFLINE_RECORDS = frozenset({"offline_approved", "offline_uploaded", "offline_expired"})


class OfflineFlow(FirmwareState):
    """See the module doc: a base of `ReferenceFirmware`, using its state."""

    _offline: dict[str, int]  # key -> when it was approved offline, oldest first
    _advice_key: str  # the head being uploaded ("" = none)
    _advice_tries: int
    _now_ms: int  # the current event's clock (0: it carries none)

    def _offline_reset(self) -> None:
        self._offline = {}
        self._advice_key = ""
        self._advice_tries = 0
        # Not volatile state but the current event's clock: `Boot` sets it before the
        # reset that boot does, and recovery needs it.
        self._now_ms = getattr(self, "_now_ms", 0)

    # ------------------------------------------------------------ approving

    def _offline_allowed(self, sale: Sale) -> bool:
        """May the sale in flight, whose host did not answer, be approved offline?"""
        cfg = self.config
        return (
            cfg.offline_floor > 0
            and self._now_ms > 0
            and not sale.wallet
            and not sale.preauth  # a hold is never placed offline
            and 0 < sale.amount <= cfg.offline_floor
            and len(self._offline) < min(cfg.offline_max, OFFLINE_QUEUE_MAX)
            and len(self._pending_receipts) < RECEIPTS_PENDING_MAX
        )

    def _approve_offline(self, sale: Sale) -> list[Effect]:
        """Journal the offline approval, then show it, then print it, then upload."""
        effects = self._close_sale()
        key = sale.key
        approval = Approval(key, "", "", sale.amount)
        self._offline[key] = self._now_ms
        self._approvals[key] = approval
        self._status[key] = SaleStatus.OFFLINE
        self._pending_receipts[key] = None
        self._last_receipt_key = key
        effects += self._record_offline(sale, self._now_ms)
        effects += [self._approved_display("APPROVED", approval), self._print(key, copy=False)]
        effects += self._offline_arm() + self._pump_advices()
        return effects + self._after_sale()

    def _record_offline(self, sale: Sale, at_ms: int) -> list[Effect]:
        """The durable half of an offline approval (a zoo seam)."""
        return [self._journal({"type": "offline_approved", "key": sale.key, "at_ms": at_ms})]

    # ------------------------------------------------------------ uploading

    def _pump_advices(self) -> list[Effect]:
        """Start on the head of the queue if nothing is being uploaded."""
        if self._advice_key or not self._offline:
            return []
        self._advice_key = next(iter(self._offline))
        self._advice_tries = 0
        return self._send_advice()

    def _advice_idem_key(self, sale: Sale) -> str:
        """The key an advice carries: always the sale's own (a zoo seam)."""
        return sale.key

    def _send_advice(self) -> list[Effect]:
        key = self._advice_key
        sale = self._sales.get(key)
        if sale is None:
            return []
        self._advice_tries += 1
        cfg = self.config
        msg = Message(
            MTI_ADVICE,
            cfg.terminal_id,
            cfg.merchant_id,
            sale.stan,
            pan=sale.pan,
            processing_code=self._purchase_code(),
            amount=self._wire_amount(sale.amount),
            rc=RC_OFFLINE_APPROVED,
            idem_key=self._advice_idem_key(sale),
            repeat=self._advice_tries > 1,
            offline_ms=self._offline[key],
        )
        return send_and_wait(cfg, msg, ADVICE_TIMER, self._advice_tries)

    def _on_advice_timeout(self) -> list[Effect]:
        """No 0230 in time: the same advice again (same key), unless it is due to
        expire (its wait is over now)."""
        if self._advice_key not in self._offline:
            return []
        effects = self._expire_due(in_flight=True)
        if self._advice_key in self._offline:
            effects += self._send_advice()
        return effects + self._after_offline() if effects else effects

    def _on_advice_response(self, msg: Message) -> list[Effect]:
        key = self._match_advice(msg)
        if not key or msg.rc in TRANSIENT_RCS:
            return []  # not ours, or not final: the timer sends it again
        sale = self._sales[key]
        effects: list[Effect] = self._dequeue_advice(key)
        record: dict[str, object] = {"type": "offline_uploaded", "key": key, "rc": msg.rc}
        if msg.rc == RC_APPROVED:
            approval = Approval(key, msg.rrn, msg.auth_code, self._wire_amount(sale.amount))
            self._approvals[key] = approval
            self._status[key] = SaleStatus.APPROVED
            record.update(rrn=msg.rrn, auth_code=msg.auth_code, amount=approval.amount)
            effects.append(self._journal(record))
        else:
            effects += self._offline_refused(sale, record, msg.rc)
        return effects + self._after_offline()

    def _match_advice(self, msg: Message) -> str:
        """The queued sale a 0230 answers (key, STAN and amount echoed), or ""."""
        sale = self._sales.get(msg.idem_key)
        if (
            sale is None
            or msg.idem_key not in self._offline
            or msg.stan != sale.stan
            or msg.amount != self._wire_amount(sale.amount)
        ):
            return ""
        return sale.key

    def _offline_refused(self, sale: Sale, record: dict[str, object], rc: str) -> list[Effect]:
        """A late decline (or RC EX): journaled, then shown to the merchant."""
        self._status[sale.key] = SaleStatus.DECLINED
        self._pending_receipts.pop(sale.key, None)
        outcome = Outcome.OFFLINE_EXPIRED if rc == RC_ADVICE_EXPIRED else Outcome.OFFLINE_DECLINED
        why = RESPONSE_CODES.get(rc, f"code {rc}").upper()
        text = f"OFFLINE SALE {money(sale.amount)} DECLINED ({why}) - COLLECT PAYMENT"
        return [self._journal(record), Display(outcome, text, key=sale.key)]

    def _dequeue_advice(self, key: str) -> list[Effect]:
        self._offline.pop(key, None)
        if key != self._advice_key:
            return []
        self._advice_key = ""
        return [CancelTimer(ADVICE_TIMER)]

    def _after_offline(self) -> list[Effect]:
        effects = self._offline_arm() + self._pump_advices()
        if self._batch_wanted:
            effects += self._maybe_start_batch()
        return effects

    # ------------------------------------------------------------ deadlines

    def _offline_cutoff(self, at_ms: int) -> int:
        """When a sale approved offline at `at_ms` is expired if still not uploaded."""
        cfg = self.config
        longest = max(cfg.response_timeout_ms, *cfg.reversal_backoff_ms)
        return at_ms + cfg.offline_deadline_ms - OFFLINE_CUTOFF_WAITS * longest

    def _offline_arm(self) -> list[Effect]:
        """Set the deadline timer for the oldest waiting sale (none: cancel it)."""
        if not self._offline:
            return [CancelTimer(OFFLINE_TIMER)]
        if not self._now_ms:
            return []  # no clock now: the timer already set (or set at boot) stands
        due = min(self._offline_cutoff(at) for at in self._offline.values())
        left = max(0, due - self._now_ms)
        return [SetTimer(OFFLINE_TIMER, max(left // 2, OFFLINE_RECHECK_MIN_MS))]

    def _on_offline_timer(self) -> list[Effect]:
        """Expire every sale past its cutoff (visibly), then look again later."""
        effects = self._expire_due()
        return effects + self._after_offline()

    def _expire_due(self, in_flight: bool = False) -> list[Effect]:
        """Expire every sale past its cutoff, but the one whose advice is on its way
        (unless `in_flight`: its wait is over)."""
        now = self._now_ms
        effects: list[Effect] = []
        if not now:
            return effects
        for key, at_ms in list(self._offline.items()):
            if now < self._offline_cutoff(at_ms):
                continue
            if key == self._advice_key and self._advice_tries and not in_flight:
                continue  # expired when its advice's wait is over (or booked)
            effects += self._expire(key)
        return effects

    def _expire(self, key: str) -> list[Effect]:
        """Expire offline sale `key`: journaled (the record alone also means its reversal,
        see `_replay_offline`), shown at once, then its reversal journaled and sent (its
        0200, or an advice on its way, may have charged)."""
        sale = self._sales[key]
        effects = self._dequeue_advice(key)
        self._status[key] = SaleStatus.DECLINED
        self._pending_receipts.pop(key, None)
        effects.append(self._journal({"type": "offline_expired", "key": key}))
        effects.append(self._expired_display(sale))
        effects += self._record_reversal_pending(sale)
        return effects + self._enqueue_reversal(sale)

    def _expired_display(self, sale: Sale) -> Display:
        text = f"OFFLINE SALE {money(sale.amount)} EXPIRED - NOT UPLOADED - COLLECT PAYMENT"
        return Display(Outcome.OFFLINE_EXPIRED, text, key=sale.key)

    # ------------------------------------------------------------ boot

    def _replay_offline(self, kind: object, record: JournalRecord) -> None:
        """Apply one offline journal record (see `OFFLINE_RECORDS`)."""
        key = str(record["key"])
        sale = self._sales.get(key)
        if kind == "offline_approved" and sale is not None:
            if self._status.get(key) is not SaleStatus.IN_FLIGHT:
                return  # a record replayed after its outcome
            self._offline[key] = int(record["at_ms"])
            self._approvals[key] = Approval(key, "", "", sale.amount)
            self._status[key] = SaleStatus.OFFLINE
            self._pending_receipts[key] = None
            self._last_receipt_key = key
        elif kind == "offline_uploaded":
            self._offline.pop(key, None)
            if record["rc"] == RC_APPROVED:
                amount = int(record["amount"])
                rrn, auth_code = str(record["rrn"]), str(record["auth_code"])
                self._approvals[key] = Approval(key, rrn, auth_code, amount)
                self._status[key] = SaleStatus.APPROVED
            else:
                self._status[key] = SaleStatus.DECLINED
                self._pending_receipts.pop(key, None)
        elif kind == "offline_expired":
            self._offline.pop(key, None)
            self._status[key] = SaleStatus.DECLINED
            self._pending_receipts.pop(key, None)
            # Its reversal: the reversal_pending record that follows says the same, but
            # the power may fail between the two writes.
            if sale is not None:
                self._reversals[key] = sale
                self._status[key] = SaleStatus.REVERSING

    def _offline_recover(self) -> list[Effect]:
        """At boot: show an expiry the power may have cut off (its record is the journal's
        last), expire what is overdue, arm the deadline timer, upload the rest."""
        effects: list[Effect] = []
        last = self._last_record
        if last is not None and last.get("type") == "offline_expired":
            sale = self._sales.get(str(last["key"]))
            if sale is not None:
                effects.append(self._expired_display(sale))
        if not self._offline:
            return effects
        return effects + self._expire_due() + self._offline_arm() + self._pump_advices()
