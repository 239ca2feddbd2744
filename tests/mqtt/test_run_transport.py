"""`posharness run --transport mqtt`: incident scenarios over a real broker reach the
simulation's verdicts (the same set of violated invariants, the same pass/fail).

Real time means jitter, so these runs use the default time scale (50: a 15 s terminal
timeout is 300 ms of wall time against about 1 ms of broker transit). Nothing here
sleeps or times anything: the runs end when the world is quiet.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import main
from harness.mqtt.broker import SETUP_HINT, find_mosquitto
from harness.mqtt.scenario_run import run_scenario_mqtt
from harness.runner import run_scenario
from harness.trace import read_trace
from scenarios.loader import load_scenario

INCIDENTS = Path(__file__).resolve().parents[2] / "scenarios" / "incidents"

pytestmark = pytest.mark.skipif(find_mosquitto() is None, reason=SETUP_HINT)


@pytest.mark.parametrize(
    ("name", "firmware"),
    [
        ("dup-response-lost-retry", "reference"),
        ("dup-response-lost-retry", "zoo:naive-retry"),
        ("failed-charged-timeout", "reference"),
        ("fault-duplicate", "reference"),
        ("no-receipt-printer-jam", "reference"),
        ("receipt-no-record-forged", "reference"),
        # Wallet payments: the status inquiry (0600/0610) and the wallet's codes
        # (processing code 900000, RC CL) cross the broker as ISO 8583 frames.
        ("wallet-paid-no-receipt", "reference"),
        ("wallet-late-confirm", "reference"),
        ("wallet-late-confirm", "zoo:wallet-no-cancel"),
        # Partial approvals: processing code 000001 and RC 10 with a smaller amount.
        ("partial-approval", "reference"),
        ("partial-approval", "zoo:partial-as-full"),
        # Chip decline after online approval: a 0400 with reason 96 in field 39.
        ("chip-decline-after-approval", "reference"),
        ("chip-decline-after-approval", "zoo:chip-decline-no-reversal"),
        # Voids and refunds: a 0200 refund naming its sale, a void refused once settled.
        ("refund-response-lost-retry", "reference"),
        ("refund-response-lost-retry", "zoo:refund-new-key-on-retry"),
        ("void-after-batch-close", "zoo:void-after-batch-close"),
        # Pre-authorisation (0100), completion and tip adjust (0220 naming the sale).
        ("preauth-hotel-stay", "reference"),
        ("preauth-completion-answer-lost", "zoo:completion-new-key-on-retry"),
        ("tip-answer-lost", "zoo:tip-added-twice"),
    ],
)
def test_mqtt_verdicts_equal_simulation(name: str, firmware: str, tmp_path: Path) -> None:
    """Over MQTT the scenario violates exactly the invariants it violates in simulation,
    and the messages really crossed the broker (the trace shows deliveries)."""
    sc = load_scenario(INCIDENTS / f"{name}.toml")
    sim = run_scenario(sc, firmware)
    trace = tmp_path / "mqtt.jsonl"
    real = run_scenario_mqtt(sc, firmware, trace_path=trace)
    assert sorted(real.violated()) == sorted(sim.violated())
    assert real.passed == sim.passed
    assert real.extra["transport"] == "mqtt"
    if firmware == "zoo:naive-retry":
        assert "no-duplicate-charge" in real.violated()  # the flaw is caught, not just matched
    elif firmware == "zoo:partial-as-full":
        assert "amount-integrity" in real.violated()
    elif firmware in ("zoo:void-after-batch-close", "zoo:tip-added-twice"):
        assert "approved-means-charged" in real.violated()
    elif firmware != "reference":
        assert "no-charge-on-failure" in real.violated()
    kinds = [rec["kind"] for rec in read_trace(trace)]
    assert "deliver" in kinds and kinds[-1] in ("end", "violation")


def test_cli_run_transport_mqtt(capsys: pytest.CaptureFixture[str]) -> None:
    """`posharness run FILE --transport mqtt --time-scale X` prints the table and exits 0."""
    code = main(
        [
            "run",
            str(INCIDENTS / "no-receipt-printer-jam.toml"),
            "--transport",
            "mqtt",
            "--time-scale",
            "50",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "1 passed, 0 failed" in out


def test_cli_run_transport_mqtt_without_mosquitto(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without a mosquitto binary, `--transport mqtt` exits 2 with one line naming the fix."""
    monkeypatch.setattr("harness.mqtt.broker.find_mosquitto", lambda: None)
    code = main(["run", str(INCIDENTS / "no-receipt-printer-jam.toml"), "--transport", "mqtt"])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "apt-get install mosquitto" in err
