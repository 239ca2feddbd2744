"""The cashier who voids, refunds, completes or tips a named earlier sale (issue 15),
for one world.

A `void = { sale = N }` or `refund = { sale = N, amount = A }` step names the N-th
payment intent of the run. The cashier reads that sale's host reference (RRN) off its
receipt: once the intent was shown APPROVED, the charge that display named (its RRN,
or for an offline approval its key, once uploaded), if the host holds it approved;
before that, the host's latest approved charge for the intent. A sale with none (it
was declined, or never reached the host) cannot be named: the step is skipped, with a
`cashier` record saying why. While the terminal is off or serves a customer, the
cashier waits (`CREDIT_WAIT_MS` at a time, at most `CREDIT_WAITS_MAX` times).

The request goes to the firmware as `VoidRequested(rrn)` / `RefundRequested(rrn,
amount)`, after a `cashier` record (action "void" / "refund", sale, rrn, amount) that
the invariants read to know what the cashier asked for; it says `valid` when the
request can be carried out (the first void or refund of a live sale the terminal
knows, the amount within it: `_credit_owed`).

A `complete = { sale = N, amount = A }` step names a pre-authorisation: the cashier
reads the RRN of its hold (approved, or already completed: the terminal must refuse a
second completion) and asks `CompletionRequested(rrn, A)` (A left out: the whole
hold), after a `cashier` record (action "complete", rrn, amount). A `tip = { sale = N,
amount = T }` step names a purchase, or a completed pre-authorisation (then its
completion's RRN, off the completion's slip), and asks `TipAdjustRequested(rrn, T)`,
after a `cashier` record (action "tip", rrn, tip, base: the sale's amount before any
tip).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from acquirer import catalogue, refunds
from terminal.firmware import (
    CompletionRequested,
    RefundRequested,
    TipAdjustRequested,
    VoidRequested,
)

if TYPE_CHECKING:
    from acquirer.host import HostTxn
    from harness.world import World
    from scenarios.model import Step

CREDIT_WAIT_MS = 1_000
CREDIT_WAITS_MAX = 3_600
# A terminal keeps at least the sales of this many latest payments refundable after
# the batch close that settled them (the reference keeps 64); an older one may rightly
# be refused (NO SUCH SALE: refunded from the acquirer's back office).
SETTLED_REFUNDABLE_MIN = 64


class CashierCredits:
    """The cashier's voids and refunds, for one world."""

    def __init__(self, world: World) -> None:
        self.world = world
        # The intents a void or refund was asked of (at most one per step of the
        # scenario): a completion or tip asked after it may rightly be refused, even
        # while the host still shows the hold or sale standing.
        self.credit_asked: set[int] = set()
        # The intents a completion was asked of, and the last tip asked of each: a
        # second completion, or a tip asked while the last one is not booked yet, may
        # rightly be refused (a hold is completed once; one tip at a time).
        self.completion_asked: set[int] = set()
        self.tip_asked: dict[int, int] = {}
        # The intents whose last tip asked the terminal has not shown TIP ADDED for
        # yet: the next tip may rightly be refused (TIP PENDING) even once the host
        # booked the last one, while its answer is still on the way.
        self.tip_unshown: set[int] = set()

    def request(self, step: Step, waited: int = 0) -> None:
        w = self.world
        if w._busy():
            if waited < CREDIT_WAITS_MAX:
                w.sched.after(CREDIT_WAIT_MS, self._again, (step, waited + 1))
            else:
                self._skip(step, "the terminal stayed busy")
            return
        if step.action in ("complete", "tip"):
            self._adjust(step)
            return
        # A void may release a hold (a pre-authorisation); only a sale is refunded.
        kinds = ("purchase", "preauth") if step.action == "void" else ("purchase",)
        rrn, amount = self.sale_rrn(step.sale, kinds)
        if not rrn:
            self._skip(step, "the sale has no approved charge to name")
            return
        if step.action == "refund" and step.amount:
            amount = step.amount
        rec: dict[str, Any] = {
            "action": step.action,
            "sale": step.sale,
            "intent": step.sale,
            "rrn": rrn,
            "amount": amount,
        }
        if self._credit_owed(step, rrn, amount):
            rec["valid"] = True
        w.emit("cashier", rec)
        self.credit_asked.add(step.sale)
        if step.action == "void":
            w._input(VoidRequested(rrn))
        else:
            w._input(RefundRequested(rrn, amount))

    def _adjust(self, step: Step) -> None:
        """A completion of a pre-authorisation, or a tip on a sale (see the module doc)."""
        w = self.world
        txn = self._approved_txn(step.sale)
        rec: dict[str, Any] = {"action": step.action, "sale": step.sale, "intent": step.sale}
        if step.action == "complete":
            if txn is None or txn.kind != "preauth":
                self._skip(step, "the sale has no hold to complete")
                return
            amount = step.amount or txn.amount
            if self._completion_owed(step, txn, amount):
                rec["valid"] = True
            self.completion_asked.add(step.sale)
            w.emit("cashier", {**rec, "rrn": txn.rrn, "amount": amount})
            w._input(CompletionRequested(txn.rrn, amount))
            return
        # (The intent's latest transaction may be the hold, or its completion.)
        hold = txn is not None and txn.kind in ("preauth", "completion")
        if txn is not None and txn.kind == "preauth":
            txn = w.host.completion_of(txn.id)  # the tip goes on the completion
        if txn is None or txn.status != "approved" or txn.kind == "preauth":
            self._skip(step, "the sale has no approved charge to tip")
            return
        base = txn.amount - txn.tip
        # A tip on a completion is owed only once the terminal showed it COMPLETED:
        # before that (the host booked it, its answer is still on the way) the
        # terminal rightly refuses to tip a completion it does not know of yet.
        shown = not hold or step.sale in w.completed_shown
        if shown and self._tip_owed(step, txn, base):
            rec["valid"] = True
        self.tip_asked[step.sale] = step.amount
        self.tip_unshown.add(step.sale)
        w.emit("cashier", {**rec, "rrn": txn.rrn, "tip": step.amount, "base": base})
        w._input(TipAdjustRequested(txn.rrn, step.amount))

    def _credit_owed(self, step: Step, rrn: str, amount: int) -> bool:
        """The first void or refund asked of a live card sale (or hold) the terminal
        knows: shown APPROVED online (an offline approval's RRN came later), a
        completion shown COMPLETED, a sale settled by a close among the latest
        `SETTLED_REFUNDABLE_MIN` payments, a refund of at most the sale, and no tip
        asked of it that is not booked yet. (What the terminal has in flight when it is
        asked, the invariants know: harness/invariants/credit_asks.py.)"""
        w = self.world
        txn = w.host.transaction_by_rrn(rrn)
        if txn is None or txn.status != "approved" or step.sale in self.credit_asked:
            return False
        # The sale (or hold) the customer was shown APPROVED online: a charge of a
        # sale shown FAILED is one the terminal is reversing, not one it knows.
        shown = w.receipt_rrn.get(step.sale)
        if shown is None or shown.startswith("key:"):
            return False
        if txn.kind == "completion":
            if w.completed_shown.get(step.sale) != shown:
                return False  # its hold's completion, not shown COMPLETED yet
        elif rrn != shown:
            return False
        if txn.batch_no and w.intents_started - step.sale >= SETTLED_REFUNDABLE_MIN:
            return False
        return (
            self._answered_in_time(txn.pan)
            and 0 < amount <= txn.amount
            and not refunds.refunded(w.host, txn.id)
            and not self._wallet_paid(txn.pan)
            and self.tip_asked.get(step.sale, txn.tip) == txn.tip
        )

    def _wallet_paid(self, pan: str) -> bool:
        """`pan` is a wallet's code (a wallet payment: no tip, no card credit)."""
        return any(wallet.code == pan for wallet in self.world.sc.wallets)

    def _answered_in_time(self, pan: str) -> bool:
        """The host's answer to a request for card `pan` (a refund asks its issuer)
        reaches the terminal well within its response timeout (a round trip of at
        most half of it): else the terminal may rightly give the refund up, with no
        fault at all (a slow issuer, a slow network)."""
        sc = self.world.sc
        card = next((c for c in sc.cards if c.pan == pan), None)
        slow_ms = card.slow_ms if card is not None else catalogue.slow_ms(pan)
        net_ms = sc.network.latency_ms + sc.network.jitter_ms
        trip_ms = 2 * net_ms + sc.host.processing_ms + slow_ms
        return 2 * trip_ms <= sc.terminal.response_timeout_ms

    def _completion_owed(self, step: Step, hold: HostTxn, amount: int) -> bool:
        """A standing hold, an amount within it, no void nor earlier completion asked."""
        return (
            hold.status == "approved"
            and 0 < amount <= hold.amount
            and step.sale not in self.credit_asked
            and step.sale not in self.completion_asked
        )

    def _tip_owed(self, step: Step, txn: HostTxn, base: int) -> bool:
        """A live card sale of the open batch (a wallet payment takes no tip), not
        refunded (nor asked to be), a tip at most its base, and the last tip asked of it
        (if any) booked already and shown TIP ADDED."""
        w = self.world
        return (
            not txn.batch_no
            and 0 <= step.amount <= base
            and not refunds.refunded(w.host, txn.id)
            and step.sale not in self.credit_asked
            and not self._wallet_paid(txn.pan)
            and self.tip_asked.get(step.sale, txn.tip) == txn.tip
            and step.sale not in self.tip_unshown
        )

    def tip_shown(self, rrn: str) -> None:
        """The terminal showed TIP ADDED naming `rrn` (the sale's, or its completion's)."""
        n = self.world.rrn_intent.get(rrn)
        if n is not None:
            self.tip_unshown.discard(n)

    def _txns(self, n: int) -> Iterator[HostTxn]:
        """Intent `n`'s transactions at the host, by the RRNs it got, the latest first;
        once it was shown APPROVED, only the one its receipt names (that RRN, or for an
        offline approval the sale's key, once uploaded). A late charge of an earlier
        attempt, which the terminal is reversing, is no sale the cashier can name."""
        w = self.world
        shown = w.receipt_rrn.get(n)
        for rrn in reversed(list(w.rrn_intent)):
            if w.rrn_intent[rrn] != n:
                continue
            txn = w.host.transaction_by_rrn(rrn)
            if txn is None:
                continue
            if shown is None or shown in (txn.rrn, f"key:{txn.idem_key}"):
                yield txn

    def _approved_txn(self, n: int) -> HostTxn | None:
        """Intent `n`'s approved (or completed) sale or hold at the host, the latest."""
        return next((t for t in self._txns(n) if t.status in ("approved", "completed")), None)

    def _again(self, arg: tuple[Step, int]) -> None:
        self.request(*arg)

    def _skip(self, step: Step, why: str) -> None:
        self.world.emit(
            "cashier", {"action": step.action + "-skipped", "sale": step.sale, "reason": why}
        )

    def sale_rrn(self, n: int, kinds: tuple[str, ...] = ("purchase",)) -> tuple[str, int]:
        """The RRN and amount of intent `n`'s approved charge of one of `kinds` ("" when
        it has none)."""
        for txn in self._txns(n):
            if txn.kind == "preauth" and txn.status == "completed":
                comp = self.world.host.completion_of(txn.id)  # a completed hold: its completion
                if comp is not None and comp.status == "approved":
                    return comp.rrn, comp.amount
            if txn.kind in kinds and txn.status == "approved":
                return txn.rrn, txn.amount
        return "", 0
