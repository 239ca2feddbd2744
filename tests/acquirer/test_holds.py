"""Pre-authorisation (0100), completion and tip adjust (0220) on the mock acquirer
(acquirer/holds.py): each rule fires and does not fire, resends get the stored answer,
one hold is captured at most once, a settled sale keeps its tip, the batch close counts
completions and tips and never a hold, and a restarted host behaves as one that was not.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acquirer import catalogue, pgstore, races, refunds, store
from acquirer import iso8583 as codec
from acquirer import protocol as p
from acquirer.host import Acquirer, HostAction, Message, Ticket
from acquirer.host_model import HOLDS_ACCOUNT
from tests.acquirer.test_acquirer_host import (
    KEY,
    MERCHANT,
    PAN,
    PAN_BALANCE,
    T1,
    batch,
    make_host,
    purchase,
    refund,
    reversal,
)

OTHER_PAN = catalogue.PAN_APPROVE


@pytest.fixture
def host() -> Iterator[Acquirer]:
    acq = make_host()
    yield acq
    acq.close()


def preauth(stan: int, amount: int, key: str, pan: str = PAN, **kw: Any) -> Message:
    return T1.preauth(stan, amount, pan, key, **kw)


def completion(
    stan: int, amount: int, key: str, orig_key: str, pan: str = PAN, **kw: Any
) -> Message:
    return T1.completion(stan, amount, pan, key, orig_key, **kw)


def adjust(stan: int, total: int, key: str, orig_key: str, pan: str = PAN, **kw: Any) -> Message:
    return T1.adjust(stan, total, pan, key, orig_key, **kw)


def run(acq: Acquirer, msg: Message, now_ms: int) -> tuple[Message, HostAction | None]:
    """Begin and finish `msg`, returning the answer and what the host did."""
    started, action = acq.begin(msg, now_ms)
    if isinstance(started, Message):
        return started, action
    return acq.finish(started, started.finish_at_ms)


def books(acq: Acquirer) -> tuple[Any, ...]:
    """Everything a refused request must leave unchanged."""
    return (
        list(acq.transactions()),
        acq.balance(PAN),
        acq.balance(MERCHANT),
        acq.balance(HOLDS_ACCOUNT),
        acq.ledger_sum(),
        acq.settlements(),
    )


def money(acq: Acquirer) -> tuple[int, int, int]:
    """(card, merchant, holds) balances; the ledger must balance whenever asked."""
    assert acq.ledger_sum() == 0
    return acq.balance(PAN), acq.balance(MERCHANT), acq.balance(HOLDS_ACCOUNT)


# -- the wire: codecs and validation --------------------------------------------------


def _wire_messages() -> list[Message]:
    hold = preauth(1, 5000, "pa", sent_ms=1_764_700_000_000)
    answer = replace(hold, mti=p.MTI_PREAUTH_RESP, rc="00", rrn="000000000001", auth_code="000001")
    done = completion(2, 4000, "c1", "pa", sent_ms=1_764_700_000_500)
    tip = adjust(3, 4800, "t1", "c1", sent_ms=1_764_700_001_000)
    return [
        hold,
        preauth(1, 5000, "pa", repeat=True),
        T1.signed(answer),
        done,
        T1.signed(replace(done, mti=p.MTI_ADVICE_RESP, rc="00", rrn="000000000002")),
        tip,
        T1.signed(replace(tip, mti=p.MTI_ADVICE_RESP, rc="13", rrn="000000000002")),
    ]


@pytest.mark.parametrize("msg", _wire_messages(), ids=lambda m: f"{m.mti}-{m.processing_code}")
def test_holds_messages_round_trip_through_both_codecs(msg: Message) -> None:
    assert codec.decode(codec.encode(msg)) == msg
    assert codec.from_json(codec.to_json(msg)) == msg
    assert p.verify(codec.decode(codec.encode(msg)), KEY)
    problem = p.validate_request(msg) if msg.rc == "" else p.validate_response(msg)
    assert problem is None


def test_an_iso_0101_is_a_resent_0100() -> None:
    msg = preauth(1, 5000, "pa", repeat=True)
    frame = codec.encode(replace(msg, repeat=False))
    assert frame.startswith(b"0100")
    assert codec.decode(b"0101" + frame[4:]) == msg
    text = codec.to_json(msg).replace(b'"mti":"0100"', b'"mti":"0101"')
    assert codec.from_json(text) == msg
    assert p.REPEAT_MTIS["0101"] == p.MTI_PREAUTH
    assert p.response_mti(p.MTI_PREAUTH) == p.MTI_PREAUTH_RESP


def test_an_adjust_processing_code_is_carried_in_field_3() -> None:
    frame = codec.encode(adjust(3, 4800, "t1", "c1"))
    assert frame[:4] == b"0220"
    doc = codec._raw_decode(frame)
    assert doc["3"] == p.PROC_ADJUST == "020000"
    assert p.PROC_ADJUST in p.PROCESSING_CODES


@pytest.mark.parametrize(
    ("msg", "reason"),
    [
        (preauth(1, 5000, "pa", processing_code=p.PROC_PURCHASE_PARTIAL), "never partial"),
        (preauth(1, 5000, "pa", processing_code=p.PROC_REFUND), "never partial"),
        (preauth(1, 0, "pa"), "amount to hold"),
        (T1.signed(replace(preauth(1, 5000, "pa"), idem_key="")), "idempotency key required"),
        (T1.signed(replace(preauth(1, 5000, "pa"), pan="")), "pan must be"),
        (purchase(1, 5000, processing_code=p.PROC_ADJUST), "only for a 0220"),
        (reversal(1, orig_key="x", processing_code=p.PROC_ADJUST), "only for a 0220"),
        (completion(2, 100, "c", "pa", offline_ms=5), "carries no offline_ms"),
        (completion(2, 100, "c", "pa", rc=p.RC_OFFLINE_APPROVED), "carries no rc"),
        (
            T1.signed(
                replace(completion(2, 100, "c", "pa"), processing_code=p.PROC_PURCHASE_PARTIAL)
            ),
            "020000",
        ),
        (completion(2, 100, "pa", "pa"), "key of its own"),
        (adjust(3, 100, "t", "sale", offline_ms=5), "carries no offline_ms"),
        (T1.signed(replace(adjust(3, 100, "t", "s"), orig_key="", offline_ms=5)), "name its sale"),
        (T1.signed(replace(completion(2, 100, "c", "pa"), pan="")), "pan must be"),
        (T1.signed(replace(completion(2, 100, "c", "pa"), idem_key="")), "idempotency key"),
    ],
)
def test_malformed_holds_requests_get_30_with_one_line_and_change_nothing(
    host: Acquirer, msg: Message, reason: str
) -> None:
    host.handle(preauth(10, 5000, "pa"), 0)
    host.handle(purchase(11, 1000, key="sale"), 0)
    before = books(host)
    problem = p.validate_request(msg)
    assert problem is not None and reason in problem and "\n" not in problem
    resp, action = run(host, msg, 10)
    assert resp.rc == p.RC_FORMAT_ERROR and p.verify(resp, KEY)
    assert action is not None and action.action == "reject" and reason in action.detail
    assert books(host) == before


def test_the_two_forms_of_a_0220_are_both_valid() -> None:
    offline = T1.signed(
        Message(p.MTI_ADVICE, "T1", "M1", 1, pan=PAN, amount=100, idem_key="k", offline_ms=5)
    )
    assert p.validate_request(offline) is None
    assert p.validate_request(completion(2, 100, "c", "pa")) is None
    assert p.validate_request(adjust(3, 0, "t", "sale")) is None  # refused by the host: 13
    assert p.validate_request(T1.signed(replace(offline, rc=p.RC_OFFLINE_APPROVED))) is None


# -- pre-authorisation --------------------------------------------------------------------


def test_an_approved_preauth_holds_the_amount_and_answers_0110(host: Acquirer) -> None:
    resp, action = run(host, preauth(1, 5000, "pa"), 0)
    assert (resp.mti, resp.rc, resp.amount) == (p.MTI_PREAUTH_RESP, p.RC_APPROVED, 5000)
    assert len(resp.rrn) == 12 and len(resp.auth_code) == 6 and p.verify(resp, KEY)
    assert action == HostAction("hold", p.RC_APPROVED, resp.rrn, 5000, "Hold placed.")
    assert money(host) == (PAN_BALANCE - 5000, 0, 5000)
    [txn] = host.preauths()
    assert (txn.kind, txn.status, txn.amount, txn.rrn, txn.tip) == (
        "preauth",
        "approved",
        5000,
        resp.rrn,
        0,
    )
    assert host.transaction_by_rrn(resp.rrn) == txn
    assert host.completion_of(txn.id) is None


def test_a_hold_reduces_what_the_card_can_still_pay(host: Acquirer) -> None:
    assert host.handle(preauth(1, PAN_BALANCE - 100, "pa"), 0).rc == p.RC_APPROVED
    assert host.handle(purchase(2, 101, key="s"), 10).rc == p.RC_INSUFFICIENT_FUNDS
    assert host.handle(preauth(3, 101, "pb"), 20).rc == p.RC_INSUFFICIENT_FUNDS
    assert host.handle(purchase(4, 100, key="s2"), 30).rc == p.RC_APPROVED


@pytest.mark.parametrize(("amount", "rc"), [(500, "05"), (1300, "13"), (5100, "51")])
def test_a_preauth_obeys_the_catalogue_amounts_and_holds_nothing_when_declined(
    host: Acquirer, amount: int, rc: str
) -> None:
    resp, action = run(host, preauth(1, amount, "pa"), 0)
    assert resp.rc == rc and action is not None and action.action == "decline"
    assert money(host) == (PAN_BALANCE, 0, 0)
    [txn] = host.preauths()
    assert (txn.status, txn.rc) == ("declined", rc)


def test_a_preauth_obeys_card_rules_and_transient_codes_are_not_stored(host: Acquirer) -> None:
    assert host.handle(preauth(1, 100, "pa", pan=catalogue.PAN_DO_NOT_HONOUR), 0).rc == "05"
    assert host.handle(preauth(2, PAN_BALANCE + 1, "pb"), 0).rc == "51"
    assert host.handle(preauth(3, 100, "pc", pan=catalogue.PAN_ISSUER_DOWN), 0).rc == "91"
    assert host.handle(preauth(4, 9600, "pd"), 0).rc == "96"
    assert len(host.preauths()) == 2  # the 91 and 96 left nothing
    assert host.handle(preauth(4, 9600, "pd", repeat=True), 10).rc == "96"  # processed afresh
    assert money(host) == (PAN_BALANCE, 0, 0)


def test_a_resent_preauth_gets_the_stored_answer_and_holds_once(host: Acquirer) -> None:
    first = host.handle(preauth(1, 5000, "pa"), 0)
    again, action = run(host, preauth(1, 5000, "pa", repeat=True), 10)
    assert (again.mti, again.rc, again.rrn, again.auth_code) == (
        p.MTI_PREAUTH_RESP,
        p.RC_APPROVED,
        first.rrn,
        first.auth_code,
    )
    assert action is not None and action.action == "replay"
    assert money(host) == (PAN_BALANCE - 5000, 0, 5000)
    assert len(host.preauths()) == 1


def test_a_key_reused_between_a_0100_and_a_0200_is_refused_94(host: Acquirer) -> None:
    host.handle(preauth(1, 5000, "k"), 0)
    assert host.handle(purchase(2, 5000, key="k"), 10).rc == p.RC_DUPLICATE
    host.handle(purchase(3, 700, key="s"), 20)
    assert host.handle(preauth(4, 700, "s"), 30).rc == p.RC_DUPLICATE
    assert money(host) == (PAN_BALANCE - 5700, 700, 5000)


def test_a_crashed_preauth_is_processed_afresh(host: Acquirer) -> None:
    ticket, _ = host.begin(preauth(1, 5000, "pa"), 0)
    assert isinstance(ticket, Ticket)
    host.abandon(ticket)
    assert host.handle(preauth(1, 5000, "pa", repeat=True), 10).rc == p.RC_APPROVED
    assert money(host) == (PAN_BALANCE - 5000, 0, 5000)


def test_the_slow_amount_delays_a_preauth_but_no_completion(host: Acquirer) -> None:
    slow, _ = host.begin(preauth(1, catalogue.AMOUNT_SLOW, "pa"), 0)
    assert isinstance(slow, Ticket)
    assert slow.finish_at_ms == 20 + catalogue.AMOUNT_SLOW_EXTRA_MS
    host.finish(slow, slow.finish_at_ms)
    fast, _ = host.begin(completion(2, catalogue.AMOUNT_SLOW, "c1", "pa"), 40_000)
    assert isinstance(fast, Ticket) and fast.finish_at_ms == 40_020


def test_the_no_reply_amount_is_a_purchases_convention_a_hold_is_answered(host: Acquirer) -> None:
    frame = codec.encode(preauth(1, catalogue.AMOUNT_NO_REPLY, "pa"))
    answer = codec.decode(host.handle_frame(frame, 0))
    assert (answer.mti, answer.rc) == (p.MTI_PREAUTH_RESP, p.RC_APPROVED)


def test_a_preauth_is_in_no_batch(host: Acquirer) -> None:
    host.handle(preauth(1, 5000, "pa"), 0)
    host.handle(purchase(2, 700, key="s"), 10)
    closed = host.handle(batch(3, 1, debit_count=1, debit_amount=700), 20)
    assert closed.rc == p.RC_APPROVED
    [hold] = host.preauths()
    assert hold.batch_no == 0 and hold.status == "approved"
    [settled] = host.settlements()
    assert (settled.host_count, settled.host_amount) == (1, 700)
    # Still open after the close: it can be released or completed.
    assert host.handle(reversal(4, orig_key="pa", amount=5000, pan=PAN), 30).rc == "00"
    assert money(host) == (PAN_BALANCE - 700, 700, 0)


# -- release ---------------------------------------------------------------------------


def test_a_reversal_releases_an_approved_hold(host: Acquirer) -> None:
    sale = host.handle(preauth(1, 5000, "pa"), 0)
    resp, action = run(host, reversal(2, orig_key="pa", amount=5000, pan=PAN), 10)
    assert (resp.rc, resp.rrn) == (p.RC_APPROVED, sale.rrn)
    assert action == HostAction("reverse", "00", sale.rrn, 5000, "Hold released.")
    assert money(host) == (PAN_BALANCE, 0, 0)
    [hold] = host.preauths()
    assert hold.status == "reversed"
    # Reversals are idempotent; a released hold cannot be completed.
    assert host.handle(reversal(3, orig_key="pa", amount=5000, pan=PAN), 20).rc == "00"
    assert host.handle(completion(4, 5000, "c1", "pa"), 30).rc == p.RC_REVERSAL_REFUSED
    assert money(host) == (PAN_BALANCE, 0, 0)


def test_a_release_with_a_reason_keeps_it(host: Acquirer) -> None:
    sale = host.handle(preauth(1, 5000, "pa"), 0)
    _, action = run(host, reversal(2, orig_key="pa", amount=5000, rc="96"), 10)
    assert action is not None and action.detail == "Hold released (reason 96)."
    assert host.reversal_reason(sale.rrn) == "96"


def test_a_release_must_describe_the_hold(host: Acquirer) -> None:
    host.handle(preauth(1, 5000, "pa"), 0)
    assert host.handle(reversal(2, orig_key="pa", amount=4000), 10).rc == "12"
    assert money(host) == (PAN_BALANCE - 5000, 0, 5000)


def test_a_completed_hold_is_not_released(host: Acquirer) -> None:
    sale = host.handle(preauth(1, 5000, "pa"), 0)
    host.handle(completion(2, 4000, "c1", "pa"), 10)
    before = books(host)
    resp, action = run(host, reversal(3, orig_key="pa", amount=5000, pan=PAN), 20)
    assert (resp.rc, resp.rrn) == (p.RC_REVERSAL_REFUSED, sale.rrn)
    assert action is not None and action.action == "reverse-refused"
    assert action.detail == "Pre-authorisation completed: void or refund the completion instead."
    assert books(host) == before


# -- completion ------------------------------------------------------------------------


def test_a_completion_captures_part_of_the_hold_and_releases_the_rest(host: Acquirer) -> None:
    hold = host.handle(preauth(1, 5000, "pa"), 0)
    resp, action = run(host, completion(2, 4000, "c1", "pa"), 10)
    assert (resp.mti, resp.rc, resp.amount) == (p.MTI_ADVICE_RESP, p.RC_APPROVED, 4000)
    assert resp.rrn != hold.rrn and len(resp.auth_code) == 6 and p.verify(resp, KEY)
    assert action is not None and (action.action, action.rc, action.rrn, action.amount) == (
        "capture",
        "00",
        resp.rrn,
        4000,
    )
    assert hold.rrn in action.detail
    assert money(host) == (PAN_BALANCE - 4000, 4000, 0)
    [pre] = host.preauths()
    assert pre.status == "completed" and pre.amount == 5000
    done = host.completion_of(pre.id)
    assert done is not None and done == host.transaction_by_rrn(resp.rrn)
    assert (done.kind, done.status, done.amount, done.idem_key, done.tip) == (
        "completion",
        "approved",
        4000,
        "c1",
        0,
    )


def test_a_completion_may_capture_the_whole_hold(host: Acquirer) -> None:
    host.handle(preauth(1, 5000, "pa"), 0)
    assert host.handle(completion(2, 5000, "c1", "pa"), 10).rc == p.RC_APPROVED
    assert money(host) == (PAN_BALANCE - 5000, 5000, 0)


@pytest.mark.parametrize(("amount", "why"), [(5001, "exceeds the hold's 5000"), (0, "at least 1")])
def test_a_completion_outside_the_hold_is_refused_13(host: Acquirer, amount: int, why: str) -> None:
    host.handle(preauth(1, 5000, "pa"), 0)
    before = books(host)
    resp, action = run(host, completion(2, amount, "c1", "pa"), 10)
    assert resp.rc == p.RC_INVALID_AMOUNT and resp.rrn == ""
    assert action is not None and action.action == "capture-refused" and why in action.detail
    assert books(host) == before
    # The hold is untouched: a right completion under a new key still captures it.
    assert host.handle(completion(3, 5000, "c2", "pa"), 20).rc == p.RC_APPROVED


def _refused_completion(host: Acquirer, msg: Message, why: str) -> None:
    before = books(host)
    resp, action = run(host, msg, 100)
    assert resp.rc == p.RC_REVERSAL_REFUSED
    assert action is not None and action.action == "capture-refused" and why in action.detail
    assert books(host) == before


def test_a_completion_naming_no_hold_is_refused_12(host: Acquirer) -> None:
    _refused_completion(host, completion(2, 100, "c1", "nothing"), "names no pre-authorisation")


def test_a_completion_naming_a_purchase_is_refused_12(host: Acquirer) -> None:
    host.handle(purchase(1, 5000, key="sale"), 0)
    _refused_completion(host, completion(2, 100, "c1", "sale"), "not a pre-authorisation")


def test_a_completion_of_a_declined_hold_is_refused_12(host: Acquirer) -> None:
    host.handle(preauth(1, 5100, "pa"), 0)
    _refused_completion(host, completion(2, 100, "c1", "pa"), "is declined")


def test_a_completion_of_a_released_hold_is_refused_12(host: Acquirer) -> None:
    host.handle(preauth(1, 5000, "pa"), 0)
    host.handle(reversal(2, orig_key="pa", amount=5000), 10)
    _refused_completion(host, completion(3, 100, "c1", "pa"), "is reversed")


def test_a_completion_on_another_card_is_refused_12(host: Acquirer) -> None:
    host.handle(preauth(1, 5000, "pa"), 0)
    _refused_completion(host, completion(2, 100, "c1", "pa", pan=OTHER_PAN), "card differs")


def test_a_second_completion_under_another_key_is_refused_12(host: Acquirer) -> None:
    host.handle(preauth(1, 5000, "pa"), 0)
    host.handle(completion(2, 3000, "c1", "pa"), 10)
    _refused_completion(host, completion(3, 1000, "c2", "pa"), "already completed")
    assert money(host) == (PAN_BALANCE - 3000, 3000, 0)


def test_a_resent_completion_gets_the_stored_answer_and_captures_once(host: Acquirer) -> None:
    host.handle(preauth(1, 5000, "pa"), 0)
    first = host.handle(completion(2, 3000, "c1", "pa"), 10)
    again, action = run(host, completion(2, 3000, "c1", "pa", repeat=True), 20)
    assert (again.rc, again.rrn, again.auth_code) == (
        p.RC_APPROVED,
        first.rrn,
        first.auth_code,
    )
    assert action is not None and action.action == "replay"
    # The same key with another amount is another request.
    assert host.handle(completion(2, 2000, "c1", "pa", repeat=True), 30).rc == p.RC_DUPLICATE
    assert money(host) == (PAN_BALANCE - 3000, 3000, 0)
    assert len([t for t in host.transactions() if t.kind == "completion"]) == 1


def test_a_refused_completion_is_stored_under_its_key(host: Acquirer) -> None:
    host.handle(preauth(1, 5000, "pa"), 0)
    assert host.handle(completion(2, 6000, "c1", "pa"), 10).rc == p.RC_INVALID_AMOUNT
    again, action = run(host, completion(2, 6000, "c1", "pa", repeat=True), 20)
    assert again.rc == p.RC_INVALID_AMOUNT
    assert action is not None and action.action == "replay"


def test_the_database_forbids_two_completions_of_one_hold(host: Acquirer) -> None:
    host.handle(preauth(1, 5000, "pa"), 0)
    host.handle(completion(2, 3000, "c1", "pa"), 10)
    [pre] = host.preauths()
    with pytest.raises(sqlite3.IntegrityError):
        host._db.execute(store.SQL_COMPLETION_LINK, (999, pre.id))


def test_a_completion_of_a_hold_still_in_progress_is_transient_09(host: Acquirer) -> None:
    ticket, _ = host.begin(preauth(1, 5000, "pa"), 0)
    assert isinstance(ticket, Ticket)
    resp, action = run(host, completion(2, 3000, "c1", "pa"), 5)
    assert resp.rc == p.RC_IN_PROGRESS and action is not None and action.action == "in-progress"
    host.finish(ticket, ticket.finish_at_ms)
    assert host.handle(completion(2, 3000, "c1", "pa", repeat=True), 30).rc == p.RC_APPROVED


def test_a_hold_is_completed_after_its_key_record_expired() -> None:
    acq = make_host(idempotency_retention_ms=1_000)
    try:
        acq.handle(preauth(1, 5000, "pa"), 0)
        assert acq.handle(completion(2, 5001, "c1", "pa"), 5_000).rc == p.RC_INVALID_AMOUNT
        assert acq.handle(completion(3, 4000, "c2", "pa"), 5_010).rc == p.RC_APPROVED
        assert acq.handle(completion(4, 1, "c3", "pa"), 9_000).rc == p.RC_REVERSAL_REFUSED
        assert money(acq) == (PAN_BALANCE - 4000, 4000, 0)
    finally:
        acq.close()


def test_a_completion_is_voided_like_a_purchase_inside_the_batch_window(host: Acquirer) -> None:
    host.handle(preauth(1, 5000, "pa"), 0)
    done = host.handle(completion(2, 4000, "c1", "pa"), 10)
    resp, action = run(host, reversal(3, orig_key="c1", amount=4000, pan=PAN), 20)
    assert (resp.rc, resp.rrn) == (p.RC_APPROVED, done.rrn)
    assert action is not None and action.action == "reverse"
    assert money(host) == (PAN_BALANCE, 0, 0)
    [pre] = host.preauths()
    assert pre.status == "completed"  # the hold stays used; the capture is undone
    assert host.handle(completion(4, 4000, "c2", "pa"), 30).rc == p.RC_REVERSAL_REFUSED


def test_a_settled_completion_is_refunded_not_voided(host: Acquirer) -> None:
    host.handle(preauth(1, 5000, "pa"), 0)
    host.handle(completion(2, 4000, "c1", "pa"), 10)
    assert host.handle(batch(3, 1, debit_count=1, debit_amount=4000), 20).rc == p.RC_APPROVED
    assert host.handle(reversal(4, orig_key="c1", amount=4000), 30).rc == p.RC_REVERSAL_REFUSED
    assert host.handle(refund(5, 4001, key="r1", orig_key="c1"), 40).rc == "12"
    assert host.handle(refund(6, 4000, key="r2", orig_key="c1"), 50).rc == p.RC_APPROVED
    assert money(host) == (PAN_BALANCE, 0, 0)
    [(sale, total)] = refunds.refunded_by_sale(host)
    assert (sale.kind, total) == ("completion", 4000)


def test_a_refund_cannot_name_a_preauth(host: Acquirer) -> None:
    host.handle(preauth(1, 5000, "pa"), 0)
    assert host.handle(refund(2, 100, key="r1", orig_key="pa"), 10).rc == "12"
    assert money(host) == (PAN_BALANCE - 5000, 0, 5000)


def test_an_inquiry_reports_holds_and_completions(host: Acquirer) -> None:
    hold = host.handle(preauth(1, 5000, "pa"), 0)
    ask = T1.signed(Message(p.MTI_INQUIRY, "T1", "M1", 9, orig_key="pa"))
    assert (host.handle(ask, 5).rc, host.handle(ask, 5).rrn) == ("00", hold.rrn)
    done = host.handle(completion(2, 4000, "c1", "pa"), 10)
    ask_done = T1.signed(Message(p.MTI_INQUIRY, "T1", "M1", 9, orig_key="c1"))
    assert (host.handle(ask_done, 20).rc, host.handle(ask_done, 20).rrn) == ("00", done.rrn)


# -- tip adjust --------------------------------------------------------------------------


def test_a_tip_adjust_sets_the_total_and_moves_the_tip(host: Acquirer) -> None:
    sale = host.handle(purchase(1, 4000, key="sale"), 0)
    resp, action = run(host, adjust(2, 4600, "t1", "sale"), 10)
    assert (resp.mti, resp.rc, resp.rrn, resp.amount) == (
        p.MTI_ADVICE_RESP,
        p.RC_APPROVED,
        sale.rrn,
        4600,
    )
    assert p.verify(resp, KEY)
    assert action == HostAction("adjust", "00", sale.rrn, 4600, "Tip set to 600 (total 4600).")
    assert money(host) == (PAN_BALANCE - 4600, 4600, 0)
    txn = host.transaction_by_rrn(sale.rrn)
    assert txn is not None and (txn.amount, txn.tip, txn.status) == (4600, 600, "approved")
    assert len(list(host.transactions())) == 1  # an adjust is no transaction of its own


def test_setting_the_tip_again_changes_only_the_difference(host: Acquirer) -> None:
    sale = host.handle(purchase(1, 4000, key="sale"), 0)
    host.handle(adjust(2, 4600, "t1", "sale"), 10)
    assert host.handle(adjust(3, 4600, "t2", "sale"), 20).rc == p.RC_APPROVED  # same total
    assert money(host) == (PAN_BALANCE - 4600, 4600, 0)
    assert host.handle(adjust(4, 4200, "t3", "sale"), 30).rc == p.RC_APPROVED  # lower tip
    assert money(host) == (PAN_BALANCE - 4200, 4200, 0)
    assert host.handle(adjust(5, 4000, "t4", "sale"), 40).rc == p.RC_APPROVED  # no tip
    assert money(host) == (PAN_BALANCE - 4000, 4000, 0)
    txn = host.transaction_by_rrn(sale.rrn)
    assert txn is not None and (txn.amount, txn.tip) == (4000, 0)


def test_a_resent_adjust_gets_the_stored_answer(host: Acquirer) -> None:
    sale = host.handle(purchase(1, 4000, key="sale"), 0)
    host.handle(adjust(2, 4600, "t1", "sale"), 10)
    host.handle(adjust(3, 4200, "t2", "sale"), 20)
    again, action = run(host, adjust(2, 4600, "t1", "sale", repeat=True), 30)
    assert (again.rc, again.rrn, again.amount) == (p.RC_APPROVED, sale.rrn, 4600)
    assert action is not None and action.action == "replay"
    assert money(host) == (PAN_BALANCE - 4200, 4200, 0)  # the later adjust stands


@pytest.mark.parametrize(
    ("total", "rc", "why"),
    [
        (3999, "13", "below the sale's base amount 4000"),
        (8001, "13", "exceeds the base amount 4000"),
        (0, "13", "below the sale's base amount"),
        (8000, "00", "Tip set to 4000"),
        (4000, "00", "Tip set to 0"),
    ],
)
def test_a_tip_is_at_most_the_base_and_the_total_never_below_it(
    host: Acquirer, total: int, rc: str, why: str
) -> None:
    host.handle(purchase(1, 4000, key="sale"), 0)
    before = books(host)
    resp, action = run(host, adjust(2, total, "t1", "sale"), 10)
    assert resp.rc == rc and action is not None and why in action.detail
    if rc != "00":
        assert action.action == "adjust-refused" and books(host) == before


def test_the_base_stays_the_base_after_a_tip(host: Acquirer) -> None:
    host.handle(purchase(1, 4000, key="sale"), 0)
    host.handle(adjust(2, 5000, "t1", "sale"), 10)
    assert host.handle(adjust(3, 3999, "t2", "sale"), 20).rc == p.RC_INVALID_AMOUNT
    assert host.handle(adjust(4, 8001, "t3", "sale"), 30).rc == p.RC_INVALID_AMOUNT
    assert host.handle(adjust(5, 8000, "t4", "sale"), 40).rc == p.RC_APPROVED


def _refused_adjust(host: Acquirer, msg: Message, why: str) -> None:
    before = books(host)
    resp, action = run(host, msg, 100)
    assert resp.rc == p.RC_REVERSAL_REFUSED
    assert action is not None and action.action == "adjust-refused" and why in action.detail
    assert books(host) == before


def test_an_adjust_after_the_batch_close_is_refused_12(host: Acquirer) -> None:
    sale = host.handle(purchase(1, 4000, key="sale"), 0)
    host.handle(batch(2, 7, debit_count=1, debit_amount=4000), 10)
    _refused_adjust(host, adjust(3, 4500, "t1", "sale"), "Sale settled in batch 7: too late")
    txn = host.transaction_by_rrn(sale.rrn)
    assert txn is not None and (txn.amount, txn.tip) == (4000, 0)


def test_an_adjust_of_a_reversed_sale_is_refused_12(host: Acquirer) -> None:
    host.handle(purchase(1, 4000, key="sale"), 0)
    host.handle(reversal(2, orig_key="sale", amount=4000), 10)
    _refused_adjust(host, adjust(3, 4500, "t1", "sale"), "reversed sale")


def test_an_adjust_of_a_declined_sale_is_refused_12(host: Acquirer) -> None:
    host.handle(purchase(1, 5100, key="sale"), 0)
    _refused_adjust(host, adjust(3, 5500, "t1", "sale"), "declined sale")


def test_an_adjust_of_a_hold_or_a_refund_is_refused_12(host: Acquirer) -> None:
    host.handle(preauth(1, 4000, "pa"), 0)
    _refused_adjust(host, adjust(2, 4500, "t1", "pa"), "names a preauth, not a purchase")
    host.handle(purchase(3, 4000, key="sale"), 0)
    host.handle(refund(4, 1000, key="r1", orig_key="sale"), 10)
    _refused_adjust(host, adjust(5, 1100, "t2", "r1"), "names a refund, not a purchase")


def test_an_adjust_of_an_unknown_sale_or_on_another_card_is_refused_12(host: Acquirer) -> None:
    _refused_adjust(host, adjust(2, 4500, "t1", "nothing"), "names no sale")
    host.handle(purchase(1, 4000, key="sale"), 0)
    _refused_adjust(host, adjust(3, 4500, "t2", "sale", pan=OTHER_PAN), "card differs")


def test_an_adjust_never_takes_the_total_below_what_was_refunded(host: Acquirer) -> None:
    host.handle(purchase(1, 4000, key="sale"), 0)
    host.handle(adjust(2, 5000, "t1", "sale"), 10)
    host.handle(refund(3, 4500, key="r1", orig_key="sale"), 20)
    before = books(host)
    resp, action = run(host, adjust(4, 4400, "t2", "sale"), 30)
    assert resp.rc == p.RC_INVALID_AMOUNT
    assert action is not None and "4500 already refunded" in action.detail
    assert books(host) == before
    assert host.handle(adjust(5, 4500, "t3", "sale"), 40).rc == p.RC_APPROVED


def test_a_completion_takes_a_tip_too(host: Acquirer) -> None:
    host.handle(preauth(1, 5000, "pa"), 0)
    done = host.handle(completion(2, 4000, "c1", "pa"), 10)
    resp = host.handle(adjust(3, 4800, "t1", "c1"), 20)
    assert (resp.rc, resp.rrn, resp.amount) == (p.RC_APPROVED, done.rrn, 4800)
    assert money(host) == (PAN_BALANCE - 4800, 4800, 0)
    [pre] = host.preauths()
    completed = host.completion_of(pre.id)
    assert completed is not None and (completed.amount, completed.tip) == (4800, 800)


def test_a_void_of_a_tipped_sale_carries_the_total_and_returns_it_all(host: Acquirer) -> None:
    sale = host.handle(purchase(1, 4000, key="sale"), 0)
    host.handle(adjust(2, 4600, "t1", "sale"), 10)
    stale = host.handle(reversal(3, orig_key="sale", amount=4000, pan=PAN), 20)
    assert stale.rc == p.RC_REVERSAL_REFUSED
    resp, action = run(host, reversal(4, orig_key="sale", amount=4600, pan=PAN), 30)
    assert (resp.rc, resp.rrn) == (p.RC_APPROVED, sale.rrn)
    assert action is not None and action.amount == 4600
    assert money(host) == (PAN_BALANCE, 0, 0)


def test_a_reversal_naming_an_adjusts_key_reverses_nothing(host: Acquirer) -> None:
    sale = host.handle(purchase(1, 4000, key="sale"), 0)
    host.handle(adjust(2, 4600, "t1", "sale"), 10)
    before = books(host)
    resp, action = run(host, reversal(3, orig_key="t1", amount=4600, pan=PAN), 20)
    assert (resp.rc, resp.rrn) == (p.RC_REVERSAL_REFUSED, sale.rrn)
    assert action is not None and "tip adjust" in action.detail
    assert books(host) == before
    # Nor is an adjust's key a sale to refund or complete.
    assert host.handle(refund(4, 100, key="r1", orig_key="t1"), 30).rc == "12"
    assert host.handle(completion(5, 100, "c1", "t1"), 40).rc == "12"


def test_refunds_are_held_to_the_tipped_total(host: Acquirer) -> None:
    host.handle(purchase(1, 4000, key="sale"), 0)
    host.handle(adjust(2, 4600, "t1", "sale"), 10)
    host.handle(batch(3, 1, debit_count=1, debit_amount=4600), 20)
    assert host.handle(refund(4, 4601, key="r1", orig_key="sale"), 30).rc == "12"
    assert host.handle(refund(5, 4600, key="r2", orig_key="sale"), 40).rc == p.RC_APPROVED
    assert money(host) == (PAN_BALANCE, 0, 0)


def test_an_adjust_is_found_after_the_sales_key_record_expired() -> None:
    acq = make_host(idempotency_retention_ms=1_000)
    try:
        sale = acq.handle(purchase(1, 4000, key="sale"), 0)
        resp = acq.handle(adjust(2, 4500, "t1", "sale"), 5_000)
        assert (resp.rc, resp.rrn) == (p.RC_APPROVED, sale.rrn)
        # Once the adjust's own record has expired too, its key still names no sale.
        assert acq.handle(adjust(3, 4500, "t2", "t1"), 9_000).rc == "12"
    finally:
        acq.close()


# -- settlement ---------------------------------------------------------------------------


def test_the_batch_counts_completions_and_tips_as_debits_and_no_hold(host: Acquirer) -> None:
    host.handle(purchase(1, 4000, key="sale"), 0)
    host.handle(adjust(2, 4600, "t1", "sale"), 10)
    host.handle(preauth(3, 5000, "pa"), 20)
    host.handle(completion(4, 3000, "c1", "pa"), 30)
    host.handle(adjust(5, 3300, "t2", "c1"), 40)
    host.handle(preauth(6, 2000, "pb"), 50)  # still held: in no batch
    host.handle(refund(7, 1000, key="r1", orig_key="sale"), 60)
    # The terminal forgot the tips: the host lists both sales with their totals.
    wrong = host.handle(
        batch(8, 1, debit_count=2, debit_amount=7000, credit_count=1, credit_amount=1000), 70
    )
    assert wrong.rc == p.RC_RECONCILE_ERROR
    assert sorted((i.stan, i.amount) for i in wrong.items) == [(1, 4600), (4, 3300), (7, 1000)]
    [settled] = host.settlements()
    assert (settled.host_count, settled.host_amount) == (3, 4600 + 3300 - 1000)
    assert money(host) == (PAN_BALANCE - 4600 - 3300 - 2000 + 1000, 4600 + 3300 - 1000, 2000)


def test_the_batch_matches_with_tips_and_completions_counted(host: Acquirer) -> None:
    host.handle(purchase(1, 4000, key="sale"), 0)
    host.handle(adjust(2, 4600, "t1", "sale"), 10)
    host.handle(preauth(3, 5000, "pa"), 20)
    host.handle(completion(4, 3000, "c1", "pa"), 30)
    closed = host.handle(batch(5, 1, debit_count=2, debit_amount=7600), 40)
    assert closed.rc == p.RC_APPROVED and closed.items == ()
    assert {t.batch_no for t in host.transactions() if t.kind != "preauth"} == {1}
    assert [t.batch_no for t in host.preauths()] == [0]


# -- restarts and PostgreSQL (stores written before tips: test_pgstore.py) ---------------


def _script(acq_for: Callable[[], Acquirer], restart: Callable[[Acquirer], Acquirer]) -> list[Any]:
    """Preauth, completion, adjusts, batch close, void and refund, with `restart`
    between every two steps; what was answered and what the books say."""
    acq = acq_for()
    out: list[Any] = []
    steps = [
        preauth(1, 5000, "pa"),
        preauth(2, 2000, "pb"),
        completion(3, 4000, "c1", "pa"),
        completion(3, 4000, "c1", "pa", repeat=True),
        completion(4, 1000, "c2", "pa"),
        purchase(5, 3000, key="sale"),
        adjust(6, 3500, "t1", "sale"),
        adjust(6, 3500, "t1", "sale", repeat=True),
        adjust(7, 4400, "t2", "c1"),
        reversal(8, orig_key="pa", amount=5000, pan=PAN),
        batch(9, 1, debit_count=2, debit_amount=7900),
        adjust(10, 3600, "t3", "sale"),
        reversal(11, orig_key="c1", amount=4400, pan=PAN),
        refund(12, 4400, key="r1", orig_key="c1"),
        reversal(13, orig_key="pb", amount=2000, pan=PAN),
    ]
    try:
        for i, msg in enumerate(steps):
            resp = acq.handle(msg, 100 * i)
            out.append((resp.mti, resp.rc, resp.rrn, resp.auth_code, resp.amount))
            acq = restart(acq)
        out += [list(acq.transactions()), acq.preauths(), money(acq), acq.settlements()]
        out.append([acq.completion_of(t.id) for t in acq.preauths()])
    finally:
        acq.close()
    return out


def _restarts_change_nothing(db: str, fresh: Callable[[], str]) -> None:
    def reopen(acq: Acquirer) -> Acquirer:
        acq.close()
        return make_host(db_path=db)

    restarted = _script(lambda: make_host(db_path=db), reopen)
    other = fresh()
    straight = _script(lambda: make_host(db_path=other), lambda acq: acq)
    assert restarted == straight
    assert [r[1] for r in restarted[:15]] == [
        "00", "00", "00", "00", "12", "00", "00", "00", "00", "12", "00", "12", "12", "00", "00",
    ]  # fmt: skip
    assert restarted[17] == (PAN_BALANCE - 3500, 3500, 0)


def test_a_restarted_sqlite_host_behaves_as_one_that_was_not(tmp_path: Path) -> None:
    _restarts_change_nothing(str(tmp_path / "a.db"), lambda: str(tmp_path / "b.db"))


def test_a_restarted_postgres_host_behaves_as_one_that_was_not(pg_url: str) -> None:
    _restarts_change_nothing(pg_url, lambda: ":memory:")


def test_postgres_locks_what_a_completion_or_adjust_changes() -> None:
    assert pgstore.statement(store.SQL_TXN_LOCK).endswith(
        "WHERE id = %s AND terminal_id = %s FOR UPDATE"
    )
    assert "BIGINT" in pgstore.statement(store.SQL_TXN_ADD_TIP)


def test_a_double_completion_is_refused_by_postgres_too(pg_url: str) -> None:
    acq = make_host(db_path=pg_url)
    try:
        acq.handle(preauth(1, 5000, "pa"), 0)
        acq.handle(completion(2, 3000, "c1", "pa"), 10)
        assert acq.handle(completion(3, 1000, "c2", "pa"), 20).rc == p.RC_REVERSAL_REFUSED
        [pre] = acq.preauths()
        import psycopg

        with pytest.raises(psycopg.errors.UniqueViolation):
            acq._db.execute(store.SQL_COMPLETION_LINK, (999, pre.id))
    finally:
        acq.close()


# -- any sequence of holds, completions, adjusts, voids, refunds and closes ---------------

_KEYS = ("k1", "k2", "k3", "k4", "k5")
_AMOUNTS = st.sampled_from([1, 999, 1000, 1500, 2000, 4000, 5100, 9999])
_OPS = st.one_of(
    st.tuples(st.just("preauth"), st.sampled_from(_KEYS), _AMOUNTS, st.just("")),
    st.tuples(st.just("purchase"), st.sampled_from(_KEYS), _AMOUNTS, st.just("")),
    st.tuples(st.just("completion"), st.sampled_from(_KEYS), _AMOUNTS, st.sampled_from(_KEYS)),
    st.tuples(st.just("adjust"), st.sampled_from(_KEYS), _AMOUNTS, st.sampled_from(_KEYS)),
    st.tuples(st.just("void"), st.just(""), _AMOUNTS, st.sampled_from(_KEYS)),
    st.tuples(st.just("refund"), st.sampled_from(_KEYS), _AMOUNTS, st.sampled_from(_KEYS)),
    st.tuples(st.just("close"), st.just(""), st.just(0), st.just("")),
)


def _op(kind: str, key: str, amount: int, orig: str, stan: int, batch_no: int) -> Message:
    if kind == "preauth":
        return preauth(stan, amount, key)
    if kind == "purchase":
        return purchase(stan, amount, key=key)
    if kind == "completion":
        return completion(stan, amount, key, orig)
    if kind == "adjust":
        return adjust(stan, amount, key, orig)
    if kind == "void":
        return reversal(stan, orig_key=orig, amount=amount)
    if kind == "refund":
        return refund(stan, amount, key=key, orig_key=orig)
    return batch(stan, batch_no)


@settings(max_examples=200, deadline=None)
@given(st.lists(_OPS, max_size=25))
def test_any_sequence_keeps_holds_sales_and_money_consistent(ops: list[Any]) -> None:
    """Whatever a terminal sends, with keys colliding on purpose: the ledger balances,
    the holds account is exactly the open holds, the merchant exactly the sales (tips
    included) less the refunds, a hold is captured at most once and never for more
    than it held, and a tip never exceeds its sale's base."""
    acq = make_host()
    try:
        for i, (kind, key, amount, orig) in enumerate(ops):
            assert acq.handle(_op(kind, key, amount, orig, i + 1, i + 1), 10 * i).rc
            txns = list(acq.transactions())
            live = [t for t in txns if t.status == "approved"]
            held = sum(t.amount for t in live if t.kind == "preauth")
            sold = sum(t.amount for t in live if t.kind in ("purchase", "completion"))
            credited = sum(t.amount for t in live if t.kind == "refund")
            assert money(acq) == (PAN_BALANCE - held - sold + credited, sold - credited, held)
            for pre in acq.preauths():
                done = acq.completion_of(pre.id)
                assert (done is not None) == (pre.status == "completed")
                if done is not None:
                    assert done.amount - done.tip <= pre.amount
            for sale in txns:
                assert 0 <= sale.tip <= sale.amount - sale.tip
    finally:
        acq.close()


