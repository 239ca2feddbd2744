"""`terminal run`'s voids and refunds (issue 15): script lines `VOID N` and
`REFUND N [AMOUNT]`, and a scenario's `void` / `refund` steps, name the N-th payment
(purchase or SCAN line) of the run; the terminal gets `VoidRequested(rrn)` /
`RefundRequested(rrn, amount)` with the RRN that payment was approved under (a refund
without AMOUNT gives back the whole sale). One JSON line reports what the terminal
showed: `{"void": N, "outcome": "voided", "rrn": ..., "amount": ...}`, or the refusal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from terminal.firmware import Display, Outcome, RefundRequested, VoidRequested

if TYPE_CHECKING:
    from .terminal_driver import Intent, TerminalDriver

CREDIT_WORDS = ("VOID", "REFUND")


@dataclass(frozen=True, slots=True)
class Credit:
    """The cashier voids (`action` "void") or refunds payment `sale` (1 = the first)."""

    action: str
    sale: int
    amount: int = 0  # a refund's amount; 0 = the whole sale


def parse_credit(n: int, parts: list[str], line: str) -> Credit:
    """A `VOID N` or `REFUND N [AMOUNT]` line (ValueError naming line `n` if not)."""
    word = parts[0]
    nums = parts[1:]
    longest = 1 if word == "VOID" else 2
    if not 1 <= len(nums) <= longest or not all(p.isdigit() for p in nums) or int(nums[0]) < 1:
        raise ValueError(f"line {n}: expected VOID N or REFUND N [AMOUNT], got {line!r}")
    return Credit(word.lower(), int(nums[0]), int(nums[1]) if len(nums) > 1 else 0)


async def drive_credit(driver: TerminalDriver, credit: Credit, paid: list[Intent]) -> None:
    """Hand the cashier's void or refund to the terminal; print what it showed."""
    out: dict[str, object] = {credit.action: credit.sale}
    intent = paid[credit.sale - 1] if credit.sale <= len(paid) else None
    if intent is None or intent.outcome != "approved" or not intent.rrn:
        print(json.dumps(out | {"skipped": "no approved payment with that number"}), flush=True)
        return
    seen = len(driver.displays)
    if credit.action == "void":
        await driver.request(VoidRequested(intent.rrn))
    else:
        await driver.request(RefundRequested(intent.rrn, credit.amount or intent.amount))
    shown: list[Display] = driver.displays[seen:]
    done = [d for d in shown if d.outcome in (Outcome.VOIDED, Outcome.REFUNDED)]
    last = done[-1] if done else (shown[-1] if shown else Display(Outcome.PROMPT, ""))
    out |= {"outcome": last.outcome.value, "text": last.text, "rrn": intent.rrn}
    if last.amount:
        out["amount"] = last.amount
    print(json.dumps(out), flush=True)
