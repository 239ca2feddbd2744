"""The mock host's wallet (QR code) payments and the status inquiry (0600/0610)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from acquirer import catalogue as cat
from acquirer import protocol as p
from acquirer.catalogue import CardAccount
from acquirer.host import Acquirer, HostConfig, Message

KEY = b"terminal-1-key"
TID, MID = "T1", "M1"
CODE = "280000000000009001"  # a scenario wallet: confirms 5 s after the pay
CLOSE_MS = 60_000


class Host(Acquirer):
    """The host with a clock the test moves (`at`)."""

    now_ms = 0


def make_host(confirm_ms: int = 5_000, balance: int = 10_000) -> Host:
    return Host(
        HostConfig(mac_keys={TID: KEY}, freshness_window_ms=0, wallet_close_ms=CLOSE_MS),
        [CardAccount(CODE, balance, confirm_ms=confirm_ms)],
    )


def pay(host: Host, code: str, order: str, amount: int = 1234, stan: int = 1, **kw: Any) -> Message:
    msg = Message(
        p.MTI_PURCHASE,
        TID,
        MID,
        stan,
        pan=code,
        processing_code=p.PROC_WALLET,
        amount=amount,
        idem_key=order,
        **kw,
    )
    return host.handle(p.sign(msg, KEY), host.now_ms)


def inquire(host: Acquirer, order: str, stan: int = 50) -> Message:
    msg = p.sign(Message(p.MTI_INQUIRY, TID, MID, stan, orig_key=order), KEY)
    return host.handle(msg, getattr(host, "now_ms", 0))


def cancel(host: Host, code: str, order: str, amount: int = 1234, stan: int = 1) -> Message:
    msg = Message(
        p.MTI_REVERSAL, TID, MID, stan, pan=code, amount=amount, orig_key=order, orig_stan=stan
    )
    return host.handle(p.sign(msg, KEY), host.now_ms)


def at(host: Host, now_ms: int) -> None:
    """Move the host's clock (the phones confirm, windows close) to `now_ms`."""
    host.now_ms = now_ms
    host.wallet_advance(now_ms)


def status(host: Acquirer, order: str) -> str:
    return next(t.status for t in host.transactions() if t.idem_key == order)


def test_a_code_that_pays_at_once_is_charged_like_a_card() -> None:
    host = make_host()
    r = pay(host, cat.CODE_PAYS, "o1")
    assert (r.rc, r.auth_code) == (p.RC_APPROVED, "000001")
    assert host.balance(cat.CODE_PAYS) == cat.CATALOGUE_BALANCE - 1234
    assert inquire(host, "o1").rc == p.RC_APPROVED
    assert host.ledger_sum() == 0


def test_an_order_waits_for_the_phone_then_is_charged_when_the_customer_confirms() -> None:
    host = make_host()
    r = pay(host, CODE, "o1")
    assert r.rc == p.RC_IN_PROGRESS and r.rrn  # "user paying": the order exists
    assert host.balance(CODE) == 10_000  # nothing taken yet
    assert host.wallet_due_ms == 5_000
    at(host, 4_999)
    assert inquire(host, "o1").rc == p.RC_IN_PROGRESS
    at(host, 5_000)
    answer = inquire(host, "o1")
    assert (answer.rc, answer.rrn, answer.auth_code) == (p.RC_APPROVED, r.rrn, "000001")
    assert host.balance(CODE) == 10_000 - 1234
    # A repeat of the pay (same order number) says where the order stands now.
    assert pay(host, CODE, "o1", repeat=True).rc == p.RC_APPROVED
    assert host.wallet_due_ms == -1


def test_nobody_confirms_and_the_order_closes_unpaid_at_the_window() -> None:
    host = make_host()
    pay(host, cat.CODE_NEVER, "o1")
    at(host, CLOSE_MS - 1)
    assert status(host, "o1") == "paying"
    at(host, CLOSE_MS)
    assert status(host, "o1") == "closed"
    assert inquire(host, "o1").rc == p.RC_CLOSED
    assert host.balance(cat.CODE_NEVER) == cat.CATALOGUE_BALANCE


def test_a_cancel_closes_a_waiting_order_and_the_late_confirmation_takes_nothing() -> None:
    host = make_host()
    pay(host, CODE, "o1")
    at(host, 2_000)
    assert cancel(host, CODE, "o1").rc == p.RC_APPROVED
    at(host, 5_000)  # the customer confirms now: too late
    assert status(host, "o1") == "closed"
    assert inquire(host, "o1").rc == p.RC_CLOSED
    assert host.balance(CODE) == 10_000


def test_a_cancel_of_a_paid_order_refunds_it() -> None:
    host = make_host()
    pay(host, cat.CODE_PAYS, "o1")
    assert cancel(host, cat.CODE_PAYS, "o1").rc == p.RC_APPROVED
    assert inquire(host, "o1").rc == p.RC_REVERSED
    assert host.balance(cat.CODE_PAYS) == cat.CATALOGUE_BALANCE
    assert host.ledger_sum() == 0


