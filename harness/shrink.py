"""Shrinking a fuzz failure to a minimal, readable scenario (moved out of
harness/fuzz.py): remove steps, faults and terminals while the scenario still breaks
the invariant, renumbering the faults that count items; then round times, drop
unused cards and the seed, and turn a fault that never applied into what it set off.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from faults.attacker import DeviceSwap
from faults.base import Fault
from scenarios.credits import without_step
from scenarios.model import Scenario, Step

from .check import first_failure
from .lanes import fewer_terminals
from .runner import run_scenario


def _still_fails(sc: Scenario, invariant: str, firmware: str) -> bool:
    result = run_scenario(sc, firmware)
    failure = first_failure(result)
    return failure is not None and failure[0] == invariant


def _round_ms(value: int) -> list[int]:
    out = []
    for unit in (10_000, 1_000, 100):
        r = round(value / unit) * unit
        if r != value and r not in out:
            out.append(r)
    return out


# Renumbering tried per removal: at most this many variants of the plan's `nth`s.
RENUMBER_VARIANTS_MAX = 64


def renumbered(plan: tuple[Fault, ...]) -> list[tuple[Fault, ...]]:
    """`plan` with the `nth` of its faults lowered, fewest and smallest changes
    first: after a step (or fault) is removed, "the 2nd 0210" may have become the
    1st. The unchanged plan comes first."""
    movable = [i for i, f in enumerate(plan) if f.nth > 1]
    shifts: list[tuple[int, ...]] = [()]
    for i in movable:
        shifts = [(*d, k) for d in shifts for k in range(plan[i].nth)]
    shifts.sort(key=lambda d: (sum(1 for k in d if k), sum(d)))
    out: list[tuple[Fault, ...]] = []
    for d in shifts[:RENUMBER_VARIANTS_MAX]:
        faults = list(plan)
        for i, k in zip(movable, d, strict=True):
            if k:
                faults[i] = dataclasses.replace(faults[i], nth=faults[i].nth - k)
        out.append(tuple(faults))
    return out


def removals(sc: Scenario) -> list[Scenario]:
    """Every scenario with one terminal (`fewer_terminals`), one step or one fault
    fewer, each with the plan's `nth`s
    renumbered every way `renumbered` tries (a scenario keeps at least one step)."""
    out: list[Scenario] = fewer_terminals(sc)
    if len(sc.steps) > 1:
        first = sc.lanes()[0].lane
        for i in range(len(sc.steps) - 1, -1, -1):
            # A payment goes with the steps naming it; later ones are renumbered.
            steps = without_step(sc.steps, i, first)
            out.extend(
                dataclasses.replace(sc, steps=steps, faults=p) for p in renumbered(sc.faults)
            )
    for i in range(len(sc.faults) - 1, -1, -1):
        rest = sc.faults[:i] + sc.faults[i + 1 :]
        out.extend(dataclasses.replace(sc, faults=p) for p in renumbered(rest))
    return out


def minimise(sc: Scenario, invariant: str, firmware: str) -> Scenario:
    """Remove steps and faults, renumbering the faults' `nth`, while the scenario
    still breaks `invariant`; then lower each remaining `nth` as far as it goes.
    The result is minimal: no single removal in `removals` still fails."""
    # Each pass removes one item or ends the loop: bounded by the scenario's size.
    for _ in range(len(sc.steps) + len(sc.faults) + len(sc.terminals)):
        for cand in removals(sc):
            if _still_fails(cand, invariant, firmware):
                sc = cand
                break
        else:
            break
    for i, f in enumerate(sc.faults):
        for nth in range(1, f.nth):
            faults = (*sc.faults[:i], dataclasses.replace(f, nth=nth), *sc.faults[i + 1 :])
            cand = dataclasses.replace(sc, faults=faults)
            if _still_fails(cand, invariant, firmware):
                sc = cand
                break
    return sc


def tidy(sc: Scenario, invariant: str, firmware: str) -> Scenario:
    """Make a shrunk scenario read well without changing what it shows: drop what
    is not needed (renumbering the faults that count items), round times, drop
    unused cards and seeds."""
    sc = minimal = minimise(sc, invariant, firmware)
    # Round step times.
    steps = list(sc.steps)
    for i, step in enumerate(steps):
        for r in _round_ms(step.at_ms):
            trial = [*steps[:i], dataclasses.replace(step, at_ms=max(0, r)), *steps[i + 1 :]]
            trial.sort(key=lambda s: s.at_ms)
            cand = dataclasses.replace(sc, steps=tuple(trial))
            if _still_fails(cand, invariant, firmware):
                sc, steps = cand, trial
                break
    # Round the faults' millisecond parameters.
    plan = list(sc.faults)
    for i, f in enumerate(plan):
        for fld in dataclasses.fields(f):
            if not fld.name.endswith("_ms"):
                continue
            value = getattr(f, fld.name)
            if not isinstance(value, int) or value <= 0:
                continue
            for r in _round_ms(value):
                try:
                    change: dict[str, Any] = {fld.name: r}
                    nf: Fault = dataclasses.replace(f, **change)
                    nf.check()
                except Exception:
                    continue
                cand = dataclasses.replace(sc, faults=tuple([*plan[:i], nf, *plan[i + 1 :]]))
                if _still_fails(cand, invariant, firmware):
                    sc, plan, f = cand, [*plan[:i], nf, *plan[i + 1 :]], nf
                    break
    # Cards nobody uses, and a seed of 0 when the seed does not matter.
    used = {s.card for s in sc.steps}
    cand = dataclasses.replace(sc, cards=tuple(c for c in sc.cards if c.pan in used))
    if _still_fails(cand, invariant, firmware):
        sc = cand
    if sc.seed:
        cand = dataclasses.replace(sc, seed=0)
        if _still_fails(cand, invariant, firmware):
            sc = cand
    if sc is not minimal:
        # Rounded times can make a step removable (two sales at one time, say): minimal
        # again.
        sc = minimise(sc, invariant, firmware)
    return _no_idle_faults(sc, invariant, firmware)


def _idle_faults(sc: Scenario, firmware: str) -> list[int]:
    """The plan indexes of the faults that never applied in a run of `sc`."""
    applied: set[int] = set()

    def seen(rec: dict[str, Any]) -> None:
        if rec["kind"] == "fault":
            applied.add(rec["index"])

    run_scenario(sc, firmware, observers=[seen])
    return [i for i, f in enumerate(sc.faults) if i not in applied and not f.optional]


def _no_idle_faults(sc: Scenario, invariant: str, firmware: str) -> Scenario:
    """A minimal scenario may need a fault that never applies for what it sets off
    on the way: a device swap asks for a batch close, and the swap itself waits for a
    clean close that never comes. Such a swap becomes the `batch_close` step it
    amounted to when that still fails; any other idle fault is marked optional, so
    the file does not fail for it being idle (on the flawed firmware or the fixed).
    Every device swap kept is marked optional too."""
    for i in reversed(_idle_faults(sc, firmware)):
        f = sc.faults[i]
        if isinstance(f, DeviceSwap):
            steps = sorted((*sc.steps, Step(at_ms=f.at_ms, action="batch_close")), key=_at)
            cand = dataclasses.replace(
                sc, steps=tuple(steps), faults=sc.faults[:i] + sc.faults[i + 1 :]
            )
            if _still_fails(cand, invariant, firmware):
                sc = cand
                continue
        optional = dataclasses.replace(f, optional=True)
        sc = dataclasses.replace(sc, faults=(*sc.faults[:i], optional, *sc.faults[i + 1 :]))
    # A swap that did apply waited for a clean batch close, which a fixed firmware
    # (one that keeps what is still owed in its journal) may never give: the file
    # must not fail the fix for the swap being idle.
    swaps_optional = tuple(
        dataclasses.replace(f, optional=True) if isinstance(f, DeviceSwap) else f for f in sc.faults
    )
    return dataclasses.replace(sc, faults=swaps_optional)


def _at(step: Step) -> int:
    return step.at_ms
