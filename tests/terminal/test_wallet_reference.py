"""The reference firmware's wallet (QR code) flow: poll the status inquiry, print
from its answer, cancel (durably, retried) only after the last inquiry."""

from __future__ import annotations

from dataclasses import replace

from acquirer import protocol as p
from terminal.firmware import FEATURE_WALLET, FirmwareConfig, Outcome, TimerExpired
from terminal.reference import (
    WALLET_QUERIES_MAX,
    WALLET_QUERY_DELAY_MS,
    WALLET_TIMER,
    ReferenceFirmware,
)
from terminal.testing import Rig, displays, journaled, prints, sends

CODE = "280000000000000002"
CONFIG = FirmwareConfig()


def finals(effects: list) -> list[Outcome]:
    final = {Outcome.APPROVED, Outcome.DECLINED, Outcome.FAILED}
    return [d.outcome for d in displays(effects) if d.outcome in final]


def waiting() -> tuple[Rig, p.Message]:
    """A wallet sale the wallet answered "user paying" (RC 09)."""
    rig = Rig(ReferenceFirmware, CONFIG)
    (pay,) = sends(rig.scan(2500, CODE))
    effects = rig.reply(pay, p.RC_IN_PROGRESS, rrn="000000000001")
    assert not finals(effects)  # never a decline: the customer may be confirming
    return rig, pay


def test_the_reference_declares_the_wallet_feature() -> None:
    assert FEATURE_WALLET in ReferenceFirmware.features


def test_a_scan_sends_a_wallet_pay_with_the_order_number_journaled_first() -> None:
    rig = Rig(ReferenceFirmware, CONFIG)
    effects = rig.scan(2500, CODE)
    (pay,) = sends(effects)
    assert (pay.mti, pay.processing_code, pay.pan, pay.amount) == ("0200", "900000", CODE, 2500)
    (record,) = journaled(effects)
    assert record["wallet"] is True and record["key"] == pay.idem_key
    card = Rig(ReferenceFirmware, CONFIG)
    assert "wallet" not in journaled(card.purchase(2500))[0]  # card journals unchanged


def test_user_paying_is_polled_and_the_receipt_comes_from_the_inquiry() -> None:
    rig, pay = waiting()
    (query,) = sends(rig.feed(TimerExpired(WALLET_TIMER)))
    assert (query.mti, query.orig_key, query.stan) == (p.MTI_INQUIRY, pay.idem_key, pay.stan)
    assert not finals(rig.reply(query, p.RC_IN_PROGRESS))
    (query,) = sends(rig.feed(TimerExpired(WALLET_TIMER)))
    effects = rig.reply(query, p.RC_APPROVED, rrn="000000000001", auth_code="000001")
    assert finals(effects) == [Outcome.APPROVED]
    assert journaled(effects)[0]["type"] == "approved"  # before the display and print
    (job,) = prints(effects)
    assert (job.receipt.rrn, job.receipt.amount) == ("000000000001", 2500)
    assert job.receipt.pan_last4 == CODE[-4:]


def test_after_the_last_inquiry_the_order_is_cancelled_before_failed_is_shown() -> None:
    rig, pay = waiting()
    for _ in range(WALLET_QUERIES_MAX):
        (query,) = sends(rig.feed(TimerExpired(WALLET_TIMER)))
        rig.reply(query, p.RC_IN_PROGRESS)
    effects = rig.feed(TimerExpired(WALLET_TIMER))
    (cancel,) = sends(effects)
    assert (cancel.mti, cancel.orig_key, cancel.pan) == (p.MTI_REVERSAL, pay.idem_key, CODE)
    kinds = [type(e).__name__ for e in effects]
    assert kinds.index("JournalAppend") < kinds.index("Display")  # durable first
    assert finals(effects) == [Outcome.FAILED]
    assert WALLET_QUERIES_MAX * WALLET_QUERY_DELAY_MS == 30_000
    # The cancel is retried until the host answers it.
    assert not journaled(rig.reply(cancel, p.RC_SYSTEM_ERROR))
    assert journaled(rig.reply(cancel, p.RC_APPROVED)) == [
        {"type": "reversed", "key": pay.idem_key}
    ]


def test_no_answer_to_the_pay_is_polled_not_reversed() -> None:
    rig = Rig(ReferenceFirmware, CONFIG)
    (pay,) = sends(rig.scan(2500, CODE))
    effects = rig.feed(TimerExpired("response"))
    assert not sends(effects) and not finals(effects)
    (query,) = sends(rig.feed(TimerExpired(WALLET_TIMER)))
    # The host never got the pay (RC 25): the same order is paid again, once.
    (again,) = sends(rig.reply(query, p.RC_UNABLE_TO_LOCATE))
    assert (again.idem_key, again.repeat) == (pay.idem_key, True)


def test_an_order_found_closed_is_declined_without_a_cancel() -> None:
    rig, _ = waiting()
    (query,) = sends(rig.feed(TimerExpired(WALLET_TIMER)))
    effects = rig.reply(query, p.RC_CLOSED)
    assert finals(effects) == [Outcome.DECLINED]
    assert not sends(effects)


def test_a_power_cut_while_the_customer_confirms_cancels_the_order_at_boot() -> None:
    rig, pay = waiting()
    effects = rig.power_cut()
    (cancel,) = sends(effects)
    assert (cancel.mti, cancel.orig_key, cancel.processing_code) == (
        p.MTI_REVERSAL,
        pay.idem_key,
        p.PROC_WALLET,
    )
    assert finals(effects) == [Outcome.FAILED]


def test_an_inquiry_answer_for_another_order_is_ignored() -> None:
    rig, _ = waiting()
    (query,) = sends(rig.feed(TimerExpired(WALLET_TIMER)))
    other = replace(query, orig_key="someone-else", mac="")
    assert not finals(rig.reply(other, p.RC_APPROVED))


def test_a_wallet_scan_during_a_pre_authorisation_is_refused_and_the_card_still_holds() -> None:
    # Found by the fuzzer: a wallet customer scanning a stale screen while the cashier
    # waited for a hotel guest's card turned the pre-authorisation into a wallet sale
    # (charged at once, no hold to complete).
    from terminal.firmware import CardPresented, CodeScanned, ConfirmPressed, PreauthKeyed

    rig = Rig(ReferenceFirmware, CONFIG)
    rig.feed(PreauthKeyed(12_000))
    rig.feed(ConfirmPressed())
    effects = rig.feed(CodeScanned(CODE))
    assert not sends(effects) and not journaled(effects)
    assert [d.text for d in displays(effects)] == ["PRE-AUTH: PRESENT A CARD"]
    (hold,) = sends(rig.feed(CardPresented("4000000000000002")))
    assert (hold.mti, hold.amount) == (p.MTI_PREAUTH, 12_000)