def test_a_cancel_that_overtakes_its_pay_blocks_it_for_good() -> None:
    host = make_host()
    assert cancel(host, cat.CODE_PAYS, "o1").rc == p.RC_UNABLE_TO_LOCATE
    assert inquire(host, "o1").rc == p.RC_CLOSED
    assert pay(host, cat.CODE_PAYS, "o1").rc == p.RC_DO_NOT_HONOUR
    assert host.balance(cat.CODE_PAYS) == cat.CATALOGUE_BALANCE


def test_the_order_number_is_the_idempotency_key() -> None:
    host = make_host()
    pay(host, cat.CODE_PAYS, "o1")
    assert pay(host, cat.CODE_PAYS, "o1", repeat=True).rc == p.RC_APPROVED
    assert pay(host, cat.CODE_PAYS, "o1", amount=999).rc == p.RC_DUPLICATE
    assert host.balance(cat.CODE_PAYS) == cat.CATALOGUE_BALANCE - 1234  # once


def test_system_error_answer_while_the_wallet_took_the_money() -> None:
    host = make_host()
    assert pay(host, cat.CODE_SYSTEM_ERROR, "o1").rc == p.RC_SYSTEM_ERROR
    assert inquire(host, "o1").rc == p.RC_APPROVED  # only the inquiry tells the truth


def test_insufficient_funds_at_confirmation_declines_the_order() -> None:
    host = make_host()
    pay(host, CODE, "o1", amount=20_000)  # more than the wallet holds
    at(host, 5_000)
    assert inquire(host, "o1").rc == p.RC_INSUFFICIENT_FUNDS
    assert host.balance(CODE) == 10_000


def test_inquiry_about_a_card_sale_and_an_unknown_key() -> None:
    host = Acquirer(HostConfig(mac_keys={TID: KEY}, freshness_window_ms=0), [])
    sale = Message(p.MTI_PURCHASE, TID, MID, 7, pan=cat.PAN_APPROVE, amount=501, idem_key="c1")
    approved = host.handle(p.sign(sale, KEY), 0)
    answer = inquire(host, "c1")
    assert (answer.rc, answer.rrn, answer.auth_code) == ("00", approved.rrn, approved.auth_code)
    assert inquire(host, "nope").rc == p.RC_UNABLE_TO_LOCATE
    # Another terminal's key is not this terminal's business.
    other = Message(p.MTI_INQUIRY, "T2", MID, 1, orig_key="c1")
    assert host.handle(other, 0).rc == p.RC_FORMAT_ERROR  # unknown terminal, unsigned


def test_an_inquiry_must_name_its_request() -> None:
    assert p.validate_request(Message(p.MTI_INQUIRY, TID, MID, 1)) is not None
    assert p.validate_request(Message(p.MTI_INQUIRY, TID, MID, 1, orig_key="k")) is None


_OPS = st.lists(
    st.tuples(
        st.sampled_from(["pay", "pay-again", "inquire", "cancel", "wait"]),
        st.integers(0, 2),  # which order
        st.integers(0, 20_000),  # how long to wait
    ),
    max_size=30,
)


@settings(max_examples=150, deadline=None)
@given(_OPS, st.sampled_from([0, 3_000, 30_000, -1]))
def test_a_cancel_always_wins_and_the_books_balance(
    ops: list[tuple[str, int, int]], confirm_ms: int
) -> None:
    """Whatever the order of pays, repeats, inquiries, cancels and waiting: at most
    one charge per order, an order cancelled (answered 00) never ends charged, and
    the ledger balances."""
    host = make_host(confirm_ms, balance=10**9)
    now = 0
    cancelled: set[int] = set()
    for op, order, wait in ops:
        key = f"o{order}"
        if op == "wait":
            now += wait
            at(host, now)
        elif op == "pay":
            pay(host, CODE, key, stan=order + 1)
        elif op == "pay-again":
            pay(host, CODE, key, stan=order + 1, repeat=True)
        elif op == "inquire":
            assert inquire(host, key).rc in {"00", "05", "09", "25", "CL", "RV", "51"}
        elif cancel(host, CODE, key, stan=order + 1).rc in ("00", "25"):
            cancelled.add(order)
    at(host, now + CLOSE_MS + 1)  # everything due has happened
    charged = [t for t in host.transactions() if t.status == "approved"]
    assert len({t.idem_key for t in charged}) == len(charged)
    assert not {t.idem_key for t in charged} & {f"o{o}" for o in cancelled}
    assert all(t.status != "paying" for t in host.transactions())  # every order final
    assert host.ledger_sum() == 0
    assert host.balance(CODE) == 10**9 - sum(t.amount for t in charged)
