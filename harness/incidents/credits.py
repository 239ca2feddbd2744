"""Infer stage (credits): the cashier's voids and refunds.

A terminal log shows the cashier's void or refund as a `key` line naming the sale
by its RRN (`{"event": "key", "key": "refund", "rrn": "000000000001", "amount": 3000}`,
`{"event": "key", "key": "void", "rrn": "000000000001"}`). The importer turns each
into a `void` / `refund` step naming the payment step whose approval showed that RRN:
a sale's, a pre-authorisation's (a void releases the hold), or, for a completed hold,
the completion's own RRN as its slip shows it (the step is the hold's: the cashier
names a completed hold by its completion).
"""

from scenarios.model import ScenarioError, Step

from .model import _Purchase
from .parse import Log

CREDIT_KEYS = ("void", "refund")
# A log naming more voids and refunds than this is not one incident.
CREDITS_MAX = 200


def sale_of_rrn(tlog: Log, purchases: list[_Purchase]) -> dict[str, int]:
    """RRN -> the sale's place among the payment steps (1-based), from the
    approved displays that follow each purchase's keyed amount; else from the approving
    answers it received (a chip card declined the approval: the host's charge, which
    the cashier may name, was never shown APPROVED)."""
    out: dict[str, int] = {}
    starts = [p.line for p in purchases]
    answers: list[tuple[str, int]] = []
    for e in tlog.entries:
        approving = e.event == "recv" and e.data["mti"] in ("0110", "0210")
        if approving and e.data.get("rc") == "00":
            answers.append((str(e.data.get("rrn", "")), e.line))
        if e.event != "display" or e.data["outcome"] != "approved":
            continue
        answers.append((str(e.data.get("rrn", "")), -e.line))
    # The displays first (their lines negated), then the answers.
    for rrn, line in sorted(answers, key=lambda a: (a[1] > 0, abs(a[1]))):
        before = [i for i, start in enumerate(starts) if start < abs(line)]
        if rrn and before and rrn not in out:
            out[rrn] = before[-1] + 1
    return out


def credit_steps(
    tlog: Log,
    origin: int,
    purchases: list[_Purchase],
    notes: list[str],
    sales: dict[str, int] | None = None,
) -> list[Step]:
    """The cashier's void and refund steps. A key naming no RRN, or an RRN no sale
    (or completion: `sales`, RRN -> payment step, else the approved sales) in the log
    was approved with, raises ScenarioError (one line)."""
    sales = sale_of_rrn(tlog, purchases) if sales is None else sales
    steps: list[Step] = []
    for e in tlog.entries:
        if e.event != "key" or e.data["key"] not in CREDIT_KEYS:
            continue
        where = f"{tlog.path}:{e.line}"
        action = str(e.data["key"])
        rrn = e.data.get("rrn")
        if not isinstance(rrn, str) or not rrn:
            raise ScenarioError(f"{where}: key {action!r} needs the sale's rrn (a string)")
        if rrn not in sales:
            raise ScenarioError(
                f"{where}: key {action!r} names rrn {rrn!r}, which no approved sale in the log has"
            )
        amount = 0
        if action == "refund":
            amount = e.data.get("amount", 0)
            if not isinstance(amount, int) or isinstance(amount, bool) or amount < 0:
                raise ScenarioError(f"{where}: refund amount must be an integer >= 0")
        if len(steps) >= CREDITS_MAX:
            raise ScenarioError(f"{where}: more than {CREDITS_MAX} voids and refunds")
        steps.append(Step(e.ts_ms - origin, action, amount=amount, sale=sales[rrn]))
        what = f"refund of {amount}" if action == "refund" else "void"
        notes.append(f"{where}: cashier's {what} of sale {sales[rrn]} (rrn {rrn}) [sure]")
    return steps
