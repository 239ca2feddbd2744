"""Behaviour of the mock acquirer host: payments, idempotency, reversals, batches, errors."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acquirer import catalogue
from acquirer import iso8583 as codec
from acquirer import protocol as p
from acquirer.catalogue import CardAccount
from acquirer.host import Acquirer, HostAction, HostConfig, Message, Ticket
from acquirer.testing import TerminalMessages

KEY = b"terminal-1-key"
TID = "T1"
MID = "M1"
PAN = "4111111111111111"
PAN_BALANCE = 10_000
MERCHANT = "MERCHANT"
T1 = TerminalMessages(TID, MID, KEY)


def make_host(**config: Any) -> Acquirer:
    """A host that knows terminal T1 and one scenario card with 100.00 on it."""
    # Freshness has its own tests (test_attacks.py): here requests carry no time.
    config.setdefault("freshness_window_ms", 0)
    return Acquirer(HostConfig(mac_keys={TID: KEY}, **config), [CardAccount(PAN, PAN_BALANCE)])


def signed(msg: Message) -> Message:
    return T1.signed(msg)


def purchase(stan: int, amount: int, pan: str = PAN, key: str = "", **kw: Any) -> Message:
    """A signed 0200; without `key` it gets "K<stan>" (the host refuses keyless ones)."""
    return T1.purchase(stan, amount, pan, key or f"K{stan}", **kw)


def refund(stan: int, amount: int, pan: str = PAN, key: str = "", **kw: Any) -> Message:
    return T1.refund(stan, amount, pan, key or f"K{stan}", **kw)


def reversal(stan: int, orig_key: str = "", orig_stan: int = 0, **kw: Any) -> Message:
    """A signed 0400 of "K<orig_stan>" unless `orig_key` is given."""
    return T1.reversal(stan, orig_key or f"K{orig_stan}", orig_stan, **kw)


def batch(stan: int, batch_no: int, **kw: Any) -> Message:
    return T1.batch(stan, batch_no, **kw)


def snapshot(acq: Acquirer) -> tuple[Any, ...]:
    """Everything a rejected request must leave unchanged."""
    return (
        list(acq.transactions()),
        acq.balance(PAN),
        acq.balance(MERCHANT),
        acq.ledger_sum(),
        acq.settlements(),
        acq.idempotency_records(),
    )


@pytest.fixture
def host() -> Iterator[Acquirer]:
    acq = make_host()
    yield acq
    acq.close()


def finish_now(acq: Acquirer, msg: Message, now_ms: int) -> tuple[Message, HostAction | None]:
    started, action = acq.begin(msg, now_ms)
    if isinstance(started, Message):
        return started, action
    return acq.finish(started, started.finish_at_ms)


# -- purchases ------------------------------------------------------------------------


def test_approved_purchase_moves_money_by_double_entry_and_signs_response(host: Acquirer) -> None:
    resp = host.handle(purchase(1, 1234, key="k1"), 0)
    assert resp.mti == p.MTI_PURCHASE_RESP
    assert resp.rc == p.RC_APPROVED
    assert len(resp.rrn) == 12 and len(resp.auth_code) == 6
    assert p.verify(resp, KEY)
    assert host.balance(PAN) == PAN_BALANCE - 1234
    assert host.balance(MERCHANT) == 1234
    assert host.initial_balance(PAN) == PAN_BALANCE
    assert host.ledger_sum() == 0
    [txn] = host.transactions()
    assert (txn.kind, txn.status, txn.amount, txn.rrn, txn.idem_key) == (
        "purchase",
        "approved",
        1234,
        resp.rrn,
        "k1",
    )


def test_response_is_the_request_with_host_fields_replaced_and_signed(host: Acquirer) -> None:
    req = purchase(7, 100, key="k7", repeat=True)
    resp = host.handle(req, 0)
    expected = replace(
        req,
        mti="0210",
        rc="00",
        rrn=resp.rrn,
        auth_code=resp.auth_code,
        repeat=False,
        mac="",
    )
    assert resp == p.sign(expected, KEY)


def test_rrns_are_unique_and_the_same_on_every_run() -> None:
    runs = []
    for _ in range(2):
        acq = make_host()
        runs.append([acq.handle(purchase(i, 10, key=f"k{i}"), i).rrn for i in range(5)])
        acq.close()
    assert runs[0] == runs[1]
    assert len(set(runs[0])) == 5


def test_begin_returns_a_ticket_due_after_processing_time(host: Acquirer) -> None:
    ticket, action = host.begin(purchase(1, 100, key="k"), 1_000)
    assert isinstance(ticket, Ticket)
    assert action is None
    assert ticket.started_ms == 1_000
    assert ticket.finish_at_ms == 1_020


def test_unknown_card_is_declined_05_without_charge(host: Acquirer) -> None:
    resp, action = finish_now(host, purchase(1, 100, pan="5555555555554444"), 0)
    assert resp.rc == p.RC_DO_NOT_HONOUR
    assert action is not None and action.action == "decline"
    assert host.balance(MERCHANT) == 0


def test_zero_amount_is_declined_13(host: Acquirer) -> None:
    assert host.handle(purchase(1, 0), 0).rc == p.RC_INVALID_AMOUNT
    assert host.balance(MERCHANT) == 0


def test_insufficient_funds_is_declined_51_and_stored_as_declined(host: Acquirer) -> None:
    resp = host.handle(purchase(1, PAN_BALANCE + 1), 0)
    assert resp.rc == p.RC_INSUFFICIENT_FUNDS
    [txn] = host.transactions()
    assert txn.status == "declined" and txn.rc == "51"
    assert host.balance(PAN) == PAN_BALANCE


@pytest.mark.parametrize(("amount", "rc"), sorted(catalogue.AMOUNT_RULES.items()))
def test_catalogue_amounts_force_their_response_code_without_charging(
    host: Acquirer, amount: int, rc: str
) -> None:
    assert catalogue.amount_rule(amount) == rc
    assert amount == int(rc) * 100
    assert host.handle(purchase(1, amount, key="a"), 0).rc == rc
    assert host.balance(PAN) == PAN_BALANCE
    assert host.ledger_sum() == 0


def test_amount_rules_can_be_switched_off() -> None:
    acq = make_host(test_amounts=False)
    assert acq.handle(purchase(1, 500), 0).rc == p.RC_APPROVED
    assert catalogue.amount_rule(501) is None


@pytest.mark.parametrize(
    ("pan", "rc"),
    [
        (catalogue.PAN_APPROVE, p.RC_APPROVED),
        (catalogue.PAN_INSUFFICIENT, p.RC_INSUFFICIENT_FUNDS),
        (catalogue.PAN_DO_NOT_HONOUR, p.RC_DO_NOT_HONOUR),
        (catalogue.PAN_ISSUER_DOWN, p.RC_ISSUER_UNAVAILABLE),
        (catalogue.PAN_SLOW_ISSUER, p.RC_APPROVED),
    ],
)
def test_catalogue_cards_give_their_documented_outcome(host: Acquirer, pan: str, rc: str) -> None:
    assert host.handle(purchase(1, 100, pan=pan), 0).rc == rc
    assert host.initial_balance(pan) == catalogue.CATALOGUE_BALANCE


def test_slow_issuer_card_and_slow_amount_add_processing_time(host: Acquirer) -> None:
    slow_card, _ = host.begin(purchase(1, 100, pan=catalogue.PAN_SLOW_ISSUER, key="a"), 0)
    slow_amount, _ = host.begin(purchase(2, catalogue.AMOUNT_SLOW, key="b"), 0)
    assert isinstance(slow_card, Ticket) and isinstance(slow_amount, Ticket)
    assert slow_card.finish_at_ms == 20 + catalogue.SLOW_ISSUER_MS
    assert slow_amount.finish_at_ms == 20 + catalogue.AMOUNT_SLOW_EXTRA_MS
    assert host.finish(slow_amount, slow_amount.finish_at_ms)[0].rc == p.RC_APPROVED


def test_no_reply_amount_charges_and_flags_the_response_to_be_dropped(host: Acquirer) -> None:
    resp, action = finish_now(host, purchase(1, catalogue.AMOUNT_NO_REPLY, key="a"), 0)
    assert action is not None and action.action == "charge-no-reply"
    assert resp.rc == p.RC_APPROVED
    assert host.balance(PAN) == PAN_BALANCE - catalogue.AMOUNT_NO_REPLY
    pan = catalogue.PAN_APPROVE
    frame = codec.encode(purchase(2, catalogue.AMOUNT_NO_REPLY, pan=pan, key="b"))
    assert host.handle_frame(frame, 10) == b""
    assert host.balance(pan) == catalogue.CATALOGUE_BALANCE - catalogue.AMOUNT_NO_REPLY


def test_scenario_card_overrides_catalogue_card_with_same_pan() -> None:
    acq = Acquirer(HostConfig(mac_keys={TID: KEY}), [CardAccount(catalogue.PAN_INSUFFICIENT, 50)])
    assert acq.initial_balance(catalogue.PAN_INSUFFICIENT) == 50
    assert acq.handle(purchase(1, 40, pan=catalogue.PAN_INSUFFICIENT), 0).rc == "00"
    assert acq.handle(purchase(2, 40, pan=catalogue.PAN_INSUFFICIENT), 0).rc == "51"


def test_card_rule_response_code_is_forced() -> None:
    acq = Acquirer(HostConfig(mac_keys={TID: KEY}), [CardAccount(PAN, 10**6, rc="05")])
    assert acq.handle(purchase(1, 100), 0).rc == "05"


# -- idempotency ----------------------------------------------------------------------


def test_retry_with_same_key_replays_the_stored_response_and_charges_once(host: Acquirer) -> None:
    first = host.handle(purchase(1, 700, key="abc"), 0)
    retry, action = finish_now(host, purchase(2, 700, key="abc", repeat=True), 5_000)
    assert action is not None and action.action == "replay"
    assert (retry.rc, retry.rrn, retry.auth_code) == (first.rc, first.rrn, first.auth_code)
    assert retry.stan == 2 and p.verify(retry, KEY)
    assert host.balance(PAN) == PAN_BALANCE - 700
    assert len(list(host.transactions())) == 1


def test_declines_are_replayed_too(host: Acquirer) -> None:
    assert host.handle(purchase(1, PAN_BALANCE + 1, key="d"), 0).rc == "51"
    _, action = finish_now(host, purchase(1, PAN_BALANCE + 1, key="d"), 1)
    assert action is not None and (action.action, action.rc) == ("replay", "51")


def test_key_reuse_with_a_different_amount_gets_94_and_stores_nothing(host: Acquirer) -> None:
    host.handle(purchase(1, 700, key="abc"), 0)
    before = snapshot(host)
    resp, action = host.begin(purchase(2, 701, key="abc"), 10)
    assert isinstance(resp, Message) and resp.rc == p.RC_DUPLICATE
    assert action is not None and action.action == "reject"
    assert snapshot(host) == before


def test_same_key_while_in_progress_gets_09_and_later_replays(host: Acquirer) -> None:
    ticket, _ = host.begin(purchase(1, 300, key="k"), 0)
    assert isinstance(ticket, Ticket)
    resp, action = host.begin(purchase(1, 300, key="k", repeat=True), 5)
    assert isinstance(resp, Message) and resp.rc == p.RC_IN_PROGRESS
    assert action is not None and action.action == "in-progress"
    host.finish(ticket, 20)
    assert host.handle(purchase(1, 300, key="k", repeat=True), 30).rrn == "000000000001"
    assert host.balance(PAN) == PAN_BALANCE - 300


@pytest.mark.parametrize("amount", [9100, 9600])
def test_transient_results_are_not_stored_so_a_retry_is_processed_afresh(
    host: Acquirer, amount: int
) -> None:
    assert host.handle(purchase(1, amount, key="t"), 0).rc in p.TRANSIENT_RCS
    assert list(host.transactions()) == []
    retry, _ = host.begin(purchase(1, amount, key="t", repeat=True), 100)
    assert isinstance(retry, Ticket)


def test_transient_card_rule_is_not_stored(host: Acquirer) -> None:
    msg = purchase(1, 100, pan=catalogue.PAN_ISSUER_DOWN, key="t")
    assert host.handle(msg, 0).rc == p.RC_ISSUER_UNAVAILABLE
    assert host.idempotency_records() == 0


def test_idempotency_records_expire_after_retention_and_are_pruned() -> None:
    acq = make_host(idempotency_retention_ms=1_000)
    acq.handle(purchase(1, 100, key="old"), 0)
    acq.handle(purchase(2, 100, key="other"), 10)
    assert acq.idempotency_records() == 2
    # After retention the key is forgotten: the same request is a new payment.
    _, action = finish_now(acq, purchase(1, 100, key="old"), 5_000)
    assert action is not None and action.action == "charge"
    assert acq.balance(PAN) == PAN_BALANCE - 300
    # The stale "other" record was pruned on the way.
    assert acq.idempotency_records() == 1


def test_classic_rule_replays_repeats_and_identical_resends_without_key(host: Acquirer) -> None:
    first = host.handle(purchase(42, 500 + 1), 1_000)
    repeat = host.handle(purchase(42, 501, repeat=True), 2_000)
    resend = host.handle(purchase(42, 501), 3_000)
    assert first.rrn == repeat.rrn == resend.rrn
    assert host.balance(PAN) == PAN_BALANCE - 501


def test_classic_rule_same_stan_different_amount_or_pan_gets_94(host: Acquirer) -> None:
    host.handle(purchase(42, 501), 1_000)
    assert host.handle(purchase(42, 502), 2_000).rc == p.RC_DUPLICATE
    other_pan = purchase(42, 501, pan=catalogue.PAN_APPROVE)
    assert host.handle(other_pan, 2_000).rc == p.RC_DUPLICATE
    assert host.handle(purchase(42, 501, processing_code=p.PROC_REFUND), 2_000).rc == "94"


def test_keyless_purchase_is_refused_30_and_charges_nothing(host: Acquirer) -> None:
    """Without an idempotency key a replay could not be told from a new sale."""
    before = snapshot(host)
    keyless = T1.purchase(42, 501, PAN, "")
    resp, action = finish_now(host, keyless, 1_000)
    assert resp.rc == p.RC_FORMAT_ERROR and p.verify(resp, KEY)
    assert action is not None and "idempotency key required" in action.detail
    assert snapshot(host) == before


def test_abandoned_ticket_lets_the_retry_run_afresh_and_charge_once(host: Acquirer) -> None:
    ticket, _ = host.begin(purchase(1, 400, key="crash"), 0)
    assert isinstance(ticket, Ticket)
    host.abandon(ticket)
    assert host.balance(PAN) == PAN_BALANCE
    assert host.handle(purchase(1, 400, key="crash", repeat=True), 50).rc == "00"
    assert host.balance(PAN) == PAN_BALANCE - 400


# -- reversals ------------------------------------------------------------------------


def test_reversal_credits_back_and_a_repeated_reversal_is_a_noop(host: Acquirer) -> None:
    sale = host.handle(purchase(1, 900, key="s"), 0)
    resp, action = finish_now(host, reversal(2, orig_key="s", amount=900), 100)
    assert resp.mti == p.MTI_REVERSAL_RESP and resp.rc == p.RC_APPROVED
    assert resp.rrn == sale.rrn and p.verify(resp, KEY)
    assert action is not None and action.action == "reverse"
    assert host.balance(PAN) == PAN_BALANCE and host.balance(MERCHANT) == 0
    [txn] = host.transactions()
    assert (txn.status, txn.reversed_ms) == ("reversed", 120)  # finished after 20 ms
    again, action = finish_now(host, reversal(2, orig_key="s", amount=900, repeat=True), 200)
    assert again.rc == "00" and action is not None and action.action == "reverse-noop"
    assert host.balance(PAN) == PAN_BALANCE
    assert host.ledger_sum() == 0


def test_reversal_without_the_original_key_is_refused_30(host: Acquirer) -> None:
    """A STAN alone does not name a sale once keys are per boot: the key is required."""
    host.handle(purchase(17, 900, key="keyed"), 0)
    resp, action = finish_now(host, T1.reversal(18, "", 17, amount=900), 100)
    assert resp.rc == p.RC_FORMAT_ERROR and action is not None and "orig_key" in action.detail
    assert host.balance(PAN) == PAN_BALANCE - 900


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"amount": 901}, "amount 901 differs"),
        ({"amount": 900, "pan": catalogue.PAN_APPROVE}, "card differs"),
    ],
)
def test_reversal_that_differs_from_its_original_is_refused_12(
    host: Acquirer, change: dict[str, Any], why: str
) -> None:
    """A reversal whose amount or card is not the original's reverses nothing (RC 12)."""
    host.handle(purchase(1, 900, key="s"), 0)
    before = snapshot(host)
    resp, action = finish_now(host, reversal(2, orig_key="s", **change), 100)
    assert (resp.mti, resp.rc) == (p.MTI_REVERSAL_RESP, p.RC_REVERSAL_REFUSED)
    assert action is not None and action.action == "reverse-refused" and why in action.detail
    assert snapshot(host) == before


