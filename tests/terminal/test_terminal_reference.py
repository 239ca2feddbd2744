"""Unit tests of the reference firmware: events in, effects out, no clock, no sleeps."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from acquirer.protocol import (
    MTI_BATCH,
    MTI_PURCHASE,
    MTI_REVERSAL,
    Message,
    verify,
)
from terminal.firmware import (
    AmountKeyed,
    BatchCloseRequested,
    CancelPressed,
    CancelTimer,
    CardPresented,
    ConfirmPressed,
    Display,
    Effect,
    FirmwareConfig,
    JournalAppend,
    JournalTrim,
    MessageReceived,
    Outcome,
    Print,
    PrintFinished,
    PrintStatus,
    ReprintRequested,
    Send,
    SetTimer,
    TimerExpired,
)
from terminal.reference import (
    IN_PROGRESS_RETRIES_MAX,
    IN_PROGRESS_RETRY_DELAY_MS,
    REVERSALS_QUEUED_MAX,
    ReferenceFirmware,
    stan_for,
)
from terminal.testing import Rig, displays, journaled, prints, respond, sends

PAN = "4000000000000002"
CONFIG = FirmwareConfig()


def rig(journal: tuple[dict[str, object], ...] = (), **config: object) -> Rig:
    """A rig whose boots carry no nonce: keys are "T0001-<sale_no>", easy to spell."""
    cfg = replace(CONFIG, **config)  # type: ignore[arg-type]
    return Rig(ReferenceFirmware, cfg, journal, boot_nonces=False)


def index(effects: list[Effect], match: Callable[[Effect], bool]) -> int:
    """Position of the first effect that matches (fails the test if none does)."""
    for i, effect in enumerate(effects):
        if match(effect):
            return i
    raise AssertionError(f"no matching effect in {effects}")


def is_record(kind: str) -> Callable[[Effect], bool]:
    return lambda e: isinstance(e, JournalAppend) and e.record["type"] == kind


def is_display(outcome: Outcome) -> Callable[[Effect], bool]:
    return lambda e: isinstance(e, Display) and e.outcome is outcome


def is_send(mti: str) -> Callable[[Effect], bool]:
    return lambda e: isinstance(e, Send) and e.message.mti == mti


def finals(effects: list[Effect]) -> list[Outcome]:
    final = {Outcome.APPROVED, Outcome.DECLINED, Outcome.FAILED}
    return [d.outcome for d in displays(effects) if d.outcome in final]


def start_sale(r: Rig, amount: int = 1250) -> Message:
    (request,) = sends(r.purchase(amount, PAN))
    return request


def time_out(r: Rig) -> list[Effect]:
    """Expire the response timer until the sale gives up, and the status inquiry's
    timer after it (no answer to that either): the terminal then reverses."""
    effects: list[Effect] = []
    for _ in range(CONFIG.max_sends):
        effects += r.feed(TimerExpired("response"))
    return effects + r.feed(TimerExpired("inquiry"))


# ---------------------------------------------------------------- approval path


def test_sale_is_journaled_with_key_and_stan_before_the_first_send() -> None:
    r = rig()
    effects = r.purchase(1250, PAN)
    i_journal = index(effects, is_record("sale"))
    i_send = index(effects, is_send(MTI_PURCHASE))
    assert i_journal < i_send
    record = journaled(effects)[0]
    assert record == {
        "type": "sale",
        "key": "T0001-0000000001",
        "stan": 1,
        "amount": 1250,
        "pan": PAN,
        "sale_no": 1,
        "batch_no": 1,
    }
    (msg,) = sends(effects)
    assert verify(msg, CONFIG.mac_key)
    assert (msg.idem_key, msg.stan, msg.amount, msg.pan, msg.repeat) == (
        "T0001-0000000001",
        1,
        1250,
        PAN,
        False,
    )
    assert SetTimer("response", CONFIG.response_timeout_ms) in effects
    assert finals(effects) == []
    assert any(d.outcome is Outcome.PENDING for d in displays(effects))


def test_approval_is_journaled_before_the_display_and_the_print() -> None:
    r = rig()
    request = start_sale(r, 435)
    effects = r.reply(request, rrn="RRN123000000", auth_code="AB1200")
    i_record = index(effects, is_record("approved"))
    i_display = index(effects, is_display(Outcome.APPROVED))
    i_print = index(effects, lambda e: isinstance(e, Print))
    assert i_record < i_display < i_print
    assert journaled(effects)[0] == {
        "type": "approved",
        "key": request.idem_key,
        "rrn": "RRN123000000",
        "auth_code": "AB1200",
        "amount": 435,
    }
    (job,) = prints(effects)
    assert job.receipt.status == "approved"
    assert (job.receipt.rrn, job.receipt.amount, job.receipt.stan) == ("RRN123000000", 435, 1)
    assert job.receipt.pan_last4 == "0002" and job.receipt.copy is False
    assert finals(effects) == [Outcome.APPROVED]


def test_successful_print_journals_printed() -> None:
    r = rig()
    (job,) = prints(r.reply(start_sale(r)))
    effects = r.feed(PrintFinished(job.job_id, PrintStatus.OK))
    assert journaled(effects) == [{"type": "printed", "key": "T0001-0000000001"}]


def test_decline_is_journaled_and_shown_with_the_reason() -> None:
    r = rig()
    request = start_sale(r)
    effects = r.reply(request, rc="51")
    assert journaled(effects) == [{"type": "declined", "key": request.idem_key, "rc": "51"}]
    (shown,) = [d for d in displays(effects) if d.outcome is Outcome.DECLINED]
    assert "INSUFFICIENT FUNDS" in shown.text
    assert prints(effects) == []


def test_consecutive_sales_get_new_keys_and_stans() -> None:
    r = rig()
    first = start_sale(r)
    r.reply(first)
    second = start_sale(r)
    assert (second.idem_key, second.stan) == ("T0001-0000000002", 2)


# ---------------------------------------------------------------- entry validation


@pytest.mark.parametrize("amount", [0, -1, -1250, CONFIG.amount_max + 1])
def test_invalid_amount_is_declined_at_entry_and_nothing_is_sent(amount: int) -> None:
    r = rig()
    effects = r.feed(AmountKeyed(amount))
    assert displays(effects) == [Display(Outcome.DECLINED, "INVALID AMOUNT")]
    effects = r.feed(ConfirmPressed()) + r.feed(CardPresented(PAN))
    assert sends(effects) == [] and journaled(effects) == []


def test_largest_allowed_amount_is_accepted() -> None:
    r = rig()
    assert start_sale(r, CONFIG.amount_max).amount == CONFIG.amount_max


# ---------------------------------------------------------------- debounce


def test_second_tap_and_second_confirm_in_flight_start_nothing() -> None:
    r = rig()
    start_sale(r)
    assert r.feed(CardPresented(PAN)) == []
    assert r.feed(ConfirmPressed()) == []


def test_tap_after_a_finished_sale_without_new_amount_starts_nothing() -> None:
    r = rig()
    r.reply(start_sale(r))
    assert r.feed(CardPresented(PAN)) == []
    assert r.feed(ConfirmPressed()) == []
    assert r.feed(CardPresented(PAN)) == []


def test_tap_without_confirm_starts_nothing() -> None:
    r = rig()
    assert r.feed(CardPresented(PAN)) == []
    r.feed(AmountKeyed(100))
    assert r.feed(CardPresented(PAN)) == []


def test_double_confirm_before_the_tap_still_gives_one_sale() -> None:
    r = rig()
    r.feed(AmountKeyed(100))
    r.feed(ConfirmPressed())
    r.feed(ConfirmPressed())
    effects = r.feed(CardPresented(PAN)) + r.feed(CardPresented(PAN))
    assert len(sends(effects)) == 1


def test_misread_card_prompts_try_again_and_keeps_waiting() -> None:
    r = rig()
    r.feed(AmountKeyed(100))
    r.feed(ConfirmPressed())
    assert r.feed(CardPresented("")) == [Display(Outcome.PROMPT, "TRY AGAIN")]
    assert len(sends(r.feed(CardPresented(PAN)))) == 1


def test_cancel_clears_the_amount() -> None:
    r = rig()
    r.feed(AmountKeyed(100))
    r.feed(ConfirmPressed())
    assert displays(r.feed(CancelPressed())) == [Display(Outcome.FAILED, "CANCELLED - NOT CHARGED")]
    assert r.feed(CardPresented(PAN)) == []


# ---------------------------------------------------------------- timeouts and reversals


def test_response_timeout_resends_the_same_key_as_a_repeat() -> None:
    r = rig()
    request = start_sale(r)
    effects = r.feed(TimerExpired("response"))
    (resend,) = sends(effects)
    assert (resend.idem_key, resend.stan, resend.amount) == (
        request.idem_key,
        request.stan,
        request.amount,
    )
    assert resend.repeat is True and verify(resend, CONFIG.mac_key)
    assert journaled(effects) == [] and finals(effects) == []


def test_final_timeout_journals_the_reversal_before_display_and_send() -> None:
    r = rig()
    request = start_sale(r, 700)
    effects = time_out(r)
    i_record = index(effects, is_record("reversal_pending"))
    i_display = index(effects, is_display(Outcome.FAILED))
    i_send = index(effects, is_send(MTI_REVERSAL))
    assert i_record < i_display < i_send
    assert journaled(effects) == [
        {"type": "reversal_pending", "key": request.idem_key, "stan": 1, "amount": 700}
    ]
    assert displays(effects)[-1] == Display(Outcome.FAILED, "NOT CHARGED - REVERSING")
    (reversal,) = [m for m in sends(effects) if m.mti == MTI_REVERSAL]
    assert (reversal.orig_key, reversal.orig_stan, reversal.amount) == (request.idem_key, 1, 700)
    assert verify(reversal, CONFIG.mac_key)


def test_late_approval_after_the_timeout_never_approves_or_prints() -> None:
    r = rig()
    request = start_sale(r)
    time_out(r)
    effects = r.reply(request, rrn="LATE10000000")
    assert effects == []


def test_reversal_is_retried_with_backoff_until_a_signed_0410() -> None:
    r = rig()
    time_out_effects = (start_sale(r), time_out(r))[1]
    (reversal,) = [m for m in sends(time_out_effects) if m.mti == MTI_REVERSAL]
    assert SetTimer("reversal", 2_000) in time_out_effects
    delays = []
    for _ in range(4):
        effects = r.feed(TimerExpired("reversal"))
        (resent,) = sends(effects)
        assert resent.repeat and resent.orig_key == reversal.orig_key
        delays += [e.delay_ms for e in effects if isinstance(e, SetTimer)]
    assert delays == [10_000, 30_000, 30_000, 30_000]  # the last backoff value repeats
    # An unsigned 0410 is not an acknowledgement.
    unsigned = replace(respond(reversal, CONFIG.mac_key), mac="")
    assert r.feed(MessageReceived(unsigned)) == []
    effects = r.reply(reversal)
    assert journaled(effects) == [{"type": "reversed", "key": reversal.orig_key}]
    assert CancelTimer("reversal") in effects
    assert r.feed(TimerExpired("reversal")) == []


def test_reversal_goes_to_manual_handling_after_max_tries() -> None:
    r = rig(reversal_max_tries=3)
    request = start_sale(r)
    time_out(r)
    r.feed(TimerExpired("reversal"))
    r.feed(TimerExpired("reversal"))
    effects = r.feed(TimerExpired("reversal"))
    assert journaled(effects) == [{"type": "reversal_manual", "key": request.idem_key}]
    assert sends(effects) == []
    assert r.feed(TimerExpired("reversal")) == []


def test_new_sales_proceed_while_reversals_queue_in_the_background() -> None:
    r = rig()
    first = start_sale(r)
    time_out(r)
    second = start_sale(r)
    effects = time_out(r)
    # The second reversal waits behind the first one, which is still being tried.
    assert [m for m in sends(effects) if m.mti == MTI_REVERSAL] == []
    ack = r.reply(
        next(m for m in sends(r.log) if m.mti == MTI_REVERSAL and m.orig_key == first.idem_key)
    )
    (next_reversal,) = sends(ack)
    assert next_reversal.orig_key == second.idem_key
    third = start_sale(r)
    assert finals(r.reply(third)) == [Outcome.APPROVED]


def test_reversal_queue_is_bounded_by_refusing_new_sales() -> None:
    r = rig()
    for _ in range(REVERSALS_QUEUED_MAX):
        start_sale(r)
        time_out(r)
    effects = r.purchase(100, PAN)
    assert sends(effects) == []
    assert finals(effects) == [Outcome.DECLINED]


# ---------------------------------------------------------------- authenticity


def test_unsigned_or_wrongly_signed_or_unmatched_0210_is_ignored() -> None:
    r = rig()
    request = start_sale(r)
    genuine = respond(request, CONFIG.mac_key, rrn="RRN100000000")
    forged = [
        replace(genuine, mac=""),
        respond(request, b"attacker-key", rrn="FAKE00000000"),
        replace(genuine, rrn="FAKE00000000"),  # MAC no longer matches
        respond(replace(request, stan=99), CONFIG.mac_key),  # another sale's STAN
        respond(request, CONFIG.mac_key, idem_key="T0001-0000000099"),
        respond(request, CONFIG.mac_key, terminal_id="T0002"),
    ]
    for msg in forged:
        assert r.feed(MessageReceived(msg)) == []
    assert finals(r.feed(MessageReceived(genuine))) == [Outcome.APPROVED]


# ---------------------------------------------------------------- host response codes


def test_in_progress_waits_and_resends_the_same_key() -> None:
    r = rig()
    request = start_sale(r)
    effects = r.reply(request, rc="09")
    assert SetTimer("in-progress", IN_PROGRESS_RETRY_DELAY_MS) in effects
    assert CancelTimer("response") in effects and finals(effects) == []
    assert r.feed(TimerExpired("response")) == []  # cancelled timer firing late: stale
    (resend,) = sends(r.feed(TimerExpired("in-progress")))
    assert resend.idem_key == request.idem_key and resend.repeat
    assert finals(r.reply(request)) == [Outcome.APPROVED]


def test_in_progress_too_often_reverses() -> None:
    r = rig()
    request = start_sale(r)
    for _ in range(IN_PROGRESS_RETRIES_MAX):
        r.reply(request, rc="09")
        r.feed(TimerExpired("in-progress"))
    effects = r.reply(request, rc="09")
    assert index(effects, is_record("reversal_pending")) < index(
        effects, is_display(Outcome.FAILED)
    )


@pytest.mark.parametrize("rc", ["91", "96"])
def test_transient_code_resends_same_key_then_declines(rc: str) -> None:
    r = rig()
    request = start_sale(r)
    (resend,) = sends(r.reply(request, rc=rc))
    assert resend.idem_key == request.idem_key and resend.repeat
    effects = r.reply(request, rc=rc)
    assert finals(effects) == [Outcome.DECLINED]
    # Two copies went out: a reversal guards against a delayed first copy charging.
    assert index(effects, is_record("reversal_pending")) < index(
        effects, is_display(Outcome.DECLINED)
    )


def test_transient_code_on_the_only_send_declines_without_reversal() -> None:
    r = rig(max_sends=1)
    effects = r.reply(start_sale(r), rc="91")
    assert finals(effects) == [Outcome.DECLINED]
    assert [rec["type"] for rec in journaled(effects)] == ["declined"]
    assert sends(effects) == []


def test_duplicate_code_94_is_an_unknown_outcome_and_reverses() -> None:
    r = rig()
    effects = r.reply(start_sale(r), rc="94")
    assert finals(effects) == [Outcome.FAILED]
    assert index(effects, is_record("reversal_pending")) < index(effects, is_send(MTI_REVERSAL))


# ---------------------------------------------------------------- receipts


def test_failed_print_leaves_the_receipt_pending_and_reprint_completes_it() -> None:
    r = rig()
    (job,) = prints(r.reply(start_sale(r), rrn="RRN700000000"))
    effects = r.feed(PrintFinished(job.job_id, PrintStatus.JAMMED))
    assert effects == [
        Display(Outcome.RECEIPT_PENDING, "RECEIPT PENDING - PRESS REPRINT", "RRN700000000")
    ]
    assert journaled(effects) == []
    (again,) = prints(r.feed(ReprintRequested()))
    assert again.job_id != job.job_id
    assert again.receipt == job.receipt  # same journal record, not a copy
    effects = r.feed(PrintFinished(again.job_id, PrintStatus.OK))
    assert journaled(effects) == [{"type": "printed", "key": "T0001-0000000001"}]


def test_reprint_with_nothing_pending_prints_a_copy_of_the_last_receipt() -> None:
    r = rig()
    assert r.feed(ReprintRequested()) == [Display(Outcome.PROMPT, "NO RECEIPT")]
    (job,) = prints(r.reply(start_sale(r)))
    r.feed(PrintFinished(job.job_id, PrintStatus.OK))
    (copy,) = prints(r.feed(ReprintRequested()))
    assert copy.receipt == replace(job.receipt, copy=True)
    assert journaled(r.feed(PrintFinished(copy.job_id, PrintStatus.OK))) == []


def test_unknown_print_job_and_unknown_timer_are_ignored() -> None:
    r = rig()
    assert r.feed(PrintFinished("nope", PrintStatus.OK)) == []
    assert r.feed(TimerExpired("nope")) == []
    assert r.feed(TimerExpired("response")) == []


# ---------------------------------------------------------------- boot recovery


def test_boot_reverses_a_sale_with_no_final_record() -> None:
    r = rig()
    request = start_sale(r)
    effects = r.power_cut()
    assert index(effects, is_record("reversal_pending")) < index(
        effects, is_display(Outcome.FAILED)
    )
    assert displays(effects) == [Display(Outcome.FAILED, "LAST SALE NOT COMPLETED - REVERSED")]
    (reversal,) = sends(effects)
    assert reversal.mti == MTI_REVERSAL and reversal.orig_key == request.idem_key
    # A late approval of the interrupted sale is ignored by the new instance too.
    assert r.reply(request) == []


def test_boot_resumes_a_pending_reversal_without_journaling_it_twice() -> None:
    r = rig()
    request = start_sale(r)
    time_out(r)
    effects = r.power_cut()
    assert journaled(effects) == [] and displays(effects) == []
    (reversal,) = sends(effects)
    assert reversal.orig_key == request.idem_key
    r.reply(reversal)
    assert sends(r.power_cut()) == []


def test_boot_reprints_an_approved_but_unprinted_receipt() -> None:
    r = rig()
    (job,) = prints(r.reply(start_sale(r), rrn="RRN900000000"))
    effects = r.power_cut()  # the print was in flight: lost
    assert journaled(effects) == [{"type": "receipt_pending", "key": "T0001-0000000001"}]
    assert Display(Outcome.RECEIPT_PENDING, "RECEIPT PENDING", "RRN900000000") in effects
    (again,) = prints(effects)
    assert again.receipt == job.receipt and again.job_id != job.job_id
    r.feed(PrintFinished(again.job_id, PrintStatus.OK))
    assert prints(r.power_cut()) == []


def test_print_job_ids_stay_unique_across_reboots() -> None:
    r = rig()
    job_ids = [p.job_id for p in prints(r.reply(start_sale(r)))]
    for _ in range(3):
        job_ids += [p.job_id for p in prints(r.power_cut())]
    assert len(job_ids) == len(set(job_ids)) == 4


def test_counters_survive_a_reboot() -> None:
    r = rig()
    r.reply(start_sale(r))
    r.reply(start_sale(r), rc="05")
    r.power_cut()
    request = start_sale(r)
    assert (request.idem_key, request.stan) == ("T0001-0000000003", 3)


def test_stan_wraps_after_999999() -> None:
    assert stan_for(999_999) == 999_999
    assert stan_for(1_000_000) == 1
    journal = ({"type": "batch_closed", "batch_no": 4, "rc": "00", "sale_no": 999_999},)
    request = start_sale(rig(journal))
    assert (request.idem_key, request.stan) == ("T0001-0001000000", 1)


def test_malformed_journal_records_are_skipped_at_boot() -> None:
    journal = ({"type": "sale", "key": "x"}, {"no": "type"}, {"type": "approved"})
    r = rig(journal)  # type: ignore[arg-type]
    assert r.boot_effects == []
    assert start_sale(r).stan == 1


# ---------------------------------------------------------------- batch close


def close_batch(r: Rig, rc: str = "00") -> tuple[Message, list[Effect]]:
    (batch,) = [m for m in sends(r.feed(BatchCloseRequested())) if m.mti == MTI_BATCH]
    return batch, r.reply(batch, rc=rc)


def test_batch_sends_totals_of_approved_non_reversed_sales_and_trims() -> None:
    r = rig()
    r.reply(start_sale(r, 1000), rrn="R10000000000")
    r.reply(start_sale(r, 2000), rc="05")  # declined: not in the batch
    start_sale(r, 4000)
    time_out(r)  # reversed: not in the batch
    reversal = next(m for m in sends(r.log) if m.mti == MTI_REVERSAL)
    r.reply(reversal)
    r.reply(start_sale(r, 300), rrn="R40000000000")
    for job in prints(r.log):
        r.feed(PrintFinished(job.job_id, PrintStatus.OK))
    batch, effects = close_batch(r)
    assert (batch.batch_no, batch.debit_count, batch.debit_amount) == (1, 2, 1300)
    assert [(i.stan, i.amount, i.rrn) for i in batch.items] == [
        (1, 1000, "R10000000000"),
        (4, 300, "R40000000000"),
    ]
    assert verify(batch, CONFIG.mac_key) and not batch.repeat
    i_closed = index(effects, is_record("batch_closed"))
    i_trim = index(effects, lambda e: isinstance(e, JournalTrim))
    assert i_closed < i_trim
    assert Display(Outcome.PROMPT, "BATCH OK") in effects
    assert r.journal == [{"type": "batch_closed", "batch_no": 1, "rc": "00", "sale_no": 5}]


def test_batch_mismatch_is_shown() -> None:
    r = rig()
    r.reply(start_sale(r))
    _, effects = close_batch(r, rc="95")
    assert Display(Outcome.PROMPT, "BATCH MISMATCH") in effects


def test_batch_waits_for_the_reversal_queue_and_blocks_new_sales() -> None:
    r = rig()
    start_sale(r)
    time_out(r)
    effects = r.feed(BatchCloseRequested())
    assert sends(effects) == [] and displays(effects) == [Display(Outcome.PROMPT, "BATCH WAITING")]
    blocked = r.purchase(100, PAN)
    assert sends(blocked) == [] and finals(blocked) == [Outcome.DECLINED]
    reversal = next(m for m in sends(r.log) if m.mti == MTI_REVERSAL)
    effects = r.reply(reversal)
    i_reversed = index(effects, is_record("reversed"))
    i_batch = index(effects, is_send(MTI_BATCH))
    assert i_reversed < i_batch


def test_batch_waits_for_the_sale_in_flight() -> None:
    r = rig()
    request = start_sale(r)
    assert sends(r.feed(BatchCloseRequested())) == []
    effects = r.reply(request)
    (batch,) = [m for m in sends(effects) if m.mti == MTI_BATCH]
    assert batch.debit_count == 1


def test_batch_timeout_resends_the_same_batch_as_a_repeat() -> None:
    r = rig()
    r.reply(start_sale(r))
    (batch,) = sends(r.feed(BatchCloseRequested()))
    (again,) = sends(r.feed(TimerExpired("batch")))
    assert again.repeat and replace(again, repeat=False, mac="") == replace(batch, mac="")


def test_trim_keeps_pending_receipts_and_they_survive_a_reboot() -> None:
    r = rig()
    (job,) = prints(r.reply(start_sale(r, 500), rrn="RP0000000000"))
    r.feed(PrintFinished(job.job_id, PrintStatus.NO_PAPER))
    close_batch(r)
    types = [rec["type"] for rec in r.journal]
    assert types == ["sale", "approved", "batch_closed"]
    effects = r.power_cut()
    (again,) = prints(effects)
    assert (again.receipt.rrn, again.receipt.amount) == ("RP0000000000", 500)
    # The carried sale belongs to the closed batch, not to the next one.
    r.feed(PrintFinished(again.job_id, PrintStatus.OK))
    batch, _ = close_batch(r)
    assert (batch.batch_no, batch.debit_count) == (2, 0)


def test_counters_survive_batch_trim_and_reboot() -> None:
    r = rig()
    r.reply(start_sale(r))
    r.reply(start_sale(r))
    close_batch(r)  # sequence number 3 went to the batch upload
    r.power_cut()
    request = start_sale(r)
    assert (request.idem_key, request.stan) == ("T0001-0000000004", 4)
    r.reply(request)
    (batch,) = sends(r.feed(BatchCloseRequested()))
    assert batch.batch_no == 2


def test_a_batch_started_before_a_power_cut_is_resumed_as_a_repeat() -> None:
    r = rig()
    r.reply(start_sale(r))
    (batch,) = sends(r.feed(BatchCloseRequested()))
    effects = r.power_cut()
    (again,) = [m for m in sends(effects) if m.mti == MTI_BATCH]
    assert again.repeat and (again.batch_no, again.stan) == (batch.batch_no, batch.stan)
    assert sends(r.purchase(100, PAN)) == []  # still closing
    r.reply(again)
    assert len(sends(r.purchase(100, PAN))) == 1


# ---------------------------------------------------------------- a tiny host loop


def test_many_purchases_against_an_approving_host_are_all_settled() -> None:
    """With a host that approves everything once per key, every purchase is one charge."""
    r = rig()
    charged: dict[str, int] = {}
    for n in range(1, 201):
        for msg in sends(r.purchase(n, PAN)):
            charged.setdefault(msg.idem_key, msg.amount)
            effects = r.reply(msg)
            for job in prints(effects):
                r.feed(PrintFinished(job.job_id, PrintStatus.OK))
    assert len(charged) == 200 and sum(charged.values()) == sum(range(1, 201))
    assert [rec["type"] for rec in r.journal].count("printed") == 200
    batch, _ = close_batch(r)
    assert (batch.debit_count, batch.debit_amount) == (200, sum(range(1, 201)))
    assert len(r.journal) == 1


def test_keys_carry_the_boot_nonce_and_differ_after_a_lost_journal() -> None:
    """A fresh journal restarts the sale counter; the boot nonce keeps keys unique."""
    r = Rig(ReferenceFirmware, CONFIG)
    first = sends(r.purchase(1250, PAN))[0]
    r.journal.clear()  # the journal is lost (a replaced device, wiped storage)
    r.power_cut()
    second = sends(r.purchase(1250, PAN))[0]
    assert first.stan == second.stan == 1
    assert first.idem_key != second.idem_key
    for key in (first.idem_key, second.idem_key):
        tid, nonce, counter = key.split("-")
        assert (tid, len(nonce), counter) == ("T0001", 8, "0000000001")


# ---------------------------------------------------------------- status inquiry


def _unanswered(r: Rig) -> tuple[Message, Message]:
    """A sale whose every send went unanswered: (its request, the inquiry it sent)."""
    request = start_sale(r)
    effects = r.feed(TimerExpired("response")) + r.feed(TimerExpired("response"))
    queries = [m for m in sends(effects) if m.mti == "0600"]
    assert len(queries) == 1 and not finals(effects)  # asks before deciding anything
    return request, queries[0]


def test_after_the_last_timeout_the_terminal_asks_before_it_reverses() -> None:
    r = rig()
    request, query = _unanswered(r)
    assert (query.orig_key, query.stan, query.amount) == (
        request.idem_key,
        request.stan,
        request.amount,
    )
    assert verify(query, CONFIG.mac_key)


def test_an_inquiry_that_says_approved_completes_the_sale_from_its_answer() -> None:
    r = rig()
    _, query = _unanswered(r)
    effects = r.reply(query, "00", rrn="000000000042", auth_code="004242")
    assert finals(effects) == [Outcome.APPROVED]
    assert journaled(effects)[0]["type"] == "approved"
    assert prints(effects)[0].receipt.rrn == "000000000042"
    assert not [m for m in sends(effects) if m.mti == "0400"]  # nothing reversed


def test_an_inquiry_that_says_declined_declines_without_a_reversal() -> None:
    r = rig()
    _, query = _unanswered(r)
    effects = r.reply(query, "51")
    assert finals(effects) == [Outcome.DECLINED] and not sends(effects)


@pytest.mark.parametrize("rc", ["25", "09", "CL"])
def test_an_inquiry_that_cannot_say_leads_to_the_reversal(rc: str) -> None:
    r = rig()
    request, query = _unanswered(r)
    effects = r.reply(query, rc)
    (reversal,) = sends(effects)
    assert (reversal.mti, reversal.orig_key) == ("0400", request.idem_key)
    assert finals(effects) == [Outcome.FAILED]


def test_without_the_inquiry_the_last_timeout_reverses_at_once() -> None:
    r = rig(status_inquiry=False)
    start_sale(r)
    effects = r.feed(TimerExpired("response")) + r.feed(TimerExpired("response"))
    assert [m.mti for m in sends(effects)] == ["0200", "0400"]
    assert finals(effects) == [Outcome.FAILED]
