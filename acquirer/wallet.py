"""Wallet (QR code) payments and the status inquiry: the host's side.

A wallet payment is a 0200 with processing code 900000: `pan` carries the
customer's payment code, `idem_key` the merchant's order number. It goes through
the card path's idempotency claim (the order number is the key; a different body
under the same number is refused, RC 94), and then:

- a code that pays at once is charged like a card (RC 00);
- a code whose customer must confirm on the phone creates the order *waiting*
  (transaction status `paying`, RC 09, nothing charged yet). The phone confirms
  after the account's `confirm_ms`: the order is then charged (or declined if the
  wallet cannot cover it). An order nobody confirms closes unpaid after
  `HostConfig.wallet_close_ms` (status `closed`, RC CL);
- a cancel is a 0400 naming the order: a waiting order closes unpaid, a paid one
  is refunded in full (status `reversed`), an unknown one is blocked for good (the
  card path's tombstone), so a cancel always wins over a customer who confirms late.

The status inquiry (0600 naming `orig_key`) reads what became of any request,
card or wallet: 00 paid (with its RRN and authorisation code), 09 not final yet,
CL closed unpaid, RV reversed or refunded, 25 unknown, or the decline code.

The host never reads a clock: `advance(now_ms)` applies the confirmations and
closes that are due, and `wallet_due_ms` says when the next one is (the simulator
schedules it; a real transport calls `advance` as requests arrive and on a timer).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from acquirer import store
from acquirer.protocol import (
    RC_APPROVED,
    RC_CLOSED,
    RC_IN_PROGRESS,
    RC_INSUFFICIENT_FUNDS,
    RC_PARTIAL,
    RC_REVERSED,
    RC_UNABLE_TO_LOCATE,
    RESPONSE_CODES,
    TRANSIENT_RCS,
    Message,
)

if TYPE_CHECKING:
    from acquirer.host import Acquirer, HostAction, HostTxn

# Transaction statuses of wallet orders, beside "approved", "declined", "reversed".
STATUS_PAYING = "paying"
STATUS_CLOSED = "closed"


def auth_code_of(txn_id: int) -> str:
    """The authorisation code the host gives transaction `txn_id` when it is paid."""
    return f"{txn_id % 1_000_000:06d}"


def state_rc(txn: HostTxn) -> str:
    """The response code that says where `txn` stands now."""
    status = txn.status
    if status == "approved":
        return RC_PARTIAL if txn.rc == RC_PARTIAL else RC_APPROVED
    if status == STATUS_PAYING:
        return RC_IN_PROGRESS
    if status == STATUS_CLOSED:
        return RC_CLOSED
    if status == "reversed":
        return RC_REVERSED
    return txn.rc


def answer_of(
    host: Acquirer, msg: Message, txn: HostTxn, action: str
) -> tuple[Message, HostAction]:
    """`msg` answered with the current state of `txn` (a repeat of a wallet pay,
    or an inquiry)."""
    from acquirer.host import HostAction

    rc = state_rc(txn)
    auth = auth_code_of(txn.id) if rc in (RC_APPROVED, RC_PARTIAL) else ""
    amount = txn.amount if rc == RC_PARTIAL else -1  # what was approved
    return host._reply(msg, rc, txn.rrn, auth, amount=amount), HostAction(
        action, rc, txn.rrn, txn.amount, f"Order is {RESPONSE_CODES.get(rc, rc)}."
    )


def finish_pay(
    host: Acquirer, req: Message, key: str, fp: str, started_ms: int, now_ms: int
) -> tuple[Message, HostAction]:
    """Decide a wallet payment (inside no transaction; opens its own)."""
    from acquirer import payments
    from acquirer.host import HostAction

    account = host._cards.get(req.pan)
    db = host._db
    tid = req.terminal_id
    host._tx_begin()
    try:
        rc, why, _ = payments.decide(host, req, False, now_ms)
        if rc in TRANSIENT_RCS:
            db.execute(store.SQL_DEDUP_DELETE_PROGRESS, (tid, key))
            host._tx_commit()
            return host._reply(req, rc), HostAction(
                "decline", rc, amount=req.amount, detail=f"{why} Transient, not stored."
            )
        confirm = account.confirm_ms if account is not None else 0
        if confirm > 0 and rc == RC_APPROVED and host.phone is not None:
            confirm = host.phone(req, confirm)
        waiting = rc == RC_APPROVED and confirm != 0
        stored_rc = RC_IN_PROGRESS if waiting else rc
        txn_id, rrn = host._insert_txn(req, now_ms, stored_rc, STATUS_PAYING if waiting else "")
        auth_code = auth_code_of(txn_id) if rc == RC_APPROVED and not waiting else ""
        due = -1
        if waiting:
            close_ms = now_ms + host._config.wallet_close_ms
            confirm_at = now_ms + confirm if confirm > 0 else -1
            due = min(confirm_at, close_ms) if confirm_at >= 0 else close_ms
            db.execute(store.SQL_WALLET_WAIT, (txn_id, confirm_at, close_ms, due))
        elif rc == RC_APPROVED:
            host._post(txn_id, req.pan, host._config.merchant_account, req.amount, now_ms)
        db.execute(
            store.SQL_DEDUP_DONE, (tid, key, fp, started_ms, stored_rc, rrn, auth_code, txn_id)
        )
        host._tx_commit()
    except BaseException:
        host._tx_rollback()
        raise
    host._next_txn_id += 1
    if due >= 0 and (host.wallet_due_ms < 0 or due < host.wallet_due_ms):
        host.wallet_due_ms = due
    answer_rc = account.answer_rc if account is not None and account.answer_rc else stored_rc
    resp = host._reply(req, answer_rc, rrn, auth_code if answer_rc == RC_APPROVED else "")
    lie = f" Answered {answer_rc} (result unknown)." if answer_rc != stored_rc else ""
    if waiting:
        return resp, HostAction(
            "wallet-paying",
            RC_IN_PROGRESS,
            rrn,
            req.amount,
            "Order created; waiting for the customer to confirm on the phone." + lie,
        )
    if rc == RC_APPROVED:
        return resp, HostAction("charge", rc, rrn, req.amount, "Wallet charged." + lie)
    return resp, HostAction("decline", rc, rrn, req.amount, (why or RESPONSE_CODES[rc]) + lie)


def advance(host: Acquirer, now_ms: int) -> list[tuple[HostTxn, HostAction]]:
    """Apply the phone confirmations and closes due by `now_ms`, oldest first."""
    from acquirer.host import HostAction, HostTxn

    due = host.wallet_due_ms
    if due < 0 or due > now_ms:
        return []
    db = host._db
    out: list[tuple[HostTxn, HostAction]] = []
    host._tx_begin()
    try:
        for txn_id, confirm_ms, close_ms in db.execute(store.SQL_WALLET_DUE, (now_ms,)).fetchall():
            db.execute(store.SQL_WALLET_DONE, (txn_id,))
            row = db.execute(store.SQL_TXN_GET, (txn_id,)).fetchone()
            if row is None:
                continue
            txn = HostTxn(*row)
            if txn.status != STATUS_PAYING:
                continue
            if 0 <= confirm_ms < close_ms:
                balance = db.execute(store.SQL_BALANCE, (txn.pan,)).fetchone()
                if balance is None or balance[0] < txn.amount:
                    db.execute(
                        store.SQL_TXN_SET_STATUS, ("declined", RC_INSUFFICIENT_FUNDS, txn_id)
                    )
                    action = HostAction(
                        "decline",
                        RC_INSUFFICIENT_FUNDS,
                        txn.rrn,
                        txn.amount,
                        "The customer confirmed; the wallet cannot cover it.",
                    )
                else:
                    host._post(txn_id, txn.pan, host._config.merchant_account, txn.amount, now_ms)
                    db.execute(store.SQL_TXN_SET_STATUS, ("approved", RC_APPROVED, txn_id))
                    action = HostAction(
                        "charge",
                        RC_APPROVED,
                        txn.rrn,
                        txn.amount,
                        "The customer confirmed on the phone: wallet charged.",
                    )
            else:
                db.execute(store.SQL_TXN_CLOSE, (now_ms, txn_id))
                action = HostAction(
                    "wallet-close",
                    RC_CLOSED,
                    txn.rrn,
                    txn.amount,
                    "Nobody confirmed in time: order closed unpaid.",
                )
            out.append((txn, action))
        nxt = db.execute(store.SQL_WALLET_NEXT).fetchone()[0]
        host._tx_commit()
    except BaseException:
        host._tx_rollback()
        raise
    host.wallet_due_ms = -1 if nxt is None else int(nxt)
    return out


def next_due(host: Acquirer) -> int:
    """When the next waiting order is due (-1: none), read from the store."""
    nxt = host._db.execute(store.SQL_WALLET_NEXT).fetchone()[0]
    return -1 if nxt is None else int(nxt)


def close_waiting(
    host: Acquirer, req: Message, txn: HostTxn, now_ms: int
) -> tuple[Message, HostAction]:
    """A cancel of a waiting order: closed unpaid (inside the reversal's transaction)."""
    from acquirer.host import HostAction

    host._db.execute(store.SQL_TXN_CLOSE, (now_ms, txn.id))
    host._db.execute(store.SQL_WALLET_DONE, (txn.id,))
    return host._reply(req, RC_APPROVED, txn.rrn), HostAction(
        "wallet-close",
        RC_APPROVED,
        txn.rrn,
        txn.amount,
        "Cancelled before the customer confirmed: order closed unpaid.",
    )


def inquire(host: Acquirer, msg: Message, now_ms: int) -> tuple[Message, HostAction]:
    """Answer a status inquiry (0600) about the request keyed `msg.orig_key`."""
    from acquirer.host import HostAction, HostTxn

    db = host._db
    host._tx_begin()
    try:
        rec = host._dedup_get(msg.terminal_id, "k:" + msg.orig_key, now_ms)
        row = None
        if rec is not None and rec.state == store.DEDUP_DONE and rec.txn_id is not None:
            row = db.execute(store.SQL_TXN_GET, (rec.txn_id,)).fetchone()
        host._tx_commit()
    except BaseException:
        host._tx_rollback()
        raise
    if row is not None:
        return answer_of(host, msg, HostTxn(*row), "inquiry")
    if rec is None or (rec.state == store.DEDUP_DONE and rec.txn_id is None):
        rc, detail = RC_UNABLE_TO_LOCATE, "No such request."
    elif rec.state == store.DEDUP_PROGRESS:
        rc, detail = RC_IN_PROGRESS, "Still being processed."
    else:
        rc, detail = RC_CLOSED, "Blocked by an earlier reversal: never charged."
    return host._reply(msg, rc), HostAction("inquiry", rc, detail=detail)
