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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from acquirer.host import Acquirer, HostTxn
from acquirer.protocol import AMOUNT_MAX_WIRE, MTI_PURCHASE, PROC_REFUND
from faults.host import HostDoubleCharge
from scenarios.model import INVARIANT_NAMES

from .trace import Record

SAFETY = "safety"
LIVENESS = "liveness"


@dataclass(frozen=True, slots=True)
class Violation:
    invariant: str
    message: str  # one plain sentence
    intent: int = 0
    rrns: tuple[str, ...] = ()
    seqs: tuple[int, ...] = ()  # trace lines that show it
    klass: str = SAFETY

    def to_dict(self) -> dict[str, Any]:
        return {
            "invariant": self.invariant,
            "message": self.message,
            "intent": self.intent,
            "rrns": list(self.rrns),
            "seqs": list(self.seqs),
            "class": self.klass,
        }


def money(minor: int) -> str:
    sign = "-" if minor < 0 else ""
    minor = abs(minor)
    return f"{sign}{minor // 100}.{minor % 100:02d}"


@dataclass(slots=True)
class IntentObs:
    intent: int
    card: str
    amount: int  # what the scenario intended
    seq: int
    start_ms: int
    keyed: int | None = None  # the last amount the cashier keyed for it
    final: str = ""
    final_ms: int = -1
    final_seq: int = 0
    last_display_seq: int = 0
    keys: list[str] = field(default_factory=list)  # idempotency keys sent for it
    stans: list[int] = field(default_factory=list)


