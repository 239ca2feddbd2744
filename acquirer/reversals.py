"""The host's reversals (0400): the original found by key (or STAN), reversed once, a
reversal that overtook its purchase left as a tombstone, one that does not describe its
original refused (moved unchanged out of acquirer/host.py, whose `_reverse` calls
`reverse`). A reversal of a pre-authorisation releases the hold (holds -> card); one of
a completed pre-authorisation, or one naming a tip adjust's key, is refused RC 12
(acquirer/holds.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from acquirer import holds, refunds, store, wallet
from acquirer.host_model import HOLDS_ACCOUNT, KIND_PREAUTH, KIND_REFUND, HostAction, HostTxn
from acquirer.protocol import (
    RC_APPROVED,
    RC_IN_PROGRESS,
    RC_PARTIAL,
    RC_REVERSAL_REFUSED,
    RC_UNABLE_TO_LOCATE,
    REVERSAL_REASONS,
    Message,
)

if TYPE_CHECKING:
    from acquirer.host import Acquirer


def reverse(
    host: Acquirer, req: Message, tid: str, key: str, day: int, now_ms: int
) -> tuple[Message, HostAction]:
    """Reverse the original of `req` (inside the reversal's transaction)."""
    rec = host._dedup_get(tid, key, now_ms)
    row = None
    if rec is None:
        if not req.orig_key:
            # The original may have carried an idempotency key: find it by STAN.
            row = host._db.execute(store.SQL_TXN_BY_STAN, (tid, day, req.orig_stan)).fetchone()
        if row is None:
            # Reversal overtook its purchase (or the purchase never arrived): leave a
            # tombstone so it is never charged, and say the original was not found.
            host._db.execute(store.SQL_DEDUP_TOMB, (tid, key, now_ms))
            return host._reply(req, RC_UNABLE_TO_LOCATE), HostAction(
                "reverse-tombstone",
                RC_UNABLE_TO_LOCATE,
                amount=req.amount,
                detail="Original not found; it will be refused if it arrives.",
            )
    elif rec.state == store.DEDUP_PROGRESS:
        return host._reply(req, RC_IN_PROGRESS), HostAction(
            "in-progress", RC_IN_PROGRESS, detail="Original still being processed."
        )
    elif rec.state == store.DEDUP_TOMB or rec.txn_id is None:
        return host._reply(req, RC_UNABLE_TO_LOCATE), HostAction(
            "reverse-noop",
            RC_UNABLE_TO_LOCATE,
            detail="Original not found; already blocked by an earlier reversal.",
        )
    else:
        row = host._db.execute(store.SQL_TXN_GET, (rec.txn_id,)).fetchone()
    if row is None:
        return host._reply(req, RC_UNABLE_TO_LOCATE), HostAction(
            "reverse-noop", RC_UNABLE_TO_LOCATE, detail="Original record no longer held."
        )
    txn = HostTxn(*row)
    refused = holds.reversal_refusal(req, txn)
    if refused:
        return host._reply(req, RC_REVERSAL_REFUSED, txn.rrn), HostAction(
            "reverse-refused", RC_REVERSAL_REFUSED, txn.rrn, req.amount, refused
        )
    if txn.status == wallet.STATUS_PAYING and not reversal_mismatch(req, txn):
        return wallet.close_waiting(host, req, txn, now_ms)
    if txn.status != "approved":
        return host._reply(req, RC_APPROVED, txn.rrn), HostAction(
            "reverse-noop", RC_APPROVED, txn.rrn, txn.amount, f"Original is {txn.status}."
        )
    mismatch = reversal_mismatch(req, txn) or refunds.void_too_late(txn)
    if mismatch:
        # Never reverse a different sale than the terminal means: a key reused
        # after a lost journal would otherwise undo an earlier, legitimate sale.
        return host._reply(req, RC_REVERSAL_REFUSED, txn.rrn), HostAction(
            "reverse-refused", RC_REVERSAL_REFUSED, txn.rrn, req.amount, mismatch
        )
    card, merchant = txn.pan, host._config.merchant_account
    if txn.kind == KIND_REFUND:
        host._post(txn.id, card, merchant, txn.amount, now_ms)
    else:
        # A hold goes back from the holds account; a sale from the merchant.
        source = HOLDS_ACCOUNT if txn.kind == KIND_PREAUTH else merchant
        host._post(txn.id, source, card, txn.amount, now_ms)
    host._db.execute(store.SQL_TXN_REVERSE, (now_ms, txn.id))
    detail = "Original reversed, card credited back."
    if req.rc:
        host._db.execute(store.SQL_REVERSAL_REASON_INSERT, (txn.id, req.rc))
        why = REVERSAL_REASONS[req.rc]
        detail = f"Original reversed (reason {req.rc}: {why}), card credited back."
    if txn.kind == KIND_PREAUTH:
        detail = f"Hold released (reason {req.rc})." if req.rc else "Hold released."
    return host._reply(req, RC_APPROVED, txn.rrn), HostAction(
        "reverse", RC_APPROVED, txn.rrn, txn.amount, detail
    )


# How a refusal for a reversal's amount begins (harness/invariants: amount-integrity).
AMOUNT_DIFFERS = "Reversal amount"


def reversal_mismatch(req: Message, txn: HostTxn) -> str:
    """Why reversal `req` does not describe original `txn` ("" when it does)."""
    if req.amount != txn.amount and not (txn.rc == RC_PARTIAL and req.amount > txn.amount):
        # A partial approval is reversed with the amount asked for (a terminal that
        # never saw the answer knows no other) or the amount approved.
        return f"{AMOUNT_DIFFERS} {req.amount} differs from the original's {txn.amount}."
    if req.pan and req.pan != txn.pan:
        return "Reversal card differs from the original's."
    if req.terminal_id != txn.terminal_id:
        return "Reversal terminal differs from the original's."
    return ""
