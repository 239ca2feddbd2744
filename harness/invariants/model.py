"""What the invariants work with: a violation, and the per-intent summaries."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from acquirer.host import HostTxn
from acquirer.protocol import money as money

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


# Final displays kept per intent (a firmware that flips its answer in a loop must
# not grow memory without limit; the first ones are the ones that matter).
FINALS_KEPT_MAX = 32


@dataclass(slots=True)
class Shown:
    """One final display (approved, declined or failed) shown for an intent."""

    outcome: str
    seq: int
    t_ms: int
    rrn: str = ""
    # The cashier tried again after it (a FAILED attempt): the customer did not
    # leave with this answer.
    retried: bool = False
    # An APPROVED display that states the amount approved (a partial approval);
    # 0: it stands for the whole amount entered.
    amount: int = 0
    # An APPROVED display naming its sale by key, not RRN: approved offline
    # (judged by `offline-uploaded`, harness/invariants/offline.py).
    offline: bool = False


@dataclass(slots=True)
class IntentObs:
    intent: int
    card: str
    amount: int  # what the scenario intended
    seq: int
    start_ms: int
    keyed: int | None = None  # the last amount the cashier keyed for it
    preauth: bool = False  # a pre-authorisation (a hold), not a sale
    final: str = ""
    final_ms: int = -1
    final_seq: int = 0
    last_display_seq: int = 0
    keys: list[str] = field(default_factory=list)  # idempotency keys sent for it
    stans: list[int] = field(default_factory=list)
    finals: list[Shown] = field(default_factory=list)  # every final display, in order
    # A fault (or power loss) happened between its start and its first final display.
    faulted: bool = False
    # Seq of an approving 0210 for it delivered before any final display (0 = none).
    approval_seq: int = 0
    # Its chip card refused the host's approval (a `chip` record not "ok"): the sale
    # must end declined and reversed, not approved.
    chip_refused: bool = False
    # Seq of its first final display when the terminal refused it without asking
    # the host in a run with no reason to refuse (see Observations._display).
    refused_seq: int = 0
    # How long the customer waited for the first final display, counted from the
    # later of the intent's start and the terminal's last power-on (-1: none yet).
    waited_ms: int = -1

    def accepted(self) -> list[Shown]:
        """The final displays the customer left with (not followed by a retry)."""
        return [f for f in self.finals if not f.retried]

    def shown_approved(self) -> bool:
        return any(f.outcome == "approved" for f in self.finals)


@dataclass(slots=True)
class IntentBooks:
    """What the host holds for one intent."""

    net: int = 0
    live: list[HostTxn] = field(default_factory=list)  # approved purchases, not reversed
    rrns: list[str] = field(default_factory=list)  # every transaction's RRN


def intended(o: IntentObs) -> int:
    """What the customer agreed to pay: the amount keyed (a keying error is the
    cashier's to see on the display), never less than nothing."""
    return max(0, o.keyed if o.keyed is not None else o.amount)


def live_charge(txn: HostTxn) -> bool:
    """Does host transaction `txn` still take the customer's money for its sale? An
    approved sale or hold does; so does a pre-authorisation completed since (its hold
    became the capture, judged in holds.py)."""
    return txn.status == "approved" or (txn.kind == "preauth" and txn.status == "completed")


def base_amount(txn: HostTxn) -> int:
    """What the sale was approved for: its amount now, less any tip set since."""
    return txn.amount - txn.tip
