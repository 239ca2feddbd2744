"""Batch close on the mock acquirer: the terminal's totals against the host's, the
settlement stored, the differing transactions listed, a repeated close answered from
the stored settlement (moved unchanged out of acquirer/host.py, whose `_finish_batch`
calls `finish_batch`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from acquirer import store
from acquirer.host_model import KIND_REFUND, HostAction
from acquirer.protocol import (
    BATCH_ITEMS_MAX,
    RC_APPROVED,
    RC_RECONCILE_ERROR,
    BatchItem,
    Message,
)

if TYPE_CHECKING:
    from acquirer.host import Acquirer


def finish_batch(host: Acquirer, req: Message, now_ms: int) -> tuple[Message, HostAction]:
    """A batch close in its own transaction: the stored answer for a batch already
    closed, else the comparison (`settle`)."""
    tid = req.terminal_id
    db = host._db
    host._tx_begin()
    try:
        stored = db.execute(store.SQL_SETTLEMENT_GET, (tid, req.batch_no)).fetchone()
        if stored is not None:
            host._tx_commit()
            rc, diff = stored
            return host._reply(req, rc, items=store.decode_items(diff)), HostAction(
                "replay", rc, detail=f"Batch {req.batch_no} already closed; answer replayed."
            )
        answer = settle(host, req, tid, now_ms)
        host._tx_commit()
    except BaseException:
        host._tx_rollback()
        raise
    return answer


def settle(host: Acquirer, req: Message, tid: str, now_ms: int) -> tuple[Message, HostAction]:
    """Compare the terminal's totals with the host's and close the batch."""
    host_items: list[BatchItem] = []
    debit_count = debit_amount = credit_count = credit_amount = 0
    for _id, stan, amount, rrn, kind in host._db.execute(store.SQL_TXN_UNSETTLED, (tid,)):
        host_items.append(BatchItem(stan, amount, rrn))
        if kind == KIND_REFUND:
            credit_count += 1
            credit_amount += amount
        else:
            debit_count += 1
            debit_amount += amount
    matched = (debit_count, debit_amount, credit_count, credit_amount) == (
        req.debit_count,
        req.debit_amount,
        req.credit_count,
        req.credit_amount,
    )
    differing = () if matched else differing_items(req.items, host_items)
    rc = RC_APPROVED if matched else RC_RECONCILE_ERROR
    host._db.execute(
        store.SQL_SETTLEMENT_INSERT,
        (
            tid,
            req.batch_no,
            req.debit_count + req.credit_count,
            req.debit_amount - req.credit_amount,
            debit_count + credit_count,
            debit_amount - credit_amount,
            rc,
            store.encode_items(differing),
            now_ms,
        ),
    )
    host._db.execute(store.SQL_TXN_STAMP, (req.batch_no, tid))
    if matched:
        action = HostAction("batch-match", rc, detail=f"Batch {req.batch_no} matches.")
    else:
        action = HostAction(
            "batch-mismatch",
            rc,
            detail=f"Batch {req.batch_no}: {len(differing)} differing transactions.",
        )
    return host._reply(req, rc, items=differing), action


def differing_items(
    terminal: tuple[BatchItem, ...], host: list[BatchItem]
) -> tuple[BatchItem, ...]:
    """Transactions present on one side only or with different amounts (bounded).

    Items are matched by RRN when the terminal sent one, else by STAN. A
    terminal-only item is listed as the terminal sent it; a host-only item or an
    amount difference is listed as the host has it.
    """
    by_rrn = {h.rrn: h for h in host}
    by_stan: dict[int, list[BatchItem]] = {}
    for h in host:
        by_stan.setdefault(h.stan, []).append(h)
    seen: set[str] = set()
    out: list[BatchItem] = []
    for t in terminal:
        match = by_rrn.get(t.rrn) if t.rrn else None
        if match is None and not t.rrn:
            match = next((h for h in by_stan.get(t.stan, ()) if h.rrn not in seen), None)
        if match is None or match.rrn in seen:
            out.append(t)
            continue
        seen.add(match.rrn)
        if match.amount != t.amount:
            out.append(match)
    out.extend(h for h in host if h.rrn not in seen)
    return tuple(out[:BATCH_ITEMS_MAX])
