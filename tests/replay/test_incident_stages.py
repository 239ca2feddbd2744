"""Unit tests of the import stages (harness/incidents/): parse, match, ids, judge,
power. The end-to-end behaviour is in test_incident.py and test_incident_corpus.py."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path

import pytest

from harness.incidents.ids import sim_mid, sim_pan, sim_tid
from harness.incidents.judge import segment
from harness.incidents.match import Quad, _match, content, detect_step, estimate_clock
from harness.incidents.parse import Entry, Log, parse_ts, parse_tz
from harness.incidents.power import power_faults
from scenarios.model import ScenarioError


def test_content_ignores_mac_and_pan_but_not_stan_key_amount_or_rrn() -> None:
    a = {"mti": "0200", "stan": 1, "amount": 100, "idem_key": "k", "mac": "x", "pan": "4000"}
    assert content(a) == content(a | {"mac": "y", "pan": "400000******0002"})
    for change in ({"stan": 2}, {"amount": 101}, {"idem_key": "j"}, {"rrn": "1"}):
        assert content(a) != content(a | change)


def test_pairing_survives_seconds_of_jitter() -> None:
    sends = [(0, {"mti": "0200", "stan": 1}, 1), (10, {"mti": "0200", "stan": 2}, 2)]
    recvs = [(2_900, {"mti": "0200", "stan": 2}, 5), (1_700, {"mti": "0200", "stan": 1}, 4)]
    hops, orphans = _match(sends, recvs, slack_ms=0)
    assert orphans == [] and [h.recv for h in hops] == [1_700, 2_900]


def test_skew_is_the_median_of_the_fast_exchanges_and_one_slow_one_does_not_move_it() -> None:
    # Host clock +500 ms; one-way 100 ms; the third exchange's answer is 9 s late.
    qs = [
        Quad(0, 600, 620, 220, 1),
        Quad(1_000, 1_600, 1_620, 1_220, 2),
        Quad(2_000, 2_600, 2_620, 11_220, 3),
    ]
    clock = estimate_clock(qs, [])
    assert (clock.skew_ms, clock.latency_ms, clock.pairs) == (500, 100, 3)


def test_a_clock_step_back_is_found_at_the_line_whose_time_goes_back() -> None:
    qs = [
        Quad(0, 600, 620, 220, 2),
        Quad(10_000 - 3_600_000, 10_600, 10_620, 10_220 - 3_600_000, 5),
    ]
    entries = [
        Entry(1, 0, "boot", {}),
        Entry(2, 0, "send", {}),
        Entry(3, 5_000, "display", {}),
        Entry(4, 9_000 - 3_600_000, "amount_keyed", {}),
        Entry(5, 10_000 - 3_600_000, "send", {}),
    ]
    step = detect_step(qs, entries)
    assert step is not None and (step.line, step.step_ms) == (4, -3_600_000)


def test_jitter_alone_is_no_clock_step() -> None:
    qs = [Quad(0, 900, 920, 300, 1), Quad(1_000, 1_400, 1_420, 2_300, 2)]
    assert detect_step(qs, [Entry(1, 0, "send", {}), Entry(2, 1_000, "send", {})]) is None


def test_a_time_without_offset_needs_a_zone_and_then_follows_its_dst() -> None:
    with pytest.raises(ValueError, match="2024-07-01"):
        parse_ts("2024-07-01T12:00:00")
    berlin = parse_tz("Europe/Berlin")
    summer = parse_ts("2024-07-01T12:00:00", berlin)
    winter = parse_ts("2024-01-01T12:00:00", berlin)
    assert summer == parse_ts("2024-07-01T10:00:00+00:00")
    assert winter == parse_ts("2024-01-01T11:00:00+00:00")
    assert parse_tz("+05:30").utcoffset(None).total_seconds() == 19_800  # type: ignore[union-attr]
    assert parse_tz("Z") is UTC
    with pytest.raises(ScenarioError, match="--tz"):
        parse_tz("Mars/Olympus")


def test_real_identifiers_map_to_stable_simulator_ones() -> None:
    assert sim_tid("T0001") == "T0001" and sim_tid("LDN-POS-0042") == sim_tid("LDN-POS-0042")
    assert len(sim_tid("LDN-POS-0042")) == 8 and sim_tid("LDN-POS-0042").isalnum()
    assert sim_mid("4000-1234-5678") == "400012345678"
    pan = sim_pan("476173******0010")
    assert pan == sim_pan("476173******0010") and pan.startswith("476173") and pan.endswith("0010")
    assert len(pan) == 16 and pan.isdigit() and pan != sim_pan("476173******0011")
    assert sim_pan("4000000000000002") == "4000000000000002"


def _log(*events: tuple[int, str, dict[str, object]]) -> Log:
    return Log("t.log", [Entry(i + 1, t, ev, dict(d)) for i, (t, ev, d) in enumerate(events)])


def test_a_retry_of_the_same_amount_after_failed_is_one_intent_a_new_amount_is_not() -> None:
    log = _log(
        (0, "amount_keyed", {"amount": 500}),
        (30_000, "display", {"outcome": "failed"}),
        (40_000, "amount_keyed", {"amount": 500}),
        (41_000, "display", {"outcome": "approved"}),
        (60_000, "amount_keyed", {"amount": 500}),
        (61_000, "display", {"outcome": "approved"}),
    )
    assert [(i.number, i.displays) for i in segment(log)] == [
        (1, ["failed", "approved"]),
        (2, ["approved"]),
    ]


def test_a_boot_without_power_off_is_a_cut_after_the_last_line_and_shutdown_stays_orderly() -> None:
    log = _log(
        (0, "boot", {}),
        (1_000, "send", {"mti": "0200", "stan": 1}),
        (9_000, "boot", {}),
        (20_000, "power", {"state": "off", "reason": "shutdown"}),
        (25_000, "power", {"state": "on"}),
    )
    plan: list = []  # type: ignore[type-arg]
    notes: list[str] = []
    windows = power_faults(log, 0, plan, notes, [])
    assert [f.describe() for _, f in plan] == [
        "power_cut(nth=1, after=send, mti=0200, off_ms=8000)",
        "power_cut(at_ms=20000, off_ms=5000)",
    ]
    assert windows == [(1_000, 9_000), (20_000, 25_000)]
    assert "[likely" in notes[0] and "orderly shutdown" in notes[1]


def test_stage_modules_stay_small() -> None:
    for p in (Path(__file__).parents[2] / "harness" / "incidents").glob("*.py"):
        assert len(p.read_text().splitlines()) <= 600, p.name
