"""A world of several terminals: the file format, one host and one clock shared,
per-terminal judging, `one-terminal-per-charge`, customers who walk to the next
terminal, clones, determinism, replay, shrinking and the strategies."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from harness.credit_strategies import at_their_sales
from harness.fuzz import campaign
from harness.lanes import fewer_terminals
from harness.replay import replay
from harness.runner import run_scenario, run_twice
from harness.shrink import minimise, removals
from harness.strategies import scenarios
from harness.timeline import load as load_diagram
from scenarios.loader import load_scenario, scenario_from_dict
from scenarios.model import (
    INVARIANT_NAMES,
    Expect,
    Scenario,
    ScenarioError,
    Step,
    scenario_to_dict,
)
from tests.harness.samples import drawn

SUITE_DIR = Path("scenarios/lanes")
SUITE = sorted(SUITE_DIR.glob("*.toml"))
CARD = "4000000000000002"


def _world(**extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "lanes",
        "terminals": [{"id": "T0001", "name": "A"}, {"id": "T0002", "name": "B"}],
        "cards": [{"pan": CARD}],
        "steps": [
            {"at_ms": 0, "terminal": "A", "purchase": {"card": CARD, "amount": 1000}},
            {"at_ms": 0, "terminal": "B", "purchase": {"card": CARD, "amount": 2000}},
        ],
    }
    data.update(extra)
    return data


# ------------------------------------------------------------------ the format


def test_terminals_take_the_terminal_table_as_their_defaults() -> None:
    sc = scenario_from_dict(_world(terminal={"max_sends": 3, "status_inquiry": False}))
    assert [t.lane for t in sc.lanes()] == ["A", "B"]
    assert all(t.max_sends == 3 and not t.status_inquiry for t in sc.terminals)
    assert scenario_from_dict(scenario_to_dict(sc)) == replace(sc, source="<scenario>")


def test_a_scenario_of_one_terminal_is_unchanged() -> None:
    sc = load_scenario("scenarios/incidents/failed-charged-timeout.toml")
    assert sc.terminals == () and sc.lanes() == (sc.terminal,)
    assert "terminals" not in scenario_to_dict(sc)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"terminals": []}, "terminals: give at least one terminal"),
        ({"terminals": [{"name": "A"}]}, "terminals[0].id: missing"),
        (
            {"terminals": [{"id": "T0001"}, {"id": "T0001"}]},
            "terminals[1]: a second terminal named 'T0001' (a clone",
        ),
        ({"terminal": {"name": "A"}}, "terminal.name: only a [[terminals]] entry has a name"),
        ({"terminals": [{"id": "T0001", "nmae": "A"}]}, "terminals[0].nmae: unknown key"),
        (
            {"steps": [{"at_ms": 0, "terminal": "Z", "purchase": {"card": CARD, "amount": 1}}]},
            "steps[0].terminal: no terminal named 'Z' (known: A, B)",
        ),
        (
            {"faults": [{"drop": {"nth": 1, "terminal": "Z"}}]},
            "faults[0].drop.terminal: no terminal named 'Z'",
        ),
        (
            {
                "steps": [
                    {"at_ms": 0, "terminal": "A", "purchase": {"card": CARD, "amount": 9}},
                    {"at_ms": 5, "terminal": "B", "refund": {"sale": 1}},
                ]
            },
            "steps[1].refund.sale: names payment 1, but only 0 payment step(s) at terminal B "
            "come before it (at_ms 5); a refund names a sale of its own terminal",
        ),
    ],
)
def test_a_wrong_world_is_one_line_naming_the_key(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ScenarioError) as err:
        scenario_from_dict(_world(**change), "x.toml")
    assert str(err.value).startswith("x.toml: ") and message in str(err.value)
    assert "\n" not in str(err.value)


def test_a_void_or_refund_names_a_sale_of_its_own_terminal() -> None:
    """`sale = N` counts the payment steps of the credit step's own terminal."""
    purchase = {"card": CARD, "amount": 9}
    sc = scenario_from_dict(
        _world(
            steps=[
                {"at_ms": 0, "terminal": "A", "purchase": purchase},
                {"at_ms": 1, "terminal": "B", "purchase": purchase},
                {"at_ms": 2, "terminal": "B", "purchase": purchase},
                {"at_ms": 5, "terminal": "B", "refund": {"sale": 2, "amount": 4}},
                {"at_ms": 6, "void": {"sale": 1}},  # the first terminal's (A)
            ]
        )
    )
    assert [(s.terminal, s.action, s.sale) for s in sc.steps[3:]] == [
        ("B", "refund", 2),
        ("", "void", 1),
    ]
    assert scenario_from_dict(scenario_to_dict(sc)) == replace(sc, source="<scenario>")


