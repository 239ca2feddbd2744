"""Long runs are judged incrementally (bounded memory) and reach the same verdicts."""

from __future__ import annotations

from pathlib import Path

import pytest

import faults
import harness.invariants as inv
import harness.world as world_mod
from harness.runner import run_scenario
from scenarios.model import INVARIANT_NAMES, CardSpec, Expect, Scenario, Step

PAN = "4000000000000002"


def long_scenario(purchases: int) -> Scenario:
    steps = []
    for i in range(purchases):
        steps.append(Step(at_ms=i * 3_000, action="purchase", card=PAN, amount=100 + i % 500))
        if i % 100 == 99:
            steps.append(Step(at_ms=i * 3_000 + 1_500, action="batch_close"))
    plan = [
        faults.build_fault("drop", {"direction": "to_terminal", "mti": "0210", "nth": n})
        for n in (5, 150, 290)
    ] + [faults.build_fault("printer_jam", {"nth": n}) for n in (20, 200)]
    return Scenario(
        name="long",
        seed=1,
        cards=(CardSpec(pan=PAN, balance=10**12),),
        steps=tuple(steps),
        faults=tuple(plan),
        expect=Expect(invariants=INVARIANT_NAMES),
    )


def verdicts(sc: Scenario, firmware: str) -> dict[str, list[tuple[int, str]]]:
    r = run_scenario(sc, firmware)
    return {k: sorted((v.intent, v.message) for v in vs) for k, vs in r.violations.items()}


@pytest.mark.parametrize("firmware", ["reference", "zoo:naive-retry", "zoo:float-amount"])
def test_incremental_judging_gives_the_same_verdicts(
    firmware: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sc = long_scenario(400)
    whole = verdicts(sc, firmware)  # 400 intents: never settles with the defaults
    monkeypatch.setattr(inv, "SETTLE_EVERY", 25)
    monkeypatch.setattr(inv, "HORIZON_MS", 60_000)
    monkeypatch.setattr(world_mod, "INTENTS_KEPT", 30)
    monkeypatch.setattr(world_mod, "ATTRIBUTION_WINDOW", 200)
    settled = verdicts(sc, firmware)
    assert settled == whole
    if firmware != "reference":
        assert any(whole.values())  # the flawed firmware was caught either way


def test_settling_forgets_judged_intents(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inv, "SETTLE_EVERY", 25)
    monkeypatch.setattr(inv, "HORIZON_MS", 60_000)
    obs_seen: list[inv.Observations] = []
    real = inv.Observations.__init__

    def spy(self: inv.Observations) -> None:
        real(self)
        obs_seen.append(self)

    monkeypatch.setattr(inv.Observations, "__init__", spy)
    r = run_scenario(long_scenario(400))
    assert r.passed and r.purchases == 400
    (obs,) = obs_seen
    assert len(obs.intents) < 60  # about one horizon's worth, not all 400
    assert len(obs.key_intent) < 60


def test_a_long_scenario_streams_its_steps_and_still_replays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past STEPS_INLINE_MAX the run header leaves the steps out (a load run would
    make it one huge line) and each step is traced as it runs; replay rebuilds it."""
    from harness.replay import replay
    from harness.trace import read_trace

    monkeypatch.setattr(world_mod, "STEPS_INLINE_MAX", 5)
    sc = long_scenario(30)
    r = run_scenario(sc, trace_path=tmp_path / "t.jsonl")
    assert r.trace_path is not None
    records = list(read_trace(r.trace_path))
    assert records[0]["steps_streamed"] == len(sc.steps)
    assert records[0]["scenario"]["steps"] == []
    assert sum(1 for rec in records if rec["kind"] == "step") == len(sc.steps)
    assert replay(r.trace_path, tmp_path / "again.jsonl").divergence is None
