"""The invariants: named checks that judge a run from its trace and final state.

They read only the trace (what was keyed, sent, delivered, displayed, printed,
journaled) and the host's final books; never a firmware's private fields, so they
judge a user's firmware exactly as they judge ours.

`Observations` streams over trace records and keeps a compact summary per intent;
each invariant is a function of that summary and the host. A violation names the
intent, the transactions and the trace sequence numbers that show it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from acquirer.host import Acquirer, HostTxn
from acquirer.protocol import (
    AMOUNT_MAX_WIRE,
    BATCH_ITEMS_MAX,
    MTI_ADVICE,
    MTI_ADVICE_RESP,
    MTI_BATCH,
    MTI_BATCH_RESP,
    MTI_INQUIRY_RESP,
    MTI_PREAUTH,
    MTI_PREAUTH_RESP,
    MTI_PURCHASE,
    MTI_PURCHASE_RESP,
    MTI_REVERSAL,
    PROC_REFUND,
    RC_APPROVED,
)
from acquirer.reversals import AMOUNT_DIFFERS
from faults.host import HostDoubleCharge
from harness.trace import Record
from scenarios.model import INVARIANT_NAMES

from .batches import BatchObs
from .credit_asks import CreditAskObs, judge_credit_asks
from .credit_receipts import CREDIT_STATUSES
from .credits import CreditObs, judge_credits
from .holds import HoldObs, judge_holds
from .judges import DESCRIPTIONS, judge_intent, judge_receipt, judge_run
from .model import (
    FINALS_KEPT_MAX,
    LIVENESS,
    SAFETY,
    IntentBooks,
    IntentObs,
    Shown,
    Violation,
    intended,
    live_charge,
    money,
)
from .offline import OfflineObs
from .reboots import OwedReceipts, record_rrn

__all__ = [
    "DESCRIPTIONS",
    "HORIZON_MS",
    "LIVENESS",
    "SAFETY",
    "SETTLE_EVERY",
    "VIOLATIONS_KEPT_MAX",
    "IntentBooks",
    "IntentObs",
    "Observations",
    "Shown",
    "Violation",
    "check_all",
    "intended",
    "judge_intent",
    "judge_receipt",
    "judge_run",
    "money",
]


# A long run is judged as it goes: an intent that reached its final state more than
# HORIZON_MS ago (virtual) is judged against the host's books and forgotten, so
# memory stays bounded however many purchases a run has. Two hours is far beyond
# any retry or reversal schedule the harness knows (the reference gives up on a
# reversal after about 30 minutes).
HORIZON_MS = 2 * 3_600_000
# Try to settle every this many intents.
SETTLE_EVERY = 2_000
# At most this many violations of one invariant are kept (the rest are counted).
VIOLATIONS_KEPT_MAX = 100
# Host actions that made a transaction of the terminal whose request it was, and
# how many of their RRNs a terminal in a world of several remembers.
_OWN_ACTIONS = frozenset({"charge", "charge-no-reply", "refund", "decline", "hold"})
# Host actions that take a customer's money for a sale (a hold counts: the funds are gone).
_CHARGE_ACTIONS = ("charge", "charge-no-reply", "refund", "wallet-paying", "hold")
# Requests and answers of a customer's payment: a sale, or a pre-authorisation.
_SALE_MTIS = (MTI_PURCHASE, MTI_PREAUTH)
_SALE_ANSWERS = (MTI_PURCHASE_RESP, MTI_PREAUTH_RESP, MTI_INQUIRY_RESP)
_CHARGE_MTIS = (MTI_PURCHASE, MTI_ADVICE, MTI_PREAUTH)
OWN_RRNS_MAX = 200_000


class Observations:
    """A streaming summary of a trace, enough for every invariant.

    `observe` takes records one by one. With a host attached (`attach`), long runs
    are judged incrementally (`settle`); `evaluate` judges what is left at any
    moment without forgetting anything, so it can be called after every step.
    """

    def __init__(self) -> None:
        self.host: Acquirer | None = None
        self.terminal_id = ""
        self.settle_within_ms = 120_000
        self.intents: dict[int, IntentObs] = {}
        self.key_intent: dict[str, int] = {}
        self.stan_intent: dict[int, int] = {}
        self.send_seq_by_key: dict[str, int] = {}
        self.host_seq_by_rrn: dict[str, int] = {}
        # rrn -> the intent whose request the host charged under it (when it did).
        self.rrn_owner: dict[str, int] = {}
        self.printed: dict[str, int] = {}  # rrn -> seq of an ok print of an approved receipt
        # seq, t_ms, receipt, the intent it was printed for (by its key; 0 = unknown)
        self.receipts: deque[tuple[int, int, dict[str, Any], int]] = deque()
        self.owed = OwedReceipts()
        self.current: IntentObs | None = None  # the intent started last
        # Reasons a correct terminal may refuse a valid sale without asking the host:
        # any fault so far, a batch close not answered yet, a reversal sent, a full
        # batch.
        self.amount_max = 99_999_999
        self.any_fault = False
        self.cancel_pressed = False  # a cashier's cancel: a truthful FAILED without asking
        self.response_timeout_ms = 15_000
        self.reversal_sent = False
        self.sales_sent = 0
        self.batch = BatchObs()  # batch closes (batches.py)
        self.pending_seq: dict[str, int] = {}  # rrn -> last RECEIPT_PENDING display seq
        self.last_fault_ms = -1
        self.last_fault_seq = 0
        self.last_power_on_ms = 0
        self.end: Record = {}
        # In a world of several terminals (harness/lanes.py): book only the host
        # transactions this terminal's own requests made (`own_rrns`, from its host
        # records), not every transaction under its terminal id (a clone's).
        self.own_books_only = False
        self.own_rrns: dict[str, None] = {}
        self.crashes: list[tuple[int, str]] = []
        self.offline = OfflineObs()  # offline approvals (harness/invariants/offline.py)
        # Judged so far (by settle): kept violations and total counts.
        self.found: dict[str, list[Violation]] = {name: [] for name in INVARIANT_NAMES}
        self.found_count: dict[str, int] = dict.fromkeys(INVARIANT_NAMES, 0)
        # Books frozen by settle for intents not judged yet; the host read cursor.
        self.books: dict[int, IntentBooks] = {}
        self.txn_cursor = 0
        self._dispatch: dict[str, Callable[[Record], None]] = {
            "intent": self._intent,
            "input": self._input,
            "send": self._send,
            "host": self._host,
            "display": self._display,
            "print": self._print,
            "print_start": self._print_start,
            "cashier": self._cashier,
            "deliver": self._deliver,
            "fault": self._fault,
            "power": self._power,
            "host_down": self._fault,
            "end": self._end,
            "crash": self._crash,
            "chip": self._chip,
        }
        self.credits = CreditObs()  # the cashier's voids and refunds (credits.py)
        self.holds = HoldObs()  # completions and tips (holds.py)
        self.credit_asks = CreditAskObs()  # voids and refunds answered (credit_asks.py)

    def attach(self, host: Acquirer, terminal_id: str, settle_within_ms: int) -> None:
        self.host = host
        self.terminal_id = terminal_id
        self.settle_within_ms = settle_within_ms

    def observe(self, rec: Record) -> None:
        kind = rec["kind"]
        if self.owed.window is not None:
            self.owed.before(kind)
        handler = self._dispatch.get(kind)
        if handler is not None:
            handler(rec)

    def _add(self, v: Violation) -> None:
        self.found_count[v.invariant] += 1
        kept = self.found[v.invariant]
        if len(kept) < VIOLATIONS_KEPT_MAX:
            kept.append(v)

    def _intent(self, rec: Record) -> None:
        n = rec["intent"]
        self.intents[n] = self.current = IntentObs(
            n, rec["card"], rec["amount"], rec["seq"], rec["t_ms"], preauth=bool(rec.get("preauth"))
        )
        if self.host is not None and n % SETTLE_EVERY == 0:
            self.settle(rec["t_ms"] - HORIZON_MS)

    def _input(self, rec: Record) -> None:
        event = rec["event"]
        if (event == "amount_keyed" or event == "preauth_keyed") and "intent" in rec:
            obs = self.intents.get(rec["intent"])
            if obs is not None:
                obs.keyed = rec["amount"]
        elif event == "boot":
            self.owed.boot(rec["seq"])
        elif event == "batch_close":
            self.batch.asked_for(rec["seq"], rec["t_ms"])

    def _deliver(self, rec: Record) -> None:
        if rec["to"] != "terminal":
            return
        msg = rec["msg"]
        mti = msg["mti"]
        if mti in _SALE_ANSWERS and msg.get("rc") == RC_APPROVED:
            # An approval, or a status inquiry's answer that the sale is paid (a
            # wallet customer who confirmed on the phone).
            key = msg.get("idem_key", "") or msg.get("orig_key", "")
            n = self.key_intent.get(key) if key else self.stan_intent.get(msg["stan"])
            o = self.intents.get(n) if n is not None else None
            if o is not None and not o.finals and not o.faulted and not o.approval_seq:
                o.approval_seq = rec["seq"]
        elif mti == MTI_ADVICE_RESP and not msg.get("orig_key"):
            self.offline.answered(msg)  # (a completion's or tip's answer names its sale)
        elif mti == MTI_BATCH_RESP:
            self.batch.answer(msg, rec["seq"], rec["t_ms"], self.response_timeout_ms)

    def _cashier(self, rec: Record) -> None:
        obs = self.intents.get(rec.get("intent", 0))
        self.credits.cashier(rec, obs is not None and obs.final == "approved")
        clear = not self.any_fault and not self.batch.outstanding
        self.holds.cashier(rec, clear=clear)
        self.credit_asks.cashier(rec, clear=clear and not self.holds.under_way())
        if rec["action"] == "cancel":
            self.cancel_pressed = True
        # A retry after a FAILED display: the customer did not leave with it.
        if rec["action"] == "retry" and "intent" in rec:
            obs = self.intents.get(rec["intent"])
            if obs is not None and obs.finals:
                obs.finals[-1].retried = True

    def _print_start(self, rec: Record) -> None:
        self.owed.print_start(rec["job"])

    def _send(self, rec: Record) -> None:
        if rec["from"] != "terminal":
            return
        msg = rec["msg"]
        if msg.get("processing_code", "000000") == PROC_REFUND:
            return  # a refund is no customer's purchase (see credits.py)
        if msg["mti"] == MTI_ADVICE:
            if not msg.get("orig_key"):  # (a completion or tip: judged in holds.py)
                self._advice_sent(msg)
                self.offline.advice_sent(msg.get("idem_key", ""), rec["t_ms"])
            return
        if msg["mti"] not in _SALE_MTIS:
            if msg["mti"] == MTI_REVERSAL:
                self.reversal_sent = True
            elif msg["mti"] == MTI_BATCH:
                self.batch.sent(msg.get("batch_no", 0), rec["seq"], rec["t_ms"])
            return
        n = rec.get("intent", 0)
        obs = self.intents.get(n)
        key = msg.get("idem_key", "")
        if key and key not in self.key_intent:
            self.sales_sent += 1
        if key and self.key_intent.get(key) != n:
            # New, or reused by another intent (the world re-attributes a fresh
            # request reusing a key to the intent in progress).
            self.key_intent[key] = n
            self.send_seq_by_key[key] = rec["seq"]
            if obs is not None:
                obs.keys.append(key)
        self.stan_intent[msg["stan"]] = n
        if obs is not None:
            obs.stans.append(msg["stan"])
        amount = msg.get("amount", 0)
        if amount <= 0 or amount > AMOUNT_MAX_WIRE:
            self._add(
                Violation(
                    "amount-integrity",
                    f"a sale of {money(amount)} left the terminal for intent {n} "
                    "(no zero, negative or oversized sale may be sent).",
                    n,
                    (),
                    (rec["seq"],),
                )
            )
        elif obs is not None and obs.keyed is not None and amount != obs.keyed:
            self._add(
                Violation(
                    "amount-integrity",
                    f"intent {n}: the cashier entered {money(obs.keyed)} but the terminal "
                    f"asked the host for {money(amount)}.",
                    n,
                    (),
                    (rec["seq"],),
                )
            )

    def _advice_sent(self, msg: dict[str, Any]) -> None:
        """An offline advice names its sale by key (or, with a new key, by STAN)."""
        key = msg.get("idem_key", "")
        n = self.key_intent.get(key) or self.stan_intent.get(msg["stan"])
        if key and n and key not in self.key_intent:
            self.key_intent[key] = n
            self.send_seq_by_key[key] = 0
            obs = self.intents.get(n)
            if obs is not None:
                obs.keys.append(key)

    def _host(self, rec: Record) -> None:
        if rec["action"].startswith("batch") and "batch_no" in rec:
            self.batch.host_answered(rec["batch_no"], rec["seq"])
        rrn = rec.get("rrn")
        if rec["action"] == "reverse-refused" and rec.get("detail", "").startswith(AMOUNT_DIFFERS):
            self._reversal_amount_differs(rec)
        if rrn and self.own_books_only and rec["action"] in _OWN_ACTIONS:
            if len(self.own_rrns) >= OWN_RRNS_MAX:
                del self.own_rrns[next(iter(self.own_rrns))]
            self.own_rrns[rrn] = None
        if rrn and rec["action"] in _CHARGE_ACTIONS:
            self.host_seq_by_rrn.setdefault(rrn, rec["seq"])
            if rec.get("mti") in _CHARGE_MTIS and rrn not in self.rrn_owner:
                key = rec.get("key", "")
                n = self.key_intent.get(key) if key else self.stan_intent.get(rec["stan"])
                if n is not None:
                    self.rrn_owner[rrn] = n

    def _reversal_amount_differs(self, rec: Record) -> None:
        """A reversal names the sale's amount as the host holds it (the total, with a
        tip): one the host refuses for its amount leaves the sale charged or turns
        the cashier's void into a refund."""
        rrn = rec.get("rrn", "")
        n = self.rrn_owner.get(rrn, 0)
        self._add(
            Violation(
                "amount-integrity",
                f"a reversal (0400) of the sale with rrn {rrn} named {money(rec['amount'])}, "
                f"not what the host holds for it: refused ({rec['detail']})",
                n,
                (rrn,),
                (rec["seq"],),
            )
        )

    def _display(self, rec: Record) -> None:
        self.holds.seen(rec)
        self.credit_asks.display(rec)
        outcome = rec["outcome"]
        rrn = rec.get("rrn", "")
        if outcome == "receipt-pending" and rrn:
            self.pending_seq[rrn] = rec["seq"]
            self.credits.slips.shown_pending(rrn, rec["seq"])
        n = rec.get("intent")
        if outcome in ("voided", "refunded"):
            self.credits.display(rec)
            return  # about the sale it names, not a final state of a purchase
        if outcome in ("completed", "tip-added"):
            self.holds.display(rec)
            return  # about the sale it names, as above
        if rrn:
            self.holds.answer(rec)  # a refusal of a completion or tip names the sale
        if rrn:
            self.owed.display(outcome, rrn, rec["seq"], n or 0)
        obs = self.intents.get(n) if n is not None else None
        if rec.get("key"):
            self.offline.display(rec, n or 0, intended(obs) if obs is not None else 0)
        if obs is None:
            return
        obs.last_display_seq = rec["seq"]
        if outcome in ("approved", "declined", "failed"):
            obs.final = outcome
            obs.final_ms = rec["t_ms"]
            obs.final_seq = rec["seq"]
            if not obs.finals:
                obs.waited_ms = rec["t_ms"] - max(obs.start_ms, self.last_power_on_ms)
                if not obs.stans and self._no_reason_to_refuse(obs):
                    obs.refused_seq = rec["seq"]
            if len(obs.finals) < FINALS_KEPT_MAX:
                shown = Shown(
                    outcome,
                    rec["seq"],
                    rec["t_ms"],
                    rrn,
                    amount=rec.get("amount", 0),
                    offline=bool(rec.get("key")) and not rrn,
                )
                obs.finals.append(shown)

    def _no_reason_to_refuse(self, o: IntentObs) -> bool:
        """A valid amount, and nothing in the run so far that lets a correct terminal
        refuse a sale without asking the host (a fault, a batch close not answered
        yet, a reversal, a full batch, the cashier's cancel)."""
        keyed = o.keyed if o.keyed is not None else o.amount
        return (
            0 < keyed <= self.amount_max
            and not self.any_fault
            and not self.cancel_pressed
            and not self.batch.outstanding
            and not self.reversal_sent
            and self.sales_sent < BATCH_ITEMS_MAX
        )

    def _print(self, rec: Record) -> None:
        ok = rec["status"] == "ok"
        rrn = record_rrn(rec)
        if ok and rrn and rec["receipt"].get("copy") and rrn in self.owed.owed:
            n = self.owed.owed[rrn][1] or self.rrn_owner.get(rrn, 0)
            self._add(
                Violation(
                    "receipt-for-every-charge",
                    f"the terminal printed a COPY of the receipt for rrn {rrn}"
                    + (f" (intent {n})" if n else "")
                    + " while that receipt was still owed: the customer's only receipt "
                    "is marked as a duplicate.",
                    n,
                    (rrn,),
                    (rec["seq"],),
                )
            )
        self.owed.printed(rec["job"], rrn, ok)
        if not ok:
            return
        receipt = rec["receipt"]
        self.credit_asks.print_ok(str(receipt.get("rrn", "")))
        offline = not receipt.get("rrn") and self.offline.is_offline(receipt.get("idem_key", ""))
        if receipt.get("status") == "approved" and offline:
            self.offline.receipt(rec)  # printed before the host knew: judged there
            return
        if receipt.get("status") in CREDIT_STATUSES:
            self.credits.slips.receipt(rec["seq"], receipt)  # a void's or refund's
            return
        if receipt.get("status") == "approved":
            key = receipt.get("idem_key", "")
            n = self.key_intent.get(key, 0) if key else 0
            self.receipts.append((rec["seq"], rec["t_ms"], receipt, n))
            self.printed.setdefault(receipt.get("rrn", ""), rec["seq"])

    def _fault(self, rec: Record) -> None:
        self.offline.fault(rec)
        self.any_fault = True
        self.batch.faults_seen += 1
        if self.current is not None and not self.current.finals:
            self.current.faulted = True
        until: int = rec["until_ms"] if "until_ms" in rec else rec["t_ms"]
        self.last_fault_ms = max(self.last_fault_ms, until)
        self.last_fault_seq = rec["seq"]

    def _power(self, rec: Record) -> None:
        self.offline.power(rec)
        if rec["state"] == "off":
            self.owed.power_off()
            self.any_fault = True
            self.batch.faults_seen += 1
            if self.current is not None and not self.current.finals:
                self.current.faulted = True
        if rec["state"] == "on" and rec["seq"] > 1:
            self.last_fault_ms = max(self.last_fault_ms, rec["t_ms"])
            self.last_power_on_ms = rec["t_ms"]

    def _chip(self, rec: Record) -> None:
        """A chip card answered a completion: one that refused the host's approval
        (declined, or pulled too early) makes DECLINED the truthful outcome."""
        o = self.intents.get(rec.get("intent", 0))
        if o is not None and rec["result"] != "ok":
            o.chip_refused = True

    def _crash(self, rec: Record) -> None:
        self.crashes.append((rec["seq"], rec["error"]))

    def _end(self, rec: Record) -> None:
        self.end = rec

    # -------------------------------------------------------------- attribution

    def intent_of(self, txn: HostTxn) -> int:
        """The intent a host transaction belongs to: the one whose request the host
        charged (a key reused by a later intent does not move an earlier charge)."""
        n = self.rrn_owner.get(txn.rrn)
        if n is not None:
            return n
        # A host_double_charge twin carries its original's key plus a suffix.
        key = txn.idem_key.removesuffix(HostDoubleCharge.TWIN_SUFFIX)
        if key and key in self.key_intent:
            return self.key_intent[key]
        return self.stan_intent.get(txn.stan, 0)

    def _book(self, books: dict[int, IntentBooks], txn: HostTxn) -> None:
        if txn.terminal_id != self.terminal_id:
            return
        if self.own_books_only and txn.rrn not in self.own_rrns:
            return  # another device's, under the same terminal id
        n = self.intent_of(txn)
        b = books.get(n)
        if b is None:
            b = books[n] = IntentBooks()
        if txn.rrn:
            b.rrns.append(txn.rrn)
        if txn.kind == "refund" or txn.kind == "completion":
            return  # judged as the sale's credits (credits.py) or capture (holds.py)
        if not live_charge(txn) and not self.credits.void_asked(txn.rrn):
            return  # a sale the cashier asked to void counts as the charge it was
        b.net += txn.amount - txn.tip  # a tip is judged in holds.py
        b.live.append(txn)

    # -------------------------------------------------------------- judging

    def settle(self, before_ms: int) -> None:
        """Judge and forget every intent final before `before_ms` (and everything
        older than that), freezing the host's books up to then."""
        host = self.host
        if host is None:
            return
        while True:
            batch = host.transactions_between(self.txn_cursor, before_ms)
            if not batch:
                break
            for txn in batch:
                self._book(self.books, txn)
            self.txn_cursor = batch[-1].id
        while self.receipts and self.receipts[0][1] < before_ms:
            seq, _, receipt, n = self.receipts.popleft()
            self._judge_receipt(seq, receipt, n)
        for n in list(self.intents):
            o = self.intents[n]
            if not o.final or o.final_ms >= before_ms:
                break  # judged in order; an unfinished intent holds the line
            b = self.books.pop(n, None) or IntentBooks()
            for v in judge_intent(self, o, b):
                self._add(v)
            self._forget(o, b)

    def _forget(self, o: IntentObs, b: IntentBooks) -> None:
        del self.intents[o.intent]
        if self.current is o:
            self.current = None
        for key in o.keys:
            if self.key_intent.get(key) == o.intent:
                del self.key_intent[key]
                self.send_seq_by_key.pop(key, None)
        for stan in o.stans:
            if self.stan_intent.get(stan) == o.intent:
                del self.stan_intent[stan]
        for rrn in b.rrns:
            self.printed.pop(rrn, None)
            self.pending_seq.pop(rrn, None)
            self.host_seq_by_rrn.pop(rrn, None)
            self.rrn_owner.pop(rrn, None)
            self.own_rrns.pop(rrn, None)
            self.owed.forget(rrn)

    def _judge_receipt(self, seq: int, receipt: dict[str, Any], n: int) -> None:
        assert self.host is not None
        rrn = receipt.get("rrn", "")
        txn = self.host.transaction_by_rrn(rrn) if rrn else None
        for v in judge_receipt(self, seq, receipt, txn, n):
            self._add(v)

    def evaluate(self) -> dict[str, list[Violation]]:
        """Every invariant's violations so far (empty lists where it holds),
        judging what is still held without forgetting it."""
        assert self.host is not None, "attach a host first"
        host = self.host
        out = {name: list(vs) for name, vs in self.found.items()}
        books: dict[int, IntentBooks] = {
            n: IntentBooks(b.net, list(b.live), list(b.rrns)) for n, b in self.books.items()
        }
        cursor = self.txn_cursor
        while True:
            batch = host.transactions_between(cursor, 2**62)
            if not batch:
                break
            for txn in batch:
                self._book(books, txn)
            cursor = batch[-1].id
        for seq, _, receipt, n in self.receipts:
            rrn = receipt.get("rrn", "")
            found = host.transaction_by_rrn(rrn) if rrn else None
            for v in judge_receipt(self, seq, receipt, found, n):
                out[v.invariant].append(v)
        for v in self.owed.violations(self.pending_seq, self.rrn_owner):
            out[v.invariant].append(v)
        for n, o in self.intents.items():
            for v in judge_intent(self, o, books.get(n) or IntentBooks()):
                out[v.invariant].append(v)
        for v in judge_run(self, host):
            out[v.invariant].append(v)
        quiet = bool(self.end.get("quiet", False))
        own = self.own_rrns if self.own_books_only else None
        for v in judge_credits(self.credits, host, self.terminal_id, quiet, own):
            out[v.invariant].append(v)
        for v in self.offline.violations(self, host):
            out[v.invariant].append(v)
        holds = judge_holds(
            self.holds, host, self.terminal_id, quiet, self.credits.void_asked, not self.any_fault
        )
        for v in holds:
            out[v.invariant].append(v)
        for v in judge_credit_asks(self.credit_asks, host, quiet, not self.any_fault):
            out[v.invariant].append(v)
        return out


def check_all(
    obs: Observations, host: Acquirer, terminal_id: str, settle_within_ms: int
) -> dict[str, list[Violation]]:
    """Every invariant's violations (empty lists where it holds)."""
    if obs.host is None:
        obs.attach(host, terminal_id, settle_within_ms)
    return obs.evaluate()
