"""Partial approvals (RC 10) end to end: the reference shows and prints what was
approved; the two partial zoo firmwares are caught; firmwares that do not take
partial approvals are skipped, not judged."""

from __future__ import annotations

from pathlib import Path

from harness.runner import run_scenario
from harness.strategies import scenarios
from scenarios.loader import load_scenario
from tests.harness.samples import drawn

SUITE = [
    load_scenario(Path("scenarios/incidents") / f"{name}.toml")
    for name in ("partial-approval", "partial-approval-lost-answer")
]


def test_the_reference_shows_and_prints_the_amount_approved(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    result = run_scenario(SUITE[0], "reference", trace_path=trace)
    assert result.verdict == "PASS", result.problems
    text = trace.read_text()
    assert '"outcome":"approved","text":"PARTIAL APPROVED: 30.00 - COLLECT 20.00"' in text
    assert '"amount":3000' in text


def test_a_partial_approval_shown_as_a_full_one_breaks_amount_integrity() -> None:
    for sc in SUITE:
        bad = run_scenario(sc, "zoo:partial-as-full")
        assert bad.violated() == ["amount-integrity"], sc.name
        assert (
            "partial approval shown as a full one" in bad.violations["amount-integrity"][0].message
        )


def test_a_partial_approval_taken_for_a_decline_breaks_no_charge_on_failure() -> None:
    for sc in SUITE:
        bad = run_scenario(sc, "zoo:partial-as-decline")
        assert "no-charge-on-failure" in bad.violated(), sc.name


def test_a_firmware_without_the_partial_feature_is_skipped() -> None:
    result = run_scenario(SUITE[0], "zoo:naive-retry")
    assert result.verdict == "SKIP"
    assert "'partial' feature" in result.skipped


def test_partial_strategies_reach_partial_cards_and_default_ones_never() -> None:
    sample = drawn(scenarios(partial=True))
    assert any(sc.terminal.partial_approval and any(c.partial for c in sc.cards) for sc in sample)
    for sc in drawn(scenarios()):
        assert not sc.terminal.partial_approval and not any(c.partial for c in sc.cards)
