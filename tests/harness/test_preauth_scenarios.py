"""Pre-authorisation, completion and tip adjust end to end: the reference holds, carries
the hold through a batch close, completes it once under one journaled key (across lost
answers and power cuts), sets tips as new totals inside the batch window only; the
invariants' completion and tip rules fire and hold; the scenario steps, the exec wire
and the strategies carry it."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings

from harness.exec_wire import encode_event
from harness.hold_strategies import hold_steps
from harness.invariants.holds import HoldObs, judge_holds
from harness.runner import run_scenario
from scenarios.loader import load_scenario, scenario_from_dict
from scenarios.model import ScenarioError, Step, scenario_to_dict
from terminal.firmware import CompletionRequested, PreauthKeyed, TipAdjustRequested

INCIDENTS = Path("scenarios/incidents")
STAY = load_scenario(INCIDENTS / "preauth-hotel-stay.toml")
LOST = load_scenario(INCIDENTS / "preauth-completion-answer-lost.toml")
CUT = load_scenario(INCIDENTS / "preauth-completion-power-cut.toml")
TIP_LOST = load_scenario(INCIDENTS / "tip-answer-lost.toml")
TIP_LATE = load_scenario(INCIDENTS / "tip-after-batch-close.toml")


def records(path: Path, kind: str) -> list[dict[str, Any]]:
    return [r for r in map(json.loads, path.read_text().splitlines()) if r["kind"] == kind]


def adjust_sends(path: Path) -> list[dict[str, Any]]:
    return [
        r["msg"]
        for r in records(path, "send")
        if r["from"] == "terminal" and r["msg"]["mti"] == "0220"
    ]


def shown(path: Path, outcome: str) -> list[tuple[str, int]]:
    return [(r["rrn"], r["amount"]) for r in records(path, "display") if r["outcome"] == outcome]


def test_a_hotel_stay_holds_through_the_close_then_completes_and_tips(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    result = run_scenario(STAY, "reference", trace_path=trace)
    assert result.verdict == "PASS", result.problems
    sent = [r["msg"]["mti"] for r in records(trace, "send") if r["from"] == "terminal"]
    assert sent[0] == "0100"
    assert shown(trace, "completed") == [("000000000001", 26000)]
    assert shown(trace, "tip-added") == [("000000000003", 28000)]
    host = [r["action"] for r in records(trace, "host")]
    assert host == ["hold", "charge", "batch-match", "capture", "adjust", "batch-match"]
    # The first close settles the sale alone; the hold is in no batch; the second
    # settles the completion at its new total.
    batches = [m for m in (r["msg"] for r in records(trace, "send")) if m["mti"] == "0500"]
    assert [(b["debit_count"], b["debit_amount"]) for b in batches] == [(1, 4000), (1, 28000)]


def test_a_lost_completion_answer_is_resent_under_the_same_key(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    assert run_scenario(LOST, "reference", trace_path=trace).verdict == "PASS"
    sends = adjust_sends(trace)
    assert len(sends) == 2 and sends[1]["repeat"]
    assert sends[0]["idem_key"] == sends[1]["idem_key"] and sends[0]["stan"] == sends[1]["stan"]
    assert sends[0]["orig_key"] and sends[0]["amount"] == 18000
    actions = [r["action"] for r in records(trace, "host") if r.get("key") == sends[0]["idem_key"]]
    assert actions == ["capture", "replay"]
    assert shown(trace, "completed") == [("000000000001", 18000)]


def test_a_completion_survives_a_power_cut_with_its_key(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    result = run_scenario(CUT, "reference", trace_path=trace)
    assert result.verdict == "PASS", result.problems
    sends = adjust_sends(trace)
    assert len(sends) >= 2 and len({m["idem_key"] for m in sends}) == 1
    assert [r["action"] for r in records(trace, "host")].count("capture") == 1
    assert shown(trace, "completed") == [("000000000001", 15000)]


def test_a_tip_is_a_new_total_and_a_lost_answer_does_not_add_it_twice(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    assert run_scenario(TIP_LOST, "reference", trace_path=trace).verdict == "PASS"
    sends = adjust_sends(trace)
    assert [(m["processing_code"], m["amount"]) for m in sends] == [("020000", 6000)] * 2
    assert shown(trace, "tip-added") == [("000000000001", 6000)]


def test_a_tip_after_the_batch_close_is_refused_without_asking_the_host(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    assert run_scenario(TIP_LATE, "reference", trace_path=trace).verdict == "PASS"
    assert adjust_sends(trace) == []
    texts = [r["text"] for r in records(trace, "display")]
    assert "TIP REFUSED - BATCH CLOSED" in texts


def test_a_tip_on_a_completion_is_owed_only_once_completed_was_shown(tmp_path: Path) -> None:
    """The host booked the completion, its answer is still on the way: the terminal
    rightly refuses a tip on it (fuzz seed 20). The same tip asked after COMPLETED was
    shown is owed (the cashier's record says `valid`) and carried out."""
    early = load_scenario(INCIDENTS / "regress-tip-before-completion-shown.toml")
    trace = tmp_path / "early.jsonl"
    assert run_scenario(early, "reference", trace_path=trace).verdict == "PASS"
    tips = [r for r in records(trace, "cashier") if r["action"] == "tip"]
    assert len(tips) == 1 and "valid" not in tips[0]
    texts = [r["text"] for r in records(trace, "display")]
    assert texts.index("TIP REFUSED - NO SUCH SALE") < texts.index("COMPLETED")
    later = replace(
        early,
        steps=tuple(replace(s, at_ms=70_000) if s.action == "tip" else s for s in early.steps),
    )
    trace = tmp_path / "later.jsonl"
    assert run_scenario(later, "reference", trace_path=trace).verdict == "PASS"
    tips = [r for r in records(trace, "cashier") if r["action"] == "tip"]
    assert len(tips) == 1 and tips[0]["valid"] is True
    assert shown(trace, "tip-added") == [("000000000002", 12500)]


def test_a_second_tip_is_owed_only_once_the_first_was_shown_added(tmp_path: Path) -> None:
    """The host booked the first tip, its answer is still on the way: the terminal
    rightly refuses a second (TIP PENDING; fuzz seed 28). The same second tip asked once
    TIP ADDED was shown is owed and carried out, and a firmware that refuses it is
    caught."""
    early = load_scenario(INCIDENTS / "regress-second-tip-before-first-shown.toml")
    trace = tmp_path / "early.jsonl"
    assert run_scenario(early, "reference", trace_path=trace).verdict == "PASS"
    tips = [r for r in records(trace, "cashier") if r["action"] == "tip"]
    assert [("valid" in r) for r in tips] == [True, False]
    texts = [r["text"] for r in records(trace, "display")]
    assert "TIP REFUSED - TIP PENDING" in texts
    last = max(i for i, s in enumerate(early.steps) if s.action == "tip")
    later = replace(
        early,
        steps=tuple(
            replace(s, at_ms=70_000) if i == last else s for i, s in enumerate(early.steps)
        ),
    )
    trace = tmp_path / "later.jsonl"
    assert run_scenario(later, "reference", trace_path=trace).verdict == "PASS"
    tips = [r for r in records(trace, "cashier") if r["action"] == "tip"]
    assert [r.get("valid") for r in tips] == [True, True]
    assert shown(trace, "tip-added")[-1] == ("000000000001", 548)
    bad = run_scenario(later, "tests.harness.invariant_firmwares:OneTipOnly")
    (v,) = bad.violations["eventually-settles"]
    assert "set a tip of 0.49" in v.message


@pytest.mark.parametrize(
    ("sc", "firmware", "invariant"),
    [
        (LOST, "zoo:completion-new-key-on-retry", "no-charge-on-failure"),
        (CUT, "zoo:completion-before-answer", "approved-means-charged"),
        (TIP_LOST, "zoo:tip-added-twice", "amount-integrity"),
        (TIP_LATE, "zoo:tip-after-batch-close", "approved-means-charged"),
    ],
)
def test_each_flawed_firmware_is_caught(sc: Any, firmware: str, invariant: str) -> None:
    result = run_scenario(sc, firmware)
    assert result.violations[invariant], sorted(result.violated())


def test_a_hold_charged_as_a_sale_is_caught() -> None:
    """A pre-authorisation sent as a 0200 charges the card: the APPROVED display is
    backed by a purchase, not a hold (and the reference's is a hold)."""
    bad = run_scenario(STAY, "tests.harness.invariant_firmwares:PreauthAsSale")
    (v,) = bad.violations["amount-integrity"]
    assert "pre-authorisation (a hold) but the host charged it as a purchase" in v.message
    assert not run_scenario(STAY, "reference").violations["amount-integrity"]


def test_a_reversal_for_another_amount_than_the_host_holds_is_caught() -> None:
    """A void of a tipped sale whose 0400 leaves the tip out: the host refuses a
    reversal for another amount than it holds, and the cashier's void becomes a
    refund. The reference names the total, at once and after a power cut."""
    sc = load_scenario(INCIDENTS / "regress-void-tipped-sale.toml")
    bad = run_scenario(sc, "tests.harness.invariant_firmwares:VoidsWithoutTheTip")
    (v,) = bad.violations["amount-integrity"]
    assert "a reversal (0400) of the sale with rrn 000000000001 named 50.00" in v.message
    assert "differs from the original's 5700" in v.message
    assert run_scenario(sc, "reference").passed
    cut = load_scenario(INCIDENTS / "regress-void-tipped-sale-power-cut.toml")
    assert run_scenario(cut, "reference").passed


def test_a_tip_on_a_sale_being_voided_is_caught() -> None:
    """TIP ADDED while the void of the sale is under way: the void then gives back the
    amount it named, the customer pays the tip (the reference refuses the tip)."""
    sc = load_scenario(INCIDENTS / "regress-tip-while-voiding.toml")
    bad = run_scenario(sc, "tests.harness.invariant_firmwares:TipsWhileVoiding")
    (v,) = bad.violations["approved-means-charged"]
    assert "TIP ADDED while the void the cashier asked of it was under way" in v.message
    assert run_scenario(sc, "reference").verdict == "PASS"


def test_a_firmware_without_the_feature_is_skipped() -> None:
    assert run_scenario(STAY, "zoo:naive-retry").verdict == "SKIP"


def test_the_steps_load_and_write_back() -> None:
    data = scenario_to_dict(STAY)
    kinds = [next(k for k in s if k not in ("at_ms", "terminal")) for s in data["steps"]]
    assert kinds == ["preauth", "purchase", "batch_close", "complete", "tip"]
    assert data["steps"][3]["complete"] == {"sale": 1, "amount": 26000}
    assert data["steps"][4]["tip"] == {"sale": 1, "amount": 2000}
    assert scenario_to_dict(scenario_from_dict(data)) == data


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ({"complete": {"sale": 2}}, "steps[2].complete.sale: names payment 2, a purchase step"),
        ({"complete": {"sale": 3}}, "steps[2].complete.sale: names payment 3, but only 2"),
        ({"tip": {"sale": 1}}, "steps[2].tip.amount: missing"),
        ({"tip": {"sale": 1, "amount": -5}}, "steps[2].tip.amount: must be an integer"),
        ({"complete": {"sale": 1, "tip": 5}}, "steps[2].complete.tip: unknown key"),
        ({"preauth": {"card": "4000000000000002"}}, "steps[2].preauth.amount: missing"),
    ],
)
def test_bad_steps_get_one_line_naming_the_field(step: dict[str, Any], message: str) -> None:
    data = scenario_to_dict(STAY)
    data["steps"] = [*data["steps"][:2], {"at_ms": 90_000, **step}]
    with pytest.raises(ScenarioError) as err:
        scenario_from_dict(data)
    assert message in str(err.value), str(err.value)
    assert "\n" not in str(err.value)