def test_reversal_advice_is_answered_0430(host: Acquirer) -> None:
    host.handle(purchase(1, 900, key="s"), 0)
    resp = host.handle(reversal(2, orig_key="s", advice=True, amount=900), 10)
    assert (resp.mti, resp.rc) == (p.MTI_REVERSAL_ADVICE_RESP, "00")
    assert host.balance(PAN) == PAN_BALANCE


def test_reversal_of_a_declined_purchase_is_a_noop(host: Acquirer) -> None:
    host.handle(purchase(1, PAN_BALANCE + 1, key="d"), 0)
    _, action = finish_now(host, reversal(2, orig_key="d"), 10)
    assert action is not None and (action.action, action.rc) == ("reverse-noop", "00")
    assert [t.status for t in host.transactions()] == ["declined"]


def test_reversal_before_its_purchase_leaves_a_tombstone_that_blocks_the_charge(
    host: Acquirer,
) -> None:
    """The host answers RC 25 "unable to locate original" (it used to answer 00, as if
    it had reversed something) and keeps a tombstone so the late original is refused."""
    resp, action = finish_now(host, reversal(2, orig_key="late"), 0)
    assert resp.rc == p.RC_UNABLE_TO_LOCATE and p.verify(resp, KEY)
    assert action is not None and action.action == "reverse-tombstone"
    # The reversal resent before the original shows up: still not found.
    again, _ = finish_now(host, reversal(2, orig_key="late", repeat=True), 5)
    assert again.rc == p.RC_UNABLE_TO_LOCATE
    late, action = host.begin(purchase(1, 900, key="late"), 10)
    assert isinstance(late, Message) and late.rc == p.RC_DO_NOT_HONOUR
    assert action == HostAction("decline", "05", late.rrn, 900, "previously reversed")
    assert host.balance(PAN) == PAN_BALANCE
    # The decline is now the stored outcome: a retry replays it.
    assert host.handle(purchase(1, 900, key="late", repeat=True), 20).rc == "05"
    assert host.balance(PAN) == PAN_BALANCE
    # A second reversal is a no-op.
    assert host.handle(reversal(3, orig_key="late", amount=900), 30).rc == "00"


