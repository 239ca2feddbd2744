"""What the invariants know of the cashier's voids and refunds (issue 15).

From the trace: what the cashier asked for (`cashier` records "void" / "refund", with
the sale's RRN and amount) and what the terminal showed done (VOIDED / REFUNDED
displays naming the sale's RRN). From the host: each sale's status and the approved
refunds linked to it (`acquirer.refunds.refund_links`).

* ``no-over-credit`` (new): the credits to a card for one sale (its approved refunds,
  plus the whole sale when it was reversed) never exceed the sale; and its refunds
  never exceed what the cashier asked to give back (a void asks for the whole sale, a
  refund for its amount): a refund retried under a new key is credited twice.
* ``approved-means-charged`` (extended): a sale shown VOIDED is reversed at the host,
  and a sale shown REFUNDED has approved refunds at the host of at least the amounts
  shown.
* ``no-charge-on-failure`` (extended, the other way round): once the run has come to
  rest, the host holds no refund of a sale beyond what the terminal showed REFUNDED.

A sale the cashier asked to void counts, for the other invariants, as the approved
charge it was (its receipt was right when printed, its APPROVED display was true),
whether the terminal showed it VOIDED or never learnt the reversal's outcome.

The receipts of voids and refunds are judged in harness/invariants/credit_receipts.py
(`no-receipt-without-record`, `receipt-for-every-charge`).
"""

from __future__ import annotations

from collections.abc import Container, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from acquirer import refunds
from harness.trace import Record

from .credit_receipts import CreditReceiptObs, judge_credit_receipts
from .model import Violation, money

if TYPE_CHECKING:
    from acquirer.host import Acquirer, HostTxn

# Sales with a void or refund remembered (the oldest are forgotten beyond this).
CREDIT_SALES_MAX = 10_000


@dataclass(slots=True)
class SaleCredits:
    """One sale the cashier voided or refunded, by its RRN."""

    asked: int = 0  # the most the cashier asked to give back (a void: the whole sale)
    ask_seqs: list[int] = field(default_factory=list)
    void_asked: bool = False  # the cashier asked to void it
    voided_seq: int = 0  # the first VOIDED display naming it (0: none)
    refunded: int = 0  # what REFUNDED displays naming it add up to
    refunded_seq: int = 0
    intent: int = 0


class CreditObs:
    """The voids and refunds of one run, as the trace shows them."""

    def __init__(self) -> None:
        self.sales: dict[str, SaleCredits] = {}
        self.slips = CreditReceiptObs()  # their receipts (credit_receipts.py)

    def _sale(self, rrn: str) -> SaleCredits:
        s = self.sales.get(rrn)
        if s is None:
            while len(self.sales) >= CREDIT_SALES_MAX:
                del self.sales[next(iter(self.sales))]
            s = self.sales[rrn] = SaleCredits()
        return s

    def cashier(self, rec: Record, approved: bool) -> None:
        """A cashier record; `approved`: the sale's customer was last shown APPROVED."""
        if rec["action"] not in ("void", "refund") or not rec.get("rrn"):
            return
        s = self._sale(rec["rrn"])
        s.asked += int(rec.get("amount", 0))
        # Only a void of a sale the customer was told was approved excuses its
        # reversal: a terminal reversing a sale it showed DECLINED (a chip decline)
        # must not be excused by a void the cashier asked for afterwards.
        s.void_asked = s.void_asked or (rec["action"] == "void" and approved)
        s.intent = int(rec.get("intent", 0))
        if len(s.ask_seqs) < 8:
            s.ask_seqs.append(rec["seq"])

    def display(self, rec: Record) -> None:
        rrn = rec.get("rrn", "")
        if not rrn:
            return
        s = self._sale(rrn)
        if rec["outcome"] == "voided":
            s.voided_seq = s.voided_seq or rec["seq"]
        else:
            s.refunded += int(rec.get("amount", 0))
            s.refunded_seq = s.refunded_seq or rec["seq"]

    def void_asked(self, rrn: str) -> bool:
        """The cashier asked to void sale `rrn` while it stood APPROVED: its reversal at
        the host is what was asked for, whether the terminal showed it VOIDED or could
        not learn the outcome (the reversal's answers lost, left to manual handling)."""
        s = self.sales.get(rrn)
        return s is not None and s.void_asked


