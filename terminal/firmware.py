"""The firmware contract: events in, effects out.

A firmware is a sans-I/O state machine. The driver (the deterministic simulator,
or a real asyncio/MQTT stack) calls `handle(event)` and carries out the returned
effects in order. A firmware never reads a clock, a random source, a socket or a
file: time reaches it as `TimerExpired`, durable state as `Boot.journal`.

Effects are carried out in list order, and a power cut may fall between any two
of them: whatever a firmware must not lose it journals (`JournalAppend`) before
the effect that depends on it. The journal commit is the crash boundary.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from acquirer.protocol import Message

# A journal record is a flat JSON-able mapping; "type" names the record kind.
JournalRecord = Mapping[str, Any]


class Outcome(StrEnum):
    """What the terminal shows the cashier and the customer."""

    PROMPT = "prompt"  # informational: "PRESENT CARD", "TRY AGAIN", "BUSY"
    PENDING = "pending"  # a sale is in flight, outcome not known yet
    APPROVED = "approved"
    DECLINED = "declined"
    FAILED = "failed"
    RECEIPT_PENDING = "receipt-pending"  # approved, receipt not printed yet: reprint it
    # The cashier's void / refund of an earlier sale is done at the host. `Display.rrn`
    # names the sale (its RRN), `Display.amount` what the refund gave back. Not a final
    # outcome of a purchase: it is about the sale it names.
    VOIDED = "voided"
    REFUNDED = "refunded"
    # A sale approved offline (`Display.key` names it) that the host declined when it
    # was uploaded (a late decline): nothing was charged, collect the money another way.
    OFFLINE_DECLINED = "offline-declined"
    # A sale approved offline that could not be uploaded before its deadline: it will
    # never be charged, collect the money another way.
    OFFLINE_EXPIRED = "offline-expired"
    # The cashier's completion of a pre-authorisation is captured at the host:
    # `Display.rrn` names the pre-authorisation, `Display.amount` what was captured.
    COMPLETED = "completed"
    # The cashier's tip is set at the host: `Display.rrn` names the sale (the
    # completion, for a completed pre-authorisation), `Display.amount` its new total.
    TIP_ADDED = "tip-added"


FINAL_OUTCOMES = frozenset({Outcome.APPROVED, Outcome.DECLINED, Outcome.FAILED})


class PrintStatus(StrEnum):
    OK = "ok"
    JAMMED = "jammed"
    NO_PAPER = "no_paper"
    FAILED = "failed"  # failed mid-print: a partial receipt does not count


# ---------------------------------------------------------------- events in


@dataclass(frozen=True, slots=True)
class Boot:
    """Power came on. `journal` is every record committed before, oldest first.

    `nonce` is fresh randomness for this boot (8 lowercase hex digits), drawn by the
    driver: from the world's seeded RNG in simulation, from the OS on a real
    transport. A firmware puts it in the idempotency keys of the sales it starts
    during this boot, so keys stay unique when the journal is lost or the device
    is replaced (a counter alone restarts at 1). "" when a driver has none.
    """

    journal: tuple[JournalRecord, ...] = ()
    nonce: str = ""
    # The terminal's real-time clock at power-on (virtual ms; 0: the driver has none).
    # Only offline approvals need it: their upload deadline outlives a power cut.
    clock_ms: int = 0


@dataclass(frozen=True, slots=True)
class AmountKeyed:
    """The cashier keyed an amount (minor units; a keying error may make it 0 or < 0)."""

    amount: int


@dataclass(frozen=True, slots=True)
class ConfirmPressed:
    """The cashier pressed confirm (after keying the amount)."""


@dataclass(frozen=True, slots=True)
class CancelPressed:
    """The cashier pressed cancel."""


@dataclass(frozen=True, slots=True)
class CardPresented:
    """The customer tapped or inserted a card. `pan` is "" when the reader misread it."""

    pan: str


@dataclass(frozen=True, slots=True)
class CodeScanned:
    """The cashier scanned the customer's wallet payment code (a QR or bar code on the
    phone). `code` is "" when the scanner misread it. Pay it with processing code
    900000: `pan` = the code, `idem_key` = the order number."""

    code: str


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """A message arrived from the network (not necessarily from the real host)."""

    message: Message


@dataclass(frozen=True, slots=True)
class TimerExpired:
    """A timer set with `SetTimer(name, ...)` fired and was not cancelled. `clock_ms`:
    the real-time clock when it fired (virtual ms; 0: the driver has none)."""

    name: str
    clock_ms: int = 0


@dataclass(frozen=True, slots=True)
class PrintFinished:
    """The printer finished job `job_id`."""

    job_id: str
    status: PrintStatus


@dataclass(frozen=True, slots=True)
class ReprintRequested:
    """The cashier asked for the pending (or last) receipt again."""


@dataclass(frozen=True, slots=True)
class BatchCloseRequested:
    """End of day: send batch totals to the host."""


# Why a chip card did not complete (`ChipResult.reason`).
CHIP_DECLINED = "declined"  # the second GENERATE AC answered AAC (issuer authentication failed)
CHIP_REMOVED = "removed"  # the card left the reader before the terminal completed it
CHIP_REASONS = frozenset({CHIP_DECLINED, CHIP_REMOVED})


@dataclass(frozen=True, slots=True)
class ChipResult:
    """The chip card's answer to `ChipComplete(key)`: `ok` when the card accepted the
    host's approval (second GENERATE AC answered TC); else `reason` says why not
    (`CHIP_DECLINED`, `CHIP_REMOVED`) and the sale must not stand."""

    key: str
    ok: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class VoidRequested:
    """The cashier asked to void (cancel in full) the earlier sale with host reference
    `rrn` (as printed on its receipt). Only inside the batch window: a sale already
    settled by a batch close must be refunded instead."""

    rrn: str


@dataclass(frozen=True, slots=True)
class RefundRequested:
    """The cashier asked to give back `amount` (minor units) of the earlier sale with
    host reference `rrn`: a new credit to its card, naming the sale (`orig_key`)."""

    rrn: str
    amount: int


@dataclass(frozen=True, slots=True)
class PreauthKeyed:
    """The cashier keyed `amount` (minor units) for a pre-authorisation (a hold, e.g. at
    a hotel check-in): then confirm and card as for a sale; the terminal asks the host
    with a 0100 and the hold is completed later (`CompletionRequested`)."""

    amount: int


@dataclass(frozen=True, slots=True)
class CompletionRequested:
    """The cashier asked to complete the pre-authorisation with host reference `rrn`
    for `amount` (minor units, at most the hold): the host captures it once."""

    rrn: str
    amount: int


@dataclass(frozen=True, slots=True)
class TipAdjustRequested:
    """The cashier keyed the tip `tip` (minor units) the customer wrote on the slip of
    the sale with host reference `rrn` (or the completion's): the sale's total becomes
    its amount plus `tip` (a later tip replaces an earlier one), inside the batch window."""

    rrn: str
    tip: int


Event = (
    Boot
    | AmountKeyed
    | ConfirmPressed
    | CancelPressed
    | CardPresented
    | CodeScanned
    | MessageReceived
    | TimerExpired
    | PrintFinished
    | ReprintRequested
    | BatchCloseRequested
    | ChipResult
    | VoidRequested
    | RefundRequested
    | PreauthKeyed
    | CompletionRequested
    | TipAdjustRequested
)

# ---------------------------------------------------------------- effects out


@dataclass(frozen=True, slots=True)
class Send:
    """Send `message` to the host."""

    message: Message


@dataclass(frozen=True, slots=True)
class SetTimer:
    """Fire `TimerExpired(name)` after `delay_ms`; re-setting a name replaces it."""

    name: str
    delay_ms: int


@dataclass(frozen=True, slots=True)
class CancelTimer:
    name: str


@dataclass(frozen=True, slots=True)
class JournalAppend:
    """Durably append `record` to the terminal journal (the crash boundary)."""

    record: JournalRecord


@dataclass(frozen=True, slots=True)
class JournalTrim:
    """Drop the oldest `count` journal records (after a batch is settled)."""

    count: int


@dataclass(frozen=True, slots=True)
class Receipt:
    """What a printed receipt says. `status` is "approved" or "declined", or for the
    receipt of a void or refund "voided" / "refunded" (then `orig_rrn` names the sale)."""

    status: str
    amount: int
    rrn: str
    stan: int
    pan_last4: str
    auth_code: str = ""
    idem_key: str = ""
    copy: bool = False  # a reprint
    # A credit receipt (status "voided" or "refunded"): the original sale's RRN.
    orig_rrn: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "status": self.status,
            "amount": self.amount,
            "rrn": self.rrn,
            "stan": self.stan,
            "pan_last4": self.pan_last4,
            "auth_code": self.auth_code,
            "idem_key": self.idem_key,
            "copy": self.copy,
        }
        if self.orig_rrn:
            out["orig_rrn"] = self.orig_rrn
        return out


@dataclass(frozen=True, slots=True)
class Print:
    """Print `receipt` as job `job_id`; `PrintFinished(job_id, ...)` follows."""

    job_id: str
    receipt: Receipt


@dataclass(frozen=True, slots=True)
class Display:
    """Show `outcome` (and `text`). `rrn` names the sale for RECEIPT_PENDING."""

    outcome: Outcome
    text: str = ""
    rrn: str = ""
    # APPROVED for less than was asked (a partial approval): the amount approved, in
    # minor units, so the cashier collects the rest. 0: the whole amount.
    amount: int = 0
    # The idempotency key of the sale an offline display names: an APPROVED with a key
    # and no rrn is an offline approval; OFFLINE_DECLINED and OFFLINE_EXPIRED name one.
    key: str = ""


@dataclass(frozen=True, slots=True)
class ChipComplete:
    """The host approved card sale `key`: hand its answer to the chip card in the
    reader (EMV second GENERATE AC). `ChipResult(key, ...)` follows, unless the power
    fails first. Only for a terminal configured with `chip`."""

    key: str


Effect = (
    Send | SetTimer | CancelTimer | JournalAppend | JournalTrim | Print | Display | ChipComplete
)


# ---------------------------------------------------------------- contract


@dataclass(frozen=True, slots=True)
class FirmwareConfig:
    """What a terminal is told at the factory. Times in virtual milliseconds."""

    terminal_id: str = "T0001"
    merchant_id: str = "M000000000001"
    mac_key: bytes = b"posharness-test-key-T0001"
    response_timeout_ms: int = 15_000
    max_sends: int = 2  # first send + repeats with the same key before reversing
    reversal_backoff_ms: tuple[int, ...] = (0, 2_000, 10_000, 30_000)
    reversal_max_tries: int = 60  # then flagged for manual handling
    debounce_ms: int = 3_000
    amount_max: int = 99_999_999  # largest sale accepted at entry (minor units)
    # Ask the host (status inquiry, 0600) before reversing a card sale whose last
    # send went unanswered; False reverses at once (terminals without the inquiry).
    status_inquiry: bool = True
    # Take a partial approval (RC 10): ask with processing code 000001, show and print
    # the amount approved (the cashier collects the rest). Off: ask with 000000, and
    # an issuer declines what the balance cannot cover.
    partial_approval: bool = False
    # Cards are read by chip (EMV contact): an approved card sale is not final until
    # the card accepts the host's answer (`ChipComplete` -> `ChipResult`). A card that
    # declines it, or is pulled early, makes the sale a decline that must be reversed.
    chip: bool = False
    # Offline approval (store-and-forward): a card sale of at most `offline_floor`
    # minor units whose host cannot be reached is approved offline and uploaded later
    # as an advice (0220); at most `offline_max` wait for upload at once, and each must
    # be uploaded (or shown as expired) within `offline_deadline_ms`. 0: never offline.
    offline_floor: int = 0
    offline_max: int = 10
    offline_deadline_ms: int = 86_400_000
    extra: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class Firmware(Protocol):
    """The whole contract. `handle` must not raise for any event sequence."""

    def handle(self, event: Event) -> Sequence[Effect]: ...


# Optional abilities a firmware declares (class attribute `features`, or "features"
# in an exec: firmware's hello). A scenario that needs one the firmware does not
# declare is skipped for it, not failed: a card-only terminal is not judged on
# wallet payments.
FEATURE_WALLET = "wallet"  # takes wallet (QR code) payments: handles CodeScanned
# Takes a partial approval (RC 10) when configured to (`partial_approval`): asks with
# processing code 000001, shows the approved amount (`Display.amount`) and prints it.
FEATURE_PARTIAL = "partial"
# Completes chip cards when configured to (`chip`): answers a host approval with
# `ChipComplete`, and on a `ChipResult` that is not ok shows DECLINED and reverses.
FEATURE_CHIP = "chip"
# Voids and refunds a named earlier sale: handles `VoidRequested` and `RefundRequested`,
# shows VOIDED / REFUNDED (naming the sale's RRN) once the host has booked it.
FEATURE_REFUND = "refund"
# Approves offline when configured to (`offline_floor` > 0): a card sale under the
# floor whose host does not answer is shown APPROVED with `Display.key`, printed, and
# uploaded as an advice (0220) with the sale's key until the host answers, or shown
# `OFFLINE_EXPIRED` before its deadline.
FEATURE_OFFLINE = "offline"
# Pre-authorisation, completion and tip adjust: handles `PreauthKeyed` (a 0100 hold),
# `CompletionRequested` and `TipAdjustRequested` (0220 advices naming the sale),
# shows COMPLETED / TIP_ADDED once the host has booked them.
FEATURE_PREAUTH = "preauth"


def firmware_features(fw: object) -> frozenset[str]:
    """The features `fw` declares (none when it declares nothing)."""
    features = getattr(fw, "features", ())
    return frozenset(f for f in features if isinstance(f, str)) if features else frozenset()


class FirmwareContractError(Exception):
    """A firmware broke the contract (returned something that is not an Effect)."""


class FirmwareProtocolError(Exception):
    """An out-of-process firmware broke the pipe protocol (a bad line, an unknown
    effect, no answer in time): the run cannot go on and gets no verdict."""


EFFECT_TYPES = (
    Send,
    SetTimer,
    CancelTimer,
    JournalAppend,
    JournalTrim,
    Print,
    Display,
    ChipComplete,
)
