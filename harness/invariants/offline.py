"""Judging offline approvals (store-and-forward): the `offline-uploaded` invariant, and
what the other invariants must know about sales the host learns of only later.

An offline approval is an APPROVED display that names its sale by idempotency key
(`key`) and carries no RRN: the terminal approved it without the host, under its
floor limit. It is legitimately shown and printed before the host knows of it, so:

* `approved-means-charged` does not judge it (there is no charge yet, and a late
  decline is the acquirer's answer, not the terminal's lie); `offline-uploaded` does;
* its receipt (no RRN) counts for `receipt-for-every-charge` once the upload charges
  (matched by key), and for `no-receipt-without-record` it needs the host to hold a
  record of its key (charged, or declined late) or the terminal to have shown it
  expired (`offline-expired`, naming the key);
* `offline-uploaded`: every offline approval is within the terminal's floor limit and
  its count limit (fewer than `offline_max` others waiting for upload), and before
  its deadline (`offline_deadline_ms` after it) the host has booked its advice (any
  answer but RC EX) or the terminal has shown it expired; when the terminal was off
  at the deadline, the expiry must be shown at the first boot after it. A run that
  comes to rest with an offline approval neither uploaded nor expired fails too; and
  none is shown expired while its advice, sent less than the response timeout before,
  awaits its answer (not judged with a `clock_skew` fault).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from acquirer.protocol import RC_ADVICE_EXPIRED

from .model import Violation, money

if TYPE_CHECKING:
    from acquirer.host import Acquirer, HostTxn
    from harness.trace import Record

    from . import Observations

# Offline approvals remembered in one run (a terminal holds at most 100 at once).
OFFLINE_KEPT_MAX = 10_000
# Power cuts remembered (to know whether the terminal was off at a deadline).
POWER_KEPT_MAX = 1_000
# Fuller explanation reused in messages.
_WHY = "it must be uploaded (the host books it) or shown expired before its deadline"


@dataclass(slots=True)
class OfflineApproval:
    """One offline approval seen in the trace."""

    key: str
    intent: int
    seq: int
    t_ms: int
    amount: int = 0  # from its receipt or its advice (0: not seen yet)
    waiting: int = 0  # offline approvals waiting for upload when it was made
    expired_ms: int = -1  # when the terminal showed it expired (-1: never)
    expired_seq: int = 0
    receipt_seq: int = 0  # its receipt (no RRN), printed ok


class OfflineObs:
    """The offline part of `Observations` (fed by its handlers)."""

    def __init__(self) -> None:
        self.floor = 0
        self.count_max = 10
        self.deadline_ms = 86_400_000
        self.approvals: dict[str, OfflineApproval] = {}
        self.printed_keys: set[str] = set()
        self.pending_keys: set[str] = set()  # receipts shown pending, named by key
        self.off_ms: list[tuple[int, int]] = []  # (off, on) times; on = -1: still off
        self.uploaded: set[str] = set()  # keys whose advice reached the terminal as final
        # Advices on their way: key -> when last sent (no final answer, no power cut since).
        self.in_flight: dict[str, int] = {}
        # Expiries shown while an advice was on its way: (key, sent_ms, shown_ms, seq).
        self.expired_in_flight: list[tuple[str, int, int, int]] = []
        self.skewed = False  # a clock_skew fault: the terminal's waits are not its own
        # Intents told their offline sale did not go through: intent -> (outcome, seq)
        # of the first `offline-expired` / `offline-declined` display naming it.
        self.told_unpaid: dict[int, tuple[str, int]] = {}

    def configure(self, floor: int, count_max: int, deadline_ms: int) -> None:
        self.floor, self.count_max, self.deadline_ms = floor, count_max, deadline_ms

    def receipt_owned(self, key: str, intent: int) -> bool:
        """Was the receipt of the offline sale charged under `key` (for `intent`)
        printed, or shown pending? An advice under another key than the receipt's is
        still that intent's sale (and its second charge, `no-duplicate-charge`)."""
        if key in self.printed_keys or key in self.pending_keys:
            return True
        return any(
            a.intent == intent and (a.receipt_seq or a.key in self.pending_keys)
            for a in self.approvals.values()
        )

    def is_offline(self, key: str) -> bool:
        return key in self.approvals

    def display(self, rec: Record, intent: int, amount: int) -> None:
        """A display naming a sale by key: an offline approval, or its expiry."""
        key = rec["key"]
        outcome = rec["outcome"]
        told = outcome in ("offline-expired", "offline-declined") and intent > 0
        if told and len(self.told_unpaid) < OFFLINE_KEPT_MAX:
            self.told_unpaid.setdefault(intent, (outcome, rec["seq"]))
        if outcome == "approved" and not rec.get("rrn"):
            if key not in self.approvals and len(self.approvals) < OFFLINE_KEPT_MAX:
                waiting = sum(1 for a in self.approvals.values() if self._waiting(a))
                self.approvals[key] = OfflineApproval(
                    key, intent, rec["seq"], rec["t_ms"], amount, waiting
                )
        elif outcome == "offline-expired":
            a = self.approvals.get(key)
            if a is not None and a.expired_ms < 0:
                a.expired_ms, a.expired_seq = rec["t_ms"], rec["seq"]
            sent = self.in_flight.pop(key, -1)
            if sent >= 0 and len(self.expired_in_flight) < OFFLINE_KEPT_MAX:
                self.expired_in_flight.append((key, sent, rec["t_ms"], rec["seq"]))
        elif outcome == "offline-declined":
            self.uploaded.add(key)
        elif outcome == "receipt-pending" and len(self.pending_keys) < OFFLINE_KEPT_MAX:
            self.pending_keys.add(key)

    def advice_sent(self, key: str, t_ms: int) -> None:
        if key and (key in self.in_flight or len(self.in_flight) < OFFLINE_KEPT_MAX):
            self.in_flight[key] = t_ms

    def fault(self, rec: Record) -> None:
        if rec.get("fault") == "clock_skew":
            self.skewed = True

    def _waiting(self, a: OfflineApproval) -> bool:
        return a.expired_ms < 0 and a.key not in self.uploaded

    def receipt(self, rec: Record) -> None:
        receipt = rec["receipt"]
        key = receipt.get("idem_key", "")
        if len(self.printed_keys) < OFFLINE_KEPT_MAX:
            self.printed_keys.add(key)
        a = self.approvals.get(key)
        if a is not None:
            a.amount = a.amount or receipt.get("amount", 0)
            a.receipt_seq = a.receipt_seq or rec["seq"]

    def answered(self, msg: dict[str, Any]) -> None:
        """A 0230 reached the terminal: a final answer ends the wait for that key."""
        if msg.get("rc") not in ("", "09", "91", "96", "63"):
            self.uploaded.add(msg.get("idem_key", ""))
            self.in_flight.pop(msg.get("idem_key", ""), None)

    def power(self, rec: Record) -> None:
        if rec["state"] == "off":
            self.in_flight.clear()  # the terminal forgot its waits
        if rec["state"] == "off" and len(self.off_ms) < POWER_KEPT_MAX:
            self.off_ms.append((rec["t_ms"], -1))
        elif rec["state"] == "on" and self.off_ms and self.off_ms[-1][1] == -1:
            self.off_ms[-1] = (self.off_ms[-1][0], rec["t_ms"])

    def _expiry_limit(self, deadline: int) -> int:
        """The latest time an expiry may be shown: the deadline, or the first power-on
        after it when the terminal was off then."""
        for off, on in self.off_ms:
            if off <= deadline and (on == -1 or on >= deadline):
                return deadline if on == -1 else on
        return deadline

    # ------------------------------------------------------------------ judging

    def violations(self, obs: Observations, host: Acquirer) -> list[Violation]:
        """`offline-uploaded` and the receipts of offline approvals."""
        if not self.approvals:
            return []
        booked = self._host_records(obs, host)
        end = obs.end
        now = end["t_ms"] if end else -1
        rested = bool(end) and end.get("quiet", True)
        out: list[Violation] = self._expired_early(obs.response_timeout_ms)
        for a in self.approvals.values():
            out += self._limits(a)
            txn = booked.get(a.key)
            out += self._upload(a, txn, now, rested)
            overdue = rested or now > a.t_ms + self.deadline_ms
            if a.receipt_seq and txn is None and a.expired_ms < 0 and overdue:
                out.append(
                    Violation(
                        "no-receipt-without-record",
                        f"an APPROVED receipt for offline sale {a.key} "
                        f"({money(a.amount)}) was printed, but the host holds no record "
                        "of it and the terminal never showed it expired.",
                        a.intent,
                        (),
                        (a.receipt_seq,),
                    )
                )
            if len(out) >= 20:
                break
        return out

    def _expired_early(self, timeout_ms: int) -> list[Violation]:
        """An offline sale shown expired while its advice, sent less than the response
        timeout before, still awaited its answer: the host may be booking it (then the
        expiry's reversal takes back a sale the host accepted, and the merchant is told
        it was never uploaded). Not judged when the terminal's clock was skewed."""
        out: list[Violation] = []
        for key, sent, shown, seq in self.expired_in_flight:
            a = self.approvals.get(key)
            if self.skewed or a is None or shown - sent >= timeout_ms or len(out) >= 5:
                continue
            out.append(
                Violation(
                    "offline-uploaded",
                    f"offline sale {key} was shown expired (NOT UPLOADED) at {shown} ms "
                    f"while its advice, sent at {sent} ms, still awaited its answer "
                    f"(response timeout {timeout_ms} ms).",
                    a.intent,
                    (),
                    (seq,),
                )
            )
        return out

    def _host_records(self, obs: Observations, host: Acquirer) -> dict[str, HostTxn]:
        """The host's first record of each offline approval: under its key, or under
        another key its intent's advice carried (a record all the same; a second
        charge is `no-duplicate-charge`'s)."""
        by_intent = {a.intent: a.key for a in self.approvals.values() if a.intent}
        out: dict[str, HostTxn] = {}
        for txn in host.transactions():
            if txn.terminal_id != obs.terminal_id:
                continue
            if txn.idem_key in self.approvals:
                out.setdefault(txn.idem_key, txn)
            else:
                key = by_intent.get(obs.intent_of(txn))
                if key is not None:
                    out.setdefault(key, txn)
        return out

    def _limits(self, a: OfflineApproval) -> list[Violation]:
        if self.floor and a.amount > self.floor:
            why = f"for {money(a.amount)}, above the terminal's floor limit of {money(self.floor)}"
        elif a.waiting >= self.count_max:
            why = (
                f"while {a.waiting} other offline sales were waiting for upload (the "
                f"terminal's limit is {self.count_max})"
            )
        else:
            return []
        return [
            Violation(
                "offline-uploaded",
                f"intent {a.intent} was approved offline ({a.key}) {why}.",
                a.intent,
                (),
                (a.seq,),
            )
        ]

    def _upload(
        self, a: OfflineApproval, txn: HostTxn | None, now: int, rested: bool
    ) -> list[Violation]:
        deadline = a.t_ms + self.deadline_ms
        if txn is not None and txn.rc != RC_ADVICE_EXPIRED and txn.created_ms <= deadline:
            return []  # booked in time (charged, or declined late)
        if 0 <= a.expired_ms <= self._expiry_limit(deadline):
            return []  # shown expired in time
        if txn is not None:
            problem = f"the host booked it only at {txn.created_ms} ms (rc {txn.rc})"
        elif a.expired_ms >= 0:
            problem = f"it was shown expired only at {a.expired_ms} ms"
        elif now > deadline:
            problem = "the host never got it and no expiry was shown"
        elif rested:
            problem = "the run came to rest with it neither uploaded nor shown expired"
        else:
            return []  # its deadline has not come yet
        seqs = (a.seq, a.expired_seq) if a.expired_seq else (a.seq,)
        return [
            Violation(
                "offline-uploaded",
                f"intent {a.intent} was approved offline at {a.t_ms} ms ({a.key}); "
                f"{_WHY} ({deadline} ms), but {problem}.",
                a.intent,
                (txn.rrn,) if txn is not None else (),
                seqs,
            )
        ]