def test_repeated_reversal_of_an_unknown_purchase_is_idempotent(host: Acquirer) -> None:
    host.handle(reversal(2, orig_key="ghost"), 0)
    _, action = finish_now(host, reversal(2, orig_key="ghost", repeat=True), 10)
    assert action is not None and action.action == "reverse-noop"


def test_reversal_while_the_original_is_in_progress_gets_09(host: Acquirer) -> None:
    ticket, _ = host.begin(purchase(1, 900, key="busy"), 0)
    assert isinstance(ticket, Ticket)
    assert host.handle(reversal(2, orig_key="busy"), 5).rc == p.RC_IN_PROGRESS
    host.finish(ticket, 20)
    assert host.handle(reversal(2, orig_key="busy", amount=900, repeat=True), 30).rc == "00"
    assert host.balance(PAN) == PAN_BALANCE


# -- refunds --------------------------------------------------------------------------


def test_refund_credits_the_card_and_debits_the_merchant(host: Acquirer) -> None:
    host.handle(purchase(1, 900, key="sale"), 0)
    resp, action = finish_now(host, refund(2, 250, key="r", orig_key="sale"), 10)
    assert resp.rc == "00" and action is not None and action.action == "refund"
    assert host.balance(PAN) == PAN_BALANCE - 900 + 250
    assert host.balance(MERCHANT) == 900 - 250
    txn = list(host.transactions())[-1]
    assert (txn.kind, txn.status) == ("refund", "approved")
    _, action = finish_now(host, refund(2, 250, key="r", orig_key="sale", repeat=True), 20)
    assert action is not None and action.action == "replay"
    assert host.balance(PAN) == PAN_BALANCE - 900 + 250
    assert host.ledger_sum() == 0


