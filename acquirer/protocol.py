"""Messages between terminal and acquirer, ISO 8583 style, as frozen data.

One `Message` type carries every MTI; fields that an MTI does not use keep their
empty defaults. Money is always an integer number of minor units (cents).

The simulator moves `Message` objects (encoding every frame would cost more than
the rest of a purchase); the ISO 8583 codec in `acquirer.iso8583` turns them into
wire frames for real transports and for the malformed-frame tests.
"""

from __future__ import annotations

import hashlib
import hmac
import operator
from dataclasses import dataclass, fields
from typing import Any

# Message type indicators. A repeat of a request uses the same MTI with the
# `repeat` flag set (ISO 8583 would send 0201 / 0401).
MTI_PURCHASE = "0200"
MTI_PURCHASE_RESP = "0210"
MTI_REVERSAL = "0400"
MTI_REVERSAL_RESP = "0410"
MTI_REVERSAL_ADVICE = "0420"
MTI_REVERSAL_ADVICE_RESP = "0430"
MTI_BATCH = "0500"
MTI_BATCH_RESP = "0510"
MTI_ECHO = "0800"
MTI_ECHO_RESP = "0810"

REQUEST_MTIS = (MTI_PURCHASE, MTI_REVERSAL, MTI_REVERSAL_ADVICE, MTI_BATCH, MTI_ECHO)
RESPONSE_MTIS = (
    MTI_PURCHASE_RESP,
    MTI_REVERSAL_RESP,
    MTI_REVERSAL_ADVICE_RESP,
    MTI_BATCH_RESP,
    MTI_ECHO_RESP,
)
ALL_MTIS = REQUEST_MTIS + RESPONSE_MTIS


def response_mti(request_mti: str) -> str:
    """The MTI that answers `request_mti` ("0200" -> "0210")."""
    return request_mti[:2] + str(int(request_mti[2]) + 1) + request_mti[3]


# Processing codes (field 3): purchase and refund.
PROC_PURCHASE = "000000"
PROC_REFUND = "200000"

# Response codes (field 39).
RC_APPROVED = "00"
RC_DO_NOT_HONOUR = "05"
RC_IN_PROGRESS = "09"
RC_INVALID_AMOUNT = "13"
RC_FORMAT_ERROR = "30"
RC_INSUFFICIENT_FUNDS = "51"
RC_ISSUER_UNAVAILABLE = "91"
RC_DUPLICATE = "94"
RC_RECONCILE_ERROR = "95"
RC_SYSTEM_ERROR = "96"

RESPONSE_CODES: dict[str, str] = {
    RC_APPROVED: "approved",
    RC_DO_NOT_HONOUR: "do not honour",
    RC_IN_PROGRESS: "request in progress",
    RC_INVALID_AMOUNT: "invalid amount",
    RC_FORMAT_ERROR: "format error",
    RC_INSUFFICIENT_FUNDS: "insufficient funds",
    RC_ISSUER_UNAVAILABLE: "issuer unavailable",
    RC_DUPLICATE: "duplicate transmission",
    RC_RECONCILE_ERROR: "reconcile error",
    RC_SYSTEM_ERROR: "system error",
}

# Codes after which nothing was charged and a resend with the same key is safe:
# the host does not store them under the idempotency key.
TRANSIENT_RCS = frozenset({RC_ISSUER_UNAVAILABLE, RC_SYSTEM_ERROR, RC_IN_PROGRESS})

# Field 4 is 12 digits: the largest amount the wire can carry.
AMOUNT_MAX_WIRE = 999_999_999_999
# STAN (field 11) is 6 digits and wraps.
STAN_MAX = 999_999
# Longest idempotency key the host accepts (Adyen's limit is 64).
IDEM_KEY_MAX_LEN = 64
# Most transactions one batch upload may list.
BATCH_ITEMS_MAX = 10_000


@dataclass(frozen=True, slots=True)
class BatchItem:
    """One transaction in a batch upload or a mismatch list."""

    stan: int
    amount: int
    rrn: str = ""


@dataclass(frozen=True, slots=True)
class Message:
    """One ISO 8583 style message. Unused fields keep their defaults."""

    mti: str
    terminal_id: str
    merchant_id: str
    stan: int
    pan: str = ""
    processing_code: str = PROC_PURCHASE
    amount: int = 0  # field 4, minor units
    currency: str = "978"  # field 49, ISO 4217 numeric
    rrn: str = ""  # field 37, set by the host
    rc: str = ""  # field 39, responses only
    auth_code: str = ""  # field 38
    idem_key: str = ""  # private field: idempotency key, once per purchase
    repeat: bool = False  # a resend (ISO 8583 0201 / 0401)
    orig_stan: int = 0  # reversal: STAN of the original
    orig_key: str = ""  # reversal: idempotency key of the original
    # Batch totals (0500/0510): counts and amounts of debits, credits, reversals.
    debit_count: int = 0
    debit_amount: int = 0
    credit_count: int = 0
    credit_amount: int = 0
    batch_no: int = 0
    items: tuple[BatchItem, ...] = ()  # batch upload, or mismatch list in 0510
    mac: str = ""  # HMAC-SHA256 over every other field, hex

    def to_dict(self) -> dict[str, Any]:
        """The non-default fields, in declaration order, for traces and JSON."""
        return _to_dict(self)

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Message:
        """Inverse of `to_dict`. Raises `ProtocolError` on unknown or bad fields."""
        try:
            items = tuple(BatchItem(int(s), int(a), str(r)) for s, a, r in data.get("items", ()))
            kwargs = {k: v for k, v in data.items() if k != "items"}
            known = {f.name for f in fields(Message)}
            unknown = sorted(set(kwargs) - known)
            if unknown:
                raise ProtocolError(f"unknown message field {unknown[0]!r}")
            return Message(items=items, **kwargs)
        except (TypeError, ValueError) as exc:
            raise ProtocolError(f"bad message: {exc}") from None