@dataclass(slots=True)
class IntentBooks:
    """What the host holds for one intent."""

    net: int = 0
    live: list[HostTxn] = field(default_factory=list)  # approved purchases, not reversed
    rrns: list[str] = field(default_factory=list)  # every transaction's RRN


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
        self.printed: dict[str, int] = {}  # rrn -> seq of an ok print of an approved receipt
        self.receipts: deque[tuple[int, int, dict[str, Any]]] = deque()  # seq, t_ms, receipt
        self.pending_seq: dict[str, int] = {}  # rrn -> last RECEIPT_PENDING display seq
        self.batch_seqs: dict[int, int] = {}  # batch_no -> seq of the host's answer
        self.last_fault_ms = -1
        self.last_fault_seq = 0
        self.end: Record = {}
        self.crashes: list[tuple[int, str]] = []
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
            "fault": self._fault,
            "power": self._power,
            "host_down": self._fault,
            "end": self._end,
            "crash": self._crash,
        }

    def attach(self, host: Acquirer, terminal_id: str, settle_within_ms: int) -> None:
        self.host = host
        self.terminal_id = terminal_id
        self.settle_within_ms = settle_within_ms

    def observe(self, rec: Record) -> None:
        handler = self._dispatch.get(rec["kind"])
        if handler is not None:
            handler(rec)

    def _add(self, v: Violation) -> None:
        self.found_count[v.invariant] += 1
        kept = self.found[v.invariant]
        if len(kept) < VIOLATIONS_KEPT_MAX:
            kept.append(v)

    def _intent(self, rec: Record) -> None:
        n = rec["intent"]
        self.intents[n] = IntentObs(n, rec["card"], rec["amount"], rec["seq"], rec["t_ms"])
        if self.host is not None and n % SETTLE_EVERY == 0:
            self.settle(rec["t_ms"] - HORIZON_MS)

    def _input(self, rec: Record) -> None:
        if rec["event"] == "amount_keyed" and "intent" in rec:
            obs = self.intents.get(rec["intent"])
            if obs is not None:
                obs.keyed = rec["amount"]

    def _send(self, rec: Record) -> None:
        if rec["from"] != "terminal":
            return
        msg = rec["msg"]
        if msg["mti"] != MTI_PURCHASE:
            return
        n = rec.get("intent", 0)
        obs = self.intents.get(n)
        key = msg.get("idem_key", "")
        if key and key not in self.key_intent:
            self.key_intent[key] = n
            self.send_seq_by_key[key] = rec["seq"]
            if obs is not None:
                obs.keys.append(key)
        self.stan_intent[msg["stan"]] = n
        if obs is not None:
            obs.stans.append(msg["stan"])
        amount = msg.get("amount", 0)
        if msg.get("processing_code", "000000") == PROC_REFUND:
            return
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

    def _host(self, rec: Record) -> None:
        if rec["action"].startswith("batch") and "batch_no" in rec:
            self.batch_seqs.setdefault(rec["batch_no"], rec["seq"])
        rrn = rec.get("rrn")
        if rrn and rec["action"] in ("charge", "charge-no-reply", "refund"):
            self.host_seq_by_rrn.setdefault(rrn, rec["seq"])

    def _display(self, rec: Record) -> None:
        outcome = rec["outcome"]
        if outcome == "receipt-pending" and rec.get("rrn"):
            self.pending_seq[rec["rrn"]] = rec["seq"]
        n = rec.get("intent")
        obs = self.intents.get(n) if n is not None else None
        if obs is None:
            return
        obs.last_display_seq = rec["seq"]
        if outcome in ("approved", "declined", "failed"):
            obs.final = outcome
            obs.final_ms = rec["t_ms"]
            obs.final_seq = rec["seq"]

    def _print(self, rec: Record) -> None:
        if rec["status"] != "ok":
            return
        receipt = rec["receipt"]
        if receipt.get("status") == "approved":
            self.receipts.append((rec["seq"], rec["t_ms"], receipt))
            self.printed.setdefault(receipt.get("rrn", ""), rec["seq"])

    def _fault(self, rec: Record) -> None:
        until: int = rec["until_ms"] if "until_ms" in rec else rec["t_ms"]
        self.last_fault_ms = max(self.last_fault_ms, until)
        self.last_fault_seq = rec["seq"]

    def _power(self, rec: Record) -> None:
        if rec["state"] == "on" and rec["seq"] > 1:
            self.last_fault_ms = max(self.last_fault_ms, rec["t_ms"])

    def _crash(self, rec: Record) -> None:
        self.crashes.append((rec["seq"], rec["error"]))

    def _end(self, rec: Record) -> None:
        self.end = rec

    # -------------------------------------------------------------- attribution

    def intent_of(self, txn: HostTxn) -> int:
        # A host_double_charge twin carries its original's key plus a suffix.
        key = txn.idem_key.removesuffix(HostDoubleCharge.TWIN_SUFFIX)
        if key and key in self.key_intent:
            return self.key_intent[key]
        return self.stan_intent.get(txn.stan, 0)

    def _book(self, books: dict[int, IntentBooks], txn: HostTxn) -> None:
        if txn.terminal_id != self.terminal_id:
            return
        n = self.intent_of(txn)
        b = books.get(n)
        if b is None:
            b = books[n] = IntentBooks()
        if txn.rrn:
            b.rrns.append(txn.rrn)
        if txn.status != "approved":
            return
        b.net += -txn.amount if txn.kind == "refund" else txn.amount
        if txn.kind == "purchase":
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
            seq, _, receipt = self.receipts.popleft()
            self._judge_receipt(seq, receipt)
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
        for key in o.keys:
            self.key_intent.pop(key, None)
            self.send_seq_by_key.pop(key, None)
        for stan in o.stans:
            if self.stan_intent.get(stan) == o.intent:
                del self.stan_intent[stan]
        for rrn in b.rrns:
            self.printed.pop(rrn, None)
            self.pending_seq.pop(rrn, None)
            self.host_seq_by_rrn.pop(rrn, None)

    def _judge_receipt(self, seq: int, receipt: dict[str, Any]) -> None:
        assert self.host is not None
        rrn = receipt.get("rrn", "")
        txn = self.host.transaction_by_rrn(rrn) if rrn else None
        if txn is not None and txn.terminal_id != self.terminal_id:
            txn = None
        for v in judge_receipt(self, seq, receipt, txn):
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
        for seq, _, receipt in self.receipts:
            rrn = receipt.get("rrn", "")
            found = host.transaction_by_rrn(rrn) if rrn else None
            if found is not None and found.terminal_id != self.terminal_id:
                found = None
            for v in judge_receipt(self, seq, receipt, found):
                out[v.invariant].append(v)
        for n, o in self.intents.items():
            for v in judge_intent(self, o, books.get(n) or IntentBooks()):
                out[v.invariant].append(v)
        for v in judge_run(self, host):
            out[v.invariant].append(v)
        return out


