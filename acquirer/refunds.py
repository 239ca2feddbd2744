"""The host's refunds and voids of a named sale (issue 15: refunds and voids at the
terminal), kept out of acquirer/host.py, which calls these from three places.

A refund (0200, processing code 200000) names its original by `orig_key` (a purchase or
a completion of a pre-authorisation, acquirer/holds.py); an approved
one is linked to the original here (`refund_links`), so the host can hold the refunds
of one sale to its amount: the refunds of a sale never total more than the sale. A
void is a reversal (0400) of the sale, allowed only inside the batch window: once a
batch close has settled the sale (`batch_no` stamped), the void is refused with RC 12
and the terminal must refund it instead.

All of it lives in the host's store (SQLite or PostgreSQL), none in memory: a sale is
found by its key in `txns` once its idempotency record has expired, its settlement is
`txns.batch_no` and what was refunded of it is `refund_links`, so a host restarted
between the sale, its batch close and its refund refunds it exactly as one that was not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from acquirer import store

if TYPE_CHECKING:
    from acquirer.host import Acquirer, HostTxn
    from acquirer.protocol import Message

# SQL of the refund links (the table is created by store.SCHEMA).
SQL_LINK = (
    "INSERT INTO refund_links (refund_txn_id, orig_txn_id) VALUES (?, ?) "
    "ON CONFLICT (refund_txn_id) DO NOTHING"
)
SQL_REFUNDED = (
    "SELECT COALESCE(SUM(t.amount), 0) FROM refund_links l JOIN txns t "
    "ON t.id = l.refund_txn_id WHERE l.orig_txn_id = ? AND t.status = 'approved'"
)
SQL_REFUNDED_ALL = (
    "SELECT l.orig_txn_id, SUM(t.amount) FROM refund_links l JOIN txns t "
    "ON t.id = l.refund_txn_id WHERE t.status = 'approved' GROUP BY l.orig_txn_id "
    "ORDER BY l.orig_txn_id"
)

SQL_ORIGINAL_RRN = (
    "SELECT t.rrn FROM refund_links l JOIN txns t ON t.id = l.orig_txn_id WHERE l.refund_txn_id = ?"
)
SQL_REFUNDS_OF = (
    "SELECT t.rrn, t.amount FROM refund_links l JOIN txns t ON t.id = l.refund_txn_id "
    "WHERE l.orig_txn_id = ? AND t.status = 'approved' ORDER BY t.id"
)


def original_of(host: Acquirer, msg: Message, now_ms: int) -> HostTxn | None:
    """The transaction a refund's `orig_key` names (None: it names none this host holds)."""
    if not msg.orig_key:
        return None
    rec = host._dedup_get(msg.terminal_id, "k:" + msg.orig_key, now_ms)
    if rec is None:
        # The key's idempotency record expired (or the host was restarted on a store
        # that pruned it): the sale itself is never pruned, so it stays refundable.
        row = host._db.execute(
            store.SQL_TXN_SALE_BY_KEY, (msg.terminal_id, msg.orig_key)
        ).fetchone()
    elif rec.txn_id is None:
        return None
    else:
        row = host._db.execute(store.SQL_TXN_GET, (rec.txn_id,)).fetchone()
    if row is None:
        return None
    from acquirer.host import HostTxn

    txn = HostTxn(*row)
    # A tip adjust's record names its sale's transaction: its own key names no sale.
    return txn if txn.idem_key == msg.orig_key else None


def refunded(host: Acquirer, orig_txn_id: int) -> int:
    """What the approved (not reversed) refunds of sale `orig_txn_id` total."""
    return int(host._db.execute(SQL_REFUNDED, (orig_txn_id,)).fetchone()[0])


def over_sale(host: Acquirer, orig: HostTxn, amount: int) -> str:
    """Why a refund of `amount` does not fit what is left of sale `orig` ("" if it does):
    the refunds of one sale never total more than the sale."""
    done = refunded(host, orig.id)
    if done + amount > orig.amount:
        return (
            f"Refund amount {amount} exceeds what is left of the original's {orig.amount} "
            f"({done} already refunded)."
        )
    return ""


def link(host: Acquirer, refund_txn_id: int, msg: Message, now_ms: int) -> None:
    """Record that approved refund `refund_txn_id` refunds the sale its `orig_key` names
    (inside the refund's transaction)."""
    orig = original_of(host, msg, now_ms)
    if orig is not None:
        host._db.execute(SQL_LINK, (refund_txn_id, orig.id))


def void_too_late(txn: HostTxn) -> str:
    """Why a reversal of `txn` comes too late ("" when it does not): a sale settled by a
    batch close can no longer be voided, only refunded."""
    if txn.batch_no:
        return f"Sale settled in batch {txn.batch_no}: too late to reverse, refund it instead."
    return ""


def refunded_by_sale(host: Acquirer) -> list[tuple[HostTxn, int]]:
    """Every sale with approved refunds, and what they total, oldest sale first."""
    from acquirer.host import HostTxn

    out = []
    for orig_id, total in host._db.execute(SQL_REFUNDED_ALL).fetchall():
        row = host._db.execute(store.SQL_TXN_BY_ID, (int(orig_id),)).fetchone()
        if row is not None:
            out.append((HostTxn(*row), int(total)))
    return out


def original_rrn(host: Acquirer, refund_txn_id: int) -> str:
    """The RRN of the sale approved refund `refund_txn_id` refunds ("" when none)."""
    row = host._db.execute(SQL_ORIGINAL_RRN, (refund_txn_id,)).fetchone()
    return str(row[0]) if row else ""


def refunds_of(host: Acquirer, orig_txn_id: int) -> list[tuple[str, int]]:
    """The approved (not reversed) refunds of sale `orig_txn_id`: (rrn, amount), oldest
    first."""
    rows = host._db.execute(SQL_REFUNDS_OF, (orig_txn_id,)).fetchall()
    return [(str(rrn), int(amount)) for rrn, amount in rows]