def test_the_exec_wire_carries_the_new_events() -> None:
    keyed = json.loads(encode_event(3, PreauthKeyed(30000), b"k"))
    assert keyed == {"n": 3, "type": "PreauthKeyed", "amount": 30000}
    done = json.loads(encode_event(4, CompletionRequested("000000000001", 26000), b"k"))
    assert (done["type"], done["rrn"], done["amount"]) == (
        "CompletionRequested",
        "000000000001",
        26000,
    )
    tip = json.loads(encode_event(5, TipAdjustRequested("000000000003", 2000), b"k"))
    assert (tip["type"], tip["rrn"], tip["tip"]) == ("TipAdjustRequested", "000000000003", 2000)


@given(hold_steps(STAY.steps[:2]))
@settings(max_examples=60, deadline=None, database=None)
def test_drawn_holds_always_load(drawn_steps: tuple[tuple[Step, ...], tuple[Any, ...]]) -> None:
    steps, faults = drawn_steps
    sc = replace(STAY, steps=steps, faults=STAY.faults + faults)
    assert scenario_from_dict(scenario_to_dict(sc)).steps == steps


# ------------------------------------------------------------------ the judge alone


@dataclass
class Txn:
    rrn: str
    kind: str
    amount: int
    status: str = "approved"
    tip: int = 0
    terminal_id: str = "T1"
    id: int = 1


