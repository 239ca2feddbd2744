"""What the invariants know of completions and tips (issue 15: pre-authorisation,
completion and tip adjust).

From the trace: what the cashier asked for (`cashier` records "complete", with the
pre-authorisation's RRN and the amount to capture; "tip", with the sale's RRN, the tip
and the sale's amount before any tip) and what the terminal showed done (COMPLETED
displays naming the pre-authorisation's RRN with the amount captured; TIP ADDED
displays naming the sale's RRN with its new total). From the host: each
pre-authorisation's completion (`Acquirer.completion_of`) and each sale's tip
(`HostTxn.tip`).

A pre-authorisation itself is a customer's payment (an intent) judged like a sale: its
hold is the intent's charge (APPROVED means a hold stands or was completed, DECLINED or
FAILED means none stands, its receipt names it). The class of each failure decides
which invariant a completion or tip extends:

* ``approved-means-charged`` (extended): a pre-authorisation shown COMPLETED has a
  capture at the host (an orphaned hold otherwise: the goods were handed over and the
  merchant will never be paid); a sale shown TIP ADDED has that total at the host, and
  its void (asked, answered VOIDING or REFUNDING) was not under way then.
* ``no-charge-on-failure`` (extended, once the run has come to rest): the host holds no
  capture of a pre-authorisation the terminal did not show COMPLETED, and no tip the
  terminal did not show added.
* ``amount-integrity`` (extended): what was captured is what the cashier asked to
  capture and what COMPLETED showed; a tip set at the host, and every TIP ADDED total,
  is the sale's amount plus a tip the cashier keyed: a tip counted twice is a wrong
  amount.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from harness.trace import Record

from .model import LIVENESS, Violation, base_amount, money

if TYPE_CHECKING:
    from acquirer.host import Acquirer, HostTxn

# Pre-authorisations and sales with a completion or tip remembered (the oldest are
# forgotten beyond this).
T = TypeVar("T")
HOLD_SALES_MAX = 10_000
TIPS_ASKED_MAX = 16  # distinct tips remembered per sale


@dataclass(slots=True)
class Completion:
    """One pre-authorisation the cashier asked to complete, by its RRN."""

    intent: int
    # The amounts the cashier asked to capture, oldest first (a refused ask may be
    # followed by another: the capture must be one of them).
    asked: list[int] = field(default_factory=list)
    ask_seq: int = 0
    shown: int = 0  # the amount the first COMPLETED display naming it shows (0: none)
    shown_seq: int = 0
    # A valid ask (the hold standing, the amount within it) made with nothing in the
    # way (no fault so far, no batch close under way): its seq (0: none).
    owed_seq: int = 0
    answer_seq: int = 0  # the last display naming the hold's RRN (an answer, or not)


@dataclass(slots=True)
class Tip:
    """One sale the cashier tipped, by its RRN."""

    intent: int
    base: int = 0  # the sale's amount before any tip
    asked: list[int] = field(default_factory=list)  # the tips keyed, oldest first
    ask_seq: int = 0
    shown: int = 0  # the total the last TIP ADDED display naming it shows (0: none)
    shown_seq: int = 0
    # The last valid ask (a live sale of the open batch, tip at most its amount) made
    # with nothing in the way: its seq (0: none) and tip.
    owed_seq: int = 0
    owed_tip: int = 0
    # Tips asked after the owed one that were not owed themselves (a void was asked
    # of the sale, say): each may rightly replace it, so the sale ending with any of
    # them carries the owed one out too.
    since_owed: list[int] = field(default_factory=list)
    answer_seq: int = 0  # the last display naming the sale's RRN


def _noted(table: dict[str, T], rrn: str, make: Callable[[], T]) -> T:
    """`table[rrn]`, made with `make` when absent (the oldest forgotten beyond
    `HOLD_SALES_MAX`)."""
    item = table.get(rrn)
    if item is None:
        while len(table) >= HOLD_SALES_MAX:
            del table[next(iter(table))]
        item = table[rrn] = make()
    return item


class HoldObs:
    """The completions and tips of one run, as the trace shows them."""

    def __init__(self) -> None:
        self.completions: dict[str, Completion] = {}
        self.tips: dict[str, Tip] = {}
        self.void_ask: tuple[str, int, int] = ("", 0, 0)  # a void just asked: rrn, t_ms, seq
        # Sales whose void is under way (the terminal said VOIDING or REFUNDING when it
        # was asked; no display naming the sale since): rrn -> the ask's seq.
        self.voiding: dict[str, int] = {}
        # TIP ADDED shown for a sale whose void was under way: (rrn, intent, seqs).
        self.tipped_voiding: list[tuple[str, int, tuple[int, int]]] = []

    def cashier(self, rec: Record, clear: bool = False) -> None:
        """A `cashier` record; `clear`: nothing stands in the way of the request (no fault
        so far, no batch close under way), so a correct terminal carries out a valid one
        (the record says `valid`)."""
        action = rec["action"]
        rrn = rec.get("rrn", "")
        if action == "void" and rrn:
            self.void_ask = (rrn, rec["t_ms"], rec["seq"])
            self.voiding.pop(rrn, None)
        if not rrn or action not in ("complete", "tip"):
            return
        n = int(rec.get("intent", 0))
        if action == "complete":
            c = _noted(self.completions, rrn, lambda: Completion(n))
            amount = int(rec.get("amount", 0))
            if amount not in c.asked and len(c.asked) < TIPS_ASKED_MAX:
                c.asked.append(amount)
            c.ask_seq = rec["seq"]
            if clear and rec.get("valid"):
                c.owed_seq = rec["seq"]
            return
        t = _noted(self.tips, rrn, lambda: Tip(n, int(rec.get("base", 0))))
        tip = int(rec.get("tip", 0))
        if tip not in t.asked and len(t.asked) < TIPS_ASKED_MAX:
            t.asked.append(tip)
        t.ask_seq = rec["seq"]
        if clear and rec.get("valid"):
            t.owed_seq, t.owed_tip = rec["seq"], tip
            t.since_owed.clear()
        elif t.owed_seq and tip not in t.since_owed and len(t.since_owed) < TIPS_ASKED_MAX:
            t.since_owed.append(tip)

    def under_way(self) -> bool:
        """A completion or tip asked and not answered yet."""
        return any(c.ask_seq > c.answer_seq for c in self.completions.values()) or any(
            t.ask_seq > t.answer_seq for t in self.tips.values()
        )

    def seen(self, rec: Record) -> None:
        """Every display: follows the voids under way. A void is under way when the
        terminal answers the ask, at once, with a pending display (VOIDING, or REFUNDING
        for a sale past its batch), until a display names the sale (its outcome)."""
        rrn, at_ms, ask_seq = self.void_ask
        if rrn:
            self.void_ask = ("", 0, 0)
            if rec["outcome"] == "pending" and rec["t_ms"] == at_ms:
                if len(self.voiding) >= HOLD_SALES_MAX:
                    del self.voiding[next(iter(self.voiding))]
                self.voiding[rrn] = ask_seq
            return
        named = rec.get("rrn", "")
        if named not in self.voiding or rec["outcome"] == "pending":
            return
        if rec["outcome"] == "tip-added":
            if len(self.tipped_voiding) < TIPS_ASKED_MAX:
                t = self.tips.get(named)
                n = t.intent if t is not None else int(rec.get("intent", 0) or 0)
                self.tipped_voiding.append((named, n, (self.voiding[named], rec["seq"])))
            return
        del self.voiding[named]  # the void's outcome, or another answer naming the sale

    def answer(self, rec: Record) -> None:
        """Any other display naming an RRN: for a completion or tip asked of that RRN,
        the terminal's answer (a refusal says why; a pending display does not answer)."""
        if rec["outcome"] == "pending":
            return
        rrn = rec.get("rrn", "")
        c = self.completions.get(rrn)
        if c is not None:
            c.answer_seq = rec["seq"]
        t = self.tips.get(rrn)
        if t is not None:
            t.answer_seq = rec["seq"]

    def display(self, rec: Record) -> None:
        """A COMPLETED or TIP ADDED display (naming the sale's RRN)."""
        self.answer(rec)
        rrn = rec.get("rrn", "")
        amount = int(rec.get("amount", 0))
        if rec["outcome"] == "completed":
            c = self.completions.get(rrn)
            if c is not None and not c.shown_seq:
                c.shown, c.shown_seq = amount, rec["seq"]
            elif c is None and rrn:
                # Shown without the cashier asking: judged like an asked one.
                c = _noted(self.completions, rrn, lambda: Completion(rec.get("intent", 0) or 0))
                c.shown, c.shown_seq = amount, rec["seq"]
        else:
            t = self.tips.get(rrn)
            if t is None and rrn:
                t = _noted(self.tips, rrn, lambda: Tip(rec.get("intent", 0) or 0))
            if t is not None:
                t.shown, t.shown_seq = amount, rec["seq"]