def judge_intent(obs: Observations, o: IntentObs, b: IntentBooks) -> list[Violation]:
    """The per-intent invariants for one intent, given what the host holds for it."""
    out: list[Violation] = []
    n = o.intent
    want = intended(o)
    if b.net > want:
        out.append(
            Violation(
                "no-duplicate-charge",
                f"intent {n} ({money(want)} with card ...{o.card[-4:]}) was charged "
                f"{money(b.net)} net in {len(b.live)} {'debit' if len(b.live) == 1 else 'debits'} "
                f"(rrn {', '.join(t.rrn for t in b.live)}).",
                n,
                tuple(t.rrn for t in b.live),
                (o.seq, *_seqs_for(obs, b.live)),
            )
        )
    if o.final in ("declined", "failed") and b.net > 0:
        out.append(
            Violation(
                "no-charge-on-failure",
                f"intent {n} was shown {o.final.upper()} but the host kept "
                f"{money(b.net)} (rrn {', '.join(t.rrn for t in b.live)}).",
                n,
                tuple(t.rrn for t in b.live),
                (o.final_seq, *_seqs_for(obs, b.live)),
            )
        )
    if o.final == "approved":
        for txn in b.live:
            if txn.rrn in obs.printed or txn.rrn in obs.pending_seq:
                continue  # printed, or visibly pending: a reprint completes it
            out.append(
                Violation(
                    "receipt-for-every-charge",
                    f"intent {n} was approved and charged {money(txn.amount)} (rrn {txn.rrn}) "
                    "but no receipt was printed and none is shown as pending.",
                    n,
                    (txn.rrn,),
                    (o.final_seq, *_seqs_for(obs, [txn])),
                )
            )
    if not o.final:
        out.append(
            Violation(
                "eventually-settles",
                f"intent {n} never reached a final state (approved, declined or failed).",
                n,
                seqs=(o.seq, *((o.last_display_seq,) if o.last_display_seq else ())),
                klass=LIVENESS,
            )
        )
    else:
        heal_ms = max(obs.last_fault_ms, o.start_ms)
        if o.final_ms > heal_ms + obs.settle_within_ms:
            out.append(
                Violation(
                    "eventually-settles",
                    f"intent {n} took until {o.final_ms} ms to reach a final state, more than "
                    f"{obs.settle_within_ms} ms after the last fault ({heal_ms} ms).",
                    n,
                    seqs=(o.seq, o.final_seq),
                    klass=LIVENESS,
                )
            )
    return out


