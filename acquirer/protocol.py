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
# Transaction status inquiry (private use of ISO 8583's administrative class): what
# became of the request whose idempotency key is `orig_key`? Read-only; the answer's
# rc is that request's state now (see `inquiry` in docs/protocol.md).
MTI_INQUIRY = "0600"
MTI_INQUIRY_RESP = "0610"
# Offline advice (store-and-forward): a sale the terminal approved offline, under its
# floor limit, while the host was unreachable, uploaded afterwards for booking. The
# 0230 is final (00 booked, a decline code: a late decline, nothing charged,
# `RC_ADVICE_EXPIRED`: past its deadline) or transient (resend the same advice).
MTI_ADVICE = "0220"
MTI_ADVICE_RESP = "0230"
# Pre-authorisation (a hold): decided like a purchase, but the amount is held (moved to
# the host's holds account), not charged, and never settled by a batch close. It is
# released by a reversal (0400/0420) or captured by a completion: a 0220 naming it in
# `orig_key` (see "Pre-authorisation and completion" in docs/protocol.md).
MTI_PREAUTH = "0100"
MTI_PREAUTH_RESP = "0110"

REQUEST_MTIS = (
    MTI_PURCHASE,
    MTI_REVERSAL,
    MTI_REVERSAL_ADVICE,
    MTI_BATCH,
    MTI_ECHO,
    MTI_INQUIRY,
    MTI_ADVICE,
    MTI_PREAUTH,
)
RESPONSE_MTIS = (
    MTI_PURCHASE_RESP,
    MTI_REVERSAL_RESP,
    MTI_REVERSAL_ADVICE_RESP,
    MTI_BATCH_RESP,
    MTI_ECHO_RESP,
    MTI_INQUIRY_RESP,
    MTI_ADVICE_RESP,
    MTI_PREAUTH_RESP,
)
ALL_MTIS = REQUEST_MTIS + RESPONSE_MTIS
# ISO 8583's repeat MTIs (last digit 1): a resend of the request it names. Decoders
# accept them and give the request's MTI with `repeat` set, the one canonical form that
# the host, the MAC and the trace see (so 0201 and 0200 + repeat are the same message).
REPEAT_MTIS = {
    "0201": MTI_PURCHASE,
    "0401": MTI_REVERSAL,
    "0421": MTI_REVERSAL_ADVICE,
    "0221": MTI_ADVICE,
    "0101": MTI_PREAUTH,
}


def canonical_mti(mti: str) -> tuple[str, bool]:
    """`(mti, is_repeat)`: a repeat MTI as its request MTI and True; others unchanged."""
    base = REPEAT_MTIS.get(mti)
    return (mti, False) if base is None else (base, True)


def response_mti(request_mti: str) -> str:
    """The MTI that answers `request_mti` ("0200" -> "0210")."""
    return request_mti[:2] + str(int(request_mti[2]) + 1) + request_mti[3]


# Processing codes (field 3): purchase, refund, and a wallet (QR code) payment, in
# ISO 8583's private-use range 90-99: `pan` then carries the customer's payment code
# and `idem_key` the merchant's order number.
PROC_PURCHASE = "000000"
# A purchase from a terminal that can take a partial approval (RC 10). Field 3's last
# digit stands in for the POS data field that carries this capability in the field.
PROC_PURCHASE_PARTIAL = "000001"
PROC_REFUND = "200000"
PROC_WALLET = "900000"
# ISO 8583's adjustment: a 0220 that sets an approved sale's new total (base + tip);
# `orig_key` names the sale, `amount` is the new total.
PROC_ADJUST = "020000"

