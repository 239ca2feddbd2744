"""The receipt invariants for voids and refunds (issue 15), beside harness/invariants/credits.py.

A credit receipt is a `print` whose receipt has status "voided" or "refunded" and
names the original sale (`orig_rrn`). The receipt failure classes hold for credits
as for sales:

* ``no-receipt-without-record``: every credit receipt printed matches a host credit
  of this terminal. A REFUNDED receipt names (`rrn`) an approved refund, for the
  amount printed, of the sale it names (`orig_rrn`); a VOIDED receipt names a sale
  the host reversed, for the amount printed. A receipt printed before the host
  answered, or for a refund it refused, names no such credit.
* ``receipt-for-every-charge``: every credit the terminal showed has its receipt
  once the run has come to rest: a sale shown VOIDED has a VOIDED receipt, and each
  approved host refund of a sale shown REFUNDED has a REFUNDED receipt with its RRN,
  printed or still shown pending (RECEIPT_PENDING naming its RRN). A pending credit
  receipt is owed across reboots like a sale's (harness/invariants/reboots.py).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from acquirer import refunds

from .model import Violation, money

if TYPE_CHECKING:
    from acquirer.host import Acquirer

    from .credits import CreditObs

CREDIT_STATUSES = ("voided", "refunded")
# Credit receipts and pending RRNs remembered (the oldest are forgotten first).
CREDIT_RECEIPTS_KEPT_MAX = 10_000


class CreditReceiptObs:
    """The credit receipts a run printed, and the RRNs shown with a receipt pending."""

    def __init__(self) -> None:
        self.printed: deque[tuple[int, dict[str, Any]]] = deque(maxlen=CREDIT_RECEIPTS_KEPT_MAX)
        self.printed_rrns: dict[tuple[str, str], int] = {}  # (status, rrn) -> first seq
        self.pending: dict[str, int] = {}  # rrn -> last RECEIPT_PENDING display seq

    def receipt(self, seq: int, receipt: dict[str, Any]) -> None:
        self.printed.append((seq, receipt))
        key = (str(receipt.get("status", "")), str(receipt.get("rrn", "")))
        if key not in self.printed_rrns:
            if len(self.printed_rrns) >= CREDIT_RECEIPTS_KEPT_MAX:
                del self.printed_rrns[next(iter(self.printed_rrns))]
            self.printed_rrns[key] = seq

    def shown_pending(self, rrn: str, seq: int) -> None:
        if rrn not in self.pending and len(self.pending) >= CREDIT_RECEIPTS_KEPT_MAX:
            del self.pending[next(iter(self.pending))]
        self.pending[rrn] = seq

    def has(self, status: str, rrn: str) -> bool:
        return (status, rrn) in self.printed_rrns or rrn in self.pending


def judge_credit_receipts(
    credits: CreditObs, host: Acquirer, terminal_id: str, quiet: bool
) -> list[Violation]:
    """Both credit receipt invariants (see the module doc)."""
    out: list[Violation] = []
    for seq, receipt in credits.slips.printed:
        problem = _unbacked(host, terminal_id, receipt)
        if problem:
            s = credits.sales.get(str(receipt.get("orig_rrn", "")))
            orig = receipt.get("orig_rrn") or "none"
            out.append(
                Violation(
                    "no-receipt-without-record",
                    f"a {str(receipt.get('status')).upper()} receipt for "
                    f"{money(int(receipt.get('amount', 0)))} (rrn {receipt.get('rrn') or 'none'}, "
                    f"sale rrn {orig}) was printed but {problem}.",
                    s.intent if s else 0,
                    tuple(r for r in (receipt.get("rrn"), receipt.get("orig_rrn")) if r),
                    (seq,),
                )
            )
    if quiet:
        out += _owed(credits, host)
    return out


def _unbacked(host: Acquirer, terminal_id: str, receipt: dict[str, Any]) -> str:
    """Why a credit receipt has no host credit behind it ("" when it has)."""
    rrn = str(receipt.get("rrn", ""))
    txn = host.transaction_by_rrn(rrn) if rrn else None
    if txn is None:
        return "the host has no such transaction"
    if txn.terminal_id != terminal_id:
        return f"the host holds rrn {rrn} for terminal {txn.terminal_id}"
    amount = receipt.get("amount", 0)
    orig = str(receipt.get("orig_rrn", ""))
    if receipt.get("status") == "voided":
        if txn.kind not in ("purchase", "preauth", "completion") or txn.status != "reversed":
            return f"the host's transaction is a {txn.status} {txn.kind}, not a reversed sale"
        if orig != rrn:
            return f"the voided sale is rrn {rrn}, not {orig or 'none'}"
    else:
        if txn.kind != "refund" or txn.status != "approved":
            return f"the host's transaction is a {txn.status} {txn.kind}, not an approved refund"
        sale_rrn = refunds.original_rrn(host, txn.id)
        if sale_rrn != orig:
            return f"the host's refund is of sale rrn {sale_rrn or 'none'}, not {orig or 'none'}"
    if txn.amount != amount:
        return f"the host's credit is {money(txn.amount)}"
    return ""


def _owed(credits: CreditObs, host: Acquirer) -> Iterable[Violation]:
    slips = credits.slips
    for rrn, s in credits.sales.items():
        if s.voided_seq and s.asked and not slips.has("voided", rrn):
            yield Violation(
                "receipt-for-every-charge",
                f"the terminal showed sale rrn {rrn} VOIDED but printed no VOIDED receipt "
                "and shows none as pending.",
                s.intent,
                (rrn,),
                (s.voided_seq,),
            )
        if not s.refunded_seq:
            continue
        sale = host.transaction_by_rrn(rrn)
        for refund_rrn, amount in refunds.refunds_of(host, sale.id) if sale else ():
            if not slips.has("refunded", refund_rrn):
                yield Violation(
                    "receipt-for-every-charge",
                    f"the terminal showed sale rrn {rrn} REFUNDED; the host's refund rrn "
                    f"{refund_rrn} of {money(amount)} has no REFUNDED receipt printed and "
                    "none is shown as pending.",
                    s.intent,
                    (rrn, refund_rrn),
                    (s.refunded_seq,),
                )
