"""A scenario as frozen data: who pays what, when, on which firmware, under which faults."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from faults.base import Fault

# Limits on what one scenario may ask for, so a typo cannot ask for a week of work.
STEPS_MAX = 100_000
CARDS_MAX = 10_000
TERMINALS_MAX = 16  # terminals in one world ([[terminals]])
AT_MS_MAX = 30 * 86_400_000  # 30 virtual days


# The invariants, by their user-facing names (see harness/invariants.py).
INVARIANT_NAMES: tuple[str, ...] = (
    "no-duplicate-charge",
    "no-charge-on-failure",
    "amount-integrity",
    "receipt-for-every-charge",
    "no-receipt-without-record",
    "approved-means-charged",
    "one-terminal-per-charge",
    "batch-reconciles",
    "ledger-balances",
    "no-over-credit",
    "eventually-settles",
    "offline-uploaded",
)


class ScenarioError(Exception):
    """A scenario file (or dict) is wrong. The message is one line naming file and key."""


# What a card's chip answers when a chip terminal completes an approved sale.
CHIP_BEHAVIOURS = ("", "decline", "removed")


@dataclass(frozen=True, slots=True)
class CardSpec:
    pan: str = ""
    balance: int = 100_000
    rc: str = ""  # force this response code for every purchase with the card
    slow_ms: int = 0  # extra host processing time for this card's issuer
    # The issuer approves part of a sale the balance cannot cover (RC 10), for a
    # terminal that can take a partial approval.
    partial: bool = False
    # The chip's answer when a chip terminal completes an approved sale: "" accepts,
    # "decline" declines (issuer authentication failed), "removed" is pulled too early.
    chip: str = ""


@dataclass(frozen=True, slots=True)
class WalletSpec:
    """A wallet customer: the payment code their phone shows, and how they behave."""

    code: str = ""
    balance: int = 100_000
    confirm_ms: int = 0  # 0 pays at once; N: the customer confirms on the phone after N ms
    confirms: bool = True  # false: the customer never confirms (gives up)
    rc: str = ""  # force this response code for every payment with the code
    answer_rc: str = ""  # the pay answer says this (e.g. 96) while the order goes on
    stale_screen: bool = False  # the phone shows an old "paid" screen; the cashier sees it


@dataclass(frozen=True, slots=True)
class TerminalSpec:
    id: str = "T0001"
    merchant_id: str = "M000000000001"
    response_timeout_ms: int = 15_000
    max_sends: int = 2
    debounce_ms: int = 3_000
    amount_max: int = 99_999_999
    reversal_max_tries: int = 60
    status_inquiry: bool = True  # ask the host before reversing an unanswered card sale
    partial_approval: bool = False  # take a partial approval (RC 10) for what a card covers
    chip: bool = False  # read cards by chip: the card must accept each approval (EMV)
    # Offline approval (store-and-forward): 0 = never; else the floor limit (minor units),
    # how many offline sales may wait for upload, and their upload deadline.
    offline_floor: int = 0
    offline_max: int = 10
    offline_deadline_ms: int = 86_400_000
    # Only in [[terminals]]: the name steps and faults use for this terminal (default:
    # its id; two devices given one id, a clone, need names of their own), and the
    # firmware it runs (default: the scenario's).
    name: str = ""
    firmware: str = ""

    @property
    def lane(self) -> str:
        """The name steps and faults address this terminal by."""
        return self.name or self.id


@dataclass(frozen=True, slots=True)
class HostSpec:
    processing_ms: int = 20
    idempotency_retention_ms: int = 86_400_000
    # False turns off the test-card catalogue's amount rules (5.00 -> RC 05, ...):
    # imported incidents carry real amounts, which must not change the outcome.
    test_amounts: bool = True


@dataclass(frozen=True, slots=True)
class NetworkSpec:
    latency_ms: int = 40  # one way
    jitter_ms: int = 0  # uniform extra delay in [0, jitter_ms], drawn from the run's seed


@dataclass(frozen=True, slots=True)
class PeopleSpec:
    """How the simulated cashier and customer behave."""

    confirm_after_ms: int = 300  # keyed amount -> confirm
    tap_after_ms: int = 1_000  # keyed amount -> card tap
    retap_after_ms: int = 1_000  # after a misread
    retry_on_failed: int = 0  # times the cashier tries again after a FAILED display
    retry_after_ms: int = 5_000
    reprint_on_pending: bool = True  # ask for a reprint when a receipt is pending
    reprint_after_ms: int = 3_000
    reprints_max: int = 3
    restart_after_power: bool = True  # re-run an unfinished purchase after a reboot
    print_ms: int = 1_500  # time one receipt takes to print
    # In a world of several terminals: a customer whose sale ends FAILED walks to
    # the next terminal and pays there (once).
    next_terminal_on_failed: bool = False


# The steps that start a customer's payment (an intent): a card purchase, a wallet
# scan, a pre-authorisation (a hold, completed later by a `complete` step).
PAYMENT_ACTIONS = ("purchase", "scan", "preauth")


@dataclass(frozen=True, slots=True)
class Step:
    """One thing the world does at `at_ms`: a purchase (card or wallet) or a
    pre-authorisation, a batch close, a reprint, the cashier pressing cancel, voiding or
    refunding a sale, completing a pre-authorisation or adding a tip to a sale."""

    at_ms: int
    # "purchase" | "scan" | "preauth" | "batch_close" | "reprint" | "cancel" | "void" |
    # "refund" | "complete" | "tip"
    action: str
    card: str = ""  # the card's PAN, or for "scan" the wallet payment code
    # "refund": what to give back (0 = the whole sale); "complete": what to capture (0 =
    # the whole hold); "tip": the tip
    amount: int = 0
    # "void" / "refund" / "complete" / "tip": the sale it names, by its place among the
    # payment steps (1 = the first purchase, scan or preauth step of the run); see
    # scenarios/credits.py.
    sale: int = 0
    terminal: str = ""  # the terminal's name in a world of several ("": the first)
    # Not in files: "<terminal>:<intent>" for a customer who walked here from another
    # terminal after a FAILED sale (harness/lanes.py).
    origin: str = ""


@dataclass(frozen=True, slots=True)
class Expect:
    invariants: tuple[str, ...]  # invariants that must hold
    violated: tuple[str, ...] = ()  # invariants that must be violated (zoo demonstrations)
    settle_within_ms: int = 120_000  # eventually-settles bound after the last fault


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str = ""
    seed: int = 0
    firmware: str = "reference"
    terminal: TerminalSpec = field(default_factory=TerminalSpec)
    host: HostSpec = field(default_factory=HostSpec)
    network: NetworkSpec = field(default_factory=NetworkSpec)
    people: PeopleSpec = field(default_factory=PeopleSpec)
    cards: tuple[CardSpec, ...] = ()
    wallets: tuple[WalletSpec, ...] = ()
    steps: tuple[Step, ...] = ()
    faults: tuple[Fault, ...] = ()
    expect: Expect = field(default_factory=lambda: Expect(invariants=()))
    close_batch: bool = True  # close the batch once the world is quiet
    max_ms: int = -1  # stop the run at this virtual time (-1: last step + 1 hour)
    source: str = ""  # the file it came from, for messages
    # Several terminals on one host ([[terminals]]); empty: the one `terminal`.
    terminals: tuple[TerminalSpec, ...] = ()

    def purchases(self) -> int:
        return sum(1 for s in self.steps if s.action in PAYMENT_ACTIONS)

    def lanes(self) -> tuple[TerminalSpec, ...]:
        """The terminals of the world, in order (the first is the default)."""
        return self.terminals or (self.terminal,)


def step_to_dict(s: Step) -> dict[str, Any]:
    """One step as scenario-file data."""
    out: dict[str, Any] = {"at_ms": s.at_ms}
    if s.terminal:
        out["terminal"] = s.terminal
    if s.action == "purchase" or s.action == "preauth":
        out[s.action] = {"card": s.card, "amount": s.amount}
    elif s.action == "scan":
        out["scan"] = {"code": s.card, "amount": s.amount}
    elif s.action in ("void", "refund", "complete", "tip"):
        from scenarios.credits import credit_step_to_dict

        return credit_step_to_dict(s)
    else:
        out[s.action] = True
    return out


def _changed(obj: Any, default: Any) -> dict[str, Any]:
    """The fields of a flat dataclass that differ from `default`'s."""
    from dataclasses import fields

    return {
        f.name: getattr(obj, f.name)
        for f in fields(obj)
        if getattr(obj, f.name) != getattr(default, f.name)
    }