def test_a_completion_or_adjust_blocked_by_an_earlier_reversal_moves_nothing(
    host: Acquirer,
) -> None:
    host.handle(preauth(1, 5000, "pa"), 0)
    host.handle(purchase(2, 4000, key="sale"), 0)
    assert host.handle(reversal(3, orig_key="c1", amount=4000), 10).rc == p.RC_UNABLE_TO_LOCATE
    assert host.handle(reversal(4, orig_key="t1", amount=4500), 10).rc == p.RC_UNABLE_TO_LOCATE
    before = money(host)
    assert host.handle(completion(5, 4000, "c1", "pa"), 20).rc == p.RC_DO_NOT_HONOUR
    assert host.handle(adjust(6, 4500, "t1", "sale"), 30).rc == p.RC_DO_NOT_HONOUR
    assert money(host) == before
    late = [(t.kind, t.status) for t in host.transactions()][2:]
    assert late == [("completion", "declined"), ("adjust", "declined")]
    [pre] = host.preauths()
    assert pre.status == "approved" and host.completion_of(pre.id) is None


# -- two host instances on one PostgreSQL database ----------------------------------------


def test_two_completions_of_one_hold_on_two_instances_capture_once(pg_url: str) -> None:
    with races.pair(pg_url) as race:
        t, pan = races.TERMINAL, races.PAN
        race.a.handle(t.preauth(1, 5000, pan, "pa"), 0)
        race.a.begin_group()
        first = race.a.handle(t.completion(2, 4000, pan, "c1", "pa"), 10)  # not committed
        assert first.rc == p.RC_APPROVED
        # b reads the hold's record FOR UPDATE: waits for a's commit, then sees it completed.
        second = race.b_waits_for_a(
            lambda: race.b.handle(t.completion(3, 3000, pan, "c2", "pa"), 20)
        )
        assert second.rc == p.RC_REVERSAL_REFUSED
        [pre] = race.a.preauths()
        done = race.a.completion_of(pre.id)
        assert done is not None and done.rrn == first.rrn
        assert race.a.balance(pan) == race.a.initial_balance(pan) - 4000
        assert race.a.balance(HOLDS_ACCOUNT) == 0 and race.a.ledger_sum() == 0


def test_two_adjusts_of_one_sale_on_two_instances_take_turns(pg_url: str) -> None:
    with races.pair(pg_url) as race:
        t, pan = races.TERMINAL, races.PAN
        sale = race.a.handle(t.purchase(1, 4000, pan, "sale"), 0)
        race.a.begin_group()
        assert race.a.handle(t.adjust(2, 4600, pan, "t1", "sale"), 10).rc == p.RC_APPROVED
        second = race.b_waits_for_a(lambda: race.b.handle(t.adjust(3, 4800, pan, "t2", "sale"), 20))
        assert second.rc == p.RC_APPROVED
        txn = race.a.transaction_by_rrn(sale.rrn)
        assert txn is not None and (txn.amount, txn.tip) == (4800, 800)
        assert race.a.balance(pan) == race.a.initial_balance(pan) - 4800
        assert race.a.balance(MERCHANT) == 4800 and race.a.ledger_sum() == 0