def test_a_step_of_a_single_terminal_file_may_name_its_terminal_only() -> None:
    data = {
        "name": "one",
        "cards": [{"pan": CARD}],
        "steps": [{"at_ms": 0, "terminal": "T0009", "purchase": {"card": CARD, "amount": 5}}],
    }
    with pytest.raises(ScenarioError, match=r"no terminal named 'T0009' \(known: T0001\)"):
        scenario_from_dict(data)
    data["steps"][0]["terminal"] = "T0001"  # type: ignore[index]
    assert scenario_from_dict(data).steps[0].terminal == "T0001"


# ------------------------------------------------------------------ running


@pytest.mark.parametrize("path", SUITE, ids=[p.stem for p in SUITE])
def test_the_suite_passes_is_deterministic_and_replays(path: Path, tmp_path: Path) -> None:
    sc = load_scenario(path)
    assert len(sc.terminals) == 3
    trace = tmp_path / "t.jsonl"
    result = run_twice(sc, trace_path=trace)
    assert result.verdict == "PASS", result.problems
    assert replay(trace).identical


@pytest.mark.parametrize("path", SUITE, ids=[p.stem for p in SUITE])
def test_the_reference_holds_every_invariant_on_the_suite(path: Path) -> None:
    result = run_scenario(load_scenario(path), "reference")
    assert result.verdict in ("PASS", "FIXED"), result.problems
    assert not result.violated()


def test_records_name_their_terminal_and_the_host_and_clock_are_shared(tmp_path: Path) -> None:
    sc = load_scenario(SUITE_DIR / "lanes-host-crash-shared.toml")
    trace = tmp_path / "t.jsonl"
    run_scenario(sc, trace_path=trace)
    text = trace.read_text()
    # The crash was triggered by A's request; B's sale and C's batch close are lost.
    assert '"term":"A","fault":"host_crash"' in text
    assert '"kind":"lost","term":"B","to":"host","reason":"host is down"' in text
    assert '"kind":"lost","term":"C","to":"host","reason":"host is down"' in text
    assert text.count('"kind":"run"') == 1 and text.count('"kind":"end"') == 1


def test_a_customer_told_failed_walks_to_the_next_terminal(tmp_path: Path) -> None:
    sc = load_scenario(SUITE_DIR / "three-lanes-outage-walk.toml")
    trace = tmp_path / "t.jsonl"
    assert run_scenario(sc, trace_path=trace).verdict == "PASS"
    text = trace.read_text()
    assert '"term":"A","intent":1,"action":"next-terminal","to":"B"' in text
    assert (
        '"kind":"intent","term":"B","intent":1,"card":"4000000000000002","amount":3999,"from":"A:1"'
        in text
    )
    # Without the walk nobody pays at B.
    still = replace(sc, people=replace(sc.people, next_terminal_on_failed=False))
    trace2 = tmp_path / "u.jsonl"
    run_scenario(still, trace_path=trace2)
    assert '"kind":"intent","term":"B"' not in trace2.read_text()


def test_a_terminal_runs_its_own_firmware_and_is_judged_alone() -> None:
    sc = load_scenario(SUITE_DIR / "lanes-walk-no-reversal.toml")
    result = run_scenario(sc)
    assert result.verdict == "PASS"  # the violation the file expects
    first = result.violations["no-charge-on-failure"][0]
    assert first.message.startswith("terminal A: ")
    # --firmware replaces every terminal's: the reference fixes it.
    assert run_scenario(sc, "reference").verdict == "FIXED"


def test_one_charge_claimed_at_two_terminals_is_caught_on_a_clone() -> None:
    sc = load_scenario(SUITE_DIR / "lanes-cloned-terminal-id.toml")
    bad = run_scenario(sc, "zoo:tid-counter-keys")
    cross = bad.violations["one-terminal-per-charge"]
    assert len(cross) == 1 and "terminal back claims the charge rrn" in cross[0].message
    # The same clone with per-boot keys: nothing to see, and no double charge is
    # imagined from the other device's transactions under the shared id.
    assert not run_scenario(sc, "reference").violated()


