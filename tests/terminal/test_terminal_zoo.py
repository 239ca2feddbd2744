"""Each zoo firmware differs from the reference in exactly its documented, flawed way.

These are unit tests of the flaw itself; catching it end to end with invariants is
the harness's job.
"""

from __future__ import annotations

import sys
from dataclasses import replace

import pytest

from acquirer.protocol import MTI_BATCH, MTI_PURCHASE, MTI_REVERSAL, Message
from terminal.firmware import (
    BatchCloseRequested,
    CardPresented,
    ConfirmPressed,
    Display,
    Effect,
    FirmwareConfig,
    MessageReceived,
    Outcome,
    PrintFinished,
    PrintStatus,
    TimerExpired,
)
from terminal.reference import ReferenceFirmware
from terminal.testing import FirmwareFactory, Rig, displays, journaled, prints, respond, sends
from terminal.zoo import ZOO

PAN = "4000000000000002"
CONFIG = FirmwareConfig()
FINAL = {Outcome.APPROVED, Outcome.DECLINED, Outcome.FAILED}


def finals(effects: list[Effect]) -> list[Outcome]:
    return [d.outcome for d in displays(effects) if d.outcome in FINAL]


def purchases(effects: list[Effect]) -> list[Message]:
    return [m for m in sends(effects) if m.mti == MTI_PURCHASE]


def reversals(effects: list[Effect]) -> list[Message]:
    return [m for m in sends(effects) if m.mti == MTI_REVERSAL]


def both(name: str) -> tuple[Rig, Rig]:
    """A reference rig and a rig of zoo firmware `name`, both booted."""
    factory: FirmwareFactory = ZOO[name]
    return Rig(ReferenceFirmware, CONFIG), Rig(factory, CONFIG)


def test_zoo_registry_names_every_flawed_firmware_in_order() -> None:
    assert list(ZOO) == [
        "naive-retry",
        "no-debounce",
        "key-per-boot",
        "no-reversal",
        "volatile-reversal",
        "decline-on-in-progress",
        "float-amount",
        "no-amount-check",
        "print-before-journal",
        "receipt-from-request",
        "trusts-unsigned",
        "late-approval-flips",
        "no-echo-check",
        "tid-counter-keys",
        "batch-counts-reversed",
        "wallet-pending-failed",
        "wallet-no-cancel",
        "wallet-cancel-once",
        "wallet-cancels-success",
        "wallet-new-order",
        "wallet-trusts-screen",
        "partial-as-full",
        "partial-as-decline",
        "chip-decline-no-reversal",
        "chip-receipt-before-card",
        "chip-decline-reversal-not-journaled",
        "refund-new-key-on-retry",
        "void-after-batch-close",
        "refund-and-void",
        "refund-unknown-left",
        "refund-receipt-before-answer",
        "refund-not-resumed-at-boot",
        "offline-new-key-per-upload",
        "offline-volatile-queue",
        "offline-no-floor-limit",
        "offline-no-expiry",
        "offline-batch-before-upload",
        "offline-late-decline-ignored",
        "offline-expiry-no-reversal",
        "offline-hold-as-sale",
        "completion-new-key-on-retry",
        "completion-before-answer",
        "tip-added-twice",
        "tip-after-batch-close",
    ]
    for cls in ZOO.values():
        assert issubclass(cls, ReferenceFirmware)
        doc = sys.modules[cls.__module__].__doc__ or ""
        assert "Real-world failure" in doc and "Invariant that catches it" in doc


def test_naive_retry_resends_a_timed_out_sale_under_a_new_key_and_never_reverses() -> None:
    for r in both("naive-retry"):
        r.purchase(1000, PAN)
        effects = r.feed(TimerExpired("response")) + r.feed(TimerExpired("response"))
        effects += r.feed(TimerExpired("inquiry"))  # unanswered too
        keys = {m.idem_key for m in purchases(r.log)}
        if r.factory is ReferenceFirmware:
            assert len(keys) == 1 and reversals(effects)
        else:
            assert len(keys) == 2 and {m.stan for m in purchases(r.log)} == {1, 2}
            assert reversals(effects) == [] and finals(effects) == [Outcome.FAILED]


def test_no_debounce_starts_a_second_sale_on_a_double_tap() -> None:
    for r in both("no-debounce"):
        r.purchase(1000, PAN)
        effects = r.feed(CardPresented(PAN)) + r.feed(ConfirmPressed())
        expected = 0 if r.factory is ReferenceFirmware else 2
        assert len(purchases(effects)) == expected
    assert {m.amount for m in purchases(effects)} == {1000}


def test_key_per_boot_resends_the_unfinished_sale_under_a_new_key() -> None:
    for r in both("key-per-boot"):
        (request,) = purchases(r.purchase(1000, PAN))
        effects = r.power_cut()
        if r.factory is ReferenceFirmware:
            assert purchases(effects) == [] and reversals(effects)[0].orig_key == request.idem_key
        else:
            (again,) = purchases(effects)
            assert again.idem_key != request.idem_key and again.amount == 1000
            assert reversals(effects) == []


def test_no_reversal_shows_failed_and_sends_no_reversal() -> None:
    for r in both("no-reversal"):
        r.purchase(1000, PAN)
        effects = r.feed(TimerExpired("response")) + r.feed(TimerExpired("response"))
        effects += r.feed(TimerExpired("inquiry"))  # unanswered too
        assert finals(effects) == [Outcome.FAILED]
        assert bool(reversals(effects)) is (r.factory is ReferenceFirmware)
        # Nor after a reboot: the timed-out sale is journaled as final.
        assert bool(reversals(r.power_cut())) is (r.factory is ReferenceFirmware)