def judge_holds(
    obs: HoldObs,
    host: Acquirer,
    terminal_id: str,
    quiet: bool,
    void_asked: Callable[[str], bool] = lambda rrn: False,
    faultless: bool = False,
) -> Iterable[Violation]:
    """The completion and tip parts of the invariants named in the module doc.
    `void_asked(rrn)`: the cashier asked to void that sale (a completion voided since
    was captured when COMPLETED was shown). `faultless`: the run had no fault at all
    (then a valid request asked with nothing in the way must be carried out)."""
    for rrn, c in obs.completions.items():
        preauth = host.transaction_by_rrn(rrn)
        if preauth is None or preauth.terminal_id != terminal_id or preauth.kind != "preauth":
            continue
        comp = host.completion_of(preauth.id)
        voided = comp is not None and comp.status == "reversed" and void_asked(comp.rrn)
        yield from _judge_completion(rrn, c, preauth, comp, quiet, voided)
        # A hold released since (a chip that declined the approval, a void) is no longer
        # owed a capture: the terminal rightly refuses to complete it.
        released = preauth.status == "reversed"
        if quiet and faultless and c.owed_seq and comp is None and not released:
            yield _not_carried_out(f"complete pre-authorisation rrn {rrn}", c.intent, c.owed_seq)
        if quiet and c.ask_seq > c.answer_seq:
            yield _unanswered(f"complete pre-authorisation rrn {rrn}", c.intent, c.ask_seq)
    for rrn, n, seqs in obs.tipped_voiding:
        yield Violation(
            "approved-means-charged",
            f"sale rrn {rrn} was shown TIP ADDED while the void the cashier asked of it "
            "was under way: the void gives back the sale as it was asked, so the customer "
            "pays the tip on a cancelled sale.",
            n,
            (rrn,),
            seqs,
        )
    for rrn, t in obs.tips.items():
        sale = host.transaction_by_rrn(rrn)
        if sale is None or sale.terminal_id != terminal_id:
            continue
        yield from _judge_tip(rrn, t, sale, quiet)
        owed = quiet and faultless and t.owed_seq and sale.status == "approved"
        if owed and sale.tip != t.owed_tip and sale.tip not in t.since_owed:
            what = f"set a tip of {money(t.owed_tip)} on sale rrn {rrn}"
            yield _not_carried_out(what, t.intent, t.owed_seq)
        if quiet and t.ask_seq > t.answer_seq:
            yield _unanswered(f"tip sale rrn {rrn}", t.intent, t.ask_seq)


