"""Judge the invariants on the logs themselves, before any replay, so that import
names the real incident's failure class even where the replay cannot reproduce it.

The logs show what the terminal showed and printed and what the host decided. An
intent (one customer paying once) is a keyed amount, with its restart after a
reboot and the cashier's retries after FAILED (same amount within RETRY_WINDOW_MS);
host decisions belong to the intent whose send carried their key or STAN. Not
judged from logs: `ledger-balances` (the host's ledger is not in its log).
"""

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from acquirer.protocol import MTI_ADVICE, MTI_PREAUTH, MTI_PURCHASE

from .judge_credits import judge_credits
from .judge_holds import judge_holds
from .offline import advice_base, is_advice_send, offline_keys
from .parse import Entry, Log

RETRY_WINDOW_MS = 120_000
# The sends that start a customer's payment: a purchase (or refund), a pre-authorisation.
_PAYMENT_MTIS = (MTI_PURCHASE, MTI_PREAUTH)
# (host action, MTI) pairs that take a customer's money: a sale or an offline advice
# charged, a pre-authorisation held.
_CHARGES = {("charge", MTI_PURCHASE), ("charge", MTI_ADVICE), ("hold", MTI_PREAUTH)}
FINAL = ("approved", "declined", "failed")
# At most this many findings are kept per invariant.
FINDINGS_MAX = 20


@dataclass(slots=True)
class Intent:
    """One customer's purchase as the terminal log shows it."""

    number: int
    amount: int
    line: int
    keys: set[str] = field(default_factory=set)  # idempotency keys sent for it
    offline: bool = False  # uploaded as an offline advice (0220)
    stans: set[int] = field(default_factory=set)  # STANs of its 0200s
    displays: list[str] = field(default_factory=list)
    approvals: list[str] = field(default_factory=list)  # the RRN of each APPROVED display
    answer_rrn: str = ""  # the RRN of the last 0210 received for it
    # An APPROVED display not saying PARTIAL: the desk believes all of it was paid.
    fully_approved: bool = False
    # What the terminal did for it, in order: final displays, receipts, responses
    # received, boots and crashes (the position of a fault among them).
    events: list[str] = field(default_factory=list)

    @property
    def final(self) -> str:
        finals = [d for d in self.displays if d in FINAL]
        return finals[-1] if finals else ""


def segment(tlog: Log) -> list[Intent]:
    """The intents of a terminal log, in order."""
    intents: list[Intent] = []
    cur: Intent | None = None
    rebooted = False
    last_final: tuple[str, int] = ("", 0)
    for e in tlog.entries:
        if (e.event == "power" and e.data["state"] == "on" and intents) or (
            e.event == "boot" and intents
        ):
            rebooted = True
        elif e.event == "amount_keyed":
            amount = int(e.data["amount"])
            restart = cur is not None and not cur.final and rebooted
            retry = (
                cur is not None
                and last_final[0] == "failed"
                and amount == cur.amount
                and 0 <= e.ts_ms - last_final[1] <= RETRY_WINDOW_MS
            )
            if not (restart or retry):
                cur = Intent(len(intents) + 1, amount, e.line)
                intents.append(cur)
            rebooted, last_final = False, ("", 0)
        elif e.event == "send" and cur is not None and is_advice_send(e.data):
            # An advice uploads an earlier offline sale: it belongs to the intent
            # that sent the sale's key (the upload suffix `-uN` taken off).
            key = str(e.data.get("idem_key", ""))
            owner = next((i for i in intents if advice_base(key) in i.keys), cur)
            owner.offline = True
            owner.keys.add(key)
        elif e.event == "send" and cur is not None and e.data["mti"] in _PAYMENT_MTIS:
            if e.data.get("idem_key"):
                cur.keys.add(str(e.data["idem_key"]))
            cur.stans.add(int(e.data["stan"]))
        elif e.event == "display" and cur is not None:
            outcome = str(e.data["outcome"])
            if outcome in (*FINAL, "receipt-pending"):
                cur.displays.append(outcome)
                cur.events.append(f"display {outcome}")
            if outcome in ("completed", "tip-added"):
                # A completion or tip shown done names the hold's or sale's RRN.
                cur.events.append(f"display {outcome} rrn {e.data.get('rrn', '')}")
            if outcome in FINAL:
                last_final = (outcome, e.ts_ms)
            if outcome == "approved":
                cur.fully_approved |= "PARTIAL" not in str(e.data.get("text", "")).upper()
                # A log's display may not name the RRN: then it is the answer's.
                cur.approvals.append(str(e.data.get("rrn") or cur.answer_rrn))
        elif e.event == "recv" and cur is not None and e.data.get("mti") in ("0110", "0210"):
            cur.answer_rrn = str(e.data.get("rrn", ""))
        if cur is not None:
            token = _token(e)
            if token:
                cur.events.append(token)
    return intents


