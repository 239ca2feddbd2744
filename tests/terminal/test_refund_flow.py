"""The reference firmware's voids and refunds (terminal/refund_flow.py), event by
event: what it journals before it sends, what it resends, and what it refuses."""

from __future__ import annotations

from acquirer.protocol import MTI_BATCH, MTI_REVERSAL, PROC_REFUND, RC_REVERSAL_REFUSED
from terminal.firmware import (
    BatchCloseRequested,
    Display,
    FirmwareConfig,
    JournalAppend,
    Outcome,
    PrintFinished,
    PrintStatus,
    RefundRequested,
    TimerExpired,
    VoidRequested,
)
from terminal.reference import ReferenceFirmware
from terminal.testing import Rig, displays, prints, sends

PAN = "4000000000000002"
RRN = "R10000000000"


def sold(amount: int = 1000) -> Rig:
    """A rig with one approved sale (rrn RRN) whose receipt is printed."""
    r = Rig(ReferenceFirmware, FirmwareConfig(), boot_nonces=False)
    (request,) = sends(r.purchase(amount, PAN))
    for job in prints(r.reply(request, rrn=RRN)):
        r.feed(PrintFinished(job.job_id, PrintStatus.OK))
    return r


def close(r: Rig) -> None:
    (batch,) = [m for m in sends(r.feed(BatchCloseRequested())) if m.mti == MTI_BATCH]
    r.reply(batch)


def test_a_refund_is_journaled_before_it_is_sent_and_resent_under_its_key() -> None:
    r = sold()
    effects = r.feed(RefundRequested(RRN, 400))
    kinds = [type(e).__name__ for e in effects]
    assert kinds.index("JournalAppend") < kinds.index("Send")
    (refund,) = sends(effects)
    assert (refund.processing_code, refund.amount, refund.pan) == (PROC_REFUND, 400, PAN)
    assert refund.orig_key == "T0001-0000000001" and refund.idem_key == "T0001-0000000002"
    (again,) = sends(r.feed(TimerExpired("refund")))
    assert again.repeat and (again.idem_key, again.stan) == (refund.idem_key, refund.stan)
    # A reboot in between resends it under the same key too.
    (after_boot,) = sends(r.power_cut())
    assert (after_boot.idem_key, after_boot.stan) == (refund.idem_key, refund.stan)
    shown = displays(r.reply(after_boot, rrn="R20000000000"))
    assert Display(Outcome.REFUNDED, "REFUNDED", RRN, 400) in shown


def test_refunds_never_add_up_to_more_than_the_sale_across_a_reboot() -> None:
    r = sold(1000)
    (refund,) = sends(r.feed(RefundRequested(RRN, 700)))
    r.reply(refund, rrn="R20000000000")
    r.power_cut()
    assert displays(r.feed(RefundRequested(RRN, 301))) == [
        Display(Outcome.PROMPT, "REFUND REFUSED - MORE THAN THE SALE")
    ]
    assert len(sends(r.feed(RefundRequested(RRN, 300)))) == 1


def test_a_refused_refund_gives_its_amount_back_to_the_sale() -> None:
    r = sold(1000)
    (refund,) = sends(r.feed(RefundRequested(RRN, 1000)))
    shown = displays(r.reply(refund, rc="05"))
    # A late answer names the sale it is about (the cashier may have asked more since).
    assert Display(Outcome.PROMPT, "REFUND REFUSED - DO NOT HONOUR", RRN) in shown
    assert len(sends(r.feed(RefundRequested(RRN, 1000)))) == 1


def test_a_transient_answer_keeps_the_refund_going() -> None:
    r = sold()
    (refund,) = sends(r.feed(RefundRequested(RRN, 100)))
    assert r.reply(refund, rc="91") == []
    (again,) = sends(r.feed(TimerExpired("refund")))
    assert again.idem_key == refund.idem_key


def test_a_void_the_host_refuses_becomes_a_refund_of_the_whole_sale() -> None:
    r = sold(1000)
    (void,) = sends(r.feed(VoidRequested(RRN)))
    assert void.mti == MTI_REVERSAL and void.orig_key == "T0001-0000000001"
    effects = r.reply(void, rc=RC_REVERSAL_REFUSED)
    (refund,) = sends(effects)
    assert (refund.processing_code, refund.amount) == (PROC_REFUND, 1000)
    records = [e.record["type"] for e in effects if isinstance(e, JournalAppend)]
    assert records[:2] == ["void_refused", "refund"]
    assert not any(d.outcome is Outcome.VOIDED for d in displays(r.log))