# Response codes (field 39).
RC_APPROVED = "00"
RC_PARTIAL = "10"  # partial approval: the answer's amount (field 4) is what was approved
RC_DO_NOT_HONOUR = "05"
# Invalid transaction: a reversal that does not match its original or comes after the
# batch close settled it, a refund that does not fit its sale (acquirer/refunds.py).
RC_REVERSAL_REFUSED = "12"
RC_IN_PROGRESS = "09"
RC_UNABLE_TO_LOCATE = "25"  # a reversal whose original the host does not hold
RC_INVALID_AMOUNT = "13"
RC_FORMAT_ERROR = "30"
RC_INSUFFICIENT_FUNDS = "51"
RC_STALE = "63"  # security violation: transmission time outside the freshness window
RC_ISSUER_UNAVAILABLE = "91"
RC_DUPLICATE = "94"
RC_RECONCILE_ERROR = "95"
RC_SYSTEM_ERROR = "96"
# Order states a status inquiry (0610) or a wallet payment answer can report, beside
# 00 (paid), 09 (not final yet: the customer is confirming, or the host is still
# working), 25 (no such request) and the decline codes.
RC_CLOSED = "CL"  # closed unpaid (cancelled, or the confirmation window ran out): final
RC_REVERSED = "RV"  # charged, then reversed or refunded in full: final, nothing kept
# An offline advice (0220) that reached the host after its upload deadline: refused,
# nothing charged; the merchant must collect the money another way.
RC_ADVICE_EXPIRED = "EX"
# Field 39 of an advice: approved offline, unable to go online (EMV's Y3).
RC_OFFLINE_APPROVED = "Y3"

RESPONSE_CODES: dict[str, str] = {
    RC_APPROVED: "approved",
    RC_PARTIAL: "partial approval",
    RC_DO_NOT_HONOUR: "do not honour",
    RC_REVERSAL_REFUSED: "invalid transaction",
    RC_IN_PROGRESS: "request in progress",
    RC_INVALID_AMOUNT: "invalid amount",
    RC_UNABLE_TO_LOCATE: "unable to locate original",
    RC_FORMAT_ERROR: "format error",
    RC_INSUFFICIENT_FUNDS: "insufficient funds",
    RC_STALE: "security violation (stale transmission time)",
    RC_ISSUER_UNAVAILABLE: "issuer unavailable",
    RC_DUPLICATE: "duplicate transmission",
    RC_RECONCILE_ERROR: "reconcile error",
    RC_SYSTEM_ERROR: "system error",
    RC_CLOSED: "order closed unpaid",
    RC_REVERSED: "reversed",
    RC_ADVICE_EXPIRED: "advice past its upload deadline",
}

# Reversal reasons: field 39 of a reversal request (0400/0420), China UnionPay style.
# A reversal without one (the terminal's older reversals) says nothing about why.
REVERSAL_NO_RESPONSE = "98"  # no answer to the original in time
REVERSAL_NOT_COMPLETED = "96"  # approved, but the terminal failed to finish (chip declined)
REVERSAL_MAC_FAILURE = "A0"  # the approval's MAC did not verify
REVERSAL_REASONS: dict[str, str] = {
    REVERSAL_NO_RESPONSE: "no response",
    REVERSAL_NOT_COMPLETED: "approved but terminal failed to finish",
    REVERSAL_MAC_FAILURE: "MAC failure on the approval",
}

# Codes after which nothing was charged and a resend with the same key is safe:
# the host does not store them under the idempotency key.
TRANSIENT_RCS = frozenset({RC_ISSUER_UNAVAILABLE, RC_SYSTEM_ERROR, RC_IN_PROGRESS, RC_STALE})

# Freshness: the host refuses (RC 63) a request whose MAC-covered transmission time
# `sent_ms` is further than this from its own clock, either way. Idempotency records
# are kept at least twice as long, so a replay inside the window always finds the
# stored outcome and one outside it is refused: no replay ever charges again.
FRESHNESS_WINDOW_MS = 300_000