def test_batch_reconciles_is_not_judged_for_a_cloned_id_only() -> None:
    sc = load_scenario(SUITE_DIR / "lanes-walk-no-reversal.toml")
    bad = run_scenario(sc, "zoo:no-reversal")
    assert "batch-reconciles" in bad.violated()  # distinct ids: judged
    cloned = replace(sc, terminals=(sc.terminals[0], replace(sc.terminals[1], id="T0001")))
    assert "batch-reconciles" not in run_scenario(cloned, "zoo:no-reversal").violated()


def test_wallet_orders_belong_to_the_terminal_that_took_them(tmp_path: Path) -> None:
    sc = load_scenario(SUITE_DIR / "lanes-wallet-late-confirm.toml")
    trace = tmp_path / "t.jsonl"
    assert run_scenario(sc, trace_path=trace).verdict == "PASS"
    text = trace.read_text()
    # The host's wallet tick closes A's order and charges B's, each in its terminal.
    assert '"kind":"host","term":"A","action":"wallet-close"' in text
    assert '"kind":"host","term":"B","action":"charge","rc":"00"' in text
    assert (
        '"term":"B","intent":2,"card":"280000000000000779","amount":1800,"wallet":true,"from":"A:1"'
        in text
    )
    bad = run_scenario(sc, "zoo:wallet-no-cancel")
    assert bad.violations["no-charge-on-failure"][0].message.startswith("terminal A: ")


def test_run_wide_violations_are_said_once(tmp_path: Path) -> None:
    sc = scenario_from_dict(_world(max_ms=500))
    result = run_scenario(sc)
    limit = [v for v in result.violations["eventually-settles"] if "hit its limit" in v.message]
    assert len(limit) == 1


