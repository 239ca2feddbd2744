"""The mock acquirer's data: its settings, what it did, a request in progress, a
stored transaction, a settlement (moved unchanged out of acquirer/host.py, which
re-exports every name)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from acquirer import advice
from acquirer.protocol import FRESHNESS_WINDOW_MS, BatchItem, Message


@dataclass(frozen=True, slots=True)
class HostConfig:
    """How the mock acquirer behaves."""

    # terminal_id -> MAC key. Unknown terminals and bad MACs get RC 30.
    mac_keys: Mapping[str, bytes]
    # Ledger account credited by purchases (debited by refunds).
    merchant_account: str = "MERCHANT"
    # How long an idempotency record is honoured (24 h, like Stripe).
    idempotency_retention_ms: int = 86_400_000
    # Requests whose transmission time is further than this from the host's clock
    # are refused with RC 63 (0 turns the check off, for unit tests of other rules).
    # Never more than half the retention: see protocol.FRESHNESS_WINDOW_MS.
    freshness_window_ms: int = FRESHNESS_WINDOW_MS
    # Normal time between begin and finish.
    processing_ms: int = 20
    # ":memory:" (default), "" for a private temporary file, or a real path.
    db_path: str = ":memory:"
    # False accepts any terminal and unsigned requests (responses to terminals
    # without a key stay unsigned). Unit tests only: answers to a known terminal are
    # then signed whatever the request, which is exactly what docs/security.md forbids.
    verify_mac: bool = True
    # False turns off the catalogue's amount conventions (500 -> RC 05, ...),
    # for scenarios that draw amounts freely. Card rules always apply.
    test_amounts: bool = True
    # A refund must name the approved sale it refunds (`orig_key`): one that names
    # none would credit any card with any amount, so it is refused (RC 12). True
    # accepts such "unreferenced" refunds as stand-alone credits (a setting for
    # tests of other rules and for acquirers that allow them; docs/security.md).
    unreferenced_refunds: bool = False
    # A wallet order nobody confirms closes unpaid this long after it was created
    # (WeChat Pay closes after about 45 s of waiting, Alipay after a few minutes).
    wallet_close_ms: int = 120_000
    # An offline advice (0220) is refused (RC EX) this long after its offline approval.
    advice_deadline_ms: int = advice.ADVICE_DEADLINE_MS


@dataclass(frozen=True, slots=True)
class HostAction:
    """What the host did for one begin or finish, for the trace."""

    action: str
    rc: str
    rrn: str = ""
    amount: int = 0
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Ticket:
    """A request accepted for processing, to be finished at `finish_at_ms`."""

    request: Message
    started_ms: int
    finish_at_ms: int


@dataclass(frozen=True, slots=True)
class HostTxn:
    """One stored purchase, refund, pre-authorisation or completion outcome."""

    id: int
    rrn: str
    terminal_id: str
    stan: int
    idem_key: str
    kind: str  # "purchase" | "refund" | "preauth" | "completion" (| "adjust": declined only)
    pan: str
    amount: int
    rc: str
    # "approved" | "declined" | "reversed"; wallet orders "paying" | "closed"; a
    # pre-authorisation "completed" once a completion captured it
    status: str
    created_ms: int
    reversed_ms: int = -1
    batch_no: int = 0  # 0 = not settled yet (a pre-authorisation: never)
    # The tip a tip adjust set (a purchase or completion): `amount` is the current total,
    # so the base amount is `amount - tip`.
    tip: int = 0


@dataclass(frozen=True, slots=True)
class Settlement:
    """One batch close. Counts are debits plus credits; amounts are net (debits - credits)."""

    terminal_id: str
    batch_no: int
    terminal_count: int
    terminal_amount: int
    host_count: int
    host_amount: int
    matched: bool
    differing: tuple[BatchItem, ...]
    at_ms: int


KIND_PURCHASE = "purchase"
KIND_REFUND = "refund"
# A hold (0100): the amount moved from the card to `HOLDS_ACCOUNT`, in no batch.
KIND_PREAUTH = "preauth"
# The capture of a hold (a 0220 naming it): a debit in the batch, like a purchase.
KIND_COMPLETION = "completion"
# Only ever a declined row: a tip adjust whose key a reversal had blocked first.
KIND_ADJUST = "adjust"
# A pre-authorisation that a completion captured (it can no longer be released).
STATUS_COMPLETED = "completed"
# Ledger account holding the amounts of open pre-authorisations.
HOLDS_ACCOUNT = "holds"
