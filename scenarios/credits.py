"""The cashier's void and refund steps (issue 15), kept out of scenarios/loader.py.

A step names the earlier sale it voids or refunds by its place among the scenario's
payment steps: `sale = 2` is the second purchase (or scan) step of the run, in time
order. A refund gives back `amount` (minor units; left out: the whole sale). In a world
of several terminals a step names a sale of its own terminal: `sale = 2` is the second
payment step of the step's terminal (the host refunds a sale only at the terminal that
made it; a refund elsewhere names no sale and is refused).

    [[steps]]
    at_ms = 60000
    void = { sale = 1 }

    [[steps]]
    at_ms = 90000
    refund = { sale = 2, amount = 1500 }
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from scenarios.model import ScenarioError, Step

CREDIT_ACTIONS = ("void", "refund")
# Largest refund a step may ask for (the largest sale amount on the wire).
REFUND_AMOUNT_MAX = 999_999_999_999


def credit_step(where: str, at_ms: int, table: dict[str, Any], action: str) -> Step:
    """A `void = { sale = N }` or `refund = { sale = N, amount = A }` step."""
    here = f"{where}.{action}"
    p = table[action]
    if not isinstance(p, dict):
        raise ScenarioError(f"{here}: expected a table, got {type(p).__name__}")
    known = ("sale",) if action == "void" else ("sale", "amount")
    for key in p:
        if key not in known:
            raise ScenarioError(f"{here}.{key}: unknown key (known: {', '.join(known)})")
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
    """Each void or refund must name a payment step that comes before it, at its own
    terminal (`first`: the terminal of a step that names none; `several`: a world of
    several terminals, named in the message)."""
    payments: dict[str, int] = {}
    for i, s in enumerate(steps):
        lane = s.terminal or first
        if s.action in ("purchase", "scan"):
            payments[lane] = payments.get(lane, 0) + 1
        elif s.action in CREDIT_ACTIONS and s.sale > payments.get(lane, 0):
            at = f" at terminal {lane}" if several else ""
            raise ScenarioError(
                f"steps[{i}].{s.action}.sale: names payment {s.sale}, but only "
                f"{payments.get(lane, 0)} payment step(s){at} come before it (at_ms {s.at_ms}); "
                "a void or refund names a sale of its own terminal"
            )


def credit_step_to_dict(s: Step) -> dict[str, Any]:
    """A void or refund step as scenario-file data."""
    body: dict[str, Any] = {"sale": s.sale}
    if s.action == "refund" and s.amount:
        body["amount"] = s.amount
    out: dict[str, Any] = {"at_ms": s.at_ms}
    if s.terminal:
        out["terminal"] = s.terminal
    out[s.action] = body
    return out