# Field 4 is 12 digits: the largest amount the wire can carry.
AMOUNT_MAX_WIRE = 999_999_999_999
# STAN (field 11) is 6 digits and wraps.
STAN_MAX = 999_999
# Longest idempotency key the host accepts (Adyen's limit is 64).
IDEM_KEY_MAX_LEN = 64
# Most transactions one batch upload may list.
BATCH_ITEMS_MAX = 10_000
# Batch numbers, counts and totals: at most 18 digits, so any sum the host forms
# from them stays inside SQLite's int64.
TOTAL_MAX = 10**18 - 1
# Transmission times (virtual ms since the epoch) up to year 2286: 13 digits.
SENT_MS_MAX = 9_999_999_999_999
PROCESSING_CODES = frozenset(
    {PROC_PURCHASE, PROC_PURCHASE_PARTIAL, PROC_REFUND, PROC_WALLET, PROC_ADJUST}
)
_LOWER_HEX = "0123456789abcdef"


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
    # An advice (0220): when the terminal approved the sale offline (its clock, virtual
    # ms); the host refuses it (RC EX) once the upload deadline after that has passed.
    # 0 on every other message, and then left out of the MAC input.
    offline_ms: int = 0
    # Transmission time (virtual ms), stamped by the sender's transport and covered
    # by the MAC: the host refuses requests outside `FRESHNESS_WINDOW_MS` of its clock.
    sent_ms: int = 0
    mac: str = ""  # HMAC-SHA256 over the canonical form of every other field, hex

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


def money(minor: int) -> str:
    """Minor units as an amount to show: 3000 -> "30.00", -5 -> "-0.05"."""
    sign = "-" if minor < 0 else ""
    minor = abs(minor)
    return f"{sign}{minor // 100}.{minor % 100:02d}"


class ProtocolError(Exception):
    """The remote side sent something malformed (their fault, not ours)."""


# Field names and defaults, computed once: `dataclasses.fields` on every call costs
# more than the HMAC itself, and the simulator signs and checks every message.
_NAMES: tuple[str, ...] = tuple(f.name for f in fields(Message))
_DEFAULTS: tuple[Any, ...] = tuple(f.default for f in fields(Message))
_ALL = operator.attrgetter(*_NAMES)
_MAC_INDEX = _NAMES.index("mac")
_ITEMS_INDEX = _NAMES.index("items")
_SENT_INDEX = _NAMES.index("sent_ms")
_OFFLINE_INDEX = _NAMES.index("offline_ms")
assert _SENT_INDEX == _MAC_INDEX - 1, "sent_ms must come right before mac (stamp relies on it)"
assert len(_NAMES) - 1 == _MAC_INDEX, "mac must stay the last field (sign relies on it)"
_KEEP_DEFAULT = frozenset({"mti", "stan"})


def _to_dict(msg: Message) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, default, value in zip(_NAMES, _DEFAULTS, _ALL(msg), strict=True):
        if value == default and name not in _KEEP_DEFAULT:
            continue
        if name == "items":
            value = [[i.stan, i.amount, i.rrn] for i in value]
        out[name] = value
    return out


# Version tag at the head of every MAC input: a future change of the canonical
# form can never make an old signature valid for a new reading of the same bytes.
MAC_DOMAIN = b"posh-mac-v2\n"