def test_refund_naming_no_sale_is_refused_12_and_credits_nothing(host: Acquirer) -> None:
    """Without `orig_key` a refund would credit any card with any amount: refused."""
    before = snapshot(host)[1:4]
    resp, action = finish_now(host, refund(1, 250, key="r"), 0)
    assert resp.rc == p.RC_REVERSAL_REFUSED and p.verify(resp, KEY)
    assert action is not None and "names no sale" in action.detail
    assert snapshot(host)[1:4] == before


def test_unreferenced_refunds_setting_accepts_a_stand_alone_credit() -> None:
    acq = make_host(unreferenced_refunds=True)
    try:
        resp, _ = finish_now(acq, refund(1, 250, key="r"), 0)
        assert resp.rc == "00"
        assert acq.balance(PAN) == PAN_BALANCE + 250 and acq.balance(MERCHANT) == -250
    finally:
        acq.close()


def test_reversing_a_refund_takes_the_credit_back(host: Acquirer) -> None:
    host.handle(purchase(1, 900, key="sale"), 0)
    host.handle(refund(2, 250, key="r", orig_key="sale"), 0)
    host.handle(reversal(3, orig_key="r", amount=250), 10)
    assert host.balance(PAN) == PAN_BALANCE - 900 and host.balance(MERCHANT) == 900