def test_a_settled_sale_is_refunded_not_voided() -> None:
    r = sold(1000)
    close(r)
    assert r.journal == [{"type": "batch_closed", "batch_no": 1, "rc": "00", "sale_no": 2}]
    (refund,) = sends(r.feed(VoidRequested(RRN)))
    assert (refund.mti, refund.processing_code, refund.amount) == ("0200", PROC_REFUND, 1000)
    assert refund.orig_key == "T0001-0000000001"


def test_a_sale_settled_before_a_power_cut_is_no_longer_known() -> None:
    """Settled sales stay refundable in memory only (the journal a close leaves is the
    one it always was): after a reboot the terminal refuses, and sends nothing."""
    r = sold(1000)
    close(r)
    r.power_cut()
    for event in (VoidRequested(RRN), RefundRequested(RRN, 10)):
        effects = r.feed(event)
        assert sends(effects) == [] and "NO SUCH SALE" in displays(effects)[0].text


def test_never_both_a_void_and_a_refund() -> None:
    r = sold(1000)
    (void,) = sends(r.feed(VoidRequested(RRN)))
    assert displays(r.feed(RefundRequested(RRN, 10))) == [
        Display(Outcome.PROMPT, "REFUND REFUSED - SALE VOIDED")
    ]
    shown = displays(r.reply(void))
    assert Display(Outcome.VOIDED, "VOIDED", RRN, 1000) in shown
    r2 = sold(1000)
    (_refund,) = sends(r2.feed(RefundRequested(RRN, 10)))
    assert displays(r2.feed(VoidRequested(RRN))) == [
        Display(Outcome.PROMPT, "VOID REFUSED - ALREADY REFUNDED")
    ]


def test_a_batch_waits_for_a_refund_and_counts_it_as_a_credit() -> None:
    r = sold(1000)
    (refund,) = sends(r.feed(RefundRequested(RRN, 250)))
    assert not [m for m in sends(r.feed(BatchCloseRequested())) if m.mti == MTI_BATCH]
    (batch,) = [m for m in sends(r.reply(refund, rrn="R20000000000")) if m.mti == MTI_BATCH]
    assert (batch.debit_count, batch.debit_amount) == (1, 1000)
    assert (batch.credit_count, batch.credit_amount) == (1, 250)
    assert [i.rrn for i in batch.items] == [RRN, "R20000000000"]


def test_an_unknown_rrn_is_refused_without_sending() -> None:
    r = sold()
    for event in (VoidRequested("NOPE00000000"), RefundRequested("", 10)):
        effects = r.feed(event)
        assert sends(effects) == [] and displays(effects)[0].outcome is Outcome.PROMPT


def test_a_refund_unanswered_after_its_last_send_is_reversed_before_it_is_shown_failed() -> None:
    r = sold(1000)
    (refund,) = sends(r.feed(RefundRequested(RRN, 1000)))
    for _ in range(FirmwareConfig().max_sends - 1):
        assert len(sends(r.feed(TimerExpired("refund")))) == 1
    effects = r.feed(TimerExpired("refund"))
    kinds = [type(e).__name__ for e in effects]
    journaled = [e.record["type"] for e in effects if isinstance(e, JournalAppend)]
    assert journaled[:2] == ["refund_reversing", "reversal_pending"]
    assert kinds.index("JournalAppend") < kinds.index("Display") < kinds.index("Send")
    assert Display(Outcome.PROMPT, "REFUND FAILED - NOT CREDITED", RRN) in displays(effects)
    (reversal,) = sends(effects)
    assert (reversal.mti, reversal.orig_key) == (MTI_REVERSAL, refund.idem_key)
    assert (reversal.stan, reversal.amount) == (refund.stan, refund.amount)
    # Until the host confirms the reversal the amount stays counted against the sale
    # (across a reboot too, which resends the reversal, not the refund) ...
    (again,) = sends(r.power_cut())
    assert again.mti == MTI_REVERSAL and again.orig_key == refund.idem_key
    assert displays(r.feed(RefundRequested(RRN, 1))) == [
        Display(Outcome.PROMPT, "REFUND REFUSED - MORE THAN THE SALE")
    ]
    # ... and once it is confirmed (journaled, so after a reboot too) it is free again.
    r.reply(again)
    r.power_cut()
    (fresh,) = sends(r.feed(RefundRequested(RRN, 1000)))
    assert fresh.idem_key != refund.idem_key