def mac_payload(msg: Message) -> bytes:
    """The bytes the MAC covers: the canonical form of every field but `mac`.

    After `MAC_DOMAIN`, every field in declaration order as "<length>:<bytes>"
    (integers in decimal, booleans as 1 / 0, strings as UTF-8, lengths in bytes);
    `items` is its count, then three such fields per item. Every value carries its
    own length, so no value, whatever it contains ("|", "=", ";", digits), can end
    early or run into the next one: two messages have the same payload only if every
    field is equal. (Built as one str and encoded once: the simulator MACs every
    message several times.)
    """
    values = _ALL(msg)
    out = [
        v if type(v) is str else ("1" if v is True else "0" if v is False else str(v))
        for v in values[:_ITEMS_INDEX]
    ]
    items = values[_ITEMS_INDEX]
    if type(items) is tuple:
        out.append(str(len(items)))
        for item in items:
            rrn = item.rrn
            out += (str(item.stan), str(item.amount), rrn if type(rrn) is str else str(rrn))
    else:
        out.append(str(items))
    # offline_ms is covered only when set: every message without it keeps the MAC
    # (and the test vectors) it had before advices existed; set, it adds one field.
    out += [
        v if type(v) is str else str(v)
        for i, v in enumerate(values[_ITEMS_INDEX + 1 : _MAC_INDEX], _ITEMS_INDEX + 1)
        if i != _OFFLINE_INDEX or v != 0
    ]
    text = "".join([f"{len(v)}:{v}" for v in out])
    if not text.isascii():
        # Lengths in bytes; lone surrogates (JSON can carry them) count as their own.
        text = "".join([f"{len(v.encode('utf-8', 'surrogatepass'))}:{v}" for v in out])
    return MAC_DOMAIN + text.encode("utf-8", "surrogatepass")


def compute_mac(msg: Message, key: bytes) -> str:
    """HMAC-SHA256 of every field but `mac`, truncated to 16 hex digits."""
    return hmac.digest(key, mac_payload(msg), hashlib.sha256).hex()[:16]


# Messages `sign` made, by id: a message is verified right after it is signed (by
# the transport, the host, the firmware), and a frozen message signed with a key
# verifies with that key, so the MAC need not be computed again. Holding the
# message keeps its id from being reused; the table is emptied when it is full.
_SIGNED: dict[int, tuple[Message, bytes]] = {}
_SIGNED_MAX = 256


def sign(msg: Message, key: bytes) -> Message:
    """`msg` with its MAC set. (Positional construction: `dataclasses.replace`
    costs about 10 us on a 22-field message.)"""
    values: tuple[Any, ...] = _ALL(msg)
    signed = Message(*values[:_MAC_INDEX], compute_mac(msg, key))  # type: ignore[call-arg]
    if len(_SIGNED) >= _SIGNED_MAX:
        _SIGNED.clear()
    _SIGNED[id(signed)] = (signed, key)
    return signed


def stamp(msg: Message, key: bytes, now_ms: int) -> Message:
    """`msg` as the terminal's transport sends it: transmission time `now_ms` set and
    the MAC recomputed. Only a message the firmware signed correctly is stamped (its
    secure element holds the key); anything else goes out as it is, and is refused.
    """
    if not verify(msg, key):
        return msg
    values: tuple[Any, ...] = _ALL(msg)
    return sign(Message(*values[:_SENT_INDEX], now_ms, ""), key)  # type: ignore[call-arg]


def verify(msg: Message, key: bytes) -> bool:
    """True when `msg` carries the MAC `key` would give it."""
    known = _SIGNED.get(id(msg))
    if known is not None and known[0] is msg and known[1] == key:
        return True  # `sign` made this very message with this key
    # Compared as bytes: a corrupted frame may carry a non-ASCII MAC, which
    # compare_digest refuses to compare as str.
    expected = compute_mac(msg, key).encode()
    return bool(msg.mac) and hmac.compare_digest(msg.mac.encode("utf-8", "replace"), expected)


def _is_digits(text: object, low: int, high: int) -> bool:
    return type(text) is str and low <= len(text) <= high and text.isascii() and text.isdigit()


def _is_alnum(text: object, low: int, high: int) -> bool:
    return type(text) is str and low <= len(text) <= high and text.isascii() and text.isalnum()


def _is_key(text: object) -> bool:
    """An idempotency key: empty, or 1-64 printable ASCII characters."""
    return type(text) is str and (
        not text or (len(text) <= IDEM_KEY_MAX_LEN and text.isascii() and text.isprintable())
    )


def _in_range(value: object, low: int, high: int) -> bool:
    # type() is int: a bool or a float must not pass as a count or an amount.
    return type(value) is int and low <= value <= high