def _token(e: Entry) -> str:
    """A terminal line as one step of an intent's sequence ("" if not one)."""
    d = e.data
    if e.event == "recv":
        return f"recv {d['mti']} rc {d.get('rc', '')} rrn {d.get('rrn', '')}"
    if e.event == "print":
        r = d.get("receipt", {})
        r = r if isinstance(r, dict) else {}
        what = f"{r.get('status', '')} {r.get('amount', '')}"
        return f"print {d['status']} {what} rrn {r.get('rrn', '')}"
    # Power lines are left out: a terminal cannot log its own power loss, so a log
    # may lack them where the replay has them; the boot marks the power cycle.
    if e.event == "boot":
        return "boot"
    if e.event == "crash":
        return "crash"
    return ""


@dataclass(slots=True)
class _Money:
    charged: list[tuple[str, int]] = field(default_factory=list)  # (rrn, amount)
    reversed: set[str] = field(default_factory=set)

    def net(self) -> int:
        return sum(a for r, a in self.charged if r not in self.reversed)


def judge_logs(tlog: Log, hlog: Log) -> dict[str, list[str]]:
    """Invariant name -> findings, for the invariants the logs show broken."""
    out: dict[str, list[str]] = defaultdict(list)

    def find(name: str, text: str) -> None:
        if len(out[name]) < FINDINGS_MAX:
            out[name].append(text)

    intents = segment(tlog)
    by_key = {k: i for i in intents for k in i.keys}
    by_stan = {s: i for i in intents for s in i.stans}
    money: dict[int, _Money] = defaultdict(_Money)
    approved: dict[str, int] = {}  # rrn -> amount charged, not reversed
    charged_key: dict[str, str] = {}  # rrn -> the idempotency key it was charged under
    reversed_rrns: set[str] = set()
    batches_settled: dict[str, int] = defaultdict(int)
    for e in hlog.entries:
        if e.event != "decision":
            continue
        action, rrn = str(e.data["action"]), str(e.data.get("rrn", ""))
        # A pre-authorisation's hold is its intent's charge (what its APPROVED and its
        # receipt stand for), captured later or released by a reversal.
        if (action, e.data["mti"]) in _CHARGES:
            key = str(e.data.get("key", ""))
            intent = by_key.get(key) if key else by_stan.get(int(e.data["stan"]))
            amount = int(e.data.get("amount", 0))
            approved[rrn] = amount
            charged_key[rrn] = key
            if intent is not None:
                money[intent.number].charged.append((rrn, amount))
                # A partial approval (RC 10) takes less than keyed; a terminal that
                # then shows a plain APPROVED (not PARTIAL: collect the rest) under-collects.
                partial = e.data.get("rc") == "10" and amount < intent.amount
                partial = partial and not intent.fully_approved
                if amount != intent.amount and not partial:
                    find(
                        "amount-integrity",
                        f"purchase {intent.number}: keyed {intent.amount}, charged {amount}",
                    )
        elif action == "reverse":
            reversed_rrns.add(rrn)
        elif action == "batch-mismatch":
            find("batch-reconciles", f"{hlog.path}:{e.line}: host found the batch mismatched")
        elif action == "batch-match":
            batch = str(e.data.get("batch_no", e.data.get("stan")))
            batches_settled[batch] += 1
    # A sale, hold or completion the cashier voided while it stood APPROVED (or
    # COMPLETED) counts as the charge it was: its reversal is what was asked for.
    unasked = reversed_rrns - voids_asked(tlog)
    for m in money.values():
        m.reversed |= unasked
    for i in intents:
        m = money[i.number]
        # A negative amount keyed (a keypad fault the terminal refuses) asks for nothing.
        if m.net() > max(i.amount, 0):
            rrns = [r for r, _ in m.charged if r not in unasked]
            find(
                "no-duplicate-charge",
                f"purchase {i.number} (line {i.line}): {i.amount} charged {len(rrns)} times "
                f"(rrn {', '.join(rrns)})",
            )
        if i.final in ("declined", "failed") and m.net() > 0:
            find(
                "no-charge-on-failure",
                f"purchase {i.number} (line {i.line}): showed {i.final.upper()}, yet "
                f"{m.net()} charged",
            )
        if not i.final:
            find("eventually-settles", f"purchase {i.number} (line {i.line}): no final display")
        live = {r for r, _ in m.charged if r not in unasked}
        for rrn in i.approvals:
            if not rrn and i.offline:
                continue  # approved offline: its charge (if any) comes with the advice
            if (rrn and rrn not in live) or (not rrn and not live):
                find(
                    "approved-means-charged",
                    f"purchase {i.number} (line {i.line}): showed APPROVED"
                    + (f" rrn {rrn}" if rrn else "")
                    + " without a live host charge of its own",
                )
                break
    printed = _judge_receipts(tlog, approved, charged_key, unasked, find)
    judge_credits(tlog, hlog, *_credit_books(hlog), reversed_rrns, find)
    judge_holds(tlog, hlog, find)
    for i in intents:
        if i.final != "approved" or "receipt-pending" in i.displays or i.offline:
            continue  # only approved sales need a receipt; a pending one is visible
        for rrn, _ in money[i.number].charged:
            if rrn not in unasked and rrn not in printed:
                find(
                    "receipt-for-every-charge",
                    f"purchase {i.number} (line {i.line}): approved, host charge rrn {rrn} "
                    "has no receipt",
                )
    return dict(out)


