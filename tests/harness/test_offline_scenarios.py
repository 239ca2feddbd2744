"""Offline approval (store-and-forward) end to end: the reference uploads every
offline sale once, shows late declines and expiry, and closes the batch after the
uploads; firmwares without the `offline` feature are skipped; the scenario keys, the
invariant and the strategies carry it."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.runner import run_scenario
from harness.strategies import scenarios
from scenarios.loader import load_scenario, scenario_from_dict
from scenarios.model import ScenarioError
from tests.harness.samples import drawn

INCIDENTS = Path("scenarios/incidents")


def _load(name: str):  # type: ignore[no-untyped-def]
    return load_scenario(INCIDENTS / f"{name}.toml")


def test_a_lost_0230_is_answered_with_the_stored_outcome(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    result = run_scenario(_load("offline-upload-ack-lost"), "reference", trace_path=trace)
    assert result.verdict == "PASS", result.problems
    text = trace.read_text()
    # Journaled before the display and the receipt, uploaded under the sale's key.
    journal = text.index('"type":"offline_approved"')
    assert journal < text.index('"text":"APPROVED OFFLINE"') < text.index('"kind":"print"')
    assert text.count('"action":"charge"') == 1 and '"action":"replay"' in text
    assert '"mti":"0220"' in text and '"offline_ms":' in text


def test_the_expiry_is_shown_before_the_deadline(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    assert run_scenario(_load("offline-upload-expired"), "reference", trace_path=trace).passed
    text = trace.read_text()
    assert '"outcome":"offline-expired"' in text
    assert '"action":"charge"' not in text and '"mti":"0220"' in text


@pytest.mark.parametrize(
    "name", ["offline-expired-reversed", "regress-offline-expired-0200-charged"]
)
def test_an_expired_sale_is_reversed_so_no_charge_of_it_stands(name: str, tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    assert run_scenario(_load(name), "reference", trace_path=trace).passed
    text = trace.read_text()
    # Journaled, then shown at once, then its reversal journaled (the expiry record alone
    # already means the reversal at a boot: test_a_journal_ending_with_an_expiry_...).
    journal = text.index('"type":"offline_expired"')
    assert (
        journal
        < text.index('"outcome":"offline-expired"')
        < text.index('"type":"reversal_pending"')
    )
    assert '"action":"reverse"' in text and '"action":"batch-match"' in text


def test_a_journal_ending_with_an_expiry_shows_it_again_and_reverses_the_sale() -> None:
    """The power failed right after the expiry was journaled (before it was shown and
    before its reversal was journaled): the boot shows it and sends the reversal."""
    from acquirer.protocol import MTI_REVERSAL
    from terminal.firmware import FirmwareConfig, Outcome
    from terminal.reference import ReferenceFirmware
    from terminal.testing import Rig, displays, sends

    key = "T0001-00000001-0000000001"
    sale = {"type": "sale", "key": key, "stan": 1, "amount": 1500, "pan": "4000000000000002"}
    journal = [
        {**sale, "sale_no": 1, "batch_no": 1},
        {"type": "offline_approved", "key": key, "at_ms": 46_000},
        {"type": "printed", "key": key},
        {"type": "offline_expired", "key": key},
    ]
    config = FirmwareConfig(offline_floor=2000, offline_deadline_ms=600_000)
    effects = Rig(ReferenceFirmware, config, journal).boot_effects
    assert [d.outcome for d in displays(effects)] == [Outcome.OFFLINE_EXPIRED]
    assert [(m.mti, m.orig_key) for m in sends(effects)] == [(MTI_REVERSAL, key)]
    # Not again once anything was journaled after it (then it had been shown).
    later = Rig(ReferenceFirmware, config, [*journal, {"type": "reversed", "key": key}])
    assert not displays(later.boot_effects) and not sends(later.boot_effects)


def test_a_late_decline_is_shown_and_charges_nothing(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    assert run_scenario(_load("offline-late-decline"), "reference", trace_path=trace).passed
    text = trace.read_text()
    assert '"outcome":"offline-declined"' in text and '"action":"advice-declined"' in text
    assert '"action":"charge"' not in text


@pytest.mark.parametrize(
    ("scenario", "zoo", "caught_by"),
    [
        ("offline-upload-ack-lost", "offline-new-key-per-upload", "no-duplicate-charge"),
        ("offline-power-cut-before-upload", "offline-volatile-queue", "offline-uploaded"),
        ("offline-power-cut-before-upload", "offline-volatile-queue", "no-receipt-without-record"),
        ("offline-floor-and-count-limits", "offline-no-floor-limit", "offline-uploaded"),
        ("offline-upload-expired", "offline-no-expiry", "offline-uploaded"),
        ("regress-offline-expiry-power-cut", "offline-no-expiry", "offline-uploaded"),
        ("offline-deadline-while-off", "offline-no-expiry", "offline-uploaded"),
        ("offline-upload-before-batch", "offline-batch-before-upload", "batch-reconciles"),
        ("offline-late-decline", "offline-late-decline-ignored", "batch-reconciles"),
        ("offline-expired-advice-booked", "offline-expiry-no-reversal", "no-charge-on-failure"),
        (
            "regress-offline-expired-0200-charged",
            "offline-expiry-no-reversal",
            "no-charge-on-failure",
        ),
        ("offline-hold-approved-offline", "offline-hold-as-sale", "amount-integrity"),
    ],
)
def test_each_offline_zoo_firmware_is_caught(scenario: str, zoo: str, caught_by: str) -> None:
    sc = _load(scenario)
    assert run_scenario(sc, "reference").passed
    assert caught_by in run_scenario(sc, f"zoo:{zoo}").violated()


def test_an_expiry_while_the_advice_is_on_its_way_is_caught() -> None:
    """Expired (NOT UPLOADED) while the host books the advice: `offline-uploaded`
    fires on a firmware that does it, not on the reference, which waits for the answer."""
    sc = _load("regress-offline-expired-while-uploading")
    bad = run_scenario(sc, "tests.harness.invariant_firmwares:ExpiresWhileUploading")
    (v,) = bad.violations["offline-uploaded"]
    assert "still awaited its answer" in v.message
    assert run_scenario(sc, "reference").passed


def test_an_offline_sale_shown_expired_must_leave_no_charge() -> None:
    """OFFLINE EXPIRED tells the cashier to collect the payment another way: a host
    that kept the advice's charge makes the customer pay twice. With no batch close
    after it, nothing but `no-charge-on-failure` tells the flaw (it used to pass)."""
    sc = _load("offline-expired-advice-booked")
    assert not sc.close_batch
    bad = run_scenario(sc, "tests.harness.invariant_firmwares:ExpiresWithoutReversal")
    assert bad.violated() == ["no-charge-on-failure"]
    (v,) = bad.violations["no-charge-on-failure"]
    assert "offline sale was shown OFFLINE EXPIRED (not paid) but the host kept 20.00" in v.message
    assert run_scenario(sc, "reference").passed


def test_a_firmware_without_the_offline_feature_is_skipped() -> None:
    result = run_scenario(_load("offline-upload-ack-lost"), "zoo:naive-retry")
    assert result.verdict == "SKIP"
    assert "'offline' feature" in result.skipped


@pytest.mark.parametrize(
    ("terminal", "field"),
    [
        ({"offline_floor": -1}, "terminal.offline_floor"),
        ({"offline_floor": 100, "offline_max": 0}, "terminal.offline_max"),
        ({"offline_floor": 100, "offline_deadline_ms": 1_000}, "terminal.offline_deadline_ms"),
        ({"offline_floor": 100, "partial_approval": True}, "terminal.offline_floor"),
    ],
)
def test_bad_offline_settings_are_one_clear_error(terminal: dict[str, int], field: str) -> None:
    with pytest.raises(ScenarioError, match=field.replace(".", r"\.") + ": (must be|a terminal)"):
        scenario_from_dict({"name": "x", "terminal": terminal, "steps": []})


def test_offline_strategies_draw_floor_limits_and_partitions_only_when_asked() -> None:
    sample = drawn(scenarios(offline=True))
    offline = [sc for sc in sample if sc.terminal.offline_floor]
    assert offline and any(f.KIND == "partition" for sc in offline for f in sc.faults)
    assert {sc.terminal.offline_max for sc in offline} >= {1, 10}
    assert not any(sc.terminal.offline_floor for sc in drawn(scenarios()))


@pytest.mark.parametrize("codec", ["iso8583", "json"])
def test_an_advice_survives_the_mqtt_wire_in_both_codecs(codec: str) -> None:
    from acquirer import protocol as p
    from harness.mqtt import wire

    key = b"k" * 16
    msg = p.Message(
        p.MTI_ADVICE, "T0001", "M1", 3, pan="4000000000000002", amount=1500,
        rc="Y3", idem_key="T0001-1", offline_ms=46_000, sent_ms=136_000,
    )  # fmt: skip
    signed = p.sign(msg, key)
    back, used = wire.decode(wire.encode(signed, codec))  # type: ignore[arg-type]
    assert (back, used) == (signed, codec) and p.verify(back, key)


def test_terminal_run_offline_floor_makes_the_terminal_offline_capable() -> None:
    import argparse

    from harness.mqtt.cli import _config

    args = argparse.Namespace(
        id="T0001", partial_approval=False, chip=False, timeout_ms=None, offline_floor=5000
    )
    assert _config(args, b"key").offline_floor == 5000
    assert (
        _config(argparse.Namespace(**{**vars(args), "offline_floor": 0}), b"k").offline_floor == 0
    )


def test_the_exec_wire_carries_the_clock_and_offline_displays() -> None:
    from harness.exec_wire import decode_effects, encode_event
    from terminal.firmware import Boot, Display, FirmwareConfig, Outcome, TimerExpired

    assert encode_event(3, TimerExpired("advice", 46_000), b"k") == (
        b'{"n":3,"type":"TimerExpired","name":"advice","clock_ms":46000}\n'
    )
    assert b"clock_ms" not in encode_event(3, TimerExpired("advice"), b"k")
    assert b'"clock_ms":5' in encode_event(1, Boot((), "ab", 5), b"k")
    line = (
        b'{"n": 4, "effects": [{"type": "Display", "outcome": "offline-expired", "key": "T1-1"}]}'
    )
    assert decode_effects(line, 4, FirmwareConfig()) == [
        Display(Outcome.OFFLINE_EXPIRED, key="T1-1")
    ]


def test_only_a_firmware_that_approves_offline_is_told_the_clock() -> None:
    """zoo:naive-retry over the pipe never sees clock_ms (its events are as before)."""
    import shlex
    import sys

    from harness.exec_firmware import ExecFirmware
    from terminal.firmware import FirmwareConfig, TimerExpired

    pipe = Path("tests/exec/pipe_reference.py")
    for flaw, told in (("zoo:naive-retry", False), ("", True)):
        argv = [sys.executable, str(pipe), *([flaw] if flaw else [])]
        fw = ExecFirmware(argv, FirmwareConfig(), 10.0)
        try:
            assert fw._no_clock is not told, shlex.join(argv)
            fw.handle(TimerExpired("nothing", 5))
        finally:
            fw.close()


def test_a_hold_approved_offline_and_booked_as_a_sale_is_caught() -> None:
    """APPROVED OFFLINE for a pre-authorisation whose advice the host books as a sale:
    the money that was only to be held is taken. It used to pass when no batch close
    followed (an offline approval was judged by offline-uploaded alone)."""
    sc = _load("offline-hold-approved-offline")
    bad = run_scenario(sc, "zoo:offline-hold-as-sale")
    assert sorted(bad.violated()) == ["amount-integrity"]
    (v,) = bad.violations["amount-integrity"]
    assert "pre-authorisation (a hold) but the host charged it as a purchase" in v.message
    assert run_scenario(sc, "reference").passed


def test_an_expired_offline_sale_the_cashier_asked_to_void_is_no_false_alarm() -> None:
    """The books count a sale the cashier asked to void as the charge it was; the
    expiry's reversal took it back, so no-charge-on-failure must hold (it fired)."""
    result = run_scenario(_load("regress-offline-expired-void-asked"), "reference")
    assert result.passed, result.problems
