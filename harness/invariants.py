"""The invariants: named checks that judge a run from its trace and final state.

They read only the trace (what was keyed, sent, delivered, displayed, printed,
journaled) and the host's final books; never a firmware's private fields, so they
judge a user's firmware exactly as they judge ours.

`Observations` streams over trace records and keeps a compact summary per intent;
each invariant is a function of that summary and the host. A violation names the
intent, the transactions and the trace sequence numbers that show it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from acquirer.host import Acquirer, HostTxn
from acquirer.protocol import AMOUNT_MAX_WIRE, MTI_PURCHASE, PROC_REFUND
from scenarios.model import INVARIANT_NAMES

from .trace import Record

SAFETY = "safety"
LIVENESS = "liveness"

# At most this many violations of one invariant are reported per run; the count
# says how many more there were.
VIOLATIONS_SHOWN_MAX = 5


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
    charge_seqs: list[int] = field(default_factory=list)


class Observations:
    """A streaming summary of a trace, enough for every invariant."""

    def __init__(self) -> None:
        self.intents: dict[int, IntentObs] = {}
        self.key_intent: dict[str, int] = {}
        self.stan_intent: dict[int, int] = {}
        self.send_seq_by_key: dict[str, int] = {}
        self.bad_amount_sends: list[tuple[int, int, int]] = []  # (seq, amount, intent)
        self.wrong_amount_sends: list[tuple[int, int, int, int]] = []  # seq, sent, keyed, intent
        self.host_seq_by_rrn: dict[str, int] = {}
        self.printed: dict[str, int] = {}  # rrn -> seq of an ok print
        self.printed_receipts: list[tuple[int, dict[str, Any]]] = []  # approved receipts printed
        self.pending_seq: dict[str, int] = {}  # rrn -> last RECEIPT_PENDING display seq
        self.batch_seqs: dict[int, int] = {}  # batch_no -> seq of the host's answer
        self.last_fault_ms = -1
        self.last_fault_seq = 0
        self.end: Record = {}
        self.crashes: list[tuple[int, str]] = []
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

    def observe(self, rec: Record) -> None:
        handler = self._dispatch.get(rec["kind"])
        if handler is not None:
            handler(rec)

    def _intent(self, rec: Record) -> None:
        n = rec["intent"]
        self.intents[n] = IntentObs(n, rec["card"], rec["amount"], rec["seq"], rec["t_ms"])

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
        key = msg.get("idem_key", "")
        if key:
            self.key_intent.setdefault(key, n)
            self.send_seq_by_key.setdefault(key, rec["seq"])
        self.stan_intent[msg["stan"]] = n
        amount = msg.get("amount", 0)
        if msg.get("processing_code", "000000") == PROC_REFUND:
            return
        if amount <= 0 or amount > AMOUNT_MAX_WIRE:
            self.bad_amount_sends.append((rec["seq"], amount, n))
            return
        obs = self.intents.get(n)
        if obs is not None and obs.keyed is not None and amount != obs.keyed:
            self.wrong_amount_sends.append((rec["seq"], amount, obs.keyed, n))

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
            self.printed_receipts.append((rec["seq"], receipt))
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
        if txn.idem_key and txn.idem_key in self.key_intent:
            return self.key_intent[txn.idem_key]
        return self.stan_intent.get(txn.stan, 0)


@dataclass(slots=True)
class Books:
    """Per intent: what the host holds at the end."""

    net: dict[int, int] = field(default_factory=dict)
    live: dict[int, list[HostTxn]] = field(default_factory=dict)  # approved, not reversed
    by_rrn: dict[str, HostTxn] = field(default_factory=dict)


def books(obs: Observations, host: Acquirer, terminal_id: str) -> Books:
    b = Books()
    for txn in host.transactions():
        if txn.terminal_id != terminal_id:
            continue
        if txn.rrn:
            b.by_rrn[txn.rrn] = txn
        if txn.status != "approved":
            continue
        n = obs.intent_of(txn)
        sign = -1 if txn.kind == "refund" else 1
        b.net[n] = b.net.get(n, 0) + sign * txn.amount
        if txn.kind == "purchase":
            b.live.setdefault(n, []).append(txn)
    return b


Check = Callable[[Observations, Books, Acquirer, int], list[Violation]]


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


def no_duplicate_charge(
    obs: Observations, b: Books, host: Acquirer, settle: int
) -> list[Violation]:
    out = []
    for n, o in obs.intents.items():
        net = b.net.get(n, 0)
        if net > intended(o):
            txns = b.live.get(n, [])
            out.append(
                Violation(
                    "no-duplicate-charge",
                    f"intent {n} ({money(intended(o))} with card ...{o.card[-4:]}) was charged "
                    f"{money(net)} net in {len(txns)} debits "
                    f"(rrn {', '.join(t.rrn for t in txns)}).",
                    n,
                    tuple(t.rrn for t in txns),
                    (o.seq, *_seqs_for(obs, txns)),
                )
            )
    return out


def no_charge_on_failure(
    obs: Observations, b: Books, host: Acquirer, settle: int
) -> list[Violation]:
    out = []
    for n, o in obs.intents.items():
        net = b.net.get(n, 0)
        if o.final in ("declined", "failed") and net > 0:
            txns = b.live.get(n, [])
            out.append(
                Violation(
                    "no-charge-on-failure",
                    f"intent {n} was shown {o.final.upper()} but the host kept "
                    f"{money(net)} (rrn {', '.join(t.rrn for t in txns)}).",
                    n,
                    tuple(t.rrn for t in txns),
                    (o.final_seq, *_seqs_for(obs, txns)),
                )
            )
    return out


def amount_integrity(obs: Observations, b: Books, host: Acquirer, settle: int) -> list[Violation]:
    out = []
    for seq, amount, n in obs.bad_amount_sends:
        out.append(
            Violation(
                "amount-integrity",
                f"a sale of {money(amount)} left the terminal for intent {n} "
                "(no zero, negative or oversized sale may be sent).",
                n,
                (),
                (seq,),
            )
        )
    for seq, sent, keyed, n in obs.wrong_amount_sends:
        out.append(
            Violation(
                "amount-integrity",
                f"intent {n}: the cashier entered {money(keyed)} but the terminal asked "
                f"the host for {money(sent)}.",
                n,
                (),
                (seq,),
            )
        )
    for seq, receipt in obs.printed_receipts:
        txn = b.by_rrn.get(receipt.get("rrn", ""))
        if txn is not None and txn.amount != receipt.get("amount"):
            out.append(
                Violation(
                    "amount-integrity",
                    f"receipt rrn {txn.rrn} says {money(receipt.get('amount', 0))} but the host "
                    f"authorised {money(txn.amount)}.",
                    obs.intent_of(txn),
                    (txn.rrn,),
                    (seq,),
                )
            )
    return out


def receipt_for_every_charge(
    obs: Observations, b: Books, host: Acquirer, settle: int
) -> list[Violation]:
    out = []
    for n, o in obs.intents.items():
        if o.final != "approved":
            continue
        for txn in b.live.get(n, []):
            if txn.rrn in obs.printed:
                continue
            pending = obs.pending_seq.get(txn.rrn)
            if pending is not None:
                continue  # a visible pending receipt: a reprint completes it
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
    return out


def no_receipt_without_record(
    obs: Observations, b: Books, host: Acquirer, settle: int
) -> list[Violation]:
    out = []
    for seq, receipt in obs.printed_receipts:
        rrn = receipt.get("rrn", "")
        txn = b.by_rrn.get(rrn)
        if txn is None:
            problem = "the host has no such transaction"
        elif txn.status != "approved":
            problem = f"the host's transaction is {txn.status}"
        else:
            continue
        n = obs.intent_of(txn) if txn is not None else 0
        out.append(
            Violation(
                "no-receipt-without-record",
                f"an APPROVED receipt for {money(receipt.get('amount', 0))} "
                f"(rrn {rrn or 'none'}) was printed but {problem}.",
                n,
                (rrn,) if rrn else (),
                (seq,),
            )
        )
    return out


def batch_reconciles(obs: Observations, b: Books, host: Acquirer, settle: int) -> list[Violation]:
    out = []
    for s in host.settlements():
        if s.matched:
            continue
        diff = ", ".join(f"stan {i.stan} {money(i.amount)}" for i in s.differing[:10])
        out.append(
            Violation(
                "batch-reconciles",
                f"batch {s.batch_no}: the terminal counted {s.terminal_count} sales for "
                f"{money(s.terminal_amount)}, the host {s.host_count} for "
                f"{money(s.host_amount)}; differing: {diff or 'none listed'}.",
                seqs=(obs.batch_seqs[s.batch_no],) if s.batch_no in obs.batch_seqs else (),
            )
        )
    return out


def ledger_balances(obs: Observations, b: Books, host: Acquirer, settle: int) -> list[Violation]:
    total = host.ledger_sum()
    if total != 0:
        return [
            Violation(
                "ledger-balances",
                f"the host's double-entry ledger sums to {money(total)} instead of 0.00.",
            )
        ]
    return []


def eventually_settles(obs: Observations, b: Books, host: Acquirer, settle: int) -> list[Violation]:
    out = []
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
    for n, o in obs.intents.items():
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
            continue
        heal_ms = max(obs.last_fault_ms, o.start_ms)
        if o.final_ms > heal_ms + settle:
            out.append(
                Violation(
                    "eventually-settles",
                    f"intent {n} took until {o.final_ms} ms to reach a final state, more than "
                    f"{settle} ms after the last fault ({heal_ms} ms).",
                    n,
                    seqs=(o.seq, o.final_seq),
                    klass=LIVENESS,
                )
            )
    return out


INVARIANTS: dict[str, Check] = {
    "no-duplicate-charge": no_duplicate_charge,
    "no-charge-on-failure": no_charge_on_failure,
    "amount-integrity": amount_integrity,
    "receipt-for-every-charge": receipt_for_every_charge,
    "no-receipt-without-record": no_receipt_without_record,
    "batch-reconciles": batch_reconciles,
    "ledger-balances": ledger_balances,
    "eventually-settles": eventually_settles,
}
assert tuple(INVARIANTS) == INVARIANT_NAMES

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
    b = books(obs, host, terminal_id)
    return {name: fn(obs, b, host, settle_within_ms) for name, fn in INVARIANTS.items()}