def test_volatile_reversal_loses_the_reversal_in_a_power_cut() -> None:
    for r in both("volatile-reversal"):
        r.purchase(1000, PAN)
        r.feed(TimerExpired("response"))
        r.feed(TimerExpired("response"))
        r.feed(TimerExpired("inquiry"))
        effects = r.power_cut()
        if r.factory is ReferenceFirmware:
            assert len(reversals(effects)) == 1
        else:
            assert reversals(effects) == []
            assert "reversal_pending" not in [rec["type"] for rec in r.journal]


def test_volatile_reversal_does_not_reverse_an_unfinished_sale_at_boot() -> None:
    for r in both("volatile-reversal"):
        r.purchase(1000, PAN)
        effects = r.power_cut()
        assert finals(effects) == [Outcome.FAILED]
        assert bool(reversals(effects)) is (r.factory is ReferenceFirmware)


def test_decline_on_in_progress_shows_declined_for_rc_09() -> None:
    for r in both("decline-on-in-progress"):
        (request,) = purchases(r.purchase(1000, PAN))
        effects = r.reply(request, rc="09")
        expected = [] if r.factory is ReferenceFirmware else [Outcome.DECLINED]
        assert finals(effects) == expected


def test_float_amount_truncates_435_to_434_on_the_wire() -> None:
    for r in both("float-amount"):
        (request,) = purchases(r.purchase(435, PAN))
        assert request.amount == (435 if r.factory is ReferenceFirmware else 434)


@pytest.mark.parametrize("amount", [0, -500])
def test_no_amount_check_sends_zero_and_negative_amounts(amount: int) -> None:
    for r in both("no-amount-check"):
        effects = r.purchase(amount, PAN)
        if r.factory is ReferenceFirmware:
            assert purchases(effects) == []
        else:
            assert [m.amount for m in purchases(effects)] == [amount]


def test_print_before_journal_loses_the_approval_when_the_printer_jams() -> None:
    for r in both("print-before-journal"):
        (request,) = purchases(r.purchase(1000, PAN))
        effects = r.reply(request)
        assert finals(effects) == [Outcome.APPROVED]
        (job,) = prints(effects)
        jam = r.feed(PrintFinished(job.job_id, PrintStatus.JAMMED))
        pending = [d for d in displays(jam) if d.outcome is Outcome.RECEIPT_PENDING]
        recorded = "approved" in [rec["type"] for rec in r.journal]
        (batch,) = [m for m in sends(r.feed(BatchCloseRequested())) if m.mti == MTI_BATCH]
        if r.factory is ReferenceFirmware:
            assert pending and recorded and batch.debit_count == 1
        else:
            assert not pending and not recorded and batch.debit_count == 0


def test_receipt_from_request_prints_an_approved_receipt_for_a_decline() -> None:
    for r in both("receipt-from-request"):
        (request,) = purchases(r.purchase(1000, PAN))
        effects = r.reply(request, rc="51")
        if r.factory is ReferenceFirmware:
            assert prints(effects) == []
        else:
            (job,) = prints(effects)
            assert (job.receipt.status, job.receipt.amount, job.receipt.rrn) == (
                "approved",
                1000,
                "",
            )


def test_trusts_unsigned_prints_a_forged_approval() -> None:
    for r in both("trusts-unsigned"):
        (request,) = purchases(r.purchase(1000, PAN))
        forged = replace(respond(request, b"not-the-key", rrn="FORGED100000"), mac="")
        effects = r.feed(MessageReceived(forged))
        if r.factory is ReferenceFirmware:
            assert effects == []
        else:
            assert finals(effects) == [Outcome.APPROVED]
            assert prints(effects)[0].receipt.rrn == "FORGED100000"


def test_late_approval_flips_a_reversed_sale_to_approved_with_a_receipt() -> None:
    for r in both("late-approval-flips"):
        (request,) = purchases(r.purchase(1000, PAN))
        effects = r.feed(TimerExpired("response")) + r.feed(TimerExpired("response"))
        assert reversals(effects + r.feed(TimerExpired("inquiry")))  # unanswered too
        effects = r.reply(request, rrn="LATE00000000")
        if r.factory is ReferenceFirmware:
            assert effects == []
        else:
            assert Display(Outcome.APPROVED, "APPROVED", "LATE00000000") in effects
            assert prints(effects)[0].receipt.rrn == "LATE00000000"


def test_batch_counts_reversed_includes_reversed_sales_in_the_totals() -> None:
    for r in both("batch-counts-reversed"):
        (approved,) = purchases(r.purchase(1000, PAN))
        r.reply(approved)
        r.purchase(250, PAN)
        effects = r.feed(TimerExpired("response")) + r.feed(TimerExpired("response"))
        (reversal,) = reversals(effects + r.feed(TimerExpired("inquiry")))  # unanswered too
        r.reply(reversal)
        (batch,) = [m for m in sends(r.feed(BatchCloseRequested())) if m.mti == MTI_BATCH]
        expected = (1, 1000) if r.factory is ReferenceFirmware else (2, 1250)
        assert (batch.debit_count, batch.debit_amount) == expected
        assert journaled(r.log)  # both journaled their sales
