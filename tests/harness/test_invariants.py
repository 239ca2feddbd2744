"""Each invariant fires on a firmware with the flaw it names and holds on the
reference in the same scenario; attribution stays right under reused keys and
foreign RRNs. The invariants are stated in docs/invariants.md."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from acquirer.host import HostTxn
from faults import build_fault
from harness.invariants import IntentObs, Observations, Shown, judge_receipt
from harness.runner import RunResult, run_scenario
from scenarios.loader import load_scenario, scenario_from_dict
from scenarios.model import Scenario

PAN = "4000000000000002"
FIRMWARES = Path(__file__).with_name("invariant_firmwares.py")
INCIDENTS = Path(__file__).resolve().parents[2] / "scenarios" / "incidents"


def fw(name: str) -> str:
    return f"{FIRMWARES}:{name}"


def scenario(
    *amounts: int,
    faults: list[dict[str, Any]] | None = None,
    balance: int = 100_000,
    terminal: dict[str, Any] | None = None,
    people: dict[str, Any] | None = None,
) -> Scenario:
    data: dict[str, Any] = {
        "name": "t",
        "seed": 1,
        "cards": [{"pan": PAN, "balance": balance}],
        "steps": [
            {"at_ms": i * 30_000, "purchase": {"card": PAN, "amount": a}}
            for i, a in enumerate(amounts)
        ],
        "faults": faults or [],
        "expect": {"invariants": "all"},
    }
    if terminal:
        data["terminal"] = terminal
    if people:
        data["people"] = people
    return scenario_from_dict(data)


def violated(r: RunResult) -> dict[str, list[int]]:
    """Violated invariant -> the intents its violations name."""
    return {name: [v.intent for v in vs] for name, vs in r.violations.items() if vs}


# ------------------------------------------------------------ approved-means-charged


def test_approved_means_charged_fires_on_an_approval_the_host_declined() -> None:
    sc = scenario(500, balance=100)  # RC 51: not enough money
    bad = run_scenario(sc, fw("ApprovesDeclines"))
    assert violated(bad) == {"approved-means-charged": [1]}
    assert "holds no live charge" in bad.violations["approved-means-charged"][0].message
    assert run_scenario(sc).violated() == []


def test_approved_means_charged_fires_on_a_late_approval_of_a_reversed_sale() -> None:
    sc = scenario(
        1250,
        faults=[
            {"delay": {"direction": "to_terminal", "mti": "0210", "nth": 1, "delay_ms": 20_000}}
        ],
        terminal={"max_sends": 1},
    )
    bad = run_scenario(sc, "zoo:late-approval-flips")
    assert bad.violations["approved-means-charged"][0].intent == 1
    assert "reversed" in bad.violations["approved-means-charged"][0].message
    assert run_scenario(sc).violated() == []


# ------------------------------------------------------------ every final display


def test_a_later_approved_display_does_not_mask_a_failed_one() -> None:
    """The customer left with FAILED; the late answer flips the display to APPROVED
    and the money stays taken. The last display alone would say all is well."""
    sc = scenario(
        1250,
        faults=[
            {"delay": {"direction": "to_terminal", "mti": "0210", "nth": 1, "delay_ms": 20_000}}
        ],
        terminal={"max_sends": 1},
    )
    bad = run_scenario(sc, fw("FailedThenLateApproval"))
    assert violated(bad).get("no-charge-on-failure") == [1]
    assert "shown FAILED" in bad.violations["no-charge-on-failure"][0].message
    assert "approved-means-charged" not in violated(bad)  # the approval has its charge
    assert run_scenario(sc).violated() == []


def test_a_failed_attempt_the_cashier_retried_is_not_the_answer() -> None:
    """FAILED, then the cashier tries again and it is approved and charged once:
    the FAILED was not what the customer left with, so nothing is violated."""
    sc = scenario(
        1250,
        faults=[{"drop": {"direction": "to_terminal", "mti": "0210", "nth": 1, "count": 2}}],
        people={"retry_on_failed": 1},
    )
    r = run_scenario(sc)
    assert r.violated() == []
    assert r.purchases == 1


# ------------------------------------------------------------ receipts across reboots

JAM_THEN_CUT = [
    {"printer_jam": {"nth": 1}},
    {"power_cut": {"at_ms": 3_000, "off_ms": 1_000}},
]


def test_a_pending_receipt_forgotten_by_a_reboot_breaks_receipt_for_every_charge() -> None:
    sc = scenario(2599, faults=JAM_THEN_CUT, people={"reprint_on_pending": False})
    bad = run_scenario(sc, fw("ForgetsPendingReceiptsAtBoot"))
    assert violated(bad) == {"receipt-for-every-charge": [1]}
    assert "forgotten" in bad.violations["receipt-for-every-charge"][0].message
    good = run_scenario(sc)
    assert good.violated() == []


def test_a_pending_receipt_shown_once_used_to_be_enough() -> None:
    """Without the reboot the same firmware holds: the receipt is still shown as
    pending, which a reprint completes."""
    sc = scenario(2599, faults=JAM_THEN_CUT[:1], people={"reprint_on_pending": False})
    assert run_scenario(sc, fw("ForgetsPendingReceiptsAtBoot")).violated() == []


# ------------------------------------------------------------ receipt content


def test_a_receipt_with_another_card_breaks_no_receipt_without_record() -> None:
    sc = scenario(1250)
    bad = run_scenario(sc, fw("WrongCardOnReceipt"))
    assert violated(bad) == {"no-receipt-without-record": [1]}
    assert "card ...9999" in bad.violations["no-receipt-without-record"][0].message


def txn(rrn: str = "000000000007", status: str = "approved") -> HostTxn:
    return HostTxn(7, rrn, "T0001", 7, "T0001-k", "purchase", PAN, 1250, "00", status, 0)


def receipt(rrn: str = "000000000007") -> dict[str, Any]:
    return {
        "status": "approved",
        "amount": 1250,
        "rrn": rrn,
        "stan": 7,
        "pan_last4": PAN[-4:],
        "auth_code": "A1",
        "idem_key": "T0001-k",
        "copy": True,
    }


def observations(*shown: Shown) -> Observations:
    obs = Observations()
    obs.terminal_id = "T0001"
    obs.intents[2] = IntentObs(2, PAN, 1250, 1, 0, finals=list(shown))
    obs.rrn_owner["000000000007"] = 2
    return obs


@pytest.mark.parametrize("outcome", ["declined", "failed"])
def test_an_approved_receipt_for_a_sale_shown_declined_or_failed_fires(outcome: str) -> None:
    """A reprint that prints APPROVED for a sale the customer was told had not gone
    through, even though the host did charge it (that is a separate violation)."""
    obs = observations(Shown(outcome, 10, 0))
    (v,) = judge_receipt(obs, 20, receipt(), txn(), 2)
    assert v.invariant == "no-receipt-without-record" and v.intent == 2
    assert f"shown {outcome.upper()}" in v.message and v.seqs == (10, 20)


def test_an_approved_receipt_for_an_approved_sale_holds() -> None:
    retried = Shown("failed", 5, 0, retried=True)
    assert (
        judge_receipt(observations(retried, Shown("approved", 10, 0)), 20, receipt(), txn(), 2)
        == []
    )


def test_a_receipt_naming_another_terminals_rrn_fires() -> None:
    other = HostTxn(7, "000000000007", "T0002", 7, "x", "purchase", PAN, 1250, "00", "approved", 0)
    (v,) = judge_receipt(observations(Shown("approved", 10, 0)), 20, receipt(), other, 2)
    assert v.invariant == "no-receipt-without-record" and "terminal T0002" in v.message


def test_a_receipt_for_a_reversed_transaction_fires() -> None:
    (v,) = judge_receipt(observations(), 20, receipt(), txn(status="reversed"), 2)
    assert v.invariant == "no-receipt-without-record" and "reversed" in v.message


# ------------------------------------------------------------ attribution


def sends(path: Path) -> list[int]:
    out = []
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        if rec["kind"] == "send" and rec["from"] == "terminal" and rec["msg"]["mti"] == "0200":
            out.append(rec["intent"])
    return out


def test_reused_keys_are_blamed_on_the_customer_at_the_counter(tmp_path: Path) -> None:
    """tid-counter-keys after a device swap: the new device's first sale reuses the
    old device's first key, and the host answers with that sale's approval. The new
    customer (intent 2) was shown APPROVED and given a receipt for intent 1's
    charge; intent 1 was charged once. (It used to surface only as intent 2 never
    settling, the approval being blamed on intent 1.)"""
    sc = load_scenario(INCIDENTS / "fault-device_swap.toml")
    trace = tmp_path / "t.jsonl"
    r = run_scenario(sc, "zoo:tid-counter-keys", trace_path=trace)
    got = violated(r)
    assert got["approved-means-charged"] == [2]
    assert got["no-receipt-without-record"] == [2]
    assert "intent 1's charge" in r.violations["approved-means-charged"][0].message
    assert "eventually-settles" not in got and "no-duplicate-charge" not in got
    assert sends(trace) == [1, 2]  # the same key, sent for two customers
    assert run_scenario(sc).violated() == []


def test_a_response_with_another_sales_rrn_is_blamed_on_the_sale_it_answers() -> None:
    """The firmware approves the second sale under the first sale's RRN. Every
    violation is about intent 2; intent 2 still reaches its (wrong) final state."""
    sc = scenario(1250, 1250)
    r = run_scenario(sc, fw("StickyRrn"))
    got = violated(r)
    assert got["approved-means-charged"] == [2]
    assert got["no-receipt-without-record"] == [2]
    assert {n for ns in got.values() for n in ns} == {2}
    assert "eventually-settles" not in got
    msg = r.violations["approved-means-charged"][0].message
    assert "intent 1's charge" in msg
    assert run_scenario(sc).violated() == []


# ------------------------------------------------------------ batch close liveness


def test_a_batch_close_never_answered_breaks_eventually_settles() -> None:
    sc = scenario(1250)
    sc = replace(sc, steps=(*sc.steps, replace(sc.steps[0], at_ms=20_000, action="batch_close")))
    bad = run_scenario(sc, fw("IgnoresBatchClose"))
    assert violated(bad) == {"eventually-settles": [0]}
    assert "never answered" in bad.violations["eventually-settles"][0].message
    assert run_scenario(sc).violated() == []


def test_a_batch_close_the_host_refuses_breaks_eventually_settles() -> None:
    """Every 0500 is answered, but with RC 30 (more items than one upload may carry):
    a refusal settles nothing, so the close was never answered (found by mutation
    testing: a terminal that lets a batch outgrow the 0500 never closes it)."""
    sc = scenario(1250)
    sc = replace(sc, steps=(*sc.steps, replace(sc.steps[0], at_ms=20_000, action="batch_close")))
    bad = run_scenario(sc, fw("OverfullBatch"))
    assert violated(bad) == {"eventually-settles": [0]}
    assert "RC 00 or 95" in bad.violations["eventually-settles"][0].message
    assert run_scenario(sc).violated() == []


def test_a_batch_close_asked_for_before_the_last_fault_is_not_judged() -> None:
    """A fault after the request (here a power cut) may end a close the terminal
    then gives up on; the cashier would ask again. Only requests after the last
    fault must be answered."""
    sc = scenario(1250)
    sc = replace(
        sc,
        steps=(*sc.steps, replace(sc.steps[0], at_ms=20_000, action="batch_close")),
        faults=(build_fault("power_cut", {"at_ms": 25_000, "off_ms": 1_000}),),
    )
    assert "eventually-settles" not in violated(run_scenario(sc, fw("IgnoresBatchClose")))


# ------------------------------------------------------------ a truthful final state


def test_an_approval_delivered_without_faults_must_be_shown_approved() -> None:
    sc = scenario(1250)
    bad = run_scenario(sc, fw("NeverMatchesAnswers"))
    assert violated(bad) == {"eventually-settles": [1]}
    assert "not the truthful one" in bad.violations["eventually-settles"][0].message
    assert run_scenario(sc).violated() == []


def test_a_sale_with_a_fault_is_not_held_to_the_truthful_outcome() -> None:
    """A fault during the sale (here a 1 ms delay of the answer) may leave a correct
    terminal unsure; FAILED with a reversal is then an honest answer."""
    delay = {"delay": {"direction": "to_terminal", "mti": "0210", "nth": 1, "delay_ms": 1}}
    sc = scenario(1250, faults=[delay])
    assert violated(run_scenario(sc, fw("NeverMatchesAnswers"))) == {}


def test_a_customer_kept_waiting_through_an_outage_breaks_eventually_settles() -> None:
    """A 5-minute outage: the reference times out and shows FAILED (reversing
    later); a terminal that resends until the network heals keeps the customer at
    PROCESSING for 5 minutes. Counted from the sale's start, not the fault's end:
    whatever the network does, a terminal times out (found by mutation testing)."""
    outage = {"partition": {"from_ms": 0, "to_ms": 300_000}}
    sc = scenario(1250, faults=[outage])
    bad = run_scenario(sc, fw("WaitsOutOutages"))
    assert violated(bad) == {"eventually-settles": [1]}
    assert "must time out" in bad.violations["eventually-settles"][0].message
    assert run_scenario(sc).violated() == []


def test_an_owed_receipt_printed_as_a_copy_breaks_receipt_for_every_charge() -> None:
    """The printer jams on the receipt, the power fails; after the reboot the terminal
    prints what it owes marked COPY: the customer's only receipt is a duplicate
    (found by mutation testing). The reference prints it as the original."""
    jam = {"printer_jam": {"nth": 1}}
    cut = {"power_cut": {"at_ms": 20_000, "off_ms": 1_000}}
    sc = scenario(2599, faults=[jam, cut], people={"reprint_on_pending": False})
    bad = run_scenario(sc, fw("OwedReceiptAsCopy"))
    assert violated(bad) == {"receipt-for-every-charge": [1]}
    assert "marked as a duplicate" in bad.violations["receipt-for-every-charge"][0].message
    assert run_scenario(sc).violated() == []


def test_a_valid_sale_refused_for_no_reason_is_not_a_truthful_final_state() -> None:
    sc = scenario(1250)
    bad = run_scenario(sc, fw("RefusesEverySale"))
    assert violated(bad) == {"eventually-settles": [1]}
    assert "without the terminal asking the host" in bad.violations["eventually-settles"][0].message


def test_a_refusal_while_a_batch_close_is_unanswered_is_not_judged() -> None:
    """A correct terminal refuses sales while its batch closes. Here the host takes
    2 s to answer the close: the sale started in those 2 s is not held against the
    terminal, the ones before and after the close are."""
    sc = scenario(1250, 1250, 1250)
    sc = replace(sc, host=replace(sc.host, processing_ms=2_000))
    close = replace(sc.steps[0], at_ms=20_000, action="batch_close")
    during = replace(sc.steps[1], at_ms=20_500)
    after = replace(sc.steps[2], at_ms=40_000)
    sc = replace(sc, steps=(sc.steps[0], close, during, after))
    assert violated(run_scenario(sc, fw("RefusesEverySale"))) == {"eventually-settles": [1, 3]}
    # The reference does refuse the sale during the close (no 0200 for intent 2),
    # and nothing is judged.
    seen: list[dict[str, Any]] = []
    ref = run_scenario(sc, observers=[seen.append])
    assert ref.violated() == [], ref.problems
    sales = [r.get("intent") for r in seen if r["kind"] == "send" and r["msg"]["mti"] == "0200"]
    assert 2 not in sales and {1, 3} <= set(sales)


def test_a_refusal_after_the_batch_close_is_answered_is_judged() -> None:
    """Once the close is answered, a terminal that still refuses sales is stuck:
    mutation testing found a reference that never cleared its finished batch."""
    sc = scenario(1250, 1250)
    close = replace(sc.steps[0], at_ms=10_000, action="batch_close")
    sc = replace(sc, steps=(sc.steps[0], close, sc.steps[1]))
    bad = run_scenario(sc, fw("RefusesAfterBatchClose"))
    assert violated(bad) == {"eventually-settles": [2]}
    assert "without the terminal asking the host" in bad.violations["eventually-settles"][0].message
    assert run_scenario(sc).violated() == []


def test_a_refusal_after_a_batch_answer_that_came_too_late_is_not_judged() -> None:
    """The host takes 16 s, the terminal waits 3 s per upload: it gives up on the
    close before the answers come, so the batch is still open for it and the next
    sale is refused until the cashier closes again. That is not held against it."""
    sc = scenario(1250, 1250, terminal={"response_timeout_ms": 3_000})
    sc = replace(sc, host=replace(sc.host, processing_ms=16_000))
    close = replace(sc.steps[0], at_ms=60_000, action="batch_close")
    sc = replace(sc, steps=(sc.steps[0], close, replace(sc.steps[1], at_ms=90_000)))
    seen: list[dict[str, Any]] = []
    result = run_scenario(sc, observers=[seen.append])
    assert result.violated() == [], result.problems
    finals = [
        r
        for r in seen
        if r["kind"] == "display" and r.get("intent") == 2 and r["outcome"] != "prompt"
    ]
    assert [r["outcome"] for r in finals][-1] == "declined"  # refused: the close is pending
    assert not [r for r in seen if r["kind"] == "send" and r.get("intent") == 2]


def test_a_late_answer_to_an_earlier_batch_does_not_end_the_close_under_way() -> None:
    """The slow host answers the first close's resend after the second close was asked
    for: that answer is for batch 1, and the sales refused while batch 2 is closing are
    truthful (a false positive found by fuzzing the reference). The same refusals after
    the current batch's own answer are still judged (the test above)."""
    sc = load_scenario(INCIDENTS / "regress-stale-batch-answer.toml")
    seen: list[dict[str, Any]] = []
    result = run_scenario(sc, observers=[seen.append])
    assert result.violated() == [], result.problems
    answered = [r["msg"] for r in seen if r["kind"] == "deliver" and r["msg"]["mti"] == "0510"]
    asked = [r["msg"] for r in seen if r["kind"] == "send" and r["msg"]["mti"] == "0500"]
    # The late answer names the earlier batch, after the later one was asked for.
    assert answered[1]["batch_no"] == asked[0]["batch_no"] != asked[-1]["batch_no"]
    refused = [r for r in seen if r["kind"] == "display" and r["outcome"] == "declined"]
    assert len(refused) == 2  # both sales refused while batch 2 closes


