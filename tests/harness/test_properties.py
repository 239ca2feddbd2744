"""Property tests: random purchases and random faults never break an invariant
under the reference firmware; the stateful machine finds flawed firmwares.

The default run is derandomized (the same examples on every machine, so CI is not
flaky); `pytest -m slow` runs longer, randomized campaigns.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis.stateful import run_state_machine_as_test

from harness.check import InvariantViolated, assert_invariants
from harness.stateful import InvariantBroken, machine_for
from harness.strategies import scenarios
from scenarios.model import Scenario

FAST = settings(
    max_examples=150,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
DEEP = settings(
    max_examples=3_000, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


@FAST
@given(scenarios())
def test_reference_firmware_holds_every_invariant_under_random_faults(sc: Scenario) -> None:
    assert_invariants(sc)


@pytest.mark.slow
@DEEP
@given(scenarios())
def test_reference_firmware_holds_every_invariant_deep(sc: Scenario) -> None:
    assert_invariants(sc)


def test_five_line_user_test_catches_a_flawed_firmware() -> None:
    """What a firmware team writes for their own firmware (here: a zoo one)."""

    # One bug reported (the default reports each distinct one, as an ExceptionGroup).
    @settings(
        max_examples=300,
        derandomize=True,
        deadline=None,
        database=None,
        report_multiple_bugs=False,
    )
    @given(scenarios(firmware="zoo:naive-retry"))
    def test_my_firmware(sc: Scenario) -> None:
        assert_invariants(sc, "zoo:naive-retry")

    with pytest.raises(InvariantViolated) as info:
        test_my_firmware()
    assert info.value.invariant in ("no-duplicate-charge", "no-charge-on-failure")
    assert "reproduce with this scenario file" in str(info.value)


STATEFUL = settings(
    max_examples=60,
    stateful_step_count=25,
    derandomize=True,
    deadline=None,
    database=None,
    report_multiple_bugs=False,
    suppress_health_check=list(HealthCheck),
)


def test_stateful_reference_survives_every_rule_sequence() -> None:
    run_state_machine_as_test(machine_for("reference"), settings=STATEFUL)


@pytest.mark.parametrize("firmware", ["zoo:naive-retry", "zoo:no-reversal", "zoo:trusts-unsigned"])
def test_stateful_machine_catches_flawed_firmware(firmware: str) -> None:
    with pytest.raises(InvariantBroken):
        run_state_machine_as_test(
            machine_for(firmware),
            settings=settings(STATEFUL, max_examples=300, stateful_step_count=30),
        )
