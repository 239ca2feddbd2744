"""The fuzzer's strategies reach the whole scenario space, and what they draw is a
valid scenario file.

Reachability is shown on one fixed (derandomised) sample of drawn scenarios,
plans and amounts: each test names one corner of the space and fails when no
drawn example is in it.
"""

from __future__ import annotations

import dataclasses
import functools
import tomllib
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import faults
from harness.fuzz import Coverage, signature
from harness.strategies import (
    COMBOS,
    TEST_CARD_AMOUNTS,
    fault_plans,
    limit_amounts,
    scenarios,
)
from scenarios.loader import scenario_from_dict
from scenarios.model import (
    Expect,
    HostSpec,
    NetworkSpec,
    PeopleSpec,
    Scenario,
    TerminalSpec,
)
from scenarios.writer import scenario_to_toml
from tests.harness.samples import drawn

SAMPLE = 1_500
SETTLE_MS = Expect(invariants=()).settle_within_ms  # the default bound


@functools.cache
def sample(strategy: st.SearchStrategy[Any]) -> list[Any]:
    """SAMPLE examples of `strategy`, the same ones on every run."""
    return drawn(strategy, SAMPLE)


_SCENARIOS = scenarios()
_PLANS = fault_plans()
_AMOUNTS = limit_amounts()


def reach(predicate: Callable[[Scenario], bool]) -> None:
    assert any(predicate(sc) for sc in sample(_SCENARIOS))


def reach_plan(predicate: Callable[[tuple[faults.Fault, ...]], bool]) -> None:
    assert any(predicate(plan) for plan in sample(_PLANS))


@pytest.mark.parametrize("action", ["purchase", "reprint", "batch_close", "cancel"])
def test_every_step_kind_is_drawn(action: str) -> None:
    reach(lambda sc: any(s.action == action for s in sc.steps))


def test_reprints_and_batch_closes_come_in_the_middle_of_sales() -> None:
    def middle(sc: Scenario) -> bool:
        last = max(s.at_ms for s in sc.steps if s.action == "purchase")
        return any(s.action != "purchase" and s.at_ms < last for s in sc.steps)

    reach(middle)


@pytest.mark.parametrize(
    ("group", "spec"),
    [
        ("terminal", TerminalSpec()),
        ("host", HostSpec()),
        ("network", NetworkSpec()),
        ("people", PeopleSpec()),
    ],
)
def test_every_parameter_of_every_group_leaves_its_default(group: str, spec: object) -> None:
    for name in type(spec).__dataclass_fields__:  # type: ignore[attr-defined]
        if (group, name) in {
            ("terminal", "id"),
            ("terminal", "merchant_id"),
            ("host", "idempotency_retention_ms"),
            ("people", "restart_after_power"),
            # Drawn only for a firmware that declares `partial`
            # (tests/harness/test_partial_scenarios.py).
            ("terminal", "partial_approval"),
            ("terminal", "chip"),  # likewise, for `chip` (tests/harness/test_chip_scenarios.py)
            # Only [[terminals]] entries have these (tests/harness/test_lanes.py).
            ("terminal", "name"),
            ("terminal", "firmware"),
            # ... and for `offline` (tests/harness/test_offline_scenarios.py).
            ("terminal", "offline_floor"),
            ("terminal", "offline_max"),
            ("terminal", "offline_deadline_ms"),
        }:
            continue  # identities, and settings no firmware can meet (see strategies)
        default = getattr(spec, name)
        reach(lambda sc, g=group, n=name, d=default: getattr(getattr(sc, g), n) != d)


def test_amounts_cover_the_whole_valid_range_and_its_boundaries() -> None:
    # The decade the old strategy never reached (500.01 .. 999,999.98).
    reach(lambda sc: any(50_001 <= s.amount <= 99_999_998 for s in sc.steps))
    reach(lambda sc: any(s.amount == sc.terminal.amount_max + 1 for s in sc.steps))
    reach(lambda sc: any(s.amount == sc.terminal.amount_max for s in sc.steps))
    balances = lambda sc: {c.balance for c in sc.cards}  # noqa: E731
    reach(lambda sc: any(s.amount - 1 in balances(sc) for s in sc.steps))
    amounts = set(sample(_AMOUNTS))
    assert set(TEST_CARD_AMOUNTS) <= amounts
    # Every decade of the log-uniform part.
    for e in range(8):
        assert any(10**e <= a < 10 ** (e + 1) for a in amounts), e


