"""The reference firmware's data: timer names, limits, and the records it journals.

Moved out of terminal/reference.py, which re-exports every name here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from acquirer.protocol import (
    BATCH_ITEMS_MAX,
    RC_APPROVED,
    RC_RECONCILE_ERROR,
    RC_UNABLE_TO_LOCATE,
    STAN_MAX,
    Message,
    sign,
)
from terminal.firmware import Effect, FirmwareConfig, Send, SetTimer

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
    OFFLINE = "offline"  # approved offline, not uploaded yet (terminal/offline_flow.py)
    REVERSING = "reversing"
    REVERSED = "reversed"
    REVERSAL_MANUAL = "reversal-manual"
    CAPTURED = "captured"  # a pre-authorisation completed at the host (adjust_flow.py)


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
    preauth: bool = False  # a pre-authorisation (0100): a hold, completed later

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
        if self.preauth:
            record["preauth"] = True
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


def send_and_wait(cfg: FirmwareConfig, msg: Message, timer: str, tries: int) -> list[Effect]:
    """Send `msg` (try number `tries`, from 1) and wait for its answer: the reversal
    back-off for that try, but never less than one response timeout (a shorter wait
    could not hear the answer). Refunds, advices, completions and tips retry this way."""
    backoff = cfg.reversal_backoff_ms
    delay_ms = backoff[min(tries, len(backoff) - 1)] if backoff else 0
    return [
        Send(sign(msg, cfg.mac_key)),
        SetTimer(timer, max(delay_ms, cfg.response_timeout_ms)),
    ]
