"""Judge the logs (holds): what completions and tip adjusts show broken, before any
replay, as harness/invariants/holds.py judges them on a trace.

* `approved-means-charged`: a pre-authorisation shown COMPLETED with no `capture` of
  it in the host log (the goods were handed over, the merchant is never paid); a sale
  shown TIP ADDED whose total at the host (its last `adjust`) is not the one shown
  (a sale reversed since, a void, took its tip back with it: judged as the sale).
* `no-charge-on-failure`: a `capture` of a hold the terminal never showed COMPLETED
  (the desk believes the card was not charged); a tip the host added to a sale the
  terminal never showed TIP ADDED.
* `amount-integrity`: a capture of an amount no `complete` key of the cashier asked
  for (each is judged, not the last), or not the one the COMPLETED display showed; a
  tip at the host, or a TIP ADDED total, that is not the sale's amount plus a tip the
  cashier keyed (a tip counted twice).
A completion belongs to the hold its 0220 named by `orig_key`; a tip adjust's decision
names the sale's own RRN (a purchase's, or a completion's).
"""

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from .holds import hold_keys
from .parse import Log

Find = Callable[[str, str], None]


@dataclass(slots=True)
class _Holds:
    """What both logs show of the completions and tips of one terminal."""

    # hold rrn -> every amount the cashier asked to capture
    asked: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))
    shown: dict[str, int | None] = field(default_factory=dict)  # hold rrn -> COMPLETED amount
    captured: dict[str, tuple[str, int]] = field(default_factory=dict)  # hold -> (rrn, amount)
    tips: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))  # keyed
    tip_shown: dict[str, int | None] = field(default_factory=dict)  # sale rrn -> last total
    total: dict[str, int] = field(default_factory=dict)  # sale rrn -> host's adjusted total
    base: dict[str, int] = field(default_factory=dict)  # sale rrn -> amount before tips
    reversed: set[str] = field(default_factory=set)


def _amount(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _read_terminal(tlog: Log, h: _Holds) -> None:
    for e in tlog.entries:
        d = e.data
        if e.event == "key" and d["key"] == "complete" and isinstance(d.get("rrn"), str):
            if _amount(d.get("amount")):
                h.asked[d["rrn"]].add(d["amount"])
        elif e.event == "key" and d["key"] == "tip" and isinstance(d.get("rrn"), str):
            h.tips[d["rrn"]].add(_amount(d.get("tip")) or 0)
        elif e.event == "display" and d["outcome"] == "completed":
            h.shown.setdefault(str(d.get("rrn", "")), _amount(d.get("amount")))
        elif e.event == "display" and d["outcome"] == "tip-added":
            h.tip_shown[str(d.get("rrn", ""))] = _amount(d.get("amount"))


def _read_host(tlog: Log, hlog: Log, h: _Holds) -> None:
    hold_key = hold_keys(tlog, hlog)
    rrn_of_key: dict[str, str] = {}
    for e in hlog.entries:
        if e.event != "decision":
            continue
        d = e.data
        action, rrn, amount = str(d["action"]), str(d.get("rrn", "")), _amount(d.get("amount"))
        if action in ("hold", "charge", "capture") and d.get("rc") == "00":
            rrn_of_key.setdefault(str(d.get("key", "")), rrn)
            h.base.setdefault(rrn, amount or 0)
        if action == "capture" and d.get("rc") == "00":
            hold = rrn_of_key.get(hold_key.get(str(d.get("key", "")), ""), "")
            h.captured.setdefault(hold or f"?{rrn}", (rrn, amount or 0))
        elif action == "adjust" and d.get("rc") == "00":
            h.total[rrn] = amount or 0
        elif action == "reverse":
            h.reversed.add(rrn)


def judge_holds(tlog: Log, hlog: Log, find: Find) -> None:
    """Completion and tip findings (see the module doc)."""
    h = _Holds()
    _read_terminal(tlog, h)
    _read_host(tlog, hlog, h)
    _judge_completions(h, find)
    _judge_tips(h, find)


def _judge_completions(h: _Holds, find: Find) -> None:
    for hold in sorted(set(h.shown) | set(h.captured)):
        shown = h.shown.get(hold)
        cap = h.captured.get(hold)
        if hold in h.shown and cap is None:
            find(
                "approved-means-charged",
                f"pre-authorisation rrn {hold} shown COMPLETED but the host log has no "
                "capture of it",
            )
            continue
        if cap is None:
            continue
        rrn, amount = cap
        if hold not in h.shown:
            find(
                "no-charge-on-failure",
                f"the host captured {amount} of pre-authorisation rrn {hold.lstrip('?')} "
                f"(rrn {rrn}) but the terminal never showed it COMPLETED",
            )
        if shown is not None and shown != amount:
            find(
                "amount-integrity",
                f"pre-authorisation rrn {hold} shown COMPLETED for {shown}, captured {amount}",
            )
        asked = h.asked.get(hold, set())
        if asked and amount not in asked:
            find(
                "amount-integrity",
                f"the cashier asked to capture {' or '.join(map(str, sorted(asked)))} of "
                f"pre-authorisation rrn {hold}, the host captured {amount}",
            )


def _judge_tips(h: _Holds, find: Find) -> None:
    for sale in sorted(set(h.tip_shown) | set(h.total)):
        base = h.base.get(sale, 0)
        asked = h.tips.get(sale, set())
        shown = h.tip_shown.get(sale)
        total = h.total.get(sale)
        if sale in h.reversed:
            pass  # a sale reversed since took its tip back: judged as the sale's own
        elif sale in h.tip_shown and total is None:
            find(
                "approved-means-charged",
                f"sale rrn {sale} shown TIP ADDED (total {shown}) but the host log has no "
                "tip adjusted",
            )
        elif sale in h.tip_shown and shown is not None and shown != total:
            find(
                "approved-means-charged",
                f"sale rrn {sale} shown TIP ADDED with a total of {shown}, the host "
                f"adjusted it to {total}",
            )
        if shown is not None and base and shown - base not in asked:
            find(
                "amount-integrity",
                f"sale rrn {sale} shown TIP ADDED with a total of {shown}: not its {base} "
                "plus a tip the cashier keyed",
            )
        if total is None or sale in h.reversed:
            continue
        if base and total - base and total - base not in asked:
            find(
                "amount-integrity",
                f"the host holds a tip of {total - base} on sale rrn {sale}, not a tip the "
                "cashier keyed: the tip was counted twice",
            )
        if total - base and sale not in h.tip_shown:
            find(
                "no-charge-on-failure",
                f"the host added a tip of {total - base} to sale rrn {sale} but the "
                "terminal never showed it added",
            )
