"""The built-in test-card catalogue: cards and amounts that choose the outcome.

Public test hosts let a tester force a response code by picking a card or an
amount. The mock acquirer does the same, so a scenario can ask for "issuer
unavailable" or "approved but the answer is lost" without a fault plan.
docs/test-cards.md shows the same data as a table; keep the two in step.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from acquirer import protocol as p

# Every catalogue card starts with this balance (minor units) unless a scenario
# passes its own CardAccount for the same PAN.
CATALOGUE_BALANCE = 1_000_000


@dataclass(frozen=True, slots=True)
class CardAccount:
    """A cardholder account. `rc` forces a response code; `slow_ms` adds processing time.

    A wallet account (a payment code, paid with processing code 900000) also has the
    customer's phone: `confirm_ms` 0 pays at once, N > 0 waits for the customer to
    confirm on the phone N ms after the order is created, -1 never confirms (the
    customer gives up); `answer_rc` is what the pay answer says while the order goes
    on as if it had been answered normally (96: the wallet's "system error, result
    unknown", after which the order may well be paid).

    `partial`: the issuer approves part of a sale the balance cannot cover (RC 10,
    partial approval: the answer's amount is the balance left) instead of declining
    it (RC 51). As in the field, only for a terminal that says it can take a partial
    approval: processing code 000001 instead of 000000.
    """

    pan: str
    balance: int
    rc: str = ""
    slow_ms: int = 0
    confirm_ms: int = 0
    answer_rc: str = ""
    partial: bool = False


PAN_APPROVE = "4000000000000002"
PAN_INSUFFICIENT = "4000000000000051"
PAN_DO_NOT_HONOUR = "4000000000000005"
PAN_ISSUER_DOWN = "4000000000000091"
PAN_SLOW_ISSUER = "4000000000000119"
PAN_PARTIAL = "4000000000000010"
# The partial-approval card's balance: a sale over it is approved for what is left.
PARTIAL_BALANCE = 2_000
# How much longer the slow issuer takes to answer, in virtual milliseconds.
SLOW_ISSUER_MS = 20_000

CATALOGUE_CARDS: tuple[CardAccount, ...] = (
    CardAccount(PAN_APPROVE, CATALOGUE_BALANCE),
    CardAccount(PAN_INSUFFICIENT, CATALOGUE_BALANCE, rc=p.RC_INSUFFICIENT_FUNDS),
    CardAccount(PAN_DO_NOT_HONOUR, CATALOGUE_BALANCE, rc=p.RC_DO_NOT_HONOUR),
    CardAccount(PAN_ISSUER_DOWN, CATALOGUE_BALANCE, rc=p.RC_ISSUER_UNAVAILABLE),
    CardAccount(PAN_SLOW_ISSUER, CATALOGUE_BALANCE, slow_ms=SLOW_ISSUER_MS),
    CardAccount(PAN_PARTIAL, PARTIAL_BALANCE, partial=True),
)

# Test wallets: payment codes (18 digits, as the wallets' codes are) whose customer
# behaves in a known way. docs/wallet.md has the same table.
CODE_PAYS = "280000000000000001"  # pays at once (small amount, no password)
CODE_CONFIRMS = "280000000000000002"  # the customer confirms on the phone after 8 s
CODE_LATE = "280000000000000003"  # confirms after 45 s: after a 30 s poll has ended
CODE_NEVER = "280000000000000004"  # never confirms: the order closes unpaid
CODE_NO_FUNDS = "280000000000000051"  # insufficient funds
CODE_SYSTEM_ERROR = "280000000000000096"  # answered "system error", but paid at once
CONFIRM_MS = 8_000
LATE_CONFIRM_MS = 45_000

CATALOGUE_WALLETS: tuple[CardAccount, ...] = (
    CardAccount(CODE_PAYS, CATALOGUE_BALANCE),
    CardAccount(CODE_CONFIRMS, CATALOGUE_BALANCE, confirm_ms=CONFIRM_MS),
    CardAccount(CODE_LATE, CATALOGUE_BALANCE, confirm_ms=LATE_CONFIRM_MS),
    CardAccount(CODE_NEVER, CATALOGUE_BALANCE, confirm_ms=-1),
    CardAccount(CODE_NO_FUNDS, CATALOGUE_BALANCE, rc=p.RC_INSUFFICIENT_FUNDS),
    CardAccount(CODE_SYSTEM_ERROR, CATALOGUE_BALANCE, answer_rc=p.RC_SYSTEM_ERROR),
)

# Amount conventions: the amount is the response code times 100 (500 -> RC 05).
# Nothing is charged for these amounts, on any card.
AMOUNT_RULES: Mapping[int, str] = MappingProxyType(
    {
        int(rc) * 100: rc
        for rc in (
            p.RC_DO_NOT_HONOUR,
            p.RC_INVALID_AMOUNT,
            p.RC_INSUFFICIENT_FUNDS,
            p.RC_ISSUER_UNAVAILABLE,
            p.RC_SYSTEM_ERROR,
        )
    }
)

# "Time out and reverse": approved and committed, but the answer is never sent.
AMOUNT_NO_REPLY = 9800
# A slow authorisation: approved normally after this much extra processing time.
AMOUNT_SLOW = 9900
AMOUNT_SLOW_EXTRA_MS = 30_000


def amount_rule(amount: int) -> str | None:
    """The response code the catalogue forces for `amount`, or None for a normal amount."""
    return AMOUNT_RULES.get(amount)


def slow_ms(pan: str) -> int:
    """The extra processing time of catalogue card `pan`'s issuer (0: none, or no such
    card)."""
    return next((c.slow_ms for c in CATALOGUE_CARDS if c.pan == pan), 0)