def judge_receipt(
    obs: Observations, seq: int, receipt: dict[str, Any], txn: HostTxn | None
) -> list[Violation]:
    """An APPROVED receipt must match a live host transaction, amount included."""
    rrn = receipt.get("rrn", "")
    amount = receipt.get("amount", 0)
    if txn is None or txn.status != "approved":
        problem = (
            "the host has no such transaction"
            if txn is None
            else (f"the host's transaction is {txn.status}")
        )
        return [
            Violation(
                "no-receipt-without-record",
                f"an APPROVED receipt for {money(amount)} (rrn {rrn or 'none'}) was printed "
                f"but {problem}.",
                obs.intent_of(txn) if txn is not None else 0,
                (rrn,) if rrn else (),
                (seq,),
            )
        ]
    key = receipt.get("idem_key", "")
    if key and txn.idem_key and key != txn.idem_key:
        # The RRN is real but belongs to another sale: the approval was another
        # request's answer (replayed or spliced), and this sale has no record.
        return [
            Violation(
                "no-receipt-without-record",
                f"an APPROVED receipt for sale {key} names rrn {rrn}, which the host "
                f"holds for another sale ({txn.idem_key}).",
                obs.intent_of(txn),
                (rrn,),
                (seq,),
            )
        ]
    if txn.amount != amount:
        return [
            Violation(
                "amount-integrity",
                f"receipt rrn {txn.rrn} says {money(amount)} but the host authorised "
                f"{money(txn.amount)}.",
                obs.intent_of(txn),
                (txn.rrn,),
                (seq,),
            )
        ]
    return []


def judge_run(obs: Observations, host: Acquirer) -> list[Violation]:
    """Whole-run invariants: settlements, the ledger, and whether the run came to rest."""
    out: list[Violation] = []
    for s in host.settlements():
        if s.matched or s.terminal_id != obs.terminal_id:
            continue
        diff = ", ".join(f"stan {i.stan} {money(i.amount)}" for i in s.differing[:10])
        out.append(
            Violation(
                "batch-reconciles",
                f"batch {s.batch_no}: the terminal counted {s.terminal_count} "
                f"{'sale' if s.terminal_count == 1 else 'sales'} for "
                f"{money(s.terminal_amount)}, the host {s.host_count} for "
                f"{money(s.host_amount)}; differing: {diff or 'none listed'}.",
                seqs=(obs.batch_seqs[s.batch_no],) if s.batch_no in obs.batch_seqs else (),
            )
        )
    total = host.ledger_sum()
    if total != 0:
        out.append(
            Violation(
                "ledger-balances",
                f"the host's double-entry ledger sums to {money(total)} instead of 0.00.",
            )
        )
    end = obs.end
    if end and not end.get("quiet", True):
        out.append(
            Violation(
                "eventually-settles",
                f"the run hit its limit at {end['t_ms']} ms with {end.get('pending', 0)} "
                "events still pending: something never came to rest.",
                seqs=(end["seq"],),
                klass=LIVENESS,
            )
        )
    return out


def _seqs_for(obs: Observations, txns: Iterable[HostTxn]) -> tuple[int, ...]:
    out = []
    for t in txns:
        s = obs.host_seq_by_rrn.get(t.rrn) or obs.send_seq_by_key.get(t.idem_key)
        if s:
            out.append(s)
    return tuple(sorted(out))


def intended(o: IntentObs) -> int:
    """What the customer agreed to pay: the amount keyed (a keying error is the
    cashier's to see on the display), never less than nothing."""
    return max(0, o.keyed if o.keyed is not None else o.amount)


DESCRIPTIONS: dict[str, str] = {
    "no-duplicate-charge": "per intent, net money taken <= the amount entered",
    "no-charge-on-failure": "an intent finally shown declined/failed has zero net debit",
    "amount-integrity": "entered = sent = authorised = receipt; no zero/negative sale is sent",
    "receipt-for-every-charge": "every approved charge has a printed or visibly pending receipt",
    "no-receipt-without-record": "every APPROVED receipt matches a live host transaction",
    "batch-reconciles": "terminal batch totals = host settlement totals",
    "ledger-balances": "the host's double-entry ledger sums to zero",
    "eventually-settles": "after the last fault every intent reaches a final state in time",
}


def check_all(
    obs: Observations, host: Acquirer, terminal_id: str, settle_within_ms: int
) -> dict[str, list[Violation]]:
    """Every invariant's violations (empty lists where it holds)."""
    if obs.host is None:
        obs.attach(host, terminal_id, settle_within_ms)
    return obs.evaluate()
