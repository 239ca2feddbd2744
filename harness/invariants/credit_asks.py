"""Whether the cashier's voids and refunds are answered, and the valid ones carried out
(issue 15; the same rule as for completions and tips, harness/invariants/holds.py).

From the trace: what the cashier asked (`cashier` records "void" / "refund", with the
sale's RRN and amount, and `valid` when the harness knows the request can be carried
out) and what the terminal answered:

* at once, with the display that follows the ask in the same instant: a refusal (any
  display but a pending one, e.g. VOID REFUSED - NO SUCH SALE, which need not name the
  sale: it can only answer this ask), or a pending display (VOIDING, REFUNDING): the
  request is under way;
* later, for a request under way: a display naming the sale's RRN that is not pending:
  VOIDED / REFUNDED, or a refusal naming it (REFUND FAILED - NOT CREDITED, REFUND
  REFUSED - ..., REVERSAL NEEDS MANUAL HANDLING). A late answer must name the sale: a
  prompt naming none cannot say which of the requests under way it answers.

Both extend ``eventually-settles`` (liveness):

* once the run has come to rest, every void and refund the cashier asked has been
  answered (whatever the faults: a void or refund is journaled before anything is
  sent, so a power cut does not excuse forgetting it);
* in a run with no fault at all, a valid void or refund (the record says `valid`: the
  first credit asked of a live sale the terminal knows, the amount within it, the
  host's answer due well within the response timeout) asked
  while nothing stood in its way (no batch close under way; no other void or refund,
  completion or tip under way; for a void, the sale's receipt printed) is carried out:
  once the run has come to rest the terminal has shown the sale VOIDED or REFUNDED
  after the ask, and the host holds the credit (the sale reversed, or refunds of it
  totalling at least the amount asked). A terminal that refuses or gives up every
  refund is truthful with money but broken.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from acquirer import refunds
from harness.trace import Record

from .model import LIVENESS, Violation, money

if TYPE_CHECKING:
    from acquirer.host import Acquirer

# Voids and refunds remembered (the oldest are forgotten beyond this), and the sales
# whose receipt printed (for a void's "print the receipt first").
CREDIT_ASKS_MAX = 10_000
PRINTED_MAX = 10_000


@dataclass(slots=True)
class CreditAsk:
    """One void or refund the cashier asked."""

    action: str  # "void" / "refund"
    rrn: str  # the sale's
    intent: int
    amount: int
    seq: int
    t_ms: int
    owed: bool  # valid, and nothing in its way when asked
    under_way: bool = False  # answered at once with a pending display
    answer_seq: int = 0  # its answer (0: none yet)
    done_seq: int = 0  # VOIDED / REFUNDED naming the sale, after the ask (0: none)


class CreditAskObs:
    """The voids and refunds the cashier asked in one run, and their answers."""

    def __init__(self) -> None:
        self.asks: deque[CreditAsk] = deque()
        self.by_rrn: dict[str, list[CreditAsk]] = {}  # the same, by the sale's RRN
        self.unanswered = 0  # how many of them have no answer yet
        self.just_asked: CreditAsk | None = None  # waiting for the answer at once
        self.printed: dict[str, None] = {}  # RRNs with an ok print of their receipt

    def under_way(self) -> bool:
        """A void or refund asked and not answered yet."""
        return self.unanswered > 0

    def _answered(self, ask: CreditAsk, seq: int) -> None:
        if not ask.answer_seq:
            ask.answer_seq = seq
            self.unanswered -= 1

    def cashier(self, rec: Record, clear: bool) -> None:
        """A `cashier` record; `clear`: nothing stands in the way of the request (no
        fault so far, no batch close, completion or tip under way)."""
        action = rec["action"]
        rrn = rec.get("rrn", "")
        if action not in ("void", "refund") or not rrn:
            return
        owed = (
            clear
            and bool(rec.get("valid"))
            and not self.under_way()
            and (action == "refund" or rrn in self.printed)
        )
        ask = CreditAsk(
            action,
            rrn,
            int(rec.get("intent", 0)),
            int(rec.get("amount", 0)),
            rec["seq"],
            rec["t_ms"],
            owed,
        )
        while len(self.asks) >= CREDIT_ASKS_MAX:
            old = self.asks.popleft()
            self.unanswered -= not old.answer_seq
            same = self.by_rrn[old.rrn]
            same.remove(old)
            if not same:
                del self.by_rrn[old.rrn]
        self.asks.append(ask)
        self.by_rrn.setdefault(rrn, []).append(ask)
        self.unanswered += 1
        if self.just_asked is not None:
            # Asked before with no display since (a power cut right after it): an
            # answer naming the sale must follow.
            self.just_asked.under_way = True
        self.just_asked = ask

    def print_ok(self, rrn: str) -> None:
        if rrn and rrn not in self.printed:
            while len(self.printed) >= PRINTED_MAX:
                del self.printed[next(iter(self.printed))]
            self.printed[rrn] = None

    def display(self, rec: Record) -> None:
        """Every display (see the module doc)."""
        outcome = rec["outcome"]
        ask, self.just_asked = self.just_asked, None
        if ask is not None and rec["t_ms"] == ask.t_ms and rec["seq"] > ask.seq:
            if outcome == "pending":
                ask.under_way = True
                return
            self._answered(ask, rec["seq"])  # a refusal (or done at once)
        elif ask is not None:
            ask.under_way = True  # no answer at once: one naming the sale must follow
        rrn = rec.get("rrn", "")
        if not rrn or outcome == "pending":
            return
        for a in self.by_rrn.get(rrn, ()):
            if a.under_way:
                self._answered(a, rec["seq"])
            if outcome in ("voided", "refunded") and not a.done_seq:
                a.done_seq = rec["seq"]


def judge_credit_asks(
    obs: CreditAskObs, host: Acquirer, quiet: bool, faultless: bool
) -> Iterable[Violation]:
    """The `eventually-settles` parts of the module doc, once the run has come to rest."""
    if not quiet:
        return
    for a in obs.asks:
        what = f"{a.action} sale rrn {a.rrn}"
        if a.action == "refund":
            what = f"refund {money(a.amount)} of sale rrn {a.rrn}"
        if not a.answer_seq:
            yield Violation(
                "eventually-settles",
                f"the cashier asked to {what} and the terminal never answered (VOIDED / "
                "REFUNDED, a refusal at once, or a later display naming the sale) by the "
                "time the run came to rest: the cashier cannot know what became of it.",
                a.intent,
                (a.rrn,),
                (a.seq,),
                klass=LIVENESS,
            )
        if faultless and a.owed and not _carried_out(host, a):
            yield Violation(
                "eventually-settles",
                f"the cashier asked to {what}, a valid request, in a run with no fault and "
                "nothing else under way, and "
                + (
                    "the host holds no such credit"
                    if a.done_seq
                    else "the terminal never showed it VOIDED or REFUNDED"
                )
                + ": the final state is not the truthful one.",
                a.intent,
                (a.rrn,),
                (a.seq, *((a.answer_seq,) if a.answer_seq else ())),
                klass=LIVENESS,
            )


def _carried_out(host: Acquirer, a: CreditAsk) -> bool:
    """Shown VOIDED or REFUNDED after the ask, and the credit booked at the host."""
    sale = host.transaction_by_rrn(a.rrn)
    if not a.done_seq or sale is None:
        return False
    return sale.status == "reversed" or refunds.refunded(host, sale.id) >= a.amount
