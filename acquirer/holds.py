"""Pre-authorisation, completion and tip adjust: the host's side (issue 15), kept out of
acquirer/host.py, which only dispatches here.

* A **pre-authorisation** (0100) is claimed and decided exactly like a purchase (the
  same idempotency record, card rules, catalogue amounts and balance), but on approval
  it is stored as kind `preauth` and its amount is moved from the card to the host's
  `HOLDS_ACCOUNT`: held, not charged. It is in no batch.
* A reversal (0400/0420) of an approved pre-authorisation **releases** the hold (holds
  -> card, acquirer/reversals.py); one of a completed pre-authorisation is refused RC 12.
* A **completion** (0220 with `orig_key` naming the pre-authorisation, its own
  `idem_key`, processing code 000000, no `offline_ms`) captures at most the amount held:
  in one transaction a `completion` transaction is stored and linked to the hold (table
  `completions`, whose UNIQUE `preauth_txn_id` forbids a second completion of one hold),
  the pre-authorisation becomes `completed`, the hold goes back to the card and the
  amount captured goes from the card to the merchant. A completion is a sale from then
  on: a debit in the batch, voided by a 0400 naming its key, refunded by a refund naming
  it.
* A **tip adjust** (0220, processing code 020000, `orig_key` naming an approved purchase
  or completion, `amount` the sale's new total) sets the sale's tip while the sale is in
  the open batch: the difference to the old tip moves between card and merchant, and
  `txns.amount` / `txns.tip` become the new total and tip. Setting the same total twice
  changes nothing. The outcome is stored under the adjust's own key (the dedup row names
  the sale's transaction and RRN), so a resend gets the stored answer.

Everything is in the host's store, so a host restarted between the steps behaves as one
that was not; the hold or sale is found by its key in `txns` once its idempotency record
has expired, as a refund finds its sale (acquirer/refunds.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from acquirer import advice, refunds, store, wallet
from acquirer.host_model import (
    HOLDS_ACCOUNT,
    KIND_ADJUST,
    KIND_COMPLETION,
    KIND_PREAUTH,
    KIND_PURCHASE,
    KIND_REFUND,
    STATUS_COMPLETED,
    HostAction,
    HostTxn,
)
from acquirer.protocol import (
    MTI_ADVICE,
    MTI_PREAUTH,
    PROC_ADJUST,
    PROC_REFUND,
    RC_APPROVED,
    RC_IN_PROGRESS,
    RC_INVALID_AMOUNT,
    RC_REVERSAL_REFUSED,
    Message,
)

if TYPE_CHECKING:
    from acquirer.host import Acquirer

# What a refund or tip adjust may name as its sale.
SALE_KINDS = (KIND_PURCHASE, KIND_COMPLETION)


def names_original(msg: Message) -> bool:
    """Is `msg` a completion or tip adjust (a 0220 naming its hold or sale)?"""
    return msg.mti == MTI_ADVICE and bool(msg.orig_key)


def kind_of(msg: Message) -> str:
    """The kind of transaction request `msg` stores."""
    if msg.processing_code == PROC_REFUND:
        return KIND_REFUND
    if msg.mti == MTI_PREAUTH:
        return KIND_PREAUTH
    if msg.mti == MTI_ADVICE and msg.orig_key:
        # An adjust stores no transaction of its own, except the declined row of one
        # whose key a reversal blocked first (the tombstone, acquirer/reversals.py).
        return KIND_ADJUST if msg.processing_code == PROC_ADJUST else KIND_COMPLETION
    return KIND_PURCHASE


def credit_account(merchant: str, msg: Message) -> str:
    """The account an approved charge of `msg` is credited to: a hold goes to the holds
    account, anything else to the merchant."""
    return HOLDS_ACCOUNT if msg.mti == MTI_PREAUTH else merchant


def finish(
    host: Acquirer, req: Message, started_ms: int, now_ms: int
) -> tuple[Message, HostAction]:
    """Finish a 0100 or 0220: a pre-authorisation, a completion, a tip adjust or an
    offline advice (acquirer/advice.py)."""
    from acquirer import payments

    if req.mti == MTI_PREAUTH:
        resp, action = payments.finish(host, req, started_ms, now_ms)
        if action.action in ("charge", "charge-no-reply"):
            # Amount 9800 ("approved, never answered") is a purchase's convention only.
            action = HostAction("hold", action.rc, action.rrn, action.amount, "Hold placed.")
        return resp, action
    if not req.orig_key:
        return advice.finish_advice(host, req, started_ms, now_ms)
    host._tx_begin()
    try:
        if req.processing_code == PROC_ADJUST:
            answer = _adjust(host, req, started_ms, now_ms)
        else:
            answer = _complete(host, req, started_ms, now_ms)
        host._tx_commit()
    except BaseException:
        host._tx_rollback()
        raise
    if answer[1].action == "capture":
        host._next_txn_id += 1
    return answer


def _named(host: Acquirer, req: Message, by_key: str, now_ms: int) -> tuple[HostTxn | None, bool]:
    """The transaction `req.orig_key` names at this terminal, locked (PostgreSQL), and
    whether that key is still being processed (inside the caller's transaction)."""
    tid = req.terminal_id
    rec = host._dedup_get(tid, "k:" + req.orig_key, now_ms)
    if rec is None:
        # The key's idempotency record expired: the transaction itself never is.
        row = host._db.execute(by_key, (tid, req.orig_key)).fetchone()
        txn_id = None if row is None else int(row[0])
    elif rec.state == store.DEDUP_PROGRESS:
        return None, True
    else:
        txn_id = rec.txn_id
    if txn_id is None:
        return None, False
    row = host._db.execute(store.SQL_TXN_LOCK, (txn_id, tid)).fetchone()
    txn = None if row is None else HostTxn(*row)
    # A tip adjust's record names its sale's transaction: its key names no transaction.
    return (txn if txn is not None and txn.idem_key == req.orig_key else None), False


def _store(
    host: Acquirer, req: Message, started_ms: int, rc: str, rrn: str, auth: str, txn_id: int | None
) -> None:
    """Store the outcome of completion or adjust `req` under its own key."""
    from acquirer.payments import DAY_MS, dedup_key, fingerprint

    key = dedup_key(req, started_ms // DAY_MS)
    host._db.execute(
        store.SQL_DEDUP_DONE,
        (req.terminal_id, key, fingerprint(req), started_ms, rc, rrn, auth, txn_id),
    )


def _busy(host: Acquirer, req: Message, started_ms: int) -> tuple[Message, HostAction]:
    """The hold or sale named is still being processed: RC 09, nothing stored."""
    from acquirer.payments import DAY_MS, dedup_key

    key = dedup_key(req, started_ms // DAY_MS)
    host._db.execute(store.SQL_DEDUP_DELETE_PROGRESS, (req.terminal_id, key))
    return host._reply(req, RC_IN_PROGRESS), HostAction(
        "in-progress",
        RC_IN_PROGRESS,
        amount=req.amount,
        detail="The transaction it names is still being processed. Transient, not stored.",
    )


def _refuse(
    host: Acquirer, req: Message, started_ms: int, kind: str, rc: str, rrn: str, why: str
) -> tuple[Message, HostAction]:
    """Refuse completion or adjust `req` (RC 12 or 13), stored, nothing moved."""
    _store(host, req, started_ms, rc, rrn, "", None)
    return host._reply(req, rc, rrn), HostAction(kind, rc, rrn, req.amount, why)


def completion_refusal(req: Message, hold: HostTxn | None) -> tuple[str, str]:
    """(rc, why) a completion of `hold` is refused, or ("", "") when it is not."""
    if hold is None:
        return RC_REVERSAL_REFUSED, "Completion names no pre-authorisation of this terminal."
    if hold.kind != KIND_PREAUTH:
        return RC_REVERSAL_REFUSED, f"Completion names a {hold.kind}, not a pre-authorisation."
    if hold.status == STATUS_COMPLETED:
        return RC_REVERSAL_REFUSED, f"Pre-authorisation {hold.rrn} already completed."
    if hold.status != "approved":
        return RC_REVERSAL_REFUSED, f"Pre-authorisation {hold.rrn} is {hold.status}, not held."
    if req.pan != hold.pan:
        return RC_REVERSAL_REFUSED, "Completion card differs from the pre-authorisation's."
    if req.amount < 1:
        return RC_INVALID_AMOUNT, "Completion amount must be at least 1."
    if req.amount > hold.amount:
        return (
            RC_INVALID_AMOUNT,
            f"Completion amount {req.amount} exceeds the hold's {hold.amount}.",
        )
    return "", ""


def _complete(
    host: Acquirer, req: Message, started_ms: int, now_ms: int
) -> tuple[Message, HostAction]:
    """Capture the hold `req.orig_key` names (inside the completion's transaction)."""
    hold, busy = _named(host, req, store.SQL_TXN_PREAUTH_BY_KEY, now_ms)
    if busy:
        return _busy(host, req, started_ms)
    rc, why = completion_refusal(req, hold)
    if rc:
        return _refuse(host, req, started_ms, "capture-refused", rc, "", why)
    assert hold is not None  # completion_refusal refuses a missing hold
    db = host._db
    txn_id, rrn = host._insert_txn(req, now_ms, RC_APPROVED)
    auth = wallet.auth_code_of(txn_id)
    db.execute(store.SQL_COMPLETION_LINK, (txn_id, hold.id))
    db.execute(store.SQL_TXN_COMPLETE, (hold.id,))
    host._post(txn_id, HOLDS_ACCOUNT, hold.pan, hold.amount, now_ms)
    host._post(txn_id, req.pan, host._config.merchant_account, req.amount, now_ms)
    _store(host, req, started_ms, RC_APPROVED, rrn, auth, txn_id)
    detail = f"Hold {hold.rrn} captured for {req.amount} of {hold.amount} held."
    return host._reply(req, RC_APPROVED, rrn, auth), HostAction(
        "capture", RC_APPROVED, rrn, req.amount, detail
    )


def adjust_refusal(host: Acquirer, req: Message, sale: HostTxn | None) -> tuple[str, str]:
    """(rc, why) a tip adjust of `sale` to total `req.amount` is refused, or ("", "")."""
    if sale is None:
        return RC_REVERSAL_REFUSED, "Tip adjust names no sale of this terminal."
    if sale.kind not in SALE_KINDS:
        return RC_REVERSAL_REFUSED, f"Tip adjust names a {sale.kind}, not a purchase or completion."
    if sale.status != "approved":
        return RC_REVERSAL_REFUSED, f"Tip adjust names a {sale.status} sale."
    if req.pan != sale.pan:
        return RC_REVERSAL_REFUSED, "Tip adjust card differs from the sale's."
    if sale.batch_no:
        return (
            RC_REVERSAL_REFUSED,
            f"Sale settled in batch {sale.batch_no}: too late to adjust the tip.",
        )
    base, total = sale.amount - sale.tip, req.amount
    if total < base:
        return RC_INVALID_AMOUNT, f"New total {total} is below the sale's base amount {base}."
    if total - base > base:
        return (
            RC_INVALID_AMOUNT,
            f"Tip {total - base} exceeds the base amount {base} (at most 100 %).",
        )
    done = refunds.refunded(host, sale.id)
    if total < done:
        return RC_INVALID_AMOUNT, f"New total {total} is below the {done} already refunded."
    return "", ""


def _adjust(
    host: Acquirer, req: Message, started_ms: int, now_ms: int
) -> tuple[Message, HostAction]:
    """Set the tip of the sale `req.orig_key` names (inside the adjust's transaction)."""
    sale, busy = _named(host, req, store.SQL_TXN_SALE_BY_KEY, now_ms)
    if busy:
        return _busy(host, req, started_ms)
    rc, why = adjust_refusal(host, req, sale)
    if rc:
        rrn = sale.rrn if sale is not None else ""
        return _refuse(host, req, started_ms, "adjust-refused", rc, rrn, why)
    assert sale is not None  # adjust_refusal refuses a missing sale
    total = req.amount
    tip = total - (sale.amount - sale.tip)
    delta = tip - sale.tip
    merchant = host._config.merchant_account
    if delta > 0:
        host._post(sale.id, sale.pan, merchant, delta, now_ms)
    elif delta < 0:
        host._post(sale.id, merchant, sale.pan, -delta, now_ms)
    host._db.execute(store.SQL_TXN_SET_TOTAL, (total, tip, sale.id))
    _store(host, req, started_ms, RC_APPROVED, sale.rrn, "", sale.id)
    return host._reply(req, RC_APPROVED, sale.rrn), HostAction(
        "adjust", RC_APPROVED, sale.rrn, total, f"Tip set to {tip} (total {total})."
    )


def reversal_refusal(req: Message, txn: HostTxn) -> str:
    """Why reversal `req` of `txn` is refused before anything else is checked ("" when
    it is not): a completed hold is voided or refunded through its completion, and a
    tip adjust's key names no transaction (resend the adjust; void the sale by its own
    key)."""
    if req.orig_key and txn.idem_key != req.orig_key:
        return "Reversal names a tip adjust, not a sale: void the sale by its own key."
    if txn.kind == KIND_PREAUTH and txn.status == STATUS_COMPLETED:
        return "Pre-authorisation completed: void or refund the completion instead."
    return ""