def _credit_books(hlog: Log) -> tuple[dict[str, str], dict[str, int]]:
    """What a void or refund may name, from the host's decisions: rrn -> the key it
    was charged, held or captured under, and rrn -> its total as it stands (a tip
    adjust's total: a void of a tipped sale gives back the tip too)."""
    keys: dict[str, str] = {}
    totals: dict[str, int] = {}
    for e in hlog.entries:
        d = e.data
        action = str(d["action"]) if e.event == "decision" else ""
        if action in ("charge", "hold", "capture", "adjust") and d.get("rc", "00") == "00":
            rrn = str(d.get("rrn", ""))
            if action != "adjust":
                keys.setdefault(rrn, str(d.get("key", "")))
            totals[rrn] = int(d.get("amount", 0))
    return keys, totals


def voids_asked(tlog: Log) -> set[str]:
    """The RRNs the cashier keyed a void of while the sale stood APPROVED (a hold
    too), or while its completion stood COMPLETED (the completion's own RRN, the 0230's).
    A sale shown DECLINED or FAILED after its approval (a chip decline) stands no more."""
    standing: set[str] = set()
    current: set[str] = set()  # the approvals of the payment being keyed
    answer = ""  # the RRN of the last approving answer received
    out: set[str] = set()
    for e in tlog.entries:
        d = e.data
        if e.event == "amount_keyed":
            current = set()
        elif e.event == "recv" and d.get("rc") == "00":
            answer = str(d.get("rrn", ""))
        elif e.event == "display" and d["outcome"] == "approved":
            rrn = str(d.get("rrn") or answer)
            standing.add(rrn)
            current.add(rrn)
        elif e.event == "display" and d["outcome"] in ("declined", "failed"):
            standing -= current
        elif e.event == "display" and d["outcome"] == "completed":
            standing.add(answer)
        elif e.event == "key" and d["key"] == "void" and d.get("rrn") in standing:
            out.add(str(d["rrn"]))
    return out


def _judge_receipts(
    tlog: Log,
    approved: dict[str, int],
    charged_key: dict[str, str],
    reversed_rrns: set[str],
    find: Callable[[str, str], None],
) -> dict[str, int]:
    """Approved receipts against live host charges; returns rrn -> amount printed.
    A receipt naming another sale's charge (its key differs from the one the host
    charged under that RRN) is a receipt without a record of its own."""
    printed: dict[str, int] = {}
    offline = offline_keys(tlog)
    for e in tlog.entries:
        if e.event != "print" or e.data["status"] != "ok":
            continue
        receipt = e.data.get("receipt", {})
        if not isinstance(receipt, dict) or receipt.get("status") != "approved":
            continue
        rrn = str(receipt.get("rrn", ""))
        if not rrn and str(receipt.get("idem_key", "")) in offline:
            continue  # an offline sale's receipt: no RRN until its advice is booked
        amount = receipt.get("amount")
        printed[rrn] = int(amount) if isinstance(amount, int) else 0
        key = str(receipt.get("idem_key", ""))
        if rrn not in approved or rrn in reversed_rrns:
            find(
                "no-receipt-without-record",
                f"{tlog.path}:{e.line}: approved receipt rrn {rrn} has no live host approval",
            )
        elif key and charged_key.get(rrn) and key != charged_key[rrn]:
            find(
                "no-receipt-without-record",
                f"{tlog.path}:{e.line}: approved receipt for {key} names rrn {rrn}, the "
                f"host's charge of another sale ({charged_key[rrn]})",
            )
        elif printed[rrn] != approved[rrn]:
            find(
                "amount-integrity",
                f"{tlog.path}:{e.line}: receipt {printed[rrn]}, host charged {approved[rrn]}",
            )
    return printed
