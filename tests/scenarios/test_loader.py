"""The scenario loader: good files load into frozen data, bad files give one clear line."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from scenarios.loader import find_scenarios, load_scenario, scenario_from_dict
from scenarios.model import INVARIANT_NAMES, Scenario, ScenarioError, scenario_to_dict

SUITE = Path(__file__).resolve().parents[2] / "scenarios"

GOOD = """
name = "ok"
seed = 3
[[cards]]
pan = "4000000000000002"
balance = 5000
[[steps]]
at_ms = 0
purchase = { card = "4000000000000002", amount = 1250 }
[[faults]]
drop = { direction = "to_terminal", mti = "0210", nth = 1 }
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "s.toml"
    p.write_text(text)
    return p


def test_good_file_loads_into_frozen_scenario(tmp_path: Path) -> None:
    sc = load_scenario(write(tmp_path, GOOD))
    assert sc.name == "ok" and sc.seed == 3
    assert sc.steps[0].amount == 1250 and sc.faults[0].KIND == "drop"
    assert sc.expect.invariants == INVARIANT_NAMES
    with pytest.raises(dataclasses.FrozenInstanceError):
        sc.name = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("patch", "fragment"),
    [
        ("bogus = 1\n", "bogus: unknown key"),
        (
            '[terminal]\nresponse_timeout_ms = "soon"\n',
            "terminal.response_timeout_ms: expected an integer",
        ),
        (
            '[[steps]]\nat_ms = -5\npurchase = { card = "4000000000000002", amount = 1 }\n',
            "steps[1].at_ms: must be between 0",
        ),
        (
            '[[steps]]\nat_ms = 5\npurchase = { card = "4111111111111111", amount = 1 }\n',
            "steps[1].purchase.card: '4111111111111111' is not in [[cards]]",
        ),
        ("[[faults]]\nteleport = { nth = 1 }\n", "faults[1]: unknown fault kind 'teleport'"),
        ("[[faults]]\ndrop = { nth = -1 }\n", "faults[1].drop.nth: must be >= 0"),
        (
            '[[faults]]\ndrop = { direction = "sideways" }\n',
            "faults[1].drop.direction: must be one of",
        ),
        (
            '[[faults]]\ndelay = { delay_ms = "x" }\n',
            "faults[1].delay.delay_ms: expected an integer",
        ),
        (
            '[expect]\ninvariants = ["no-such-thing"]\n',
            "expect.invariants: unknown invariant 'no-such-thing'",
        ),
        ("[[steps]]\nat_ms = 5\n", "steps[1]: needs exactly one of"),
        (
            "[[steps]]\nat_ms = 5\nrepeat = 0\nreprint = true\n",
            "steps[1].repeat: must be between 1 and",
        ),
        (
            "[[steps]]\nat_ms = 5\nrepeat = 3\nreprint = true\n",
            "steps[1].every_ms: must be between 1 and",
        ),
        (
            "[[steps]]\nat_ms = 5\nevery_ms = 10\nreprint = true\n",
            "steps[1].every_ms: only with repeat",
        ),
        (
            "[[steps]]\nat_ms = 5\nrepeat = 60000\nevery_ms = 1\nreprint = true\n"
            "[[steps]]\nat_ms = 5\nrepeat = 60000\nevery_ms = 1\nreprint = true\n",
            "steps[2].repeat: more than 100000 steps in all",
        ),
        (
            "[[steps]]\nat_ms = 5\nrepeat = 2\nevery_ms = 2592000000\nreprint = true\n",
            "steps[1].repeat: the last one would be after",
        ),
    ],
)
def test_bad_file_gives_one_line_naming_file_and_key(
    tmp_path: Path, patch: str, fragment: str
) -> None:
    # A bare key belongs at the top of the file; a table goes at the end.
    p = write(tmp_path, GOOD + patch if patch.startswith("[") else patch + GOOD)
    with pytest.raises(ScenarioError) as info:
        load_scenario(p)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(p) + ": ")
    assert fragment in message


def test_a_repeated_step_is_written_out_every_ms_apart(tmp_path: Path) -> None:
    text = GOOD.replace(
        "amount = 1250 }\n", "amount = 1250 }\nrepeat = 3\nevery_ms = 2000\n"
    ).replace("at_ms = 0\n", "at_ms = 100\n")
    path = write(tmp_path, text)
    sc = load_scenario(path)
    assert [(s.at_ms, s.action, s.card, s.amount) for s in sc.steps] == [
        (t, "purchase", "4000000000000002", 1250) for t in (100, 2100, 4100)
    ]
    # Written out, it loads as the same scenario.
    assert scenario_from_dict(scenario_to_dict(sc), str(path)) == sc


def test_missing_card_key_and_name_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match=r"cards\[0\].pan: missing"):
        scenario_from_dict({"name": "x", "cards": [{"balance": 1}]}, "x.toml")
    with pytest.raises(ScenarioError, match=r"x\.toml: name: missing"):
        scenario_from_dict({}, "x.toml")


def test_not_toml_and_not_utf8_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="not valid TOML"):
        load_scenario(write(tmp_path, "name = \n"))
    p = tmp_path / "b.toml"
    p.write_bytes(b'name = "\xff"\n')
    with pytest.raises(ScenarioError, match="not UTF-8"):
        load_scenario(p)
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "missing.toml")


def test_every_builtin_scenario_loads_and_round_trips_through_dict() -> None:
    files = list(find_scenarios([SUITE]))
    assert len(files) >= 5 + 19
    for f in files:
        sc = load_scenario(f)
        again = scenario_from_dict(scenario_to_dict(sc), str(f))
        assert again == sc, f


def test_builtin_suite_covers_every_fault_kind() -> None:
    import faults

    used = {
        fault.KIND
        for f in find_scenarios([SUITE / "incidents"])
        for fault in load_scenario(f).faults
    }
    # Host-side defects (Fault.SWARM False) are covered by the incident corpus; kinds
    # drawn by a flow's own strategy (chip_refusal) may appear too.
    assert set(faults.swarm_kinds(frozenset({"wallet"}))) <= used


def test_scenario_type_is_frozen_and_slotted() -> None:
    assert Scenario.__dataclass_params__.frozen  # type: ignore[attr-defined]


def test_a_cancel_step_before_the_card_ends_the_sale_uncharged(tmp_path: Path) -> None:
    """`cancel = true`: the cashier presses cancel. Before the card is presented the
    reference firmware ends the sale as FAILED and nothing is charged."""
    from harness.runner import run_scenario

    path = tmp_path / "cancel.toml"
    path.write_text(
        'name = "cancel"\n'
        '[[cards]]\npan = "4000000000000002"\nbalance = 10000\n'
        '[[steps]]\nat_ms = 0\npurchase = { card = "4000000000000002", amount = 1250 }\n'
        "[[steps]]\nat_ms = 500\ncancel = true\n"
        '[expect]\ninvariants = "all"\n',
        encoding="utf-8",
    )
    sc = load_scenario(path)
    assert [s.action for s in sc.steps] == ["purchase", "cancel"]
    result = run_scenario(sc)
    assert result.passed, result.problems
    trace_dir = tmp_path / "t"
    traced = run_scenario(sc, trace_dir=trace_dir)
    text = traced.trace_path.read_text() if traced.trace_path else ""
    assert '"action":"cancel"' in text and "CANCELLED - NOT CHARGED" in text
    assert '"mti":"0200"' not in text  # nothing was sent