class Host:
    def __init__(self, *txns: Txn, capture: Txn | None = None) -> None:
        self.txns = {t.rrn: t for t in txns}
        self.capture = capture

    def transaction_by_rrn(self, rrn: str) -> Txn | None:
        return self.txns.get(rrn)

    def completion_of(self, preauth_id: int) -> Txn | None:
        return self.capture


def judge(obs: HoldObs, host: Host, quiet: bool = True) -> set[tuple[str, str]]:
    found = judge_holds(obs, host, "T1", quiet)  # type: ignore[arg-type]
    return {(v.invariant, v.message.split(" ")[0]) for v in found}


REFUSED = {"seq": 2, "outcome": "prompt", "text": "REFUSED"}  # an answer naming the sale


def completion(asked: int, shown: int | None) -> HoldObs:
    """A completion asked, then shown COMPLETED for `shown` (None: refused)."""
    obs = HoldObs()
    obs.cashier({"seq": 1, "action": "complete", "rrn": "P", "amount": asked, "intent": 1})
    if shown is not None:
        obs.display({"seq": 2, "outcome": "completed", "rrn": "P", "amount": shown})
    else:
        obs.answer({**REFUSED, "rrn": "P"})
    return obs


HOLD = Txn("P", "preauth", 20000, status="completed")