# -- batches --------------------------------------------------------------------------


def test_batch_with_matching_totals_closes_with_00_and_stamps_transactions(
    host: Acquirer,
) -> None:
    host.handle(purchase(1, 100, key="a"), 0)
    host.handle(purchase(2, 200, key="b"), 0)
    host.handle(purchase(3, 300, key="c"), 0)
    host.handle(reversal(4, orig_key="c", amount=300), 0)
    host.handle(refund(5, 50, key="d", orig_key="a"), 0)
    host.handle(purchase(6, PAN_BALANCE * 2, key="e"), 0)  # declined: not counted
    msg = batch(7, 1, debit_count=2, debit_amount=300, credit_count=1, credit_amount=50)
    resp, action = finish_now(host, msg, 1_000)
    assert (resp.mti, resp.rc, resp.items) == (p.MTI_BATCH_RESP, "00", ())
    assert action is not None and action.action == "batch-match"
    [s] = host.settlements()
    assert (s.terminal_id, s.batch_no, s.matched, s.at_ms) == (TID, 1, True, 1_020)
    assert (s.terminal_count, s.terminal_amount, s.host_count, s.host_amount) == (3, 250, 3, 250)
    assert {t.batch_no for t in host.transactions()} == {1}
    # The next batch starts empty.
    assert host.handle(batch(8, 2), 2_000).rc == "00"


