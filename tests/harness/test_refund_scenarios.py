"""Voids and refunds at the terminal end to end: the reference keeps one key per
refund across retries and reboots, voids only inside the batch window and refunds
after it, never both; the three zoo firmwares are caught; firmwares without the
`refund` feature are skipped; the scenario steps, the exec wire and the strategies
carry it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.exec_wire import encode_event
from harness.runner import run_scenario
from harness.strategies import scenarios
from scenarios.loader import load_scenario, scenario_from_dict
from scenarios.model import ScenarioError, scenario_to_dict
from terminal.firmware import RefundRequested, VoidRequested
from tests.harness.samples import drawn

INCIDENTS = Path("scenarios/incidents")
LOST = load_scenario(INCIDENTS / "refund-response-lost-retry.toml")
LATE_VOID = load_scenario(INCIDENTS / "void-after-batch-close.toml")
BOTH = load_scenario(INCIDENTS / "refund-then-void.toml")
CARD = "4000000000000002"


def records(path: Path, kind: str) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        if rec["kind"] == kind:
            out.append(rec)
    return out


def refund_sends(path: Path) -> list[dict[str, Any]]:
    return [
        r["msg"]
        for r in records(path, "send")
        if r["from"] == "terminal" and r["msg"].get("processing_code") == "200000"
    ]


def test_a_lost_refund_answer_is_resent_under_the_same_key(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    assert run_scenario(LOST, "reference", trace_path=trace).verdict == "PASS"
    sends = refund_sends(trace)
    assert len(sends) == 2 and sends[1]["repeat"]
    assert sends[0]["idem_key"] == sends[1]["idem_key"] and sends[0]["stan"] == sends[1]["stan"]
    actions = [r["action"] for r in records(trace, "host") if r.get("key") == sends[0]["idem_key"]]
    assert actions == ["refund", "replay"]
    shown = [r for r in records(trace, "display") if r["outcome"] == "refunded"]
    assert [(r["rrn"], r["amount"]) for r in shown] == [("000000000001", 3000)]


def test_a_refund_survives_a_power_cut_with_its_key(tmp_path: Path) -> None:
    data = scenario_to_dict(LOST)
    data["faults"] = [{"power_cut": {"after": "send", "mti": "0200", "nth": 2, "off_ms": 5000}}]
    trace = tmp_path / "t.jsonl"
    result = run_scenario(scenario_from_dict(data), "reference", trace_path=trace)
    assert result.verdict == "PASS", result.problems
    keys = {m["idem_key"] for m in refund_sends(trace)}
    assert len(keys) == 1 and len(refund_sends(trace)) >= 2
    assert [r["action"] for r in records(trace, "host")].count("refund") == 1


def test_a_void_after_the_batch_close_becomes_a_refund(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    assert run_scenario(LATE_VOID, "reference", trace_path=trace).verdict == "PASS"
    sent = [r["msg"]["mti"] for r in records(trace, "send") if r["from"] == "terminal"]
    assert "0400" not in sent
    (shown,) = [r for r in records(trace, "display") if r["outcome"] in ("voided", "refunded")]
    assert (shown["outcome"], shown["amount"]) == ("refunded", 4500)


def test_a_refunded_sale_is_not_voided_the_rest_is_refunded(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    assert run_scenario(BOTH, "reference", trace_path=trace).verdict == "PASS"
    texts = [r["text"] for r in records(trace, "display")]
    assert "VOID REFUSED - ALREADY REFUNDED" in texts
    refunded = [r["amount"] for r in records(trace, "display") if r["outcome"] == "refunded"]
    assert refunded == [2000, 6000]


def test_a_void_inside_the_batch_window_reverses_the_sale(tmp_path: Path) -> None:
    data = scenario_to_dict(LATE_VOID)
    data["steps"] = [s for s in data["steps"] if "batch_close" not in s]
    trace = tmp_path / "t.jsonl"
    assert run_scenario(scenario_from_dict(data), "reference", trace_path=trace).verdict == "PASS"
    assert [r["action"] for r in records(trace, "host")].count("reverse") == 1
    (shown,) = [r for r in records(trace, "display") if r["outcome"] == "voided"]
    assert shown["rrn"] == "000000000001"
    # The voided sale leaves the batch: nothing to settle.
    assert records(trace, "host")[-1]["action"] == "batch-match"


@pytest.mark.parametrize(
    ("firmware", "sc", "invariant"),
    [
        ("zoo:refund-new-key-on-retry", LOST, "no-over-credit"),
        ("zoo:void-after-batch-close", LATE_VOID, "approved-means-charged"),
        ("zoo:refund-and-void", BOTH, "no-over-credit"),
    ],
)
def test_each_zoo_firmware_is_caught_on_its_incident(
    firmware: str, sc: Any, invariant: str
) -> None:
    assert run_scenario(sc, "reference").verdict == "PASS"
    bad = run_scenario(sc, firmware)
    assert invariant in bad.violated(), bad.violated()
    v = bad.violations[invariant][0]
    assert v.seqs and v.message.endswith(".")


def test_a_firmware_without_the_refund_feature_is_skipped() -> None:
    result = run_scenario(LOST, "zoo:naive-retry")
    assert result.verdict == "SKIP"
    assert "'refund' feature" in result.skipped


def test_a_step_naming_a_sale_without_a_charge_is_skipped(tmp_path: Path) -> None:
    data = scenario_to_dict(LOST)
    data["cards"] = [{"pan": CARD, "balance": 100}]  # the sale is declined
    data["faults"] = []
    trace = tmp_path / "t.jsonl"
    assert run_scenario(scenario_from_dict(data), "reference", trace_path=trace).verdict == "PASS"
    (skip,) = [r for r in records(trace, "cashier") if r["action"] == "refund-skipped"]
    assert "no approved charge" in skip["reason"]


def _with_step(step: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "x",
        "cards": [{"pan": CARD}],
        "steps": [{"at_ms": 0, "purchase": {"card": CARD, "amount": 100}}, step],
    }


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ({"at_ms": 10, "void": {"sale": 0}}, r"steps\[1\]\.void\.sale: must be a positive"),
        (
            {"at_ms": 10, "void": {"sale": 2}},
            r"void\.sale: names payment 2, but only 1",
        ),
        ({"at_ms": 10, "void": {"sale": 1, "amount": 5}}, r"steps\[1\]\.void\.amount: unknown key"),
        ({"at_ms": 10, "refund": {"amount": 5}}, r"steps\[1\]\.refund\.sale: missing"),
        ({"at_ms": 10, "refund": {"sale": 1, "amount": -5}}, r"refund\.amount: must be an integer"),
        ({"at_ms": 10, "refund": 3}, r"steps\[1\]\.refund: expected a table"),
    ],
)
def test_bad_void_and_refund_steps_get_one_line(step: dict[str, Any], message: str) -> None:
    with pytest.raises(ScenarioError, match=message) as info:
        scenario_from_dict(_with_step(step), "f.toml")
    assert "\n" not in str(info.value) and str(info.value).startswith("f.toml: ")


def test_void_and_refund_steps_round_trip() -> None:
    for sc in (LOST, LATE_VOID, BOTH):
        assert scenario_from_dict(scenario_to_dict(sc), sc.source) == sc


def test_the_exec_wire_carries_void_and_refund_requests() -> None:
    void = json.loads(encode_event(4, VoidRequested("000000000001"), b"k"))
    assert void == {"n": 4, "type": "VoidRequested", "rrn": "000000000001"}
    refund = json.loads(encode_event(5, RefundRequested("000000000001", 300), b"k"))
    assert refund == {"n": 5, "type": "RefundRequested", "rrn": "000000000001", "amount": 300}


def test_strategies_draw_voids_and_refunds_only_for_refund_firmwares() -> None:
    def credits(sc: Any) -> set[str]:
        return {s.action for s in sc.steps if s.action in ("void", "refund")}

    with_refunds = drawn(scenarios(refund=True), 120)
    assert set().union(*(credits(sc) for sc in with_refunds)) == {"void", "refund"}
    for sc in with_refunds:
        scenario_from_dict(scenario_to_dict(sc))  # every drawn step is a valid file
    assert not any(credits(sc) for sc in drawn(scenarios(), 60))
