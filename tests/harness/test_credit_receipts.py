"""Receipts for voids and refunds (terminal/credit_receipts.py) and the receipt
invariants for them (harness/invariants/credit_receipts.py): each fires on a firmware
with that one flaw and holds on the reference in the same scenario."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from harness.runner import run_scenario
from scenarios.loader import load_scenario, scenario_from_dict
from scenarios.model import scenario_to_dict

INCIDENTS = Path("scenarios/incidents")
LOST = load_scenario(INCIDENTS / "refund-response-lost-retry.toml")
EARLY = load_scenario(INCIDENTS / "refund-receipt-before-answer.toml")
FW = "tests.harness.credit_receipt_firmwares:"
CARD = "4000000000000002"


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _credit_prints(path: Path) -> list[dict[str, Any]]:
    return [
        r["receipt"]
        for r in _records(path)
        if r["kind"] == "print"
        and r["status"] == "ok"
        and r["receipt"]["status"] in ("voided", "refunded")
    ]


def _void_and_refund(**extra: Any) -> Any:
    """Two sales: the first voided inside the batch window, 30.00 of the second
    refunded after it."""
    data = {
        "name": "credit-receipts",
        "seed": 1,
        "cards": [{"pan": CARD, "balance": 100000}],
        "steps": [
            {"at_ms": 0, "purchase": {"card": CARD, "amount": 4500}},
            {"at_ms": 10000, "purchase": {"card": CARD, "amount": 10000}},
            {"at_ms": 30000, "void": {"sale": 1}},
            {"at_ms": 60000, "batch_close": True},
            {"at_ms": 90000, "refund": {"sale": 2, "amount": 3000}},
        ],
        "expect": {"invariants": "all"},
    }
    data.update(extra)
    return scenario_from_dict(data)


def test_the_reference_prints_a_receipt_for_a_void_and_a_refund(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    result = run_scenario(_void_and_refund(), trace_path=trace)
    assert result.verdict == "PASS", result.violations
    voided, refunded = _credit_prints(trace)
    assert (voided["status"], voided["amount"]) == ("voided", 4500)
    assert voided["rrn"] == voided["orig_rrn"] != ""
    assert (refunded["status"], refunded["amount"]) == ("refunded", 3000)
    assert refunded["rrn"] not in ("", refunded["orig_rrn"]) and refunded["orig_rrn"]
    # Journaled before it is printed, printed only from that record.
    recs = _records(trace)
    journaled = [
        r["seq"] for r in recs if r["kind"] == "journal" and r["record"]["type"] == "credit_receipt"
    ]
    started = [
        r["seq"] for r in recs if r["kind"] == "print_start" and r["job"].startswith("credit:")
    ]
    assert len(journaled) == len(started) == 2
    assert all(j < s for j, s in zip(journaled, started, strict=True))


def test_a_refund_answered_twice_gets_one_receipt(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    assert run_scenario(LOST, trace_path=trace).verdict == "PASS"
    (receipt,) = _credit_prints(trace)
    assert receipt["amount"] == 3000


def test_a_jammed_credit_receipt_is_shown_pending_and_reprinted(tmp_path: Path) -> None:
    sc = _void_and_refund(faults=[{"printer_jam": {"nth": 4}}])  # the refund's receipt
    sc = replace(sc, steps=(*sc.steps, replace(sc.steps[0], at_ms=150000, action="reprint")))
    trace = tmp_path / "t.jsonl"
    assert run_scenario(sc, trace_path=trace).verdict == "PASS"
    recs = _records(trace)
    assert any(
        r["kind"] == "display" and r["text"].startswith("CREDIT RECEIPT PENDING") for r in recs
    )
    assert [r["status"] for r in _credit_prints(trace)] == ["voided", "refunded"]


def test_an_owed_credit_receipt_is_printed_after_a_power_cut(tmp_path: Path) -> None:
    # Cut right after the refund receipt's print starts (the fourth print job).
    sc = _void_and_refund(faults=[{"power_cut": {"after": "print", "nth": 4, "off_ms": 2000}}])
    trace = tmp_path / "t.jsonl"
    assert run_scenario(sc, trace_path=trace).verdict == "PASS"
    assert [r["status"] for r in _credit_prints(trace)] == ["voided", "refunded"]
    bad = run_scenario(sc, FW + "ForgetsOwedCreditReceipts")
    assert "receipt-for-every-charge" in bad.violated(), bad.violated()


def test_a_credit_shown_without_its_receipt_is_caught() -> None:
    bad = run_scenario(_void_and_refund(), FW + "NoCreditReceipts")
    found = bad.violations["receipt-for-every-charge"]
    assert len(found) == 2
    assert "VOIDED but printed no VOIDED receipt" in found[0].message
    assert "has no REFUNDED receipt printed" in found[1].message
    assert bad.violated() == ["receipt-for-every-charge"]


@pytest.mark.parametrize(
    ("firmware", "words"),
    [
        ("CreditReceiptWrongAmount", "the host's credit is"),
        ("CreditReceiptSaleRrn", "not an approved refund"),
    ],
)
def test_a_credit_receipt_must_match_the_hosts_credit(firmware: str, words: str) -> None:
    bad = run_scenario(_void_and_refund(), FW + firmware)
    found = bad.violations["no-receipt-without-record"]
    assert found and words in found[-1].message and found[-1].message.endswith(".")


def test_a_refund_receipt_printed_before_the_host_answered_is_caught() -> None:
    assert run_scenario(EARLY, "reference").verdict == "PASS"
    bad = run_scenario(EARLY, "zoo:refund-receipt-before-answer")
    (v,) = bad.violations["no-receipt-without-record"]
    assert "REFUNDED receipt for 30.00 (rrn none" in v.message
    # When the host does credit the card, that credit has no receipt of its own.
    bad = run_scenario(LOST, "zoo:refund-receipt-before-answer")
    assert {"no-receipt-without-record", "receipt-for-every-charge"} <= set(bad.violated())


def test_credit_receipts_round_trip_in_the_scenario_and_trace() -> None:
    sc = _void_and_refund()
    assert scenario_from_dict(scenario_to_dict(sc)) == replace(sc, source="<scenario>")