def test_batch_mismatch_answers_95_with_the_differing_transactions(host: Acquirer) -> None:
    a = host.handle(purchase(1, 100, key="a"), 0)
    b = host.handle(purchase(2, 200, key="b"), 0)
    c = host.handle(purchase(3, 300, key="c"), 0)
    items = (
        p.BatchItem(1, 100, a.rrn),  # agrees
        p.BatchItem(2, 250, b.rrn),  # wrong amount on the terminal
        p.BatchItem(9, 900, "999999999999"),  # the host never approved it
    )  # c is missing on the terminal
    msg = batch(10, 1, debit_count=3, debit_amount=1250, items=items)
    resp, action = finish_now(host, msg, 1_000)
    assert resp.rc == p.RC_RECONCILE_ERROR
    assert action is not None and action.action == "batch-mismatch"
    assert set(resp.items) == {
        p.BatchItem(2, 200, b.rrn),
        p.BatchItem(9, 900, "999999999999"),
        p.BatchItem(3, 300, c.rrn),
    }
    [s] = host.settlements()
    assert not s.matched and set(s.differing) == set(resp.items)
    assert (s.terminal_amount, s.host_amount) == (1250, 600)


def test_batch_items_without_rrn_are_matched_by_stan(host: Acquirer) -> None:
    host.handle(purchase(1, 100, key="a"), 0)
    msg = batch(2, 1, debit_count=1, debit_amount=150, items=(p.BatchItem(1, 150),))
    resp = host.handle(msg, 10)
    assert resp.rc == "95" and [i.amount for i in resp.items] == [100]


def test_repeated_batch_replays_the_answer_and_does_not_settle_again(host: Acquirer) -> None:
    host.handle(purchase(1, 100, key="a"), 0)
    first = host.handle(batch(2, 1, debit_count=5, debit_amount=5), 10)
    host.handle(purchase(3, 100, key="b"), 20)
    again, action = finish_now(host, batch(2, 1, debit_count=5, debit_amount=5, repeat=True), 30)
    assert action is not None and action.action == "replay"
    assert (again.rc, again.items) == (first.rc, first.items)
    assert len(host.settlements()) == 1
    assert [t.batch_no for t in host.transactions()] == [1, 0]


def test_batch_number_zero_is_a_format_error(host: Acquirer) -> None:
    assert host.handle(batch(1, 0), 0).rc == p.RC_FORMAT_ERROR
    assert host.settlements() == []


@pytest.mark.parametrize("kind", ["purchase", "reversal", "batch"])
def test_stan_zero_is_a_format_error_and_moves_nothing(host: Acquirer, kind: str) -> None:
    """STAN 000000 used to be accepted; ISO 8583 field 11 numbers requests 1-999999."""
    host.handle(purchase(1, 100, key="K1"), 0)
    before = snapshot(host)
    msg = {
        "purchase": purchase(0, 100, key="K0"),
        "reversal": reversal(0, orig_key="K1", amount=100),
        "batch": batch(0, 1),
    }[kind]
    resp, action = finish_now(host, msg, 10)
    assert resp.rc == p.RC_FORMAT_ERROR and action is not None and "stan" in action.detail
    assert snapshot(host) == before


# -- echo, errors, MAC ----------------------------------------------------------------


def test_echo_is_answered_0810_00(host: Acquirer) -> None:
    resp, action = finish_now(host, signed(Message(p.MTI_ECHO, TID, MID, 5)), 0)
    assert (resp.mti, resp.rc) == (p.MTI_ECHO_RESP, "00")
    assert action == HostAction("echo", "00")


@pytest.mark.parametrize(
    "bad",
    [
        purchase(1, 100, pan="41111111"),  # PAN too short
        purchase(1, 100, processing_code="310000"),  # unknown processing code
        purchase(1, -5),
        purchase(1, 100, key="x" * 65),
        signed(Message("0300", TID, MID, 1)),  # unknown MTI
        signed(Message(p.MTI_PURCHASE, TID, "M 1", 1, pan=PAN, amount=1)),
    ],
)
def test_malformed_requests_get_30_and_leave_the_ledger_unchanged(
    host: Acquirer, bad: Message
) -> None:
    host.handle(purchase(1, 100, key="base"), 0)
    before = snapshot(host)
    resp, action = host.begin(bad, 10)
    assert isinstance(resp, Message) and resp.rc == p.RC_FORMAT_ERROR
    assert action is not None and action.action == "reject"
    assert snapshot(host) == before