def field_problem(msg: Message) -> str | None:
    """The first field of `msg` (any MTI) outside what the wire can carry, or None."""
    if type(msg.mti) is not str or msg.mti not in ALL_MTIS:
        return f"unknown MTI {msg.mti!r}"
    if not _is_alnum(msg.terminal_id, 1, 8):
        return "terminal_id must be 1-8 letters or digits"
    if not _is_alnum(msg.merchant_id, 1, 15):
        return "merchant_id must be 1-15 letters or digits"
    if not _in_range(msg.stan, 0, STAN_MAX):
        return "stan out of range"
    if msg.pan != "" and not _is_digits(msg.pan, 12, 19):
        return "pan must be 12-19 digits"
    if msg.processing_code not in PROCESSING_CODES:
        return "unknown processing code"
    if not _in_range(msg.amount, 0, AMOUNT_MAX_WIRE):
        return "amount out of range"
    if not _is_digits(msg.currency, 3, 3):
        return "currency must be 3 digits"
    if msg.rrn != "" and not _is_alnum(msg.rrn, 12, 12):
        return "rrn must be 12 letters or digits"
    if msg.rc != "" and not _is_alnum(msg.rc, 2, 2):
        return "rc must be 2 letters or digits"
    if msg.auth_code != "" and not _is_alnum(msg.auth_code, 6, 6):
        return "auth_code must be 6 letters or digits"
    if not _is_key(msg.idem_key):
        return "idempotency key must be 1-64 printable ASCII characters"
    if type(msg.repeat) is not bool:
        return "repeat must be true or false"
    if not _in_range(msg.orig_stan, 0, STAN_MAX):
        return "orig_stan out of range"
    if not _is_key(msg.orig_key):
        return "orig_key must be 1-64 printable ASCII characters"
    for name in ("debit_count", "credit_count", "debit_amount", "credit_amount", "batch_no"):
        if not _in_range(getattr(msg, name), 0, TOTAL_MAX):
            return f"{name} out of range"
    if type(msg.items) is not tuple or len(msg.items) > BATCH_ITEMS_MAX:
        return "too many batch items"
    for item in msg.items:
        if (
            type(item) is not BatchItem
            or not _in_range(item.stan, 0, STAN_MAX)
            or not _in_range(item.amount, 0, AMOUNT_MAX_WIRE)
            or not (item.rrn == "" or _is_alnum(item.rrn, 1, 12))
        ):
            return "bad batch item (stan, amount or rrn)"
    if not _in_range(msg.sent_ms, 0, SENT_MS_MAX):
        return "sent_ms out of range"
    if not _in_range(msg.offline_ms, 0, SENT_MS_MAX):
        return "offline_ms out of range"
    mac = msg.mac
    if mac != "" and not (type(mac) is str and len(mac) == 16 and not mac.strip(_LOWER_HEX)):
        return "mac must be 16 lowercase hex digits"
    return None


def validate_request(msg: Message) -> str | None:
    """Why `msg` is not a well-formed request, or None. Drives RC 30.

    Every field is checked on every MTI (type, charset, length, range), then what
    the MTI needs: a purchase its card and idempotency key, a reversal the key of
    its original, a batch a positive batch number. A request never carries the
    host's fields (rrn, rc, auth_code), except a reversal's reason in rc.
    """
    problem = field_problem(msg)
    if problem is not None:
        return problem
    return request_problem(msg)


