"""`eventually-settles` over the cashier's voids and refunds
(harness/invariants/credit_asks.py): every one asked is answered, and in a faultless
run a valid one is carried out. The reference holds it; firmwares after surviving
mutants of terminal/refund_flow.py break it."""

from __future__ import annotations

from typing import Any

import pytest

from harness.invariants.credit_asks import CreditAskObs
from harness.runner import run_scenario
from scenarios.loader import scenario_from_dict
from scenarios.model import Scenario

CARD = "4000000000000002"
FW = "tests.harness.credit_ask_firmwares:"


def scenario(*steps: dict[str, Any], **extra: Any) -> Scenario:
    data: dict[str, Any] = {
        "name": "credit-asks",
        "seed": 1,
        "cards": [{"pan": CARD, "balance": 100000}],
        "steps": [
            {"at_ms": 0, "purchase": {"card": CARD, "amount": 4500}},
            {"at_ms": 10000, "purchase": {"card": CARD, "amount": 10000}},
            *steps,
        ],
        "expect": {"invariants": "all"},
    }
    data.update(extra)
    return scenario_from_dict(data)


VOID = scenario({"at_ms": 30000, "void": {"sale": 1}})
REFUND = scenario({"at_ms": 30000, "refund": {"sale": 2, "amount": 3000}})
REFUND_AFTER_CLOSE = scenario(
    {"at_ms": 30000, "batch_close": True}, {"at_ms": 60000, "refund": {"sale": 2, "amount": 3000}}
)


@pytest.mark.parametrize("sc", [VOID, REFUND, REFUND_AFTER_CLOSE])
def test_the_reference_carries_out_a_valid_void_or_refund(sc: Scenario) -> None:
    result = run_scenario(sc, "reference")
    assert result.verdict == "PASS", result.violations


@pytest.mark.parametrize(
    ("sc", "firmware", "says"),
    [
        (VOID, "VoidNeverShown", "never answered"),
        (REFUND, "RefundAnswersIgnored", "never showed it VOIDED or REFUNDED"),
        (REFUND_AFTER_CLOSE, "SettledSalesForgotten", "never showed it VOIDED or REFUNDED"),
    ],
)
def test_a_void_or_refund_not_carried_out_breaks_eventually_settles(
    sc: Scenario, firmware: str, says: str
) -> None:
    result = run_scenario(sc, FW + firmware)
    assert result.violated() == ["eventually-settles"], result.violations
    found = result.violations["eventually-settles"]
    assert any(says in v.message for v in found) and all(v.rrns for v in found)


def test_a_fault_excuses_a_refused_refund_but_not_an_unanswered_void() -> None:
    """With a fault in the run, a refund given up is no violation (the host may have
    been out of reach); a void never answered still is."""
    fault = {"faults": [{"drop": {"direction": "to_terminal", "mti": "0210", "nth": 3}}]}
    late = scenario({"at_ms": 30000, "refund": {"sale": 2, "amount": 3000}}, **fault)
    assert "eventually-settles" not in run_scenario(late, FW + "RefundAnswersIgnored").violated()
    void = scenario({"at_ms": 30000, "void": {"sale": 1}}, **fault)
    assert run_scenario(void, FW + "VoidNeverShown").violated() == ["eventually-settles"]


def ask(obs: CreditAskObs, seq: int, action: str = "refund", valid: bool = True) -> None:
    rec: dict[str, Any] = {"kind": "cashier", "seq": seq, "t_ms": seq * 10, "action": action}
    rec |= {"rrn": "R1", "intent": 1, "amount": 500}
    if valid:
        rec["valid"] = True
    obs.print_ok("R1")
    obs.cashier(rec, clear=True)


def shown(obs: CreditAskObs, seq: int, t_ms: int, outcome: str, rrn: str = "") -> None:
    rec: dict[str, Any] = {"kind": "display", "seq": seq, "t_ms": t_ms, "outcome": outcome}
    if rrn:
        rec["rrn"] = rrn
    obs.display(rec)


def test_an_answer_at_once_needs_no_rrn_a_late_one_names_the_sale() -> None:
    obs = CreditAskObs()
    ask(obs, 1)
    shown(obs, 2, 10, "prompt")  # REFUND REFUSED - NO SUCH SALE, at once
    assert obs.asks[0].answer_seq == 2
    ask(obs, 3)
    shown(obs, 4, 30, "pending")  # REFUNDING
    shown(obs, 5, 900, "prompt")  # a prompt naming no sale answers nothing
    assert obs.asks[1].under_way and not obs.asks[1].answer_seq
    shown(obs, 6, 900, "prompt", "R1")  # REFUND FAILED - NOT CREDITED, naming it
    assert obs.asks[1].answer_seq == 6 and not obs.asks[1].done_seq


def test_a_request_asked_while_another_is_under_way_is_not_owed() -> None:
    obs = CreditAskObs()
    ask(obs, 1)
    shown(obs, 2, 10, "pending")
    ask(obs, 3)  # may rightly be refused: REFUNDS PENDING, ALREADY REFUNDED ...
    assert [a.owed for a in obs.asks] == [True, False]
    shown(obs, 4, 30, "prompt")
    shown(obs, 5, 500, "refunded", "R1")
    assert obs.asks[0].done_seq == 5 and obs.asks[1].answer_seq == 4
    ask(obs, 6, "void", valid=False)
    assert not obs.asks[2].owed
