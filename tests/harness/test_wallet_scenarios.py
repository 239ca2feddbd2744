"""Wallet payments in scenario files, the simulated world and the fuzzer."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from harness.check import assert_invariants
from harness.runner import declared_features, run_scenario
from harness.strategies import scenarios
from scenarios.loader import scenario_from_dict
from scenarios.model import ScenarioError, Step
from scenarios.writer import scenario_to_toml
from terminal.reference import ReferenceFirmware

CODE = "280000000000000777"


def base(**extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "w",
        "wallets": [{"code": CODE, "balance": 100_000, "confirm_ms": 8_000}],
        "steps": [{"at_ms": 0, "scan": {"code": CODE, "amount": 2_500}}],
        "expect": {"invariants": "all"},
    }
    data.update(extra)
    return data


class CardOnlyFirmware(ReferenceFirmware):
    """The reference, declaring no wallet feature (a card-only terminal)."""

    features = frozenset()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"steps": [{"at_ms": 0, "scan": {"code": "280000000000000999", "amount": 1}}]},
            "steps[0].scan.code: '280000000000000999' is not in [[wallets]]",
        ),
        ({"steps": [{"at_ms": 0, "scan": {"code": CODE}}]}, "steps[0].scan.amount: missing"),
        (
            {"steps": [{"at_ms": 0, "scan": {"code": CODE, "amount": 1, "pin": 1}}]},
            "steps[0].scan.pin: unknown key (known: amount, code)",
        ),
        ({"wallets": [{"code": "28x"}]}, "wallets[0].code: must be 12-19 digits, got '28x'"),
        (
            {"wallets": [{"code": CODE, "confirm_ms": -1}]},
            "wallets[0].confirm_ms: must be >= 0, got -1",
        ),
        (
            {"wallets": [{"code": CODE, "answer_rc": "9"}]},
            "wallets[0].answer_rc: must be 2 letters or digits, got '9'",
        ),
        ({"wallets": [{"code": CODE}, {"code": CODE}]}, f"wallets[1].code: {CODE} is listed twice"),
        (
            {"wallets": [{"code": "4000000000000002"}]},
            "wallets[0].code: 4000000000000002 is also a card",
        ),
    ],
)
def test_a_bad_wallet_or_scan_is_one_line_naming_the_key(
    change: dict[str, Any], message: str
) -> None:
    with pytest.raises(ScenarioError) as err:
        scenario_from_dict(base(**change))
    assert str(err.value).endswith(message)


def test_a_wallet_scenario_round_trips_through_its_file() -> None:
    sc = scenario_from_dict(base())
    again = scenario_from_dict(tomllib.loads(scenario_to_toml(sc)))
    assert (again.wallets, again.steps) == (sc.wallets, sc.steps)
    assert sc.steps[0] == Step(0, "scan", CODE, 2_500)


def test_the_phone_confirms_at_its_time_and_the_reference_prints(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    result = run_scenario(scenario_from_dict(base()), "reference", trace_path=trace)
    assert result.passed and result.verdict == "PASS"
    records = [json.loads(line) for line in trace.read_text().splitlines()]
    paying = next(r for r in records if r["kind"] == "host" and r["action"] == "wallet-paying")
    charge = next(r for r in records if r["kind"] == "host" and r["action"] == "charge")
    assert charge["t_ms"] - paying["t_ms"] == 8_000  # the customer's confirm_ms
    printed = [r for r in records if r["kind"] == "print" and r["status"] == "ok"]
    assert printed and printed[0]["receipt"]["rrn"] == paying["rrn"]


def test_a_card_only_firmware_is_skipped_on_wallet_scenarios_not_failed() -> None:
    spec = f"{__file__}:CardOnlyFirmware"
    from harness.runner import allow_external_firmware

    allow_external_firmware()
    assert declared_features(spec) == frozenset()
    assert declared_features("reference") == {
        "wallet",
        "partial",
        "chip",
        "refund",
        "offline",
        "preauth",
    }
    result = run_scenario(scenario_from_dict(base()), spec)
    assert result.verdict == "SKIP" and result.passed
    assert "does not declare the 'wallet' feature" in result.skipped
    # A card scenario is judged as usual.
    card = base(
        wallets=[], steps=[{"at_ms": 0, "purchase": {"card": "4000000000000002", "amount": 2_500}}]
    )
    assert run_scenario(scenario_from_dict(card), spec).verdict == "PASS"


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(scenarios(wallets=True))
def test_wallet_strategies_draw_scans_and_the_reference_holds(sc: Any) -> None:
    scans = [s for s in sc.steps if s.action == "scan"]
    assert {s.card for s in scans} <= {w.code for w in sc.wallets}
    assert_invariants(sc, "reference")  # raises, naming the invariant, if one fails


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(scenarios())
def test_default_strategies_stay_card_only(sc: Any) -> None:
    assert not sc.wallets and all(s.action != "scan" for s in sc.steps)


def test_a_paid_inquiry_answer_ignored_is_not_the_truthful_outcome() -> None:
    """The customer confirms after 8 s; the terminal's status inquiry hears "paid"
    with no fault, yet it cancels the order and shows FAILED: safe with money, but
    not the truthful outcome (found by mutation testing)."""
    sc = scenario_from_dict(base())
    bad = run_scenario(sc, "tests.harness.invariant_firmwares:IgnoresPaidInquiry")
    assert [v.intent for v in bad.violations["eventually-settles"]] == [1]
    assert "not the truthful one" in bad.violations["eventually-settles"][0].message
    assert run_scenario(sc, "reference").violated() == []