CAPTURED = Txn("C", "completion", 18000)


def test_the_judge_accepts_a_completion_captured_as_shown() -> None:
    assert judge(completion(18000, 18000), Host(HOLD, capture=CAPTURED)) == set()


def test_the_judge_flags_completed_without_capture_and_capture_without_completed() -> None:
    orphan = judge(completion(18000, 18000), Host(replace(HOLD, status="approved")))
    assert {i for i, _ in orphan} == {"approved-means-charged"}
    silent = judge(completion(18000, None), Host(HOLD, capture=CAPTURED))
    assert {i for i, _ in silent} == {"no-charge-on-failure"}
    # Not at rest: a completion still being sent is not judged yet.
    assert (
        judge(completion(18000, None), Host(HOLD, capture=Txn("C", "completion", 18000)), False)
        == set()
    )


def test_the_judge_flags_a_capture_of_another_amount() -> None:
    found = judge(completion(18000, 18000), Host(HOLD, capture=Txn("C", "completion", 20000)))
    assert {i for i, _ in found} == {"amount-integrity"}


def tipped(tip: int, shown_total: int | None) -> HoldObs:
    obs = HoldObs()
    obs.cashier({"seq": 1, "action": "tip", "rrn": "S", "tip": tip, "base": 5000, "intent": 1})
    if shown_total is not None:
        obs.display({"seq": 2, "outcome": "tip-added", "rrn": "S", "amount": shown_total})
    else:
        obs.answer({**REFUSED, "rrn": "S"})
    return obs


def test_the_judge_accepts_a_tip_set_as_shown() -> None:
    assert judge(tipped(1000, 6000), Host(Txn("S", "purchase", 6000, tip=1000))) == set()
    # A refused tip: nothing shown, nothing set.
    assert judge(tipped(1000, None), Host(Txn("S", "purchase", 5000))) == set()


