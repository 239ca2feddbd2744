"""The reference firmware's reversal queue (moved out of terminal/reference.py).

A sale whose outcome is unknown or refused after the host charged it is reversed: the
reversal is journaled before anything is shown, queued, sent one at a time until the
host answers 00 or 25, and retried across power cuts; after `reversal_max_tries` it is
left for a human (`REVERSAL MANUAL`).
"""

from __future__ import annotations

from acquirer.protocol import (
    MTI_REVERSAL,
    PROC_PURCHASE,
    PROC_WALLET,
    RC_REVERSAL_REFUSED,
    Message,
    sign,
)
from terminal.firmware import (
    CancelTimer,
    Display,
    Effect,
    Outcome,
    Send,
    SetTimer,
)

# The inquiry flow's constants, where they were before it had a module of its own.
from terminal.inquiry_flow import WALLET_QUERIES_MAX as WALLET_QUERIES_MAX
from terminal.inquiry_flow import WALLET_QUERY_DELAY_MS as WALLET_QUERY_DELAY_MS
from terminal.ref_model import (
    _REVERSAL_DONE_RCS,
    REVERSAL_TIMER,
    Sale,
    SaleStatus,
    reversal_record,
)
from terminal.ref_state import FirmwareState


class ReversalFlow(FirmwareState):
    """See the module doc: a base of `ReferenceFirmware`, using its state."""

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
        # A cashier's void given up on names its sale: the answer to that void.
        void = self._voids.get(key)
        effects += [
            self._journal({"type": "reversal_manual", "key": key}),
            Display(Outcome.PROMPT, "REVERSAL NEEDS MANUAL HANDLING", void.rrn if void else ""),
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
            voided = self._void_refused(key)  # a void too late: refund it instead
            if voided is not None:
                return voided
            # The host holds an original that differs from this reversal (amount or
            # card): retrying cannot succeed, a human must look at it.
            return self._reversal_manual(key)
        if msg.rc not in _REVERSAL_DONE_RCS:
            return []  # refused for now: the timer will try again
        self._reversals.pop(key)
        self._reversal_reasons.pop(key, None)
        self._status[key] = SaleStatus.REVERSED
        # The cashier's void is shown before it is journaled: resent after a power
        # cut, the host answers "already reversed" and it is shown again.
        effects: list[Effect] = [
            *self._void_done(key),
            self._journal({"type": "reversed", "key": key}),
        ]
        if key == self._reversal_key:
            self._reversal_key = ""
            effects.append(CancelTimer(REVERSAL_TIMER))
        return effects + self._after_reversal()

    def _after_reversal(self) -> list[Effect]:
        effects = self._pump_reversals()
        if self._batch_wanted:
            effects += self._maybe_start_batch()
        return effects
