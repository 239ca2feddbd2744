"""Judge the logs (credits and offline sales): what the cashier's refunds and the
terminal's offline uploads show broken, before any replay.

* `no-over-credit`: the host credited a sale more than the cashier asked to give
  back (the `refund` keys naming its RRN; a `void` asks for all of it, its total as
  it stands: a tip included). A completion is credited as a sale, by its own RRN.
* `no-charge-on-failure`: the host credited a sale more than the terminal showed
  REFUNDED for it (a refund shown REFUNDED is the amount its key asked for).
* `receipt-for-every-charge`: each host refund of a sale the terminal showed REFUNDED
  has a REFUNDED receipt naming the refund's RRN, printed or shown pending.
A refund's credit belongs to the sale its 0200 named by `orig_key`; a refund the host
reversed afterwards credits nothing.
"""

from collections import defaultdict
from collections.abc import Callable

from acquirer.protocol import MTI_PURCHASE

from .parse import Log

REFUND_CODE = "200000"


def judge_credits(
    tlog: Log,
    hlog: Log,
    charged_key: dict[str, str],
    charged: dict[str, int],
    reversed_rrns: set[str],
    find: Callable[[str, str], None],
) -> None:
    """Refund findings (see the module doc)."""
    sale_of_refund: dict[str, str] = {}  # refund key -> the sale's key
    for e in tlog.entries:
        d = e.data
        refund = d.get("processing_code") == REFUND_CODE and d.get("orig_key")
        if e.event == "send" and d.get("mti") == MTI_PURCHASE and refund:
            sale_of_refund[str(d.get("idem_key", ""))] = str(d["orig_key"])
    rrn_of_key = {k: r for r, k in charged_key.items()}
    asked: dict[str, int] = defaultdict(int)  # sale rrn -> refunds asked
    shown: dict[str, int] = defaultdict(int)  # sale rrn -> refunds shown REFUNDED
    pending: dict[str, list[int]] = defaultdict(list)  # sale rrn -> asked, not yet shown
    for e in tlog.entries:
        d = e.data
        if e.event == "key" and d["key"] in ("refund", "void") and isinstance(d.get("rrn"), str):
            amount = d.get("amount", 0) if d["key"] == "refund" else 0
            amount = amount if isinstance(amount, int) and not isinstance(amount, bool) else 0
            # A void (or a refund of 0) asks for the whole sale back: a void of a
            # sale already settled is done as a refund of all of it.
            amount = amount or charged.get(d["rrn"], 0)
            asked[d["rrn"]] += amount
            pending[d["rrn"]].append(amount)
        elif e.event == "display" and d["outcome"] == "refunded":
            rrn = str(d.get("rrn", ""))
            if pending[rrn]:
                shown[rrn] += pending[rrn].pop()
                pending[rrn].clear()
    credited: dict[str, int] = defaultdict(int)
    refund_rrns: dict[str, list[str]] = defaultdict(list)  # sale rrn -> its refunds
    for e in hlog.entries:
        if e.event != "decision" or e.data["action"] != "refund":
            continue
        if str(e.data.get("rrn", "")) in reversed_rrns:
            continue
        sale_key = sale_of_refund.get(str(e.data.get("key", "")), "")
        sale_rrn = rrn_of_key.get(sale_key, "")
        if sale_rrn:
            credited[sale_rrn] += int(e.data.get("amount", 0))
            refund_rrns[sale_rrn].append(str(e.data.get("rrn", "")))
    _receipts_owed(tlog, shown, refund_rrns, find)
    for rrn in sorted(credited):
        if credited[rrn] > asked[rrn]:
            find(
                "no-over-credit",
                f"sale rrn {rrn}: the cashier asked to give back {asked[rrn]}, the host "
                f"credited {credited[rrn]}",
            )
        if credited[rrn] > shown[rrn]:
            find(
                "no-charge-on-failure",
                f"sale rrn {rrn}: the host credited {credited[rrn]}, the terminal showed "
                f"{shown[rrn]} REFUNDED",
            )


def _receipts_owed(
    tlog: Log,
    shown: dict[str, int],
    refund_rrns: dict[str, list[str]],
    find: Callable[[str, str], None],
) -> None:
    """`receipt-for-every-charge` for refunds: a REFUNDED receipt (printed, or shown
    pending) for every host refund of a sale the terminal showed REFUNDED."""
    receipted: set[str] = set()
    for e in tlog.entries:
        d = e.data
        receipt = d.get("receipt")
        if e.event == "print" and d.get("status") == "ok" and isinstance(receipt, dict):
            if receipt.get("status") == "refunded":
                receipted.add(str(receipt.get("rrn", "")))
        elif e.event == "display" and d.get("outcome") == "receipt-pending":
            receipted.add(str(d.get("rrn", "")))
    for sale_rrn in sorted(refund_rrns):
        if not shown[sale_rrn]:
            continue
        for rrn in refund_rrns[sale_rrn]:
            if rrn not in receipted:
                find(
                    "receipt-for-every-charge",
                    f"sale rrn {sale_rrn} shown REFUNDED: the host's refund rrn {rrn} has "
                    "no REFUNDED receipt",
                )
