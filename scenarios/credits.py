"""The cashier's steps that name an earlier sale (issue 15): void, refund, complete (a
pre-authorisation) and tip, kept out of scenarios/loader.py.

A step names the earlier sale it voids or refunds by its place among the scenario's
payment steps: `sale = 2` is the second purchase (or scan, or preauth) step of the run,
in time order. A `complete` step names a `preauth` step and captures `amount` of its
hold (left out: the whole hold); a `tip` step names a `purchase` step, or a `preauth`
step whose completion gets the tip, and sets its tip to `amount`. A refund gives back
`amount` (minor units; left out: the whole sale). In a world
of several terminals a step names a sale of its own terminal: `sale = 2` is the second
payment step of the step's terminal (the host refunds a sale only at the terminal that
made it; a refund elsewhere names no sale and is refused).

    [[steps]]
    at_ms = 60000
    void = { sale = 1 }

    [[steps]]
    at_ms = 90000
    refund = { sale = 2, amount = 1500 }

    [[steps]]
    at_ms = 120000
    complete = { sale = 3, amount = 18000 }

    [[steps]]
    at_ms = 150000
    tip = { sale = 3, amount = 2000 }
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from scenarios.model import PAYMENT_ACTIONS, ScenarioError, Step

CREDIT_ACTIONS = ("void", "refund", "complete", "tip")
# Largest refund a step may ask for (the largest sale amount on the wire).
REFUND_AMOUNT_MAX = 999_999_999_999


def credit_step(where: str, at_ms: int, table: dict[str, Any], action: str) -> Step:
    """A `void = { sale = N }`, `refund = { sale = N, amount = A }`, `complete = { sale =
    N, amount = A }` or `tip = { sale = N, amount = T }` step."""
    here = f"{where}.{action}"
    p = table[action]
    if not isinstance(p, dict):
        raise ScenarioError(f"{here}: expected a table, got {type(p).__name__}")
    known = ("sale",) if action == "void" else ("sale", "amount")
    for key in p:
        if key not in known:
            raise ScenarioError(f"{here}.{key}: unknown key (known: {', '.join(known)})")
    if action == "tip" and "amount" not in p:
        raise ScenarioError(f"{here}.amount: missing (the tip, in minor units)")
    if "sale" not in p:
        raise ScenarioError(f"{here}.sale: missing")
    sale = p["sale"]
    if type(sale) is not int or sale < 1:
        raise ScenarioError(f"{here}.sale: must be a positive integer, got {sale!r}")
    amount = p.get("amount", 0)
    if type(amount) is not int or not 0 <= amount <= REFUND_AMOUNT_MAX:
        raise ScenarioError(
            f"{here}.amount: must be an integer between 0 and {REFUND_AMOUNT_MAX}, got {amount!r}"
        )
    return Step(at_ms=at_ms, action=action, amount=amount, sale=sale)


def check_credit_steps(steps: Sequence[Step], first: str = "", several: bool = False) -> None:
    """Each void, refund, completion or tip must name a payment step that comes before
    it, at its own terminal (`first`: the terminal of a step that names none; `several`:
    a world of several terminals, named in the message)."""
    payments: dict[str, list[str]] = {}
    for i, s in enumerate(steps):
        lane = s.terminal or first
        if s.action in PAYMENT_ACTIONS:
            payments.setdefault(lane, []).append(s.action)
        elif s.action in CREDIT_ACTIONS:
            named = payments.get(lane, [])
            if s.sale > len(named):
                at = f" at terminal {lane}" if several else ""
                raise ScenarioError(
                    f"steps[{i}].{s.action}.sale: names payment {s.sale}, but only "
                    f"{len(named)} payment step(s){at} come before it (at_ms {s.at_ms}); "
                    f"a {s.action} names a sale of its own terminal"
                )
            _check_named_kind(i, s, named[s.sale - 1])


def _check_named_kind(i: int, s: Step, kind: str) -> None:
    """A completion names a preauth step; a tip a card sale (purchase or preauth)."""
    if s.action == "complete" and kind != "preauth":
        raise ScenarioError(
            f"steps[{i}].complete.sale: names payment {s.sale}, a {kind} step; "
            "a completion names a preauth step"
        )
    if s.action == "tip" and kind == "scan":
        raise ScenarioError(
            f"steps[{i}].tip.sale: names payment {s.sale}, a wallet scan; a tip names a "
            "purchase or a preauth step"
        )


def credit_step_to_dict(s: Step) -> dict[str, Any]:
    """A void, refund, complete or tip step as scenario-file data."""
    body: dict[str, Any] = {"sale": s.sale}
    if s.action == "tip" or (s.action in ("refund", "complete") and s.amount):
        body["amount"] = s.amount
    out: dict[str, Any] = {"at_ms": s.at_ms}
    if s.terminal:
        out["terminal"] = s.terminal
    out[s.action] = body
    return out


def without_step(steps: Sequence[Step], i: int, first: str = "") -> tuple[Step, ...]:
    """`steps` without step `i`, still naming the same sales: when it is a payment step,
    the voids, refunds, completions and tips naming it go too, and those naming a later
    payment of its terminal are renumbered (`first`: the terminal of a step that names
    none). The fuzzer's shrinker removes steps this way."""
    gone = steps[i]
    out = [*steps[:i], *steps[i + 1 :]]
    if gone.action not in PAYMENT_ACTIONS:
        return tuple(out)
    lane = gone.terminal or first
    k = sum(1 for s in steps[:i] if s.action in PAYMENT_ACTIONS and (s.terminal or first) == lane)
    k += 1  # the removed payment's place among its terminal's payments
    kept = []
    for s in out:
        if s.action in CREDIT_ACTIONS and (s.terminal or first) == lane:
            if s.sale == k:
                continue
            if s.sale > k:
                s = replace(s, sale=s.sale - 1)
        kept.append(s)
    return tuple(kept)
