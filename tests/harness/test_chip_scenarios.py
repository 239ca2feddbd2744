"""Chip decline after online approval end to end: the reference shows DECLINED and
reverses with reason 96; the two chip zoo firmwares are caught; firmwares without the
`chip` feature are skipped; the scenario, the exec wire and the strategies carry it."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.exec_wire import WireError, decode_effects, encode_event
from harness.runner import run_scenario
from harness.strategies import scenarios
from scenarios.loader import load_scenario, scenario_from_dict
from scenarios.model import Scenario, ScenarioError
from terminal.firmware import ChipComplete, ChipResult, FirmwareConfig
from tests.harness.samples import drawn

NAMES = ("chip-decline-after-approval", "chip-decline-reversal-lost", "chip-decline-power-cut")
SUITE = [load_scenario(Path("scenarios/incidents") / f"{name}.toml") for name in NAMES]


def test_the_reference_declines_and_reverses_with_reason_96(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    result = run_scenario(SUITE[0], "reference", trace_path=trace)
    assert result.verdict == "PASS", result.problems
    text = trace.read_text()
    assert '"text":"DECLINED - CARD DECLINED"' in text
    assert '"text":"DECLINED - CARD REMOVED TOO EARLY"' in text
    assert text.count('"mti":"0400"') >= 2 and '"rc":"96","orig_stan"' in text
    assert text.count('"action":"reverse"') == 2
    assert text.count('"kind":"print"') == 1  # the third card's receipt only


@pytest.mark.parametrize("sc", SUITE, ids=NAMES)
def test_the_reference_passes_and_the_no_reversal_zoo_fails(sc: Scenario) -> None:
    assert run_scenario(sc, "reference").verdict == "PASS"
    bad = run_scenario(sc, "zoo:chip-decline-no-reversal")
    assert "no-charge-on-failure" in bad.violated(), sc.name


def test_a_receipt_printed_before_the_card_completes_is_caught() -> None:
    bad = run_scenario(SUITE[0], "zoo:chip-receipt-before-card")
    assert bad.violated() == ["no-receipt-without-record"]


def test_a_firmware_without_the_chip_feature_is_skipped() -> None:
    result = run_scenario(SUITE[0], "zoo:naive-retry")
    assert result.verdict == "SKIP"
    assert "'chip' feature" in result.skipped


def _refused_second_completion(chip_terminal: bool = True) -> dict[str, object]:
    card = "4000000000000002"
    steps = [{"at_ms": t, "purchase": {"card": card, "amount": 1500}} for t in (0, 30_000)]
    return {
        "name": "chip-refusal",
        "terminal": {"chip": chip_terminal},
        "cards": [{"pan": card}],
        "steps": steps,
        "faults": [{"chip_refusal": {"nth": 2, "reason": "removed"}}],
    }


def test_a_chip_refusal_fault_refuses_the_nth_completion(tmp_path: Path) -> None:
    sc = scenario_from_dict(_refused_second_completion())
    trace = tmp_path / "t.jsonl"
    assert run_scenario(sc, "reference", trace_path=trace).verdict == "PASS"
    text = trace.read_text()
    assert '"result":"ok"' in text and '"result":"removed"' in text
    assert '"fault":"chip_refusal"' in text
    bad = run_scenario(sc, "zoo:chip-decline-no-reversal")
    assert "no-charge-on-failure" in bad.violated()


def test_a_chip_refusal_fault_needs_a_chip_terminal() -> None:
    with pytest.raises(ScenarioError, match=r"faults\[0\]: chip_refusal needs a chip terminal"):
        scenario_from_dict(_refused_second_completion(chip_terminal=False))


def test_a_bad_chip_value_is_one_clear_error() -> None:
    data = {"name": "x", "cards": [{"pan": "4000000000000002", "chip": "maybe"}], "steps": []}
    with pytest.raises(ScenarioError, match=r"cards\[0\]\.chip: must be"):
        scenario_from_dict(data)


def test_the_exec_wire_carries_chip_complete_and_chip_result() -> None:
    cfg = FirmwareConfig()
    line = b'{"n": 4, "effects": [{"type": "ChipComplete", "key": "T1-1"}]}'
    assert decode_effects(line, 4, cfg) == [ChipComplete("T1-1")]
    with pytest.raises(WireError, match="effects\\[0\\]"):
        decode_effects(b'{"n": 4, "effects": [{"type": "ChipComplete", "key": ""}]}', 4, cfg)
    with pytest.raises(WireError, match="effects\\[0\\]"):
        extra = b'{"n": 4, "effects": [{"type": "ChipComplete", "key": "k", "ok": true}]}'
        decode_effects(extra, 4, cfg)
    out = encode_event(5, ChipResult("T1-1", False, "removed"), b"k")
    assert out == b'{"n":5,"type":"ChipResult","key":"T1-1","ok":false,"reason":"removed"}\n'


def test_chip_strategies_reach_refusing_cards_and_default_ones_never() -> None:
    sample = drawn(scenarios(chip=True))
    for refusal in ("decline", "removed"):
        assert any(sc.terminal.chip and any(c.chip == refusal for c in sc.cards) for sc in sample)
    assert any(f.KIND == "chip_refusal" for sc in sample for f in sc.faults)
    for sc in drawn(scenarios()):
        assert not sc.terminal.chip and not any(c.chip for c in sc.cards)
        assert not any(f.KIND == "chip_refusal" for f in sc.faults)