def test_customers_queued_on_a_slow_host_are_not_cut_off_by_the_runs_limit() -> None:
    """27 customers at once, a host slower than the terminal's timeout, a card the issuer
    never answers (RC 91), each customer retrying twice: served one at a time, they take
    longer than the run's fixed hour. Each customer gets its own time now, so the run comes
    to rest (found by the property test, whose draws depend on the tests run before it)."""
    sc = scenario(
        *[1] * 27,
        terminal={"response_timeout_ms": 15_000, "max_sends": 3, "status_inquiry": False},
        people={"retry_on_failed": 2, "retry_after_ms": 20_000},
    )
    sc = replace(
        sc,
        steps=tuple(replace(st, at_ms=0) for st in sc.steps),
        cards=(replace(sc.cards[0], rc="91"),),
        host=replace(sc.host, processing_ms=16_000, test_amounts=False),
        expect=replace(sc.expect, settle_within_ms=600_000),  # each takes 136 s
    )
    seen: list[dict[str, Any]] = []
    result = run_scenario(sc, observers=[seen.append])
    assert result.violated() == [], result.problems
    end = next(r for r in seen if r["kind"] == "end")
    assert end["t_ms"] > 3_600_000  # past the old limit, at rest
    finals = {r["intent"] for r in seen if r["kind"] == "display" and r["outcome"] != "prompt"}
    assert finals >= set(range(1, 28))