def test_bad_mac_gets_unsigned_30_and_charges_nothing(host: Acquirer) -> None:
    """The host never signs an answer to a request that failed authentication: a
    signed answer echoing attacker-chosen fields is what a splice attack needs."""
    before = snapshot(host)
    forged = replace(purchase(1, 100), amount=99)
    resp = host.handle(forged, 0)
    assert resp.rc == p.RC_FORMAT_ERROR and resp.mac == ""
    assert host.handle(replace(purchase(1, 100), mac=""), 0).rc == "30"
    assert snapshot(host) == before


def test_unknown_terminal_gets_unsigned_30(host: Acquirer) -> None:
    before = snapshot(host)
    msg = p.sign(Message(p.MTI_PURCHASE, "T9", MID, 1, pan=PAN, amount=100), b"other")
    resp = host.handle(msg, 0)
    assert resp.rc == "30" and resp.mac == ""
    assert snapshot(host) == before


def test_verify_mac_off_accepts_unsigned_requests() -> None:
    acq = make_host(verify_mac=False)
    unsigned = Message(p.MTI_PURCHASE, "T9", MID, 1, pan=PAN, amount=100, idem_key="k")
    resp = acq.handle(unsigned, 0)
    assert resp.rc == "00" and resp.mac == ""


def test_respond_error_signs_only_authentic_requests_and_stores_nothing(host: Acquirer) -> None:
    before = snapshot(host)
    resp = host.respond_error(purchase(1, 100, key="x"), p.RC_SYSTEM_ERROR)
    assert (resp.mti, resp.rc) == ("0210", "96") and p.verify(resp, KEY)
    forged = replace(purchase(1, 100, key="x"), currency="840")
    assert host.respond_error(forged, p.RC_SYSTEM_ERROR).mac == ""
    assert snapshot(host) == before


def test_handle_frame_answers_a_valid_frame(host: Acquirer) -> None:
    out = codec.decode(host.handle_frame(codec.encode(purchase(1, 100, key="f")), 0))
    assert (out.mti, out.rc) == ("0210", "00") and p.verify(out, KEY)


def test_handle_frame_answers_an_addressable_malformed_frame_with_30(host: Acquirer) -> None:
    frame = codec.encode(purchase(1, 100, key="f"))
    broken = frame.replace(b"000000000100", b"00000000010X")
    out = codec.decode(host.handle_frame(broken, 0))
    assert (out.mti, out.rc, out.terminal_id, out.stan) == ("0210", "30", TID, 1)
    assert host.balance(PAN) == PAN_BALANCE


def test_handle_frame_returns_nothing_for_unaddressable_garbage(host: Acquirer) -> None:
    assert host.handle_frame(b"\x00garbage", 0) == b""
    assert host.handle_frame(b"", 0) == b""
    assert host.handle_frame(b"0200" + b"F" * 9000, 0) == b""


# -- storage --------------------------------------------------------------------------


@pytest.mark.parametrize("path_kind", ["temp", "file"])
def test_on_disk_databases_behave_like_memory(tmp_path: object, path_kind: str) -> None:
    db_path = "" if path_kind == "temp" else str(tmp_path) + "/host.db"  # type: ignore[operator]
    acq = make_host(db_path=db_path)
    acq.handle(purchase(1, 100, key="a"), 0)
    assert acq.balance(PAN) == PAN_BALANCE - 100
    acq.close()
    if path_kind == "file":
        # A reopened file keeps its balances and continues the RRN sequence.
        again = make_host(db_path=db_path)
        assert again.balance(PAN) == PAN_BALANCE - 100
        assert again.handle(purchase(2, 1, key="b"), 10).rrn == "000000000002"
        assert again.handle(purchase(1, 100, key="a"), 20).rrn == "000000000001"
        again.close()


def test_transactions_stream_in_id_order(host: Acquirer) -> None:
    for i in range(5):
        host.handle(purchase(i + 1, 10 + i, key=f"k{i}"), i)
    assert [t.id for t in host.transactions()] == [1, 2, 3, 4, 5]


def test_unknown_account_balance_is_a_key_error(host: Acquirer) -> None:
    with pytest.raises(KeyError):
        host.balance("nobody")


# -- properties -----------------------------------------------------------------------

_ops = st.lists(
    st.tuples(
        st.sampled_from(["buy", "refund", "reverse", "abandon", "batch"]),
        st.integers(0, 5),  # idempotency key index
        st.sampled_from([0, 1, 100, 500, 9100, 9800, 5_000, PAN_BALANCE + 1]),
    ),
    max_size=40,
)


