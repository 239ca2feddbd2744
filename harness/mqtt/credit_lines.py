"""`terminal run`'s voids, refunds, completions and tips (issue 15): script lines
`VOID N`, `REFUND N [AMOUNT]`, `COMPLETE N [AMOUNT]` and `TIP N TIP`, and a scenario's
`void` / `refund` / `complete` / `tip` steps, name the N-th payment (purchase, SCAN or
PREAUTH line) of the run; the terminal gets `VoidRequested(rrn)`,
`RefundRequested(rrn, amount)`, `CompletionRequested(rrn, amount)` or
`TipAdjustRequested(rrn, tip)` with the RRN that payment was approved under (a refund
without AMOUNT gives back the whole sale, a completion without AMOUNT captures the whole
hold; a tip on a pre-authorisation goes on its completion). One JSON line reports what
the terminal showed: `{"void": N, "outcome": "voided", "rrn": ..., "amount": ...}`, or
the refusal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from terminal.firmware import (
    CompletionRequested,
    Display,
    Event,
    Outcome,
    RefundRequested,
    TipAdjustRequested,
    VoidRequested,
)

if TYPE_CHECKING:
    from .terminal_driver import Intent, TerminalDriver

CREDIT_WORDS = ("VOID", "REFUND", "COMPLETE", "TIP")
_DONE = (Outcome.VOIDED, Outcome.REFUNDED, Outcome.COMPLETED, Outcome.TIP_ADDED)


@dataclass(frozen=True, slots=True)
class Credit:
    """The cashier voids (`action` "void"), refunds, completes or tips payment `sale`
    (1 = the first)."""

    action: str
    sale: int
    amount: int = 0  # a refund's or completion's amount (0 = all of it), a tip


def parse_credit(n: int, parts: list[str], line: str) -> Credit:
    """A `VOID N`, `REFUND N [AMOUNT]`, `COMPLETE N [AMOUNT]` or `TIP N TIP` line
    (ValueError naming line `n` if not)."""
    word = parts[0]
    nums = parts[1:]
    longest = 1 if word == "VOID" else 2
    shortest = 2 if word == "TIP" else 1
    ok = shortest <= len(nums) <= longest and all(p.isdigit() for p in nums)
    if not ok or int(nums[0]) < 1:
        raise ValueError(
            f"line {n}: expected VOID N, REFUND N [AMOUNT], COMPLETE N [AMOUNT] or TIP N TIP, "
            f"got {line!r}"
        )
    return Credit(word.lower(), int(nums[0]), int(nums[1]) if len(nums) > 1 else 0)


async def drive_credit(driver: TerminalDriver, credit: Credit, paid: list[Intent]) -> None:
    """Hand the cashier's void or refund to the terminal; print what it showed."""
    out: dict[str, object] = {credit.action: credit.sale}
    intent = paid[credit.sale - 1] if credit.sale <= len(paid) else None
    if intent is None or intent.outcome != "approved" or not intent.rrn:
        print(json.dumps(out | {"skipped": "no approved payment with that number"}), flush=True)
        return
    seen = len(driver.displays)
    await driver.request(_request(credit, intent.rrn, intent.amount))
    shown: list[Display] = driver.displays[seen:]
    done = [d for d in shown if d.outcome in _DONE]
    last = done[-1] if done else (shown[-1] if shown else Display(Outcome.PROMPT, ""))
    out |= {"outcome": last.outcome.value, "text": last.text, "rrn": intent.rrn}
    if last.amount:
        out["amount"] = last.amount
    print(json.dumps(out), flush=True)


def _request(credit: Credit, rrn: str, amount: int) -> Event:
    """The cashier's request to the terminal for `credit` of the payment `rrn`."""
    if credit.action == "void":
        return VoidRequested(rrn)
    if credit.action == "refund":
        return RefundRequested(rrn, credit.amount or amount)
    if credit.action == "complete":
        return CompletionRequested(rrn, credit.amount or amount)
    return TipAdjustRequested(rrn, credit.amount)