def test_a_batch_sent_again_after_a_clean_answer_breaks_eventually_settles() -> None:
    sc = scenario(1250)
    sc = replace(sc, steps=(*sc.steps, replace(sc.steps[0], at_ms=20_000, action="batch_close")))
    bad = run_scenario(sc, fw("IgnoresBatchAnswers"))
    assert violated(bad) == {"eventually-settles": [0]}
    assert "ignored the answer" in bad.violations["eventually-settles"][0].message
    assert run_scenario(sc).violated() == []


def test_a_batch_answer_after_a_fault_may_be_ignored() -> None:
    """A fault after the upload (a corrupted or spliced answer may look clean):
    sending again is then the careful thing to do, and is not judged."""
    sc = scenario(1250)
    delay = {"delay": {"direction": "to_terminal", "mti": "0510", "nth": 1, "delay_ms": 1}}
    sc = replace(
        sc,
        steps=(*sc.steps, replace(sc.steps[0], at_ms=20_000, action="batch_close")),
        faults=(build_fault("delay", delay["delay"]),),
    )
    assert "ignored the answer" not in str(run_scenario(sc, fw("IgnoresBatchAnswers")).violations)


def test_a_sale_the_cashier_cancels_is_not_a_refusal() -> None:
    """The cashier's cancel before the card is a truthful FAILED ("CANCELLED - NOT
    CHARGED") with nothing sent: it must not read as a sale refused for no reason.
    (Found when the fuzzer began to draw cancel steps.)"""
    sc = scenario(1250)
    cancel = replace(sc.steps[0], action="cancel")
    sc = replace(sc, steps=(sc.steps[0], cancel))
    result = run_scenario(sc)
    assert result.violated() == [], result.problems
