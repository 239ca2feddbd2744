"""`posharness run --transport tcp`: incident scenarios over a loopback TCP link reach
the simulation's verdicts (the same violated invariants, the same pass/fail), with
every message crossing the link as a length-prefixed ISO 8583 frame.

Nothing here sleeps or times anything: the runs end when the world is quiet.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import main
from harness.runner import run_scenario
from harness.tcp.scenario_run import run_scenario_tcp
from harness.trace import read_trace
from scenarios.loader import load_scenario

INCIDENTS = Path(__file__).resolve().parents[2] / "scenarios" / "incidents"


@pytest.mark.parametrize(
    ("name", "firmware", "catcher"),
    [
        ("dup-response-lost-retry", "reference", ""),
        ("dup-response-lost-retry", "zoo:naive-retry", "no-duplicate-charge"),
        ("failed-charged-timeout", "reference", ""),
        ("failed-charged-timeout", "zoo:no-reversal", "no-charge-on-failure"),
        ("fault-corrupt", "reference", ""),
        ("fault-duplicate", "reference", ""),
        ("wallet-late-confirm", "zoo:wallet-no-cancel", "no-charge-on-failure"),
        ("partial-approval-lost-answer", "reference", ""),
        ("partial-approval", "zoo:partial-as-full", "amount-integrity"),
        ("partial-approval", "zoo:partial-as-decline", "no-charge-on-failure"),
        # Chip decline after online approval: the 0400 carries its reason in field 39.
        ("chip-decline-after-approval", "reference", ""),
        ("chip-decline-after-approval", "zoo:chip-decline-no-reversal", "no-charge-on-failure"),
        # Voids and refunds: field 3 200000 with orig_key in field 48; RC 12 for a late void.
        ("refund-response-lost-retry", "reference", ""),
        ("refund-response-lost-retry", "zoo:refund-new-key-on-retry", "no-over-credit"),
        ("void-after-batch-close", "zoo:void-after-batch-close", "approved-means-charged"),
        ("refund-then-void", "zoo:refund-and-void", "no-over-credit"),
    ],
)
def test_tcp_verdicts_equal_simulation(
    name: str, firmware: str, catcher: str, tmp_path: Path
) -> None:
    sc = load_scenario(INCIDENTS / f"{name}.toml")
    sim = run_scenario(sc, firmware)
    trace = tmp_path / "tcp.jsonl"
    real = run_scenario_tcp(sc, firmware, trace_path=trace)
    assert sorted(real.violated()) == sorted(sim.violated())
    assert real.passed == sim.passed
    assert real.extra["transport"] == "tcp"
    if catcher:
        assert catcher in real.violated()  # the flaw is caught, not just matched
    kinds = [rec["kind"] for rec in read_trace(trace)]
    assert "deliver" in kinds and kinds[-1] in ("end", "violation")


def test_cli_run_transport_tcp(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", str(INCIDENTS / "no-receipt-printer-jam.toml"), "--transport", "tcp"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "1 passed, 0 failed" in out