def test_the_diagram_has_a_lane_per_terminal(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    run_scenario(load_scenario(SUITE_DIR / "three-lanes-outage-walk.toml"), trace_path=trace)
    d = load_diagram(trace)
    assert d.lanes == ("A", "B", "C", "network", "host")
    assert {r.lane for r in d.rows} == set(d.lanes)
    assert any(r.lane == "network" and r.text.startswith("C: 0200") for r in d.rows)
    assert any(r.lane == "A" and "walks to terminal B" in r.text for r in d.rows)


# ------------------------------------------------------------------ fuzzing


def test_shrinking_drops_terminals_a_failure_does_not_need() -> None:
    sc = load_scenario(SUITE_DIR / "lanes-walk-no-reversal.toml")
    fewer = fewer_terminals(sc)
    # Without C, without B, without A (and with them their steps and faults).
    assert [[t.lane for t in c.terminals] for c in fewer] == [["A", "B"], ["A", "C"], ["B", "C"]]
    assert [len(c.steps) for c in fewer] == [1, 2, 1] and len(fewer[2].faults) == 0
    assert fewer[0] in removals(sc)
    judged = replace(sc, expect=Expect(invariants=INVARIANT_NAMES))  # as the fuzzer's
    small = minimise(judged, "no-charge-on-failure", "zoo:no-reversal")
    assert small.terminals == () and len(small.steps) == 1 and len(small.faults) == 1
    assert "no-charge-on-failure" in run_scenario(small, "zoo:no-reversal").violated()


def test_a_world_left_with_one_terminal_keeps_that_terminals_firmware() -> None:
    sc = scenario_from_dict(
        _world(
            terminals=[
                {"id": "T0001", "name": "A", "firmware": "zoo:no-reversal"},
                {"id": "T0002", "name": "B"},
            ]
        )
    )
    (single, _) = fewer_terminals(sc)
    assert single.terminals == () and single.firmware == "zoo:no-reversal"
    assert single.terminal.id == "T0001" and single.terminal.name == ""


def test_the_strategies_draw_worlds_of_two_to_four_terminals_that_round_trip() -> None:
    examples: list[Scenario] = drawn(scenarios(), 600)
    several = [sc for sc in examples if sc.terminals]
    assert {len(sc.terminals) for sc in several} == {2, 3, 4}
    assert any(len({t.id for t in sc.terminals}) < len(sc.terminals) for sc in several)
    assert any(sc.people.next_terminal_on_failed for sc in several)
    for sc in several:
        assert scenario_from_dict(scenario_to_dict(sc)) == replace(sc, source="<scenario>")
    clones = [sc for sc in several if len({t.id for t in sc.terminals}) < len(sc.terminals)]
    for sc in clones:
        # Two devices under one id share one settlement: a world with a clone closes no
        # batch, neither by a step nor by a device swap (which starts with a close).
        assert not sc.close_batch
        assert all(s.action != "batch_close" for s in sc.steps)
        assert all(f.KIND != "device_swap" for f in sc.faults)


def test_the_fuzzer_finds_a_flaw_only_a_clone_shows_and_shrinks_it_to_two_terminals(
    tmp_path: Path,
) -> None:
    """zoo:tid-counter-keys is caught on one terminal only through faults (a swapped
    device, a wiped journal). With no faults at all, only a world with a clone shows
    it: two devices as one id, each sale answered for the other."""
    found, _ = campaign(
        "zoo:tid-counter-keys", kinds=(), examples=1500, out_dir=tmp_path, campaign_seed=1
    )
    assert found is not None
    shrunk = load_scenario(found.path)
    assert [t.id for t in shrunk.terminals] == ["T0001", "T0001"]
    assert len(shrunk.steps) == 2 and shrunk.faults == ()
    assert "another device made under this terminal's id" in shrunk.description


@pytest.mark.parametrize("transport", ["mqtt", "tcp"])
def test_a_real_transport_refuses_several_terminals_in_one_line(
    transport: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.cli import main

    path = SUITE_DIR / "three-lanes-outage-walk.toml"
    assert main(["run", str(path), "--transport", transport]) == 2
    err = capsys.readouterr().err
    assert f"{path}: several terminals ([[terminals]]) run in the simulation only" in err


def test_a_terminals_unknown_firmware_names_its_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.cli import main

    bad = tmp_path / "bad.toml"
    bad.write_text(
        'name = "x"\n[[terminals]]\nid = "T0001"\n[[terminals]]\nid = "T0002"\n'
        'firmware = "zoo:nope"\n[[steps]]\nat_ms = 0\nbatch_close = true\n'
    )
    assert main(["run", str(bad)]) == 2
    assert f"{bad}: terminals[1].firmware: unknown zoo firmware 'nope'" in capsys.readouterr().err


def test_an_offline_terminal_among_online_ones_is_judged_with_its_own_limits() -> None:
    sc = load_scenario(SUITE_DIR / "lanes-offline-partition.toml")
    assert run_scenario(sc).verdict == "PASS"
    bad = run_scenario(sc, "zoo:offline-volatile-queue")
    lost = bad.violations["offline-uploaded"]
    assert len(lost) == 1 and lost[0].message.startswith(
        "terminal A: intent 1 was approved offline"
    )


def test_voids_and_refunds_are_judged_at_the_terminal_that_made_the_sale() -> None:
    sc = load_scenario(SUITE_DIR / "lanes-refund-per-terminal.toml")
    bad = run_scenario(sc, "zoo:refund-new-key-on-retry")
    over = bad.violations["no-over-credit"]
    assert len(over) == 1 and over[0].message.startswith("terminal A: ")
    assert all(v.message.startswith("terminal A: ") for vs in bad.violations.values() for v in vs)
    assert not run_scenario(sc, "reference").violated()


def test_a_clone_is_not_blamed_for_the_other_devices_refunds() -> None:
    """Two devices under one id each refund their own sales: the host's refunds of the
    other device's sales (same terminal id) are not this device's to have shown."""
    sc = load_scenario(SUITE_DIR / "lanes-refund-per-terminal.toml")
    a, b, c = sc.terminals
    cloned = replace(sc, terminals=(a, b, replace(c, id=a.id)))
    assert not run_scenario(cloned, "reference").violated()


def test_the_strategies_draw_worlds_of_several_with_voids_and_refunds() -> None:
    """For refund firmwares, worlds of several terminals have voids and refunds too,
    each at the terminal of the sale it names (the file loads: `check_credit_steps`)."""
    examples: list[Scenario] = drawn(scenarios(refund=True), 400)
    credited = [
        sc
        for sc in examples
        if sc.terminals and any(s.action in ("void", "refund") for s in sc.steps)
    ]
    assert credited
    for sc in credited:
        assert scenario_from_dict(scenario_to_dict(sc)) == replace(sc, source="<scenario>")


def test_at_their_sales_moves_a_credit_to_its_sales_terminal() -> None:
    buy = Step(at_ms=0, action="purchase", card=CARD, amount=5)
    steps = (
        replace(buy, terminal="A"),
        replace(buy, at_ms=1, terminal="B"),
        replace(buy, at_ms=2),  # the first terminal's (A)
        Step(at_ms=3, action="refund", sale=2, terminal="A"),
        Step(at_ms=4, action="void", sale=3, terminal="B"),
    )
    moved = at_their_sales(steps, "A")
    assert [(s.terminal, s.sale) for s in moved[3:]] == [("B", 1), ("A", 2)]