def _judge_completion(
    rrn: str, c: Completion, preauth: HostTxn, comp: HostTxn | None, quiet: bool, voided: bool
) -> Iterable[Violation]:
    n = c.intent
    # A completion the cashier voided since counts as the capture it was.
    captured = comp is not None and (comp.status == "approved" or voided)
    comp_rrns = (comp.rrn,) if comp is not None else ()
    if c.shown_seq and not captured:
        yield Violation(
            "approved-means-charged",
            f"pre-authorisation rrn {rrn} was shown COMPLETED for {money(c.shown)} but "
            f"the host captured nothing (the hold is {preauth.status}): the goods were "
            "handed over and the merchant will never be paid.",
            n,
            (rrn,),
            (c.shown_seq,),
        )
    if captured and comp is not None:
        if c.shown_seq and base_amount(comp) != c.shown:
            yield Violation(
                "amount-integrity",
                f"pre-authorisation rrn {rrn} was shown COMPLETED for {money(c.shown)} but "
                f"the host captured {money(base_amount(comp))} (rrn {comp.rrn}).",
                n,
                (rrn, comp.rrn),
                (c.shown_seq,),
            )
        if c.ask_seq and base_amount(comp) not in c.asked:
            yield Violation(
                "amount-integrity",
                f"the cashier asked to capture {_amounts(c.asked)} of pre-authorisation rrn "
                f"{rrn} but the host captured {money(base_amount(comp))} (rrn {comp.rrn}).",
                n,
                (rrn, comp.rrn),
                (c.ask_seq,),
            )
        if quiet and not c.shown_seq:
            yield Violation(
                "no-charge-on-failure",
                f"the host captured {money(base_amount(comp))} of pre-authorisation "
                f"rrn {rrn} (rrn {comp.rrn}) but the terminal never showed it COMPLETED: "
                "the cashier believes the card was not charged.",
                n,
                (rrn, *comp_rrns),
                (c.ask_seq,) if c.ask_seq else (),
            )
    if c.shown_seq and c.ask_seq and c.shown not in c.asked:
        yield Violation(
            "amount-integrity",
            f"the cashier asked to capture {_amounts(c.asked)} of pre-authorisation rrn {rrn} "
            f"but the terminal showed COMPLETED for {money(c.shown)}.",
            n,
            (rrn,),
            (c.ask_seq, c.shown_seq),
        )