@settings(deadline=None, max_examples=60)
@given(_ops)
def test_money_is_conserved_and_ledger_balances_under_any_sequence(
    ops: list[tuple[str, int, int]],
) -> None:
    """Whatever the order of purchases, retries, reversals and crashes, money is conserved."""
    # Stand-alone refunds allowed: any refund may credit, the harder case for the books.
    acq = make_host(unreferenced_refunds=True)
    accounts = [PAN, MERCHANT, *[c.pan for c in catalogue.CATALOGUE_CARDS]]
    total = sum(acq.initial_balance(a) for a in accounts)
    for now_ms, (op, k, amount) in enumerate(ops):
        key = f"key{k}"
        if op == "buy":
            acq.handle(purchase(now_ms, amount, key=key), now_ms)
        elif op == "refund":
            acq.handle(refund(now_ms, amount, key=key), now_ms)
        elif op == "reverse":
            acq.handle(reversal(now_ms, orig_key=key, amount=amount), now_ms)
        elif op == "abandon":
            ticket, _ = acq.begin(purchase(now_ms, amount, key=key), now_ms)
            if isinstance(ticket, Ticket):
                acq.abandon(ticket)
        else:
            acq.handle(batch(now_ms, now_ms + 1), now_ms)
        assert acq.ledger_sum() == 0
        assert sum(acq.balance(a) for a in accounts) == total
        # No check that the card stays >= 0: reversing a refund whose credit was
        # already spent must still debit the card (found by this very test).
    charged = sum(
        t.amount for t in acq.transactions() if t.status == "approved" and t.kind == "purchase"
    )
    refunded = sum(
        t.amount for t in acq.transactions() if t.status == "approved" and t.kind == "refund"
    )
    assert acq.balance(MERCHANT) == charged - refunded
    acq.close()


_text = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=20)


@given(
    st.builds(
        Message,
        mti=st.sampled_from(p.ALL_MTIS),
        terminal_id=_text,
        merchant_id=_text,
        stan=st.integers(),
        pan=_text,
        amount=st.integers(),
        rrn=_text,
        rc=_text,
        idem_key=_text,
        repeat=st.booleans(),
        items=st.lists(st.builds(p.BatchItem, st.integers(), st.integers(), _text), max_size=3).map(
            tuple
        ),
    ),
    st.binary(max_size=16),
)
def test_mac_covers_every_field_as_documented(msg: Message, key: bytes) -> None:
    """The MAC is HMAC-SHA256 over "posh-mac-v2\\n", then every field but mac in
    declaration order as "<byte length>:<value>" (items: count, then 3 fields each;
    booleans 1/0; offline_ms only when set), as docs/protocol.md says: spelled out
    here the slow, obvious way."""
    import hashlib
    import hmac
    from dataclasses import fields

    def lp(value: object) -> bytes:
        data = str(value).encode("utf-8", "surrogatepass")
        return str(len(data)).encode() + b":" + data

    parts = [b"posh-mac-v2\n"]
    for f in fields(msg):
        if f.name == "mac":
            continue
        value = getattr(msg, f.name)
        if f.name == "offline_ms" and value == 0:
            continue
        if f.name == "items":
            parts.append(lp(len(value)))
            for i in value:
                parts += [lp(i.stan), lp(i.amount), lp(i.rrn)]
        elif isinstance(value, bool):
            parts.append(lp(int(value)))
        else:
            parts.append(lp(value))
    expected = hmac.new(key, b"".join(parts), hashlib.sha256).hexdigest()[:16]
    assert p.compute_mac(msg, key) == expected
    signed_msg = p.sign(msg, key)
    assert signed_msg == replace(msg, mac=expected)
    assert p.verify(signed_msg, key)
    assert not p.verify(replace(signed_msg, mac=""), key)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"amount": 901}, "exceeds what is left of the original's 900"),
        ({"pan": catalogue.PAN_APPROVE}, "card differs"),
        ({"orig_key": "nobody"}, "names no sale"),
    ],
)
def test_refund_that_differs_from_its_original_is_refused_12(
    host: Acquirer, change: dict[str, Any], why: str
) -> None:
    """A refund naming its sale must fit it: same card, at most its amount."""
    host.handle(purchase(1, 900, key="sale"), 0)
    before = snapshot(host)[1:4]  # balances and ledger
    kw: dict[str, Any] = {"pan": PAN, "amount": 900, "orig_key": "sale", **change}
    amount, pan = kw.pop("amount"), kw.pop("pan")
    resp, action = finish_now(host, refund(2, amount, pan=pan, key="ref", **kw), 10)
    assert resp.rc == p.RC_REVERSAL_REFUSED and p.verify(resp, KEY)
    assert action is not None and why in action.detail
    assert snapshot(host)[1:4] == before


def test_refund_that_fits_its_original_is_credited(host: Acquirer) -> None:
    host.handle(purchase(1, 900, key="sale"), 0)
    resp = host.handle(refund(2, 400, key="ref", orig_key="sale"), 10)
    assert resp.rc == p.RC_APPROVED
    assert host.balance(PAN) == PAN_BALANCE - 500