def test_unusual_cards_and_catalogue_cards_are_drawn() -> None:
    reach(lambda sc: any(c.rc for c in sc.cards))
    reach(lambda sc: any(c.slow_ms for c in sc.cards))
    reach(lambda sc: any(s.card == "4000000000000051" for s in sc.steps))
    reach(lambda sc: not sc.close_batch)


@pytest.mark.parametrize("kind", faults.swarm_kinds())
def test_every_swarm_kind_is_drawn(kind: str) -> None:
    reach_plan(lambda plan: any(kind == f.KIND for f in plan))


def test_host_side_kinds_outside_the_swarm_are_never_drawn() -> None:
    outside = {k for k, cls in faults.REGISTRY.items() if not cls.SWARM}
    assert outside  # host_double_charge: a host defect, not the firmware's
    for plan in sample(_PLANS):
        assert not {f.KIND for f in plan} & outside


@pytest.mark.parametrize(
    ("name", "first", "then"),
    [
        ("device-then-power", {"printer_jam", "paper_out", "print_failure"}, {"power_cut"}),
        ("loss-then-reboot", {"drop"}, {"power_cut"}),
        ("duplicate-then-reorder", {"duplicate"}, {"reorder"}),
        ("transient-after-lost-answer", {"drop", "slow_host"}, {"rc_burst"}),
        ("batch-then-power", {"power_cut"}, {"drop"}),
    ],
)
def test_targeted_combinations_are_drawn(name: str, first: set[str], then: set[str]) -> None:
    assert name in COMBOS

    def combo(plan: tuple[faults.Fault, ...]) -> bool:
        return len(plan) >= 2 and plan[0].KIND in first and plan[1].KIND in then

    reach_plan(combo)


def test_combinations_respect_the_kinds_asked_for() -> None:
    @settings(max_examples=200, database=None, derandomize=True)
    @given(fault_plans(("drop", "delay")))
    def check(plan: tuple[faults.Fault, ...]) -> None:
        assert {f.KIND for f in plan} <= {"drop", "delay"}

    check()


@settings(max_examples=60, database=None, derandomize=True, deadline=None)
@given(scenarios())
def test_a_drawn_scenario_is_a_valid_file_that_loads_back_equal(sc: Scenario) -> None:
    text = scenario_to_toml(sc)
    back = scenario_from_dict(tomllib.loads(text), "<drawn>")
    assert dataclasses.replace(back, source="") == sc


def test_coverage_counts_distinct_transitions_and_faults() -> None:
    cov = Coverage()
    records = [
        {"kind": "display", "outcome": "approved"},
        {"kind": "send", "msg": {"mti": "0200"}},
        {"kind": "fault", "fault": "drop"},
        {"kind": "send", "msg": {"mti": "0200"}},
        {"kind": "fault", "fault": "drop"},
    ]
    for rec in records:
        cov.observe(rec)
    assert signature(records[1]) == "send:0200:"
    # ("", display), (display, send), (send, fault), (fault, send): the repeat of
    # (send, fault) is not new.
    assert len(cov.pairs) == 4
    assert cov.faults == 2


def test_the_batch_then_power_combination_cuts_during_the_upload() -> None:
    def cut_on_batch(plan: tuple[faults.Fault, ...]) -> bool:
        return any(
            f.KIND == "power_cut" and getattr(f, "mti", "") in ("0500", "0510") for f in plan
        )

    reach_plan(cut_on_batch)


def test_busy_stretches_outnumber_the_pending_receipt_limit() -> None:
    """Some examples have more sales than a terminal may keep receipts pending (16)."""
    reach(lambda sc: sc.purchases() > 16)


def test_long_outages_outlast_the_default_settle_bound() -> None:
    def long_outage(plan: tuple[faults.Fault, ...]) -> bool:
        return any(f.KIND == "partition" and f.to_ms - f.from_ms > SETTLE_MS for f in plan)

    reach_plan(long_outage)


def test_a_host_stuck_in_progress_is_drawn() -> None:
    """RC 09 to a hundred sales: a terminal that never stops asking waits for ever."""
    reach_plan(lambda plan: any(f.KIND == "rc_burst" and f.rc == "09" for f in plan))


def test_one_price_stalls_are_drawn() -> None:
    """Every customer pays the same amount with the same card: a reused key then
    always comes back with identical content."""

    def one_price(sc: Scenario) -> bool:
        buys = [(s.card, s.amount) for s in sc.steps if s.action == "purchase"]
        return len(buys) >= 4 and len(set(buys)) == 1

    reach(one_price)
