"""The host's refunds and voids of a named sale (acquirer/refunds.py): the refunds of
one sale never total more than the sale, a settled sale is no longer reversed, and a
reversal of a refunded sale is still honoured (the terminal must not send one)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from acquirer import protocol as p
from acquirer import refunds
from acquirer.host import Acquirer
from tests.acquirer.test_acquirer_host import (
    PAN,
    PAN_BALANCE,
    batch,
    make_host,
    purchase,
    refund,
    reversal,
)


@pytest.fixture
def host() -> Iterator[Acquirer]:
    acq = make_host()
    yield acq
    acq.close()


def test_two_refunds_of_one_sale_are_held_to_the_sale(host: Acquirer) -> None:
    host.handle(purchase(1, 900, key="sale"), 0)
    assert host.handle(refund(2, 600, key="r1", orig_key="sale"), 10).rc == p.RC_APPROVED
    # A second refund under a new key (a retry that minted one) fits what is left...
    assert host.handle(refund(3, 300, key="r2", orig_key="sale"), 20).rc == p.RC_APPROVED
    # ...but nothing more does.
    started, _ = host.begin(refund(4, 1, key="r3", orig_key="sale"), 30)
    assert not isinstance(started, p.Message)
    resp, action = host.finish(started, 40)
    assert resp.rc == p.RC_REVERSAL_REFUSED
    assert "900 already refunded" in action.detail
    assert host.balance(PAN) == PAN_BALANCE
    ((sale, total),) = refunds.refunded_by_sale(host)
    assert (sale.idem_key, total) == ("sale", 900)


def test_a_resent_refund_is_credited_once(host: Acquirer) -> None:
    host.handle(purchase(1, 900, key="sale"), 0)
    first = host.handle(refund(2, 400, key="r1", orig_key="sale"), 10)
    again = host.handle(refund(2, 400, key="r1", orig_key="sale", repeat=True), 20)
    assert (first.rc, again.rc, again.rrn) == (p.RC_APPROVED, p.RC_APPROVED, first.rrn)
    assert host.balance(PAN) == PAN_BALANCE - 500
    assert [t for _, t in refunds.refunded_by_sale(host)] == [400]


def test_a_reversed_refund_no_longer_counts_against_the_sale(host: Acquirer) -> None:
    host.handle(purchase(1, 900, key="sale"), 0)
    host.handle(refund(2, 900, key="r1", orig_key="sale"), 10)
    assert host.handle(reversal(3, orig_key="r1", amount=900, pan=PAN), 20).rc == p.RC_APPROVED
    assert refunds.refunded_by_sale(host) == []
    assert host.handle(refund(4, 900, key="r2", orig_key="sale"), 30).rc == p.RC_APPROVED


def test_a_settled_sale_is_not_reversed_it_must_be_refunded(host: Acquirer) -> None:
    host.handle(purchase(1, 900, key="sale"), 0)
    closed = host.handle(batch(2, 1, debit_count=1, debit_amount=900), 10)
    assert closed.rc == p.RC_APPROVED
    resp = host.handle(reversal(3, orig_key="sale", amount=900, pan=PAN), 20)
    assert resp.rc == p.RC_REVERSAL_REFUSED
    txn = host.transaction_by_rrn(resp.rrn)
    assert txn is not None and txn.status == "approved" and txn.batch_no == 1
    assert host.balance(PAN) == PAN_BALANCE - 900
    assert host.handle(refund(4, 900, key="r1", orig_key="sale"), 30).rc == p.RC_APPROVED
    assert host.balance(PAN) == PAN_BALANCE


def test_an_unsettled_sale_is_voided_and_then_cannot_be_refunded(host: Acquirer) -> None:
    host.handle(purchase(1, 900, key="sale"), 0)
    assert host.handle(reversal(2, orig_key="sale", amount=900, pan=PAN), 10).rc == "00"
    resp = host.handle(refund(3, 100, key="r1", orig_key="sale"), 20)
    assert resp.rc == p.RC_REVERSAL_REFUSED
    assert host.balance(PAN) == PAN_BALANCE


def test_a_refunded_sale_is_still_reversed_the_terminal_must_not_ask(host: Acquirer) -> None:
    """The over-credit `refund-and-void` shows: the host honours a reversal (it undoes a
    charge whose outcome a terminal lost); never both is the terminal's rule."""
    host.handle(purchase(1, 900, key="sale"), 0)
    host.handle(refund(2, 300, key="r1", orig_key="sale"), 10)
    assert host.handle(reversal(3, orig_key="sale", amount=900, pan=PAN), 20).rc == "00"
    assert host.balance(PAN) == PAN_BALANCE + 300
    assert host.ledger_sum() == 0


def _restarted(db: str, host: Acquirer) -> Acquirer:
    host.close()
    return make_host(db_path=db)


def _sale_close_refund_across_restarts(db: str) -> None:
    """A host restarted between the sale, its batch close and each refund still knows
    the sale is settled (no void) and refundable, and what was refunded of it."""
    host = make_host(db_path=db)
    try:
        assert host.handle(purchase(1, 900, key="sale"), 0).rc == p.RC_APPROVED
        host = _restarted(db, host)
        closed = host.handle(batch(2, 1, debit_count=1, debit_amount=900), 10)
        assert closed.rc == p.RC_APPROVED
        host = _restarted(db, host)
        void = host.handle(reversal(3, orig_key="sale", amount=900, pan=PAN), 20)
        assert void.rc == p.RC_REVERSAL_REFUSED  # still settled
        assert host.handle(refund(4, 600, key="r1", orig_key="sale"), 30).rc == p.RC_APPROVED
        host = _restarted(db, host)
        over = host.handle(refund(5, 301, key="r2", orig_key="sale"), 40)
        assert over.rc == p.RC_REVERSAL_REFUSED  # 600 already refunded, remembered
        assert host.handle(refund(6, 300, key="r3", orig_key="sale"), 50).rc == p.RC_APPROVED
        assert host.balance(PAN) == PAN_BALANCE
        assert [t for _, t in refunds.refunded_by_sale(host)] == [900]
    finally:
        host.close()


def test_a_restarted_sqlite_host_remembers_settled_and_refunded(tmp_path: Path) -> None:
    _sale_close_refund_across_restarts(str(tmp_path / "host.db"))


def test_a_restarted_postgres_host_remembers_settled_and_refunded(pg_url: str) -> None:
    _sale_close_refund_across_restarts(pg_url)


def test_a_sale_stays_refundable_after_its_key_record_expired() -> None:
    """The idempotency record of the sale's key is pruned after its retention; the sale
    is found in the transactions (never pruned) and what was refunded still counts."""
    host = make_host(idempotency_retention_ms=1_000)
    try:
        host.handle(purchase(1, 900, key="sale"), 0)
        assert host.handle(refund(2, 500, key="r1", orig_key="sale"), 10).rc == p.RC_APPROVED
        later = 5_000  # both records expired
        assert host.handle(refund(3, 401, key="r2", orig_key="sale"), later).rc == "12"
        resp = host.handle(refund(4, 400, key="r3", orig_key="sale"), later + 10)
        assert resp.rc == p.RC_APPROVED
        assert host.balance(PAN) == PAN_BALANCE
    finally:
        host.close()


def test_a_refund_naming_another_terminals_key_is_still_refused() -> None:
    host = make_host(idempotency_retention_ms=1_000)
    try:
        host.handle(purchase(1, 900, key="sale"), 0)
        resp = host.handle(refund(2, 100, key="r1", orig_key="other"), 5_000)
        assert resp.rc == p.RC_REVERSAL_REFUSED
    finally:
        host.close()