class ProtocolError(Exception):
    """The remote side sent something malformed (their fault, not ours)."""


# Field names and defaults, computed once: `dataclasses.fields` on every call costs
# more than the HMAC itself, and the simulator signs and checks every message.
_NAMES: tuple[str, ...] = tuple(f.name for f in fields(Message))
_DEFAULTS: tuple[Any, ...] = tuple(f.default for f in fields(Message))
_ALL = operator.attrgetter(*_NAMES)
_ITEMS_INDEX = _NAMES.index("items")
_MAC_INDEX = _NAMES.index("mac")
assert len(_NAMES) - 1 == _MAC_INDEX, "mac must stay the last field (sign relies on it)"
_KEEP_DEFAULT = frozenset({"mti", "stan"})
# "mti={}|terminal_id={}|...": one str.format call builds the MAC payload.
_MAC_FORMAT = "|".join(f"{name}={{}}" for name in _NAMES[:_MAC_INDEX])


def _to_dict(msg: Message) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, default, value in zip(_NAMES, _DEFAULTS, _ALL(msg), strict=True):
        if value == default and name not in _KEEP_DEFAULT:
            continue
        if name == "items":
            value = [[i.stan, i.amount, i.rrn] for i in value]
        out[name] = value
    return out


def mac_payload(msg: Message) -> bytes:
    """The bytes the MAC covers: `name=value` for every field but `mac`, joined by
    "|", in declaration order; batch items as "stan,amount,rrn" joined by ";"."""
    values = list(_ALL(msg))
    items = values[_ITEMS_INDEX]
    values[_ITEMS_INDEX] = ";".join(f"{i.stan},{i.amount},{i.rrn}" for i in items) if items else ""
    return _MAC_FORMAT.format(*values[:_MAC_INDEX]).encode()


def compute_mac(msg: Message, key: bytes) -> str:
    """HMAC-SHA256 of every field but `mac`, truncated to 16 hex digits."""
    return hmac.digest(key, mac_payload(msg), hashlib.sha256).hex()[:16]


def sign(msg: Message, key: bytes) -> Message:
    """`msg` with its MAC set. (Positional construction: `dataclasses.replace`
    costs about 10 us on a 22-field message.)"""
    values: tuple[Any, ...] = _ALL(msg)
    return Message(*values[:_MAC_INDEX], compute_mac(msg, key))  # type: ignore[call-arg]


def verify(msg: Message, key: bytes) -> bool:
    """True when `msg` carries the MAC `key` would give it."""
    # Compared as bytes: a corrupted frame may carry a non-ASCII MAC, which
    # compare_digest refuses to compare as str.
    expected = compute_mac(msg, key).encode()
    return bool(msg.mac) and hmac.compare_digest(msg.mac.encode("utf-8", "replace"), expected)


def validate_request(msg: Message) -> str | None:
    """Why `msg` is not a well-formed request, or None. Drives RC 30."""
    if msg.mti not in REQUEST_MTIS:
        return f"unknown request MTI {msg.mti!r}"
    if not (1 <= len(msg.terminal_id) <= 8) or not msg.terminal_id.isalnum():
        return "terminal_id must be 1-8 letters or digits"
    if not (1 <= len(msg.merchant_id) <= 15) or not msg.merchant_id.isalnum():
        return "merchant_id must be 1-15 letters or digits"
    if not (0 <= msg.stan <= STAN_MAX):
        return "stan out of range"
    if not (0 <= msg.amount <= AMOUNT_MAX_WIRE):
        return "amount out of range"
    if len(msg.idem_key) > IDEM_KEY_MAX_LEN:
        return "idempotency key too long"
    if msg.mti == MTI_PURCHASE:
        if not (12 <= len(msg.pan) <= 19) or not msg.pan.isdigit():
            return "pan must be 12-19 digits"
        if msg.processing_code not in (PROC_PURCHASE, PROC_REFUND):
            return "unknown processing code"
    if len(msg.items) > BATCH_ITEMS_MAX:
        return "too many batch items"
    return None
