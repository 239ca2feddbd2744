"""The host's payments (0200 and the purchases an advice or a completion finishes): the
idempotency record claimed at `begin`, an existing record answered (in progress, a
reversal's tombstone, a key reused for another request, a stored answer replayed),
the decision (card rules, catalogue amounts, balance, partial approval, a refund
against its original) and the charge or credit committed with its record at `finish`
(moved unchanged out of acquirer/host.py, whose `begin` and `finish` call these)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from acquirer import catalogue, holds, refunds, store, wallet
from acquirer.host_model import HostAction, HostTxn, Ticket
from acquirer.protocol import (
    MTI_ADVICE,
    MTI_PURCHASE,
    PROC_PURCHASE_PARTIAL,
    PROC_REFUND,
    PROC_WALLET,
    RC_APPROVED,
    RC_DO_NOT_HONOUR,
    RC_DUPLICATE,
    RC_IN_PROGRESS,
    RC_INSUFFICIENT_FUNDS,
    RC_INVALID_AMOUNT,
    RC_PARTIAL,
    RC_REVERSAL_REFUSED,
    RESPONSE_CODES,
    TRANSIENT_RCS,
    Message,
)

if TYPE_CHECKING:
    from acquirer.host import Acquirer

DAY_MS = 86_400_000


def dedup_key(msg: Message, day: int) -> str:
    """The idempotency record's key: the idempotency key, else the classic identity.

    `validate_request` now refuses key-less purchases and reversals without
    `orig_key`, so only the first form is stored; the second stays for records
    written by earlier versions.
    """
    if msg.idem_key:
        return "k:" + msg.idem_key
    return f"s:{day}:{msg.stan}"


def fingerprint(msg: Message) -> str:
    """What must match for a resend to count as the same request."""
    # An advice is the sale its 0200 asked for: the same fingerprint, the same key (a
    # completion or tip adjust, a 0220 naming its original, is a request of its own).
    mti = MTI_PURCHASE if msg.mti == MTI_ADVICE and not msg.orig_key else msg.mti
    fp = f"{mti}|{msg.processing_code}|{msg.pan}|{msg.amount}|{msg.currency}|{msg.merchant_id}"
    # A refund's original is part of the request (appended only when set, so records
    # stored before refunds could name one keep their fingerprints).
    return f"{fp}|{msg.orig_key}" if msg.orig_key else fp


def begin(host: Acquirer, msg: Message, now_ms: int) -> tuple[Ticket | Message, HostAction | None]:
    tid = msg.terminal_id
    key = dedup_key(msg, now_ms // DAY_MS)
    fp = fingerprint(msg)
    db = host._db
    host._tx_begin()
    try:
        if now_ms >= host._next_prune_ms:
            host._prune(now_ms)
        # The primary key decides who owns the key: a claim that inserts
        # nothing means a record already exists.
        claimed = db.execute(store.SQL_DEDUP_CLAIM, (tid, key, fp, now_ms)).rowcount == 1
        if not claimed and host._dedup_get(tid, key, now_ms) is None:
            claimed = db.execute(store.SQL_DEDUP_CLAIM, (tid, key, fp, now_ms)).rowcount == 1
        if claimed:
            host._tx_commit()
            return Ticket(msg, now_ms, _finish_at_ms(host, msg, now_ms)), None
        rec = host._dedup_get(tid, key, now_ms)
        assert rec is not None  # the claim above failed, so the row exists
        answer = _answer_existing(host, msg, rec, key, fp, now_ms)
        host._tx_commit()
    except BaseException:
        host._tx_rollback()
        raise
    return answer


def _finish_at_ms(host: Acquirer, msg: Message, now_ms: int) -> int:
    if holds.names_original(msg):  # a completion or tip adjust asks no issuer
        return now_ms + host._config.processing_ms
    card = host._cards.get(msg.pan)
    at_ms = now_ms + host._config.processing_ms + (card.slow_ms if card else 0)
    if (
        host._config.test_amounts
        and msg.processing_code != PROC_REFUND
        and msg.amount == catalogue.AMOUNT_SLOW
    ):
        at_ms += catalogue.AMOUNT_SLOW_EXTRA_MS
    return at_ms


def _answer_existing(
    host: Acquirer, msg: Message, rec: store.DedupRow, key: str, fp: str, now_ms: int
) -> tuple[Message, HostAction]:
    """Answer a payment whose idempotency record already exists."""
    if rec.state == store.DEDUP_PROGRESS:
        return host._reply(msg, RC_IN_PROGRESS), HostAction(
            "in-progress",
            RC_IN_PROGRESS,
            amount=msg.amount,
            detail="The same request is still being processed.",
        )
    if rec.state == store.DEDUP_TOMB:
        # The reversal overtook its purchase: never charge it.
        txn_id, rrn = host._insert_txn(msg, now_ms, RC_DO_NOT_HONOUR)
        host._db.execute(
            store.SQL_DEDUP_DONE,
            (msg.terminal_id, key, fp, now_ms, RC_DO_NOT_HONOUR, rrn, "", txn_id),
        )
        host._next_txn_id += 1
        return host._reply(msg, RC_DO_NOT_HONOUR, rrn), HostAction(
            "decline", RC_DO_NOT_HONOUR, rrn, msg.amount, "previously reversed"
        )
    if rec.fp != fp:
        return host._reply(msg, RC_DUPLICATE), HostAction(
            "reject",
            RC_DUPLICATE,
            amount=msg.amount,
            detail="Key reused with a different request.",
        )
    if msg.processing_code == PROC_WALLET and rec.txn_id is not None:
        # A wallet order changes after its answer (the customer confirms, it
        # closes): a repeat of the pay is answered with where it stands now.
        row = host._db.execute(store.SQL_TXN_GET, (rec.txn_id,)).fetchone()
        if row is not None:
            return wallet.answer_of(host, msg, HostTxn(*row), "replay")
    amount = -1
    if rec.rc == RC_PARTIAL and rec.txn_id is not None:
        row = host._db.execute(store.SQL_TXN_GET, (rec.txn_id,)).fetchone()
        amount = HostTxn(*row).amount if row is not None else -1
    return host._reply(msg, rec.rc, rec.rrn, rec.auth_code, amount=amount), HostAction(
        "replay", rec.rc, rec.rrn, msg.amount, "Stored response replayed, nothing charged."
    )


def decide(host: Acquirer, msg: Message, refund: bool, now_ms: int) -> tuple[str, str, int]:
    """The response code for a payment, why, and the amount approved (inside the
    finish transaction)."""
    card = host._cards.get(msg.pan)
    if card is None:
        return RC_DO_NOT_HONOUR, "Unknown card.", 0
    if msg.amount == 0:
        return RC_INVALID_AMOUNT, "Zero amount.", 0
    if card.rc:
        return card.rc, "Card rule.", 0
    if refund:
        mismatch = _refund_mismatch(host, msg, now_ms)
        if mismatch:
            return RC_REVERSAL_REFUSED, mismatch, 0
        return RC_APPROVED, "", msg.amount
    if host._config.test_amounts:
        forced = catalogue.amount_rule(msg.amount)
        if forced is not None:
            taken = msg.amount if forced == RC_APPROVED else 0
            return forced, "Catalogue amount rule.", taken
    balance = host._db.execute(store.SQL_BALANCE, (msg.pan,)).fetchone()[0]
    if balance < msg.amount:
        if card.partial and balance > 0 and msg.processing_code == PROC_PURCHASE_PARTIAL:
            return RC_PARTIAL, "Partial approval: the balance left.", balance
        return RC_INSUFFICIENT_FUNDS, "Insufficient funds.", 0
    return RC_APPROVED, "", msg.amount


def _refund_mismatch(host: Acquirer, msg: Message, now_ms: int) -> str:
    """Why a refund does not fit its original (`orig_key`) ("" if it does).

    A refund must name an approved purchase of this terminal, on the same card,
    for at least the refunded amount, or it is refused (RC 12) and nothing is
    credited. A refund that names no sale is refused too, unless the host is
    configured with `unreferenced_refunds` (then it is a stand-alone credit).
    """
    if not msg.orig_key:
        if host._config.unreferenced_refunds:
            return ""
        return "Refund names no sale (orig_key); unreferenced refunds are not accepted."
    txn = refunds.original_of(host, msg, now_ms)
    if txn is None:
        return "Refund names no sale of this terminal."
    if txn.kind not in holds.SALE_KINDS or txn.status != "approved":
        return f"Refund names a {txn.status} {txn.kind}, not an approved purchase."
    if txn.pan != msg.pan:
        return "Refund card differs from the original's."
    return refunds.over_sale(host, txn, msg.amount)


def finish(
    host: Acquirer, req: Message, started_ms: int, now_ms: int
) -> tuple[Message, HostAction]:
    tid = req.terminal_id
    key = dedup_key(req, started_ms // DAY_MS)
    if req.processing_code == PROC_WALLET:
        return wallet.finish_pay(host, req, key, fingerprint(req), started_ms, now_ms)
    refund = req.processing_code == PROC_REFUND
    db = host._db
    host._tx_begin()
    try:
        rc, why, taken = decide(host, req, refund, now_ms)
        if rc in TRANSIENT_RCS:
            # Nothing charged: forget the key so a retry is processed afresh.
            db.execute(store.SQL_DEDUP_DELETE_PROGRESS, (tid, key))
            host._tx_commit()
            return host._reply(req, rc), HostAction(
                "decline", rc, amount=req.amount, detail=f"{why} Transient, not stored."
            )
        approved = rc in (RC_APPROVED, RC_PARTIAL)
        txn_id, rrn = host._insert_txn(req, now_ms, rc, amount=taken)
        auth_code = f"{txn_id % 1_000_000:06d}" if approved else ""
        if approved:
            card, merchant = req.pan, holds.credit_account(host._config.merchant_account, req)
            if refund:
                host._post(txn_id, merchant, card, taken, now_ms)
                refunds.link(host, txn_id, req, now_ms)
            else:
                host._post(txn_id, card, merchant, taken, now_ms)
        db.execute(
            store.SQL_DEDUP_DONE,
            (tid, key, fingerprint(req), started_ms, rc, rrn, auth_code, txn_id),
        )
        host._tx_commit()
    except BaseException:
        host._tx_rollback()
        raise
    host._next_txn_id += 1
    resp = host._reply(req, rc, rrn, auth_code, amount=taken if rc == RC_PARTIAL else -1)
    if not approved:
        return resp, HostAction("decline", rc, rrn, req.amount, why or RESPONSE_CODES[rc])
    if refund:
        return resp, HostAction("refund", rc, rrn, req.amount, "Card credited.")
    if host._config.test_amounts and req.amount == catalogue.AMOUNT_NO_REPLY:
        return resp, HostAction(
            "charge-no-reply", rc, rrn, req.amount, "Charged; the response must be dropped."
        )
    if rc == RC_PARTIAL:
        return resp, HostAction(
            "charge", rc, rrn, taken, f"Card charged {taken} of {req.amount} (partial)."
        )
    return resp, HostAction("charge", rc, rrn, req.amount, "Card charged.")
