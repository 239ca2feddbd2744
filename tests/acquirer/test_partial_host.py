"""The mock host's partial approvals (RC 10): what a card covers, for a terminal that
asks for it (processing code 000001)."""

from __future__ import annotations

from typing import Any

from acquirer import protocol as p
from acquirer.catalogue import CardAccount
from acquirer.host import Acquirer, HostConfig, Message

KEY = b"terminal-1-key"
TID, MID = "T1", "M1"
PAN = "4000000000000002"


def make_host(balance: int = 3_000, partial: bool = True) -> Acquirer:
    return Acquirer(
        HostConfig(mac_keys={TID: KEY}, freshness_window_ms=0),
        [CardAccount(PAN, balance, partial=partial)],
    )


def buy(host: Acquirer, amount: int, key: str = "k1", stan: int = 1, **kw: Any) -> Message:
    kw.setdefault("processing_code", p.PROC_PURCHASE_PARTIAL)
    msg = Message(p.MTI_PURCHASE, TID, MID, stan, pan=PAN, amount=amount, idem_key=key, **kw)
    return host.handle(p.sign(msg, KEY), 0)


def test_a_sale_over_the_balance_is_approved_for_what_is_left() -> None:
    host = make_host()
    r = buy(host, 5_000)
    assert (r.rc, r.amount) == (p.RC_PARTIAL, 3_000)
    assert p.verify(r, KEY) and r.rrn and r.auth_code
    txn = host.transaction_by_rrn(r.rrn)
    assert txn is not None and (txn.amount, txn.status) == (3_000, "approved")
    assert host.balance(PAN) == 0
    assert host.ledger_sum() == 0  # double entry: the merchant got the 30.00


def test_only_a_terminal_that_asks_gets_a_partial_approval() -> None:
    host = make_host()
    r = buy(host, 5_000, processing_code=p.PROC_PURCHASE)
    assert (r.rc, r.amount) == (p.RC_INSUFFICIENT_FUNDS, 5_000)
    assert host.balance(PAN) == 3_000


def test_a_card_without_the_rule_declines_and_an_empty_card_declines() -> None:
    assert buy(make_host(partial=False), 5_000).rc == p.RC_INSUFFICIENT_FUNDS
    assert buy(make_host(balance=0), 5_000).rc == p.RC_INSUFFICIENT_FUNDS


def test_a_sale_the_balance_covers_is_approved_in_full() -> None:
    r = buy(make_host(), 2_000)
    assert (r.rc, r.amount) == (p.RC_APPROVED, 2_000)


def test_a_resend_gets_the_stored_partial_answer_and_charges_nothing_more() -> None:
    host = make_host()
    first = buy(host, 5_000)
    again = buy(host, 5_000, repeat=True)
    assert (again.rc, again.amount, again.rrn) == (p.RC_PARTIAL, 3_000, first.rrn)
    assert host.balance(PAN) == 0


def test_the_status_inquiry_reports_the_partial_approval_and_its_amount() -> None:
    host = make_host()
    first = buy(host, 5_000)
    q = p.sign(Message(p.MTI_INQUIRY, TID, MID, 9, amount=5_000, orig_key="k1"), KEY)
    r = host.handle(q, 0)
    assert (r.rc, r.amount, r.rrn) == (p.RC_PARTIAL, 3_000, first.rrn)


def test_a_reversal_with_the_amount_asked_for_or_approved_reverses_it() -> None:
    """A terminal that never saw the answer reverses with the amount it asked for."""
    for amount in (5_000, 3_000):
        host = make_host()
        buy(host, 5_000)
        rev = Message(
            p.MTI_REVERSAL, TID, MID, 1, pan=PAN, amount=amount, orig_key="k1", orig_stan=1
        )
        r = host.handle(p.sign(rev, KEY), 0)
        assert r.rc == p.RC_APPROVED, amount
        assert host.balance(PAN) == 3_000
    host = make_host()
    buy(host, 5_000)
    short = Message(p.MTI_REVERSAL, TID, MID, 1, pan=PAN, amount=1_000, orig_key="k1", orig_stan=1)
    assert host.handle(p.sign(short, KEY), 0).rc == p.RC_REVERSAL_REFUSED
