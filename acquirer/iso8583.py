"""ISO 8583 wire codec for `Message`, built on pyiso8583, plus a JSON debug encoding.

Field map (ASCII, primary bitmap only):

====  ==========================  =====================================
t     MTI                         one of `protocol.ALL_MTIS`
2     pan                         LLVAR, up to 19 digits, absent if ""
3     processing_code             6 digits (200000: a refund, orig_key names its sale;
                                  020000: a 0220 tip adjust)
4     amount                      12 digits, minor units
11    stan                        6 digits
37    rrn                         12 letters/digits, absent if ""
38    auth_code                   6 letters/digits, absent if ""
39    rc                          2 letters/digits, absent if "" (a 0400/0420: its reason)
41    terminal_id                 8, letters/digits, space-padded right
42    merchant_id                 15, letters/digits, space-padded right
48    idem_key, repeat,           LLLVAR tag-length-value: tag (2 letters),
      orig_stan, orig_key,        length (3 digits), value (a 0400 void, a 0200
      offline_ms (tag OT, an      refund and a 0220 completion or tip adjust
      advice's), sent_ms          name their original in orig_key)
49    currency                    3 digits
62    items                       LLLLVAR "stan,amount,rrn;..."
63    batch_no and totals         LLLVAR tag-length-value
64    mac                         16 hex digits (written lower case; read either), absent if ""
====  ==========================  =====================================

Every value is checked both ways: `encode` refuses a Message the wire cannot
carry exactly, `decode` refuses anything but a frame `encode` could have made.
Both raise `ProtocolError` with a one-line reason.

Fast path: pyiso8583 costs most of a codec call, so the frame layer (MTI, ASCII
hex primary bitmap, length prefixes; acquirer/iso8583_frame.py) has a hand-written
fast path, `_fast_frame` and `_fast_doc`, derived from `SPEC`, that falls back to
pyiso8583 on anything unusual. tests/acquirer/test_iso8583_fast.py checks both paths
against pyiso8583 and against the original implementation.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Mapping
from dataclasses import fields

import iso8583
import iso8583.specs

from acquirer.iso8583_frame import (
    _KNOWN_FIELDS,
    FRAME_MAX_BYTES,
    SPEC,
    _doc_reference,
    _fast_doc,
    _fast_frame,
    _frame_reference,
)
from acquirer.protocol import (
    ALL_MTIS,
    AMOUNT_MAX_WIRE,
    IDEM_KEY_MAX_LEN,
    REQUEST_MTIS,
    STAN_MAX,
    BatchItem,
    Message,
    ProtocolError,
    canonical_mti,
)

__all__ = ["FRAME_MAX_BYTES", "decode", "decode_address", "encode", "from_json", "to_json"]

# Batch totals may sum many 12-digit amounts: allow up to 18 digits (fits int64).
TOTAL_DIGITS_MAX = 18

_REQUIRED_FIELDS = ("t", "3", "4", "11", "41", "42", "49")

# Still used by `decode_address`; everything else uses the str-method predicates below.
_DIGITS = re.compile(r"[0-9]*")
_ALNUM = re.compile(r"[A-Za-z0-9]*")
_ITEM = re.compile(r"([0-9]{1,6}),([0-9]{1,12}),([A-Za-z0-9]{0,12})")
_UPPER_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_LOWER_HEX = "0123456789abcdef"

# Private TLV tags.
_TAG_IDEM_KEY = "IK"
_TAG_REPEAT = "RP"
_TAG_ORIG_STAN = "OS"
_TAG_ORIG_KEY = "OK"
_TAG_SENT_MS = "TS"
_TAG_OFFLINE_MS = "OT"  # an advice (0220): when the sale was approved offline
_TAG_BATCH_NO = "BN"
_TAG_DEBIT_COUNT = "DC"
_TAG_DEBIT_AMOUNT = "DA"
_TAG_CREDIT_COUNT = "CC"
_TAG_CREDIT_AMOUNT = "CA"
_TAGS_48 = frozenset(
    {_TAG_IDEM_KEY, _TAG_REPEAT, _TAG_ORIG_STAN, _TAG_ORIG_KEY, _TAG_SENT_MS, _TAG_OFFLINE_MS}
)
# Transmission time: up to 13 digits of virtual milliseconds.
SENT_MS_DIGITS = 13
_TOTALS = (
    (_TAG_BATCH_NO, "batch_no"),
    (_TAG_DEBIT_COUNT, "debit_count"),
    (_TAG_DEBIT_AMOUNT, "debit_amount"),
    (_TAG_CREDIT_COUNT, "credit_count"),
    (_TAG_CREDIT_AMOUNT, "credit_amount"),
)
_TAGS_63 = frozenset(tag for tag, _ in _TOTALS)
_TOTALS_OF = operator.attrgetter(*(name for _, name in _TOTALS))
_NO_TOTALS = (0,) * len(_TOTALS)
_TOTAL_LIMIT = 10**TOTAL_DIGITS_MAX


# Exact equivalents of re.fullmatch on [0-9]*, [A-Za-z0-9]*, [\x20-\x7e]* and
# [0-9a-f]{16} (str.isdigit etc. alone would accept non-ASCII digits and letters).
def _is_digits(text: str) -> bool:
    return text.isascii() and (text.isdigit() or not text)


def _is_alnum(text: str) -> bool:
    return text.isascii() and (text.isalnum() or not text)


def _is_printable(text: str) -> bool:
    return text.isascii() and text.isprintable()


def _is_hex16(text: str) -> bool:
    return len(text) == 16 and not text.strip(_LOWER_HEX)


def _check(ok: bool, reason: str) -> None:
    if not ok:
        raise ProtocolError(reason)


def _tlv(pairs: list[tuple[str, str]]) -> str:
    return "".join(f"{tag}{len(value):03d}{value}" for tag, value in pairs)


def _parse_tlv(text: str, allowed: frozenset[str], field: str) -> dict[str, str]:
    out: dict[str, str] = {}
    pos = 0
    while pos < len(text):
        tag, length = text[pos : pos + 2], text[pos + 2 : pos + 5]
        if len(tag) != 2 or tag.strip(_UPPER_LETTERS):
            raise ProtocolError(f"field {field}: bad tag at {pos}")
        if not (len(length) == 3 and length.isdigit()):
            raise ProtocolError(f"field {field}: bad length at {pos}")
        end = pos + 5 + int(length)
        if end > len(text):
            raise ProtocolError(f"field {field}: tag {tag} truncated")
        if tag not in allowed:
            raise ProtocolError(f"field {field}: unknown tag {tag}")
        if tag in out:
            raise ProtocolError(f"field {field}: repeated tag {tag}")
        out[tag] = text[pos + 5 : end]
        pos = end
    return out


def _int_value(text: str, max_digits: int, name: str) -> int:
    if not (1 <= len(text) <= max_digits and _is_digits(text)):
        raise ProtocolError(f"bad {name}")
    return int(text)


def encode(msg: Message) -> bytes:
    """`msg` as an ISO 8583 frame. Raises `ProtocolError` if the wire cannot carry it."""
    doc = _to_doc(msg)
    frame = _fast_frame(doc)
    if frame is None:
        frame = _frame_reference(doc)
    if len(frame) > FRAME_MAX_BYTES:
        raise ProtocolError("frame too large")
    return frame


def _encode_reference(msg: Message) -> bytes:
    """`encode` through pyiso8583 only (the reference the fast path is tested against)."""
    frame = _frame_reference(_to_doc(msg))
    if len(frame) > FRAME_MAX_BYTES:
        raise ProtocolError("frame too large")
    return frame


def _to_doc(msg: Message) -> dict[str, str]:
    """The pyiso8583 document for `msg`, every value checked (in a fixed order, so the
    first problem found is always the same one)."""
    mti = msg.mti
    if mti not in ALL_MTIS:
        raise ProtocolError(f"unknown MTI {mti!r}")
    proc = msg.processing_code
    if not (len(proc) <= 6 and _is_digits(proc)):
        raise ProtocolError("bad processing code")
    amount = msg.amount
    if not (0 <= amount <= AMOUNT_MAX_WIRE):
        raise ProtocolError("amount out of range")
    stan = msg.stan
    if not (0 <= stan <= STAN_MAX):
        raise ProtocolError("stan out of range")
    terminal_id = msg.terminal_id
    if not (len(terminal_id) <= 8 and _is_alnum(terminal_id)):
        raise ProtocolError("bad terminal id")
    merchant_id = msg.merchant_id
    if not (len(merchant_id) <= 15 and _is_alnum(merchant_id)):
        raise ProtocolError("bad merchant id")
    currency = msg.currency
    if not (len(currency) <= 3 and _is_digits(currency)):
        raise ProtocolError("bad currency")
    if len(proc) != 6:
        raise ProtocolError("bad processing code")
    if len(currency) != 3:
        raise ProtocolError("bad currency")
    doc: dict[str, str] = {
        "t": mti,
        "3": proc,
        "4": f"{amount:012d}",
        "11": f"{stan:06d}",
        "41": terminal_id.ljust(8),
        "42": merchant_id.ljust(15),
        "49": currency,
    }
    pan = msg.pan
    if pan:
        if not (len(pan) <= 19 and _is_digits(pan)):
            raise ProtocolError("bad pan")
        doc["2"] = pan
    rrn = msg.rrn
    if rrn:
        if len(rrn) != 12 or not _is_alnum(rrn):
            raise ProtocolError("bad rrn")
        doc["37"] = rrn
    auth_code = msg.auth_code
    if auth_code:
        if len(auth_code) != 6 or not _is_alnum(auth_code):
            raise ProtocolError("bad auth code")
        doc["38"] = auth_code
    rc = msg.rc
    if rc:
        if len(rc) != 2 or not _is_alnum(rc):
            raise ProtocolError("bad rc")
        doc["39"] = rc
    private: list[tuple[str, str]] = []
    if msg.idem_key:
        key = msg.idem_key
        if not (len(key) <= IDEM_KEY_MAX_LEN and _is_printable(key)):
            raise ProtocolError("bad key")
        private.append((_TAG_IDEM_KEY, key))
    if msg.repeat:
        private.append((_TAG_REPEAT, "1"))
    if msg.orig_stan:
        orig_stan = msg.orig_stan
        if not (0 <= orig_stan <= STAN_MAX):
            raise ProtocolError("orig stan out of range")
        private.append((_TAG_ORIG_STAN, f"{orig_stan:06d}"))
    if msg.orig_key:
        orig_key = msg.orig_key
        if not (len(orig_key) <= IDEM_KEY_MAX_LEN and _is_printable(orig_key)):
            raise ProtocolError("bad orig key")
        private.append((_TAG_ORIG_KEY, orig_key))
    if msg.offline_ms:
        offline_ms = msg.offline_ms
        if not (0 <= offline_ms < 10**SENT_MS_DIGITS):
            raise ProtocolError("offline_ms out of range")
        private.append((_TAG_OFFLINE_MS, str(offline_ms)))
    if msg.sent_ms:
        sent_ms = msg.sent_ms
        if not (0 <= sent_ms < 10**SENT_MS_DIGITS):
            raise ProtocolError("sent_ms out of range")
        private.append((_TAG_SENT_MS, str(sent_ms)))
    if private:
        doc["48"] = _tlv(private)
    values = _TOTALS_OF(msg)
    if values != _NO_TOTALS:
        totals: list[tuple[str, str]] = []
        for (tag, name), value in zip(_TOTALS, values, strict=True):
            if not (0 <= value < _TOTAL_LIMIT):
                raise ProtocolError(f"{name} out of range")
            if value:
                totals.append((tag, str(value)))
        if totals:
            doc["63"] = _tlv(totals)
    if msg.items:
        parts = []
        for item in msg.items:
            if not (0 <= item.stan <= STAN_MAX):
                raise ProtocolError("item stan out of range")
            if not (0 <= item.amount <= AMOUNT_MAX_WIRE):
                raise ProtocolError("item amount out of range")
            if not (len(item.rrn) <= 12 and _is_alnum(item.rrn)):
                raise ProtocolError("bad item rrn")
            parts.append(f"{item.stan},{item.amount},{item.rrn}")
        doc["62"] = ";".join(parts)
    mac = msg.mac
    if mac:
        if not _is_hex16(mac):
            raise ProtocolError("bad mac")
        doc["64"] = mac
    return doc


# -- Decoding -----------------------------------------------------------------------


def _raw_decode(frame: bytes) -> dict[str, str]:
    if not isinstance(frame, (bytes, bytearray)):
        raise ProtocolError("frame is not bytes")
    if len(frame) > FRAME_MAX_BYTES:
        raise ProtocolError("frame too large")
    doc = _fast_doc(frame)
    if doc is None:
        doc = _doc_reference(frame)
    return doc


def decode(frame: bytes) -> Message:
    """The Message in `frame`. Raises `ProtocolError` on anything malformed."""
    return _from_doc(_raw_decode(frame))


def _decode_reference(frame: bytes) -> Message:
    """`decode` through pyiso8583 only (the reference the fast path is tested against)."""
    if not isinstance(frame, (bytes, bytearray)):
        raise ProtocolError("frame is not bytes")
    if len(frame) > FRAME_MAX_BYTES:
        raise ProtocolError("frame too large")
    return _from_doc(_doc_reference(frame))


_MESSAGE_FIELDS = (
    "mti",
    "terminal_id",
    "merchant_id",
    "stan",
    "pan",
    "processing_code",
    "amount",
    "currency",
    "rrn",
    "rc",
    "auth_code",
    "idem_key",
    "repeat",
    "orig_stan",
    "orig_key",
    "debit_count",
    "debit_amount",
    "credit_count",
    "credit_amount",
    "batch_no",
    "items",
    "offline_ms",
    "sent_ms",
    "mac",
)
assert tuple(f.name for f in fields(Message)) == _MESSAGE_FIELDS, "_from_doc passes them in order"


def _field_order(field: str) -> tuple[int, str]:
    return (len(field), field)


def _from_doc(doc: Mapping[str, str]) -> Message:
    if not doc.keys() <= _KNOWN_FIELDS:
        unknown = sorted(set(doc) - _KNOWN_FIELDS, key=_field_order)
        raise ProtocolError(f"unexpected field {unknown[0]}")
    for name in _REQUIRED_FIELDS:
        if name not in doc:
            raise ProtocolError(f"missing field {name}")
    mti, repeat = canonical_mti(doc["t"])
    if mti not in ALL_MTIS:
        raise ProtocolError(f"unknown MTI {mti!r}")
    proc = doc["3"]
    if not (len(proc) <= 6 and _is_digits(proc)):
        raise ProtocolError("bad processing code")
    amount = _int_value(doc["4"], 12, "amount")
    stan = _int_value(doc["11"], 6, "stan")
    terminal_id = _padded(doc["41"], "terminal id")
    merchant_id = _padded(doc["42"], "merchant id")
    currency = doc["49"]
    if not (len(currency) <= 3 and _is_digits(currency)):
        raise ProtocolError("bad currency")
    pan = ""
    if "2" in doc:
        pan = doc["2"]
        if not (1 <= len(pan) <= 19 and _is_digits(pan)):
            raise ProtocolError("bad pan")
    rrn = doc.get("37", "")
    if not (len(rrn) <= 12 and _is_alnum(rrn)):
        raise ProtocolError("bad rrn")
    auth_code = doc.get("38", "")
    if not (len(auth_code) <= 6 and _is_alnum(auth_code)):
        raise ProtocolError("bad auth code")
    rc = doc.get("39", "")
    if not (len(rc) <= 2 and _is_alnum(rc)):
        raise ProtocolError("bad rc")
    idem_key = orig_key = ""
    orig_stan = sent_ms = offline_ms = 0
    if "48" in doc:
        private = _parse_tlv(doc["48"], _TAGS_48, "48")
        idem_key = _nonempty_key(private.get(_TAG_IDEM_KEY), "idempotency key")
        orig_key = _nonempty_key(private.get(_TAG_ORIG_KEY), "orig key")
        repeat_text = private.get(_TAG_REPEAT)
        if repeat_text not in (None, "1"):
            raise ProtocolError("bad repeat flag")
        repeat = repeat or repeat_text == "1"
        if _TAG_ORIG_STAN in private:
            orig_stan = _int_value(private[_TAG_ORIG_STAN], 6, "orig stan")
        if _TAG_SENT_MS in private:
            sent_ms = _int_value(private[_TAG_SENT_MS], SENT_MS_DIGITS, "sent_ms")
        if _TAG_OFFLINE_MS in private:
            offline_ms = _int_value(private[_TAG_OFFLINE_MS], SENT_MS_DIGITS, "offline_ms")
    batch_no = debit_count = debit_amount = credit_count = credit_amount = 0
    if "63" in doc:
        totals = _parse_tlv(doc["63"], _TAGS_63, "63")
        batch_no, debit_count, debit_amount, credit_count, credit_amount = (
            _int_value(totals[tag], TOTAL_DIGITS_MAX, name) if tag in totals else 0
            for tag, name in _TOTALS
        )
    items: tuple[BatchItem, ...] = ()
    if "62" in doc:
        parsed = []
        for part in doc["62"].split(";"):
            m = _ITEM.fullmatch(part)
            if m is None:
                raise ProtocolError("bad batch item")
            parsed.append(BatchItem(int(m[1]), int(m[2]), m[3]))
        items = tuple(parsed)
    mac = ""
    if "64" in doc:
        # The 8-byte MAC as 16 hex digits: tools that hold it as binary (field 64 is
        # "b 64" in ISO 8583:1987) print it in upper case; both cases mean the same MAC.
        mac = doc["64"].lower()
        if not _is_hex16(mac):
            raise ProtocolError("bad mac")
    # Positional: half the cost of 22 keywords (`_MESSAGE_FIELDS` pins the order).
    return Message(
        mti,
        terminal_id,
        merchant_id,
        stan,
        pan,
        proc,
        amount,
        currency,
        rrn,
        rc,
        auth_code,
        idem_key,
        repeat,
        orig_stan,
        orig_key,
        debit_count,
        debit_amount,
        credit_count,
        credit_amount,
        batch_no,
        items,
        offline_ms,
        sent_ms,
        mac,
    )


def _padded(text: str, name: str) -> str:
    """A space-padded letters/digits field, unpadded."""
    value = text.rstrip(" ")
    if not _is_alnum(value):
        raise ProtocolError(f"bad {name}")
    return value


def _nonempty_key(text: str | None, name: str) -> str:
    if text is None:
        return ""
    if not (1 <= len(text) <= IDEM_KEY_MAX_LEN and _is_printable(text)):
        raise ProtocolError(f"bad {name}")
    return text


def decode_address(frame: bytes) -> Message | None:
    """What of a malformed frame is needed to answer it: a request MTI and a terminal id.

    Returns a bare Message (MTI, terminal, merchant, STAN) or None when the frame
    does not say who sent it. Never raises.
    """
    if not isinstance(frame, (bytes, bytearray)) or len(frame) > FRAME_MAX_BYTES:
        return None
    try:
        doc: Mapping[str, str] = iso8583.decode(bytes(frame), SPEC)[0]
    except iso8583.DecodeError as exc:
        doc = exc.doc_dec  # the fields parsed before the error
    except ValueError:
        return None
    mti = canonical_mti(doc.get("t", ""))[0]
    if mti not in REQUEST_MTIS:
        return None
    terminal_id = doc.get("41", "").rstrip(" ")
    if not terminal_id or _ALNUM.fullmatch(terminal_id) is None:
        return None
    merchant_id = doc.get("42", "").rstrip(" ")
    if _ALNUM.fullmatch(merchant_id) is None:
        merchant_id = ""
    stan_text = doc.get("11", "")
    stan = int(stan_text) if len(stan_text) == 6 and _DIGITS.fullmatch(stan_text) else 0
    return Message(mti=mti, terminal_id=terminal_id, merchant_id=merchant_id, stan=stan)


# -- JSON debug encoding ------------------------------------------------------------

_FIELD_TYPES: dict[str, type] = {
    f.name: {"str": str, "int": int, "bool": bool}.get(str(f.type), tuple) for f in fields(Message)
}


def to_json(msg: Message) -> bytes:
    """`msg` as compact JSON with sorted keys (non-default fields only)."""
    return json.dumps(msg.to_dict(), sort_keys=True, separators=(",", ":")).encode()


def from_json(data: bytes) -> Message:
    """Inverse of `to_json`. Raises `ProtocolError` on anything malformed."""
    _check(len(data) <= FRAME_MAX_BYTES, "frame too large")
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"bad JSON: {exc}") from None
    _check(isinstance(obj, dict), "JSON message must be an object")
    for name, value in obj.items():
        expected = _FIELD_TYPES.get(name)
        _check(expected is not None, f"unknown message field {name!r}")
        if expected is tuple:
            _check(isinstance(value, list), f"bad field {name}")
            for item in value:
                _check(
                    isinstance(item, list)
                    and len(item) == 3
                    and type(item[0]) is int
                    and type(item[1]) is int
                    and type(item[2]) is str,
                    "bad batch item",
                )
        else:
            _check(type(value) is expected, f"bad field {name}")
    mti, repeat = canonical_mti(obj.get("mti", ""))
    if repeat:
        _check(obj.get("repeat", True) is True, "repeat MTI with repeat false")
        obj = {**obj, "mti": mti, "repeat": True}
    return Message.from_dict(obj)