def _judge_tip(rrn: str, t: Tip, sale: HostTxn, quiet: bool) -> Iterable[Violation]:
    n = t.intent
    base = base_amount(sale)
    seqs = tuple(s for s in (t.ask_seq, t.shown_seq) if s)
    if t.shown_seq and t.shown - base not in t.asked:
        yield Violation(
            "amount-integrity",
            f"sale rrn {rrn} was shown TIP ADDED with a total of {money(t.shown)}, which "
            f"is not its {money(base)} plus a tip the cashier keyed ({_amounts(t.asked)}).",
            n,
            (rrn,),
            seqs,
        )
    live = sale.status == "approved"
    if live and sale.tip and sale.tip not in t.asked:
        yield Violation(
            "amount-integrity",
            f"the host holds a tip of {money(sale.tip)} on sale rrn {rrn} (total "
            f"{money(sale.amount)}), not a tip the cashier keyed ({_amounts(t.asked)}): the "
            "tip was counted twice.",
            n,
            (rrn,),
            seqs,
        )
    if not quiet:
        return
    # (A sale reversed since, a void, took its tip back with it: judged as a credit.)
    if t.shown_seq and live and sale.amount != t.shown:
        yield Violation(
            "approved-means-charged",
            f"sale rrn {rrn} was shown TIP ADDED with a total of {money(t.shown)} but the "
            f"host holds a total of {money(sale.amount)}.",
            n,
            (rrn,),
            seqs,
        )
    if live and sale.tip and not t.shown_seq:
        yield Violation(
            "no-charge-on-failure",
            f"the host added a tip of {money(sale.tip)} to sale rrn {rrn} but the "
            "terminal never showed it added.",
            n,
            (rrn,),
            seqs,
        )


def _amounts(amounts: list[int]) -> str:
    """ "80.00" or "90.00 or 70.00" ("none" for none)."""
    return " or ".join(money(x) for x in amounts) or "none"


def _not_carried_out(what: str, n: int, seq: int) -> Violation:
    """`eventually-settles`: a valid request, asked with no fault in the whole run and no
    batch close under way, that the host never saw carried out."""
    return Violation(
        "eventually-settles",
        f"the cashier asked to {what} in a run with no fault and no batch close under "
        "way, and the host never booked it: the final state is not the truthful one.",
        n,
        seqs=(seq,),
        klass=LIVENESS,
    )


def _unanswered(what: str, n: int, seq: int) -> Violation:
    """`eventually-settles`: a request the terminal never answered (no display naming the
    RRN the cashier gave, after the ask) by the time the run came to rest."""
    return Violation(
        "eventually-settles",
        f"the cashier asked to {what} and the terminal never answered (COMPLETED / TIP "
        "ADDED, or a refusal naming it) by the time the run came to rest: the cashier "
        "cannot know what became of it.",
        n,
        seqs=(seq,),
        klass=LIVENESS,
    )