def judge_credits(
    credits: CreditObs,
    host: Acquirer,
    terminal_id: str,
    quiet: bool,
    own: Container[str] | None = None,
) -> list[Violation]:
    """The void and refund invariants over the whole run (see the module doc). In a
    world of several terminals `own` holds the RRNs of this device's own charges: a
    clone's sales, under the same terminal id, are judged at the clone."""
    refunded: dict[int, int] = {}
    out: list[Violation] = []
    for sale, total in refunds.refunded_by_sale(host):
        refunded[sale.id] = total
        if sale.terminal_id != terminal_id:
            continue
        if own is not None and sale.rrn not in own and sale.rrn not in credits.sales:
            continue  # another device's sale, under the same terminal id
        out += _over_credit(credits.sales.get(sale.rrn), sale, total)
        shown = credits.sales.get(sale.rrn)
        if quiet and total > (shown.refunded if shown else 0):
            out.append(
                Violation(
                    "no-charge-on-failure",
                    f"the host refunded {money(total)} of sale rrn {sale.rrn} but the terminal "
                    f"showed {money(shown.refunded if shown else 0)} REFUNDED: the card was "
                    "credited without the cashier being told.",
                    shown.intent if shown else 0,
                    (sale.rrn,),
                    tuple(shown.ask_seqs) if shown else (),
                )
            )
    for rrn, s in credits.sales.items():
        out += _shown_booked(host, rrn, s, refunded)
    return out + judge_credit_receipts(credits, host, terminal_id, quiet)


def _over_credit(s: SaleCredits | None, sale: HostTxn, total: int) -> Iterable[Violation]:
    back = total + (sale.amount if sale.status == "reversed" else 0)
    intent = s.intent if s else 0
    seqs = tuple(s.ask_seqs) if s else ()
    if back > sale.amount:
        how = "refunds and its reversal" if sale.status == "reversed" else "refunds"
        yield Violation(
            "no-over-credit",
            f"sale rrn {sale.rrn} of {money(sale.amount)} was credited back "
            f"{money(back)} ({how}): more than the sale.",
            intent,
            (sale.rrn,),
            seqs,
        )
    elif total > (s.asked if s else 0):
        yield Violation(
            "no-over-credit",
            f"the cashier asked to give back {money(s.asked if s else 0)} of sale rrn "
            f"{sale.rrn}, but the host refunded {money(total)}: a refund was credited twice.",
            intent,
            (sale.rrn,),
            seqs,
        )


def _shown_booked(
    host: Acquirer, rrn: str, s: SaleCredits, refunded: dict[int, int]
) -> Iterable[Violation]:
    sale = host.transaction_by_rrn(rrn)
    if s.voided_seq and (sale is None or sale.status != "reversed"):
        state = "unknown" if sale is None else sale.status
        if sale is not None and sale.batch_no:
            state += f", settled in batch {sale.batch_no}"
        yield Violation(
            "approved-means-charged",
            f"the terminal showed sale rrn {rrn} VOIDED but the host's transaction is "
            f"{state}: the customer was not given the money back.",
            s.intent,
            (rrn,),
            (s.voided_seq,),
        )
    done = refunded.get(sale.id, 0) if sale is not None else 0
    if s.refunded and done < s.refunded:
        yield Violation(
            "approved-means-charged",
            f"the terminal showed {money(s.refunded)} of sale rrn {rrn} REFUNDED but the "
            f"host refunded {money(done)}.",
            s.intent,
            (rrn,),
            (s.refunded_seq,),
        )
