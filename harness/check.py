"""Check helpers for tests: run a scenario, fail with a replayable story.

`assert_invariants(scenario, firmware)` runs the scenario in the simulator and
raises `InvariantViolated` (an AssertionError) naming the first broken invariant,
the plain-language explanation, and the scenario as TOML to keep as a regression
file. Each invariant raises its own subclass, so Hypothesis treats different
invariants as different bugs and shrinks each towards its own minimal example.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from scenarios.model import INVARIANT_NAMES, Scenario
from scenarios.writer import scenario_to_toml

from .invariants import Violation
from .runner import RunResult, run_scenario
from .trace import Observer


class InvariantViolated(AssertionError):
    """A run broke an invariant. `.result` has everything; `.invariant` names it."""

    invariant = ""

    def __init__(self, message: str, result: RunResult, violation: Violation | None) -> None:
        super().__init__(message)
        self.result = result
        self.violation = violation


def _subclass(name: str) -> type[InvariantViolated]:
    cls_name = "".join(part.title() for part in name.split("-")) + "Violated"
    return type(cls_name, (InvariantViolated,), {"invariant": name})


VIOLATION_TYPES: dict[str, type[InvariantViolated]] = {
    name: _subclass(name) for name in (*INVARIANT_NAMES, "firmware-crash")
}


def first_failure(result: RunResult) -> tuple[str, Violation | None] | None:
    """The invariant (or crash) a failing run is reported under, in a fixed order."""
    for name in INVARIANT_NAMES:
        if name in result.scenario.expect.invariants and result.violations.get(name):
            return name, result.violations[name][0]
    if result.crashes:
        return "firmware-crash", None
    return None


def check_scenario(scenario: Scenario, firmware: str | None = None) -> RunResult:
    return run_scenario(scenario, firmware)


def assert_invariants(
    scenario: Scenario, firmware: str | None = None, observers: Sequence[Observer] = ()
) -> RunResult:
    """Run `scenario` (with `firmware`) and raise InvariantViolated on any violation.
    `observers` see every trace record of the run (e.g. to measure coverage)."""
    result = run_scenario(scenario, firmware, observers=observers)
    failure = first_failure(result)
    if failure is None:
        return result
    name, violation = failure
    what = violation.message if violation else result.problems[-1]
    # The reproducer names the firmware this run used, not the one the file named.
    ran = dataclasses.replace(scenario, firmware=result.firmware)
    raise VIOLATION_TYPES[name](
        f"{name}: {what}\n--- reproduce with this scenario file ---\n{scenario_to_toml(ran)}",
        result,
        violation,
    )