def test_the_judge_flags_a_tip_counted_twice_shown_but_not_set_or_set_unshown() -> None:
    twice = judge(tipped(1000, 6000), Host(Txn("S", "purchase", 7000, tip=2000)))
    assert {i for i, _ in twice} == {"amount-integrity", "approved-means-charged"}
    never = judge(tipped(1000, 6000), Host(Txn("S", "purchase", 5000)))
    assert {i for i, _ in never} == {"approved-means-charged"}
    unshown = judge(tipped(1000, None), Host(Txn("S", "purchase", 6000, tip=1000)))
    assert {i for i, _ in unshown} == {"no-charge-on-failure"}
    wrong_total = judge(tipped(1000, 7000), Host(Txn("S", "purchase", 7000, tip=2000)))
    assert ("amount-integrity", "sale") in wrong_total


def test_a_valid_request_in_a_faultless_run_must_be_carried_out() -> None:
    obs = HoldObs()
    ask = {"seq": 1, "action": "complete", "rrn": "P", "amount": 18000, "intent": 1}
    obs.cashier({**ask, "valid": True}, clear=True)
    obs.answer({**REFUSED, "rrn": "P"})
    standing = Host(replace(HOLD, status="approved"))  # no capture: refused or never sent
    found = list(judge_holds(obs, standing, "T1", True, faultless=True))  # type: ignore[arg-type]
    assert [v.invariant for v in found] == ["eventually-settles"]
    assert found[0].klass == "liveness"
    # A fault anywhere in the run, an invalid ask, or a batch close under way: excused.
    assert list(judge_holds(obs, standing, "T1", True, faultless=False)) == []  # type: ignore[arg-type]
    for valid, clear in ((False, True), (True, False)):
        other = HoldObs()
        other.cashier({**ask, "valid": valid}, clear=clear)
        other.answer({**REFUSED, "rrn": "P"})
        assert list(judge_holds(other, standing, "T1", True, faultless=True)) == []  # type: ignore[arg-type]
    tip = HoldObs()
    tip.cashier(
        {"seq": 1, "action": "tip", "rrn": "S", "tip": 700, "base": 5000, "valid": True}, clear=True
    )
    tip.answer({**REFUSED, "rrn": "S"})
    untipped = Host(Txn("S", "purchase", 5000))
    assert [v.invariant for v in judge_holds(tip, untipped, "T1", True, faultless=True)] == [  # type: ignore[arg-type]
        "eventually-settles"
    ]
    tip.display({"seq": 2, "outcome": "tip-added", "rrn": "S", "amount": 5700})
    tipped = Host(Txn("S", "purchase", 5700, tip=700))
    assert list(judge_holds(tip, tipped, "T1", True, faultless=True)) == []  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "outcome"),
    [("regress-void-tipped-sale", "voided"), ("regress-void-tipped-sale-after-close", "refunded")],
)
def test_a_void_of_a_tipped_sale_gives_back_the_total(
    name: str, outcome: str, tmp_path: Path
) -> None:
    trace = tmp_path / "t.jsonl"
    result = run_scenario(load_scenario(INCIDENTS / f"{name}.toml"), "reference", trace_path=trace)
    assert result.verdict == "PASS", result.problems
    assert shown(trace, outcome) == [("000000000001", 5700)]  # 50.00 + the 7.00 tip


def test_a_request_never_answered_fails_once_the_run_is_at_rest() -> None:
    obs = HoldObs()
    obs.cashier({"seq": 1, "action": "complete", "rrn": "P", "amount": 18000, "intent": 1})
    obs.answer({"seq": 2, "outcome": "pending", "text": "COMPLETING", "rrn": "P"})  # no answer
    standing = Host(replace(HOLD, status="approved"))
    found = list(judge_holds(obs, standing, "T1", True))  # type: ignore[arg-type]
    assert [(v.invariant, v.klass) for v in found] == [("eventually-settles", "liveness")]
    assert "never answered" in found[0].message
    assert list(judge_holds(obs, standing, "T1", False)) == []  # type: ignore[arg-type]
    obs.answer({**REFUSED, "rrn": "P", "seq": 3})  # a refusal naming the hold answers it
    assert list(judge_holds(obs, standing, "T1", True)) == []  # type: ignore[arg-type]