def request_problem(msg: Message) -> str | None:
    """What a request MTI needs beyond well-formed fields (see `validate_request`);
    `msg` must already have passed `field_problem`."""
    mti = msg.mti
    if mti not in REQUEST_MTIS:
        return f"unknown request MTI {mti!r}"
    reversal = mti in (MTI_REVERSAL, MTI_REVERSAL_ADVICE)
    if msg.rc and reversal and msg.rc not in REVERSAL_REASONS:
        return f"reversal reason (rc) must be one of {', '.join(sorted(REVERSAL_REASONS))}"
    if mti == MTI_ADVICE:
        return _advice_problem(msg)
    if msg.offline_ms:
        return "only an advice (0220) carries offline_ms"
    if msg.rrn or (msg.rc and not reversal) or msg.auth_code:
        return "a request must not carry rrn, rc or auth_code"
    if msg.stan < 1:
        # ISO 8583 field 11 numbers a terminal's requests 000001-999999; 0 is none.
        return "stan must be 1-999999"
    if msg.processing_code == PROC_ADJUST and mti != MTI_INQUIRY:
        return "processing code 020000 (tip adjust) is only for a 0220"
    if mti in (MTI_PURCHASE, MTI_PREAUTH):
        if not msg.pan:
            return "pan must be 12-19 digits"
        if not msg.idem_key:
            return "idempotency key required"
        if mti == MTI_PREAUTH:
            return _preauth_problem(msg)
    elif mti in (MTI_REVERSAL, MTI_REVERSAL_ADVICE):
        if not msg.orig_key:
            return "reversal must name its original's idempotency key (orig_key)"
    elif mti == MTI_BATCH and msg.batch_no < 1:
        return "batch number must be positive"
    elif mti == MTI_INQUIRY and not msg.orig_key:
        return "inquiry must name the request it asks about (orig_key)"
    return None


def _preauth_problem(msg: Message) -> str | None:
    """What a pre-authorisation (0100) needs beyond a purchase's card and key."""
    if msg.processing_code != PROC_PURCHASE:
        return "a pre-authorisation is processing code 000000 (a hold is never partial)"
    if msg.amount < 1:
        return "a pre-authorisation must carry the amount to hold (at least 1)"
    return None


def _advice_problem(msg: Message) -> str | None:
    """What a 0220 needs: a card, its own key, a STAN and no host fields; then either
    an offline advice (the time it was approved offline, rc Y3 or none, an amount, no
    `orig_key`) or a completion / tip adjust (`orig_key` naming the hold or the sale,
    processing code 000000 / 020000, no `offline_ms`, no rc)."""
    if msg.rrn or msg.auth_code or msg.rc not in ("", RC_OFFLINE_APPROVED):
        return f"an advice must not carry rrn or auth_code, and rc only {RC_OFFLINE_APPROVED}"
    if msg.stan < 1:
        return "stan must be 1-999999"
    if not msg.pan:
        return "pan must be 12-19 digits"
    if not msg.idem_key:
        return "idempotency key required"
    if msg.orig_key:
        return _follow_up_problem(msg)
    if msg.processing_code == PROC_ADJUST:
        return "a tip adjust (020000) must name its sale (orig_key)"
    if msg.processing_code not in (PROC_PURCHASE, PROC_PURCHASE_PARTIAL):
        return "an advice is a purchase (processing code 000000 or 000001)"
    if msg.amount < 1:
        return "an advice must carry the amount approved offline"
    if msg.offline_ms < 1:
        return "an advice must carry the time it was approved offline (offline_ms)"
    return None


def _follow_up_problem(msg: Message) -> str | None:
    """What a completion or tip adjust (a 0220 with `orig_key`) must not mix in."""
    if msg.offline_ms:
        return "a completion or tip adjust (orig_key) carries no offline_ms"
    if msg.rc:
        return "a completion or tip adjust (orig_key) carries no rc"
    if msg.processing_code not in (PROC_PURCHASE, PROC_ADJUST):
        return "a completion is processing code 000000, a tip adjust 020000"
    if msg.idem_key == msg.orig_key:
        return "a completion or tip adjust needs a key of its own (idem_key != orig_key)"
    return None


def validate_response(msg: Message) -> str | None:
    """Why `msg` is not a well-formed response, or None (the terminal's check)."""
    problem = field_problem(msg)
    if problem is not None:
        return problem
    if msg.mti not in RESPONSE_MTIS:
        return f"unknown response MTI {msg.mti!r}"
    if not msg.rc:
        return "a response must carry an rc"
    return None
