"""Stateful fuzzing: Hypothesis drives one world step by step.

Each rule is something a person or the world does (a purchase, a second tap, a
power cut, a lost message, a jam, a reprint, a batch close, time passing). The
engine runs synchronously in virtual time: no event loop per step. After every
step the safety invariants must hold; whenever the world is quiet (nothing left
to happen) every invariant must hold. When a run breaks one, Hypothesis shrinks
the rule sequence and prints it as a replayable program.

Use it for your own firmware:

    from harness.stateful import machine_for
    TestMyFirmware = machine_for("mypkg.fw:MyFirmware").TestCase
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import faults
from scenarios.model import INVARIANT_NAMES, CardSpec, Expect, PeopleSpec, Scenario, Step
from terminal.firmware import BatchCloseRequested, ConfirmPressed, ReprintRequested

from .engine import SimClock
from .invariants import Observations, Violation, check_all
from .runner import load_firmware
from .strategies import amounts
from .trace import Trace
from .world import World

PAN = "4000000000000002"
# Invariants that must hold at every instant, not only once the world is quiet.
ALWAYS = ("amount-integrity", "no-receipt-without-record", "ledger-balances")
# A step may advance virtual time by at most this much; a run by at most STEPS_MAX.
ADVANCE_MS_MAX = 120_000
EVENTS_PER_ADVANCE_MAX = 200_000


class InvariantBroken(AssertionError):
    pass


class PosWorldMachine(RuleBasedStateMachine):
    """One terminal, one host, one card; rules are the things that happen."""

    firmware = "reference"

    def __init__(self) -> None:
        super().__init__()
        sc = Scenario(
            name="stateful",
            firmware=self.firmware,
            cards=(CardSpec(pan=PAN, balance=10**9),),
            people=PeopleSpec(retry_on_failed=1),
            close_batch=False,
            expect=Expect(invariants=INVARIANT_NAMES),
        )
        self.obs = Observations()
        clock = SimClock()
        self.world = World(
            sc,
            load_firmware(self.firmware),
            trace=Trace(clock, [self.obs.observe]),
            clock=clock,
            firmware_spec=self.firmware,
        )
        self.world.start()

    # ---------------------------------------------------------------- helpers

    def _now(self) -> int:
        return self.world.clock.now_ms

    def _run_for(self, ms: int) -> None:
        self.world.sched.run(self._now() + ms, self.world.sched.executed + EVENTS_PER_ADVANCE_MAX)
        self.world.clock.now_ms = max(self.world.clock.now_ms, self._now())

    def _arm(self, kind: str, params: dict[str, Any]) -> None:
        self.world.add_fault(faults.build_fault(kind, params))

    def _violations(self, names: tuple[str, ...]) -> list[Violation]:
        results = check_all(self.obs, self.world.host, self.world.tid, 10**12)
        return [v for name in names for v in results[name]]

    def _quiet(self) -> bool:
        return len(self.world.sched) == 0

    # ---------------------------------------------------------------- rules

    @rule(amount=amounts())
    def purchase(self, amount: int) -> None:
        self.world.inject(Step(at_ms=self._now(), action="purchase", card=PAN, amount=amount))
        self._run_for(0)

    @rule()
    def tap_again(self) -> None:
        self.world._tap(PAN)

    @rule()
    def press_confirm_again(self) -> None:
        self.world._input_if_on(ConfirmPressed())

    @precondition(lambda self: self.world.powered)
    @rule()
    def cut_power(self) -> None:
        self.world._power_off("cut")

    @precondition(lambda self: not self.world.powered)
    @rule()
    def restore_power(self) -> None:
        self.world._power_on(None)

    @rule(
        kind=st.sampled_from(["drop", "delay", "duplicate"]),
        direction=st.sampled_from(["to_host", "to_terminal"]),
    )
    def fault_next_message(self, kind: str, direction: str) -> None:
        params: dict[str, Any] = {"direction": direction, "nth": 1}
        if kind == "delay":
            params["delay_ms"] = 20_000
        self._arm(kind, params)

    @rule()
    def forge_next_answer(self) -> None:
        self._arm("forge", {"nth": 1})

    @rule(field=st.sampled_from(["amount", "mac", "rc"]))
    def corrupt_next_answer(self, field: str) -> None:
        self._arm("corrupt", {"direction": "to_terminal", "nth": 1, "field": field})

    @rule()
    def jam_printer(self) -> None:
        self._arm("printer_jam", {"nth": 1})

    @rule()
    def reprint(self) -> None:
        self.world._input_if_on(ReprintRequested())

    @rule()
    def close_batch(self) -> None:
        self.world._input_if_on(BatchCloseRequested())

    @rule(ms=st.sampled_from([100, 1_000, 5_000, 16_000, 40_000, ADVANCE_MS_MAX]))
    def advance_time(self, ms: int) -> None:
        self._run_for(ms)

    # ---------------------------------------------------------------- checks

    @invariant()
    def safety_always_holds(self) -> None:
        broken = self._violations(ALWAYS)
        if broken:
            raise InvariantBroken(f"{broken[0].invariant}: {broken[0].message}")

    @invariant()
    def everything_holds_when_quiet(self) -> None:
        if not self._quiet() or not self.world.powered:
            return
        names = tuple(n for n in INVARIANT_NAMES if n not in ALWAYS and n != "eventually-settles")
        broken = self._violations(names)
        if broken:
            raise InvariantBroken(f"{broken[0].invariant}: {broken[0].message}")

    def teardown(self) -> None:
        # Heal: power back, let everything settle, then every invariant must hold.
        try:
            if not self.world.powered:
                self.world._power_on(None)
            self._run_for(ADVANCE_MS_MAX * 30)
            if self._quiet():
                broken = self._violations(
                    tuple(n for n in INVARIANT_NAMES if n != "eventually-settles")
                )
                if broken:
                    raise InvariantBroken(
                        f"after healing, {broken[0].invariant}: {broken[0].message}"
                    )
        finally:
            self.world.host.close()


def machine_for(firmware: str) -> type[PosWorldMachine]:
    """A state machine class for `firmware` (reference, zoo:NAME, module:Class or
    exec:COMMAND)."""
    load_firmware(firmware)  # fail early on a bad spec
    name = "Machine_" + "".join(c if c.isalnum() else "_" for c in firmware)
    return type(name, (PosWorldMachine,), {"firmware": firmware})