def scenario_to_dict(sc: Scenario) -> dict[str, Any]:
    """The scenario as TOML-ready data (defaults omitted), for writing files and traces."""
    from dataclasses import fields

    out: dict[str, Any] = {"name": sc.name}
    if sc.description:
        out["description"] = sc.description
    out["seed"] = sc.seed
    out["firmware"] = sc.firmware
    for key, obj, default in (
        ("terminal", sc.terminal, TerminalSpec()),
        ("host", sc.host, HostSpec()),
        ("network", sc.network, NetworkSpec()),
        ("people", sc.people, PeopleSpec()),
    ):
        table = _changed(obj, default)
        if table:
            out[key] = table
    if sc.terminals:
        # Each terminal as it differs from [terminal] (its defaults); the id always.
        out["terminals"] = [{"id": t.id, **_changed(t, sc.terminal)} for t in sc.terminals]
    if not sc.close_batch:
        out["close_batch"] = False
    if sc.max_ms != -1:
        out["max_ms"] = sc.max_ms
    out["cards"] = [
        {
            k: v
            for k, v in (
                ("pan", c.pan),
                ("balance", c.balance),
                ("rc", c.rc),
                ("slow_ms", c.slow_ms),
                ("partial", c.partial),
                ("chip", c.chip),
            )
            if k in ("pan", "balance") or v
        }
        for c in sc.cards
    ]
    if sc.wallets:
        blank = WalletSpec()
        out["wallets"] = [
            {
                f.name: getattr(w, f.name)
                for f in fields(w)
                if f.name in ("code", "balance") or getattr(w, f.name) != getattr(blank, f.name)
            }
            for w in sc.wallets
        ]
    out["steps"] = [step_to_dict(s) for s in sc.steps]
    out["faults"] = [{f.KIND: f.to_table()} for f in sc.faults]
    invariants: Any = list(sc.expect.invariants)
    if sc.expect.invariants == INVARIANT_NAMES:
        invariants = "all"
    expect: dict[str, Any] = {"invariants": invariants}
    if sc.expect.violated:
        expect["violated"] = list(sc.expect.violated)
    if sc.expect.settle_within_ms != 120_000:
        expect["settle_within_ms"] = sc.expect.settle_within_ms
    out["expect"] = expect
    return out
