"""The host's side of offline advices (0220 -> 0230, store-and-forward).

A terminal that could not reach the host approved a sale offline (under its floor
limit), printed the receipt, and uploads the sale afterwards as an advice: the same
idempotency key as the sale's 0200, the same card, amount and processing code, and
the time it was approved offline (`offline_ms`). The host books it like a purchase:

* the key is the sale's: an advice whose 0200 did reach the host (its answer was lost)
  is answered with that 0200's stored outcome, and a resent advice (its 0230 lost)
  with the advice's: one sale is charged at most once, however often it is uploaded;
* approved (the card's balance covers it): charged, `charge` in the trace;
* declined by the card's rules or balance: a late decline (RC 05, 51, ...), stored,
  nothing charged; the merchant has already handed over the goods;
* past its deadline (`HostConfig.advice_deadline_ms` after `offline_ms`): refused
  with `RC_ADVICE_EXPIRED`, stored, nothing charged.

`Acquirer.begin` claims the key exactly as for a purchase (`_begin_payment`), and
`Acquirer.finish` hands the ticket to `finish_advice`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from acquirer import store
from acquirer.protocol import RC_ADVICE_EXPIRED, Message

if TYPE_CHECKING:
    from acquirer.host import Acquirer, HostAction

# Square's offline payments must be uploaded within 24 hours.
ADVICE_DEADLINE_MS = 86_400_000


def advice_expired(host: Acquirer, req: Message, now_ms: int) -> bool:
    """Has the upload deadline of advice `req` passed at `now_ms`?"""
    return now_ms - req.offline_ms > host._config.advice_deadline_ms


def finish_advice(
    host: Acquirer, req: Message, started_ms: int, now_ms: int
) -> tuple[Message, HostAction]:
    """Book an advice: refused when late, else decided and charged like a purchase."""
    from acquirer import payments
    from acquirer.host import HostAction
    from acquirer.payments import dedup_key, fingerprint

    if not advice_expired(host, req, started_ms):
        resp, action = payments.finish(host, req, started_ms, now_ms)
        if action.action == "charge":
            detail = f"Offline sale booked (advice approved offline at {req.offline_ms} ms)."
            action = HostAction(action.action, action.rc, action.rrn, action.amount, detail)
        elif action.action == "decline" and action.rrn:
            action = HostAction(
                "advice-declined", action.rc, action.rrn, action.amount, action.detail
            )
        return resp, action
    key = dedup_key(req, started_ms // 86_400_000)
    host._tx_begin()
    try:
        txn_id, rrn = host._insert_txn(req, now_ms, RC_ADVICE_EXPIRED)
        host._db.execute(
            store.SQL_DEDUP_DONE,
            (
                req.terminal_id,
                key,
                fingerprint(req),
                started_ms,
                RC_ADVICE_EXPIRED,
                rrn,
                "",
                txn_id,
            ),
        )
        host._tx_commit()
    except BaseException:
        host._tx_rollback()
        raise
    host._next_txn_id += 1
    late = started_ms - req.offline_ms
    return host._reply(req, RC_ADVICE_EXPIRED, rrn), HostAction(
        "advice-expired",
        RC_ADVICE_EXPIRED,
        rrn,
        req.amount,
        f"Advice arrived {late} ms after the offline approval, past the "
        f"{host._config.advice_deadline_ms} ms deadline: refused, nothing charged.",
    )
