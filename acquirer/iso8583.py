"""ISO 8583 wire codec for `Message`, built on pyiso8583, plus a JSON debug encoding.

Field map (ASCII, primary bitmap only):

====  ==========================  =====================================
t     MTI                         one of `protocol.ALL_MTIS`
2     pan                         LLVAR, up to 19 digits, absent if ""
3     processing_code             6 digits
4     amount                      12 digits, minor units
11    stan                        6 digits
37    rrn                         12 letters/digits, absent if ""
38    auth_code                   6 letters/digits, absent if ""
39    rc                          2 letters/digits, absent if ""
41    terminal_id                 8, letters/digits, space-padded right
42    merchant_id                 15, letters/digits, space-padded right
48    idem_key, repeat,           LLLVAR tag-length-value: tag (2 letters),
      orig_stan, orig_key         length (3 digits), value
49    currency                    3 digits
62    items                       LLLLVAR "stan,amount,rrn;..."
63    batch_no and totals         LLLVAR tag-length-value
64    mac                         16 lowercase hex digits, absent if ""
====  ==========================  =====================================

Every value is checked both ways: `encode` refuses a Message the wire cannot
carry exactly, `decode` refuses anything but a frame `encode` could have made.
Both raise `ProtocolError` with a one-line reason.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

import iso8583
import iso8583.specs

from acquirer.protocol import (
    ALL_MTIS,
    AMOUNT_MAX_WIRE,
    IDEM_KEY_MAX_LEN,
    REQUEST_MTIS,
    STAN_MAX,
    BatchItem,
    Message,
    ProtocolError,
)

__all__ = ["FRAME_MAX_BYTES", "decode", "decode_address", "encode", "from_json", "to_json"]

# Largest frame either side accepts; anything longer is refused before parsing.
FRAME_MAX_BYTES = 8192
# Batch totals may sum many 12-digit amounts: allow up to 18 digits (fits int64).
TOTAL_DIGITS_MAX = 18

_ITEMS_FIELD_MAX = FRAME_MAX_BYTES


def _build_spec() -> dict[str, dict[str, Any]]:
    spec: dict[str, dict[str, Any]] = copy.deepcopy(dict(iso8583.specs.default_ascii))
    text = {"data_enc": "ascii", "len_enc": "ascii"}
    spec["48"] = {**text, "len_type": 3, "max_len": 999, "desc": "Private: idempotency"}
    spec["62"] = {**text, "len_type": 4, "max_len": _ITEMS_FIELD_MAX, "desc": "Private: items"}
    spec["63"] = {**text, "len_type": 3, "max_len": 999, "desc": "Private: batch totals"}
    spec["64"] = {**text, "len_type": 0, "max_len": 16, "desc": "MAC"}
    return spec


SPEC = _build_spec()

_KNOWN_FIELDS = frozenset(
    {"h", "t", "p", "2", "3", "4", "11", "37", "38", "39", "41", "42", "48", "49", "62", "63", "64"}
)
_REQUIRED_FIELDS = ("t", "3", "4", "11", "41", "42", "49")

_DIGITS = re.compile(r"[0-9]*")
_ALNUM = re.compile(r"[A-Za-z0-9]*")
_HEX16 = re.compile(r"[0-9a-f]{16}")
_PRINTABLE = re.compile(r"[\x20-\x7e]*")
_ITEM = re.compile(r"([0-9]{1,6}),([0-9]{1,12}),([A-Za-z0-9]{0,12})")
_TAG = re.compile(r"[A-Z]{2}")

# Private TLV tags.
_TAG_IDEM_KEY = "IK"
_TAG_REPEAT = "RP"
_TAG_ORIG_STAN = "OS"
_TAG_ORIG_KEY = "OK"
_TAG_BATCH_NO = "BN"
_TAG_DEBIT_COUNT = "DC"
_TAG_DEBIT_AMOUNT = "DA"
_TAG_CREDIT_COUNT = "CC"
_TAG_CREDIT_AMOUNT = "CA"
_TAGS_48 = frozenset({_TAG_IDEM_KEY, _TAG_REPEAT, _TAG_ORIG_STAN, _TAG_ORIG_KEY})
_TOTALS = (
    (_TAG_BATCH_NO, "batch_no"),
    (_TAG_DEBIT_COUNT, "debit_count"),
    (_TAG_DEBIT_AMOUNT, "debit_amount"),
    (_TAG_CREDIT_COUNT, "credit_count"),
    (_TAG_CREDIT_AMOUNT, "credit_amount"),
)
_TAGS_63 = frozenset(tag for tag, _ in _TOTALS)


def _check(ok: bool, reason: str) -> None:
    if not ok:
        raise ProtocolError(reason)


def _fixed_digits(value: int, width: int, name: str, maximum: int) -> str:
    _check(0 <= value <= maximum, f"{name} out of range")
    return f"{value:0{width}d}"


def _text(value: str, pattern: re.Pattern[str], max_len: int, name: str) -> str:
    _check(len(value) <= max_len and pattern.fullmatch(value) is not None, f"bad {name}")
    return value


def _tlv(pairs: list[tuple[str, str]]) -> str:
    return "".join(f"{tag}{len(value):03d}{value}" for tag, value in pairs)


def _parse_tlv(text: str, allowed: frozenset[str], field: str) -> dict[str, str]:
    out: dict[str, str] = {}
    pos = 0
    while pos < len(text):
        tag, length = text[pos : pos + 2], text[pos + 2 : pos + 5]
        _check(_TAG.fullmatch(tag) is not None, f"field {field}: bad tag at {pos}")
        _check(len(length) == 3 and length.isdigit(), f"field {field}: bad length at {pos}")
        end = pos + 5 + int(length)
        _check(end <= len(text), f"field {field}: tag {tag} truncated")
        _check(tag in allowed, f"field {field}: unknown tag {tag}")
        _check(tag not in out, f"field {field}: repeated tag {tag}")
        out[tag] = text[pos + 5 : end]
        pos = end
    return out


def _int_value(text: str, max_digits: int, name: str) -> int:
    _check(1 <= len(text) <= max_digits and _DIGITS.fullmatch(text) is not None, f"bad {name}")
    return int(text)


def encode(msg: Message) -> bytes:
    """`msg` as an ISO 8583 frame. Raises `ProtocolError` if the wire cannot carry it."""
    _check(msg.mti in ALL_MTIS, f"unknown MTI {msg.mti!r}")
    doc: dict[str, str] = {
        "t": msg.mti,
        "3": _text(msg.processing_code, _DIGITS, 6, "processing code"),
        "4": _fixed_digits(msg.amount, 12, "amount", AMOUNT_MAX_WIRE),
        "11": _fixed_digits(msg.stan, 6, "stan", STAN_MAX),
        "41": _text(msg.terminal_id, _ALNUM, 8, "terminal id").ljust(8),
        "42": _text(msg.merchant_id, _ALNUM, 15, "merchant id").ljust(15),
        "49": _text(msg.currency, _DIGITS, 3, "currency"),
    }
    _check(len(msg.processing_code) == 6, "bad processing code")
    _check(len(msg.currency) == 3, "bad currency")
    if msg.pan:
        doc["2"] = _text(msg.pan, _DIGITS, 19, "pan")
    if msg.rrn:
        _check(len(msg.rrn) == 12, "bad rrn")
        doc["37"] = _text(msg.rrn, _ALNUM, 12, "rrn")
    if msg.auth_code:
        _check(len(msg.auth_code) == 6, "bad auth code")
        doc["38"] = _text(msg.auth_code, _ALNUM, 6, "auth code")
    if msg.rc:
        _check(len(msg.rc) == 2, "bad rc")
        doc["39"] = _text(msg.rc, _ALNUM, 2, "rc")
    private: list[tuple[str, str]] = []
    if msg.idem_key:
        private.append((_TAG_IDEM_KEY, _text(msg.idem_key, _PRINTABLE, IDEM_KEY_MAX_LEN, "key")))
    if msg.repeat:
        private.append((_TAG_REPEAT, "1"))
    if msg.orig_stan:
        private.append((_TAG_ORIG_STAN, _fixed_digits(msg.orig_stan, 6, "orig stan", STAN_MAX)))
    if msg.orig_key:
        private.append(
            (_TAG_ORIG_KEY, _text(msg.orig_key, _PRINTABLE, IDEM_KEY_MAX_LEN, "orig key"))
        )
    if private:
        doc["48"] = _tlv(private)
    totals: list[tuple[str, str]] = []
    for tag, name in _TOTALS:
        value = getattr(msg, name)
        _check(0 <= value < 10**TOTAL_DIGITS_MAX, f"{name} out of range")
        if value:
            totals.append((tag, str(value)))
    if totals:
        doc["63"] = _tlv(totals)
    if msg.items:
        parts = []
        for item in msg.items:
            _check(0 <= item.stan <= STAN_MAX, "item stan out of range")
            _check(0 <= item.amount <= AMOUNT_MAX_WIRE, "item amount out of range")
            _text(item.rrn, _ALNUM, 12, "item rrn")
            parts.append(f"{item.stan},{item.amount},{item.rrn}")
        doc["62"] = ";".join(parts)
    if msg.mac:
        doc["64"] = _text(msg.mac, _HEX16, 16, "mac")
    try:
        frame, _ = iso8583.encode(doc, SPEC)
    except iso8583.EncodeError as exc:
        raise ProtocolError(f"cannot encode: {exc}") from None
    _check(len(frame) <= FRAME_MAX_BYTES, "frame too large")
    return bytes(frame)


def _raw_decode(frame: bytes) -> dict[str, str]:
    if not isinstance(frame, (bytes, bytearray)):
        raise ProtocolError("frame is not bytes")
    _check(len(frame) <= FRAME_MAX_BYTES, "frame too large")
    try:
        doc, _ = iso8583.decode(bytes(frame), SPEC)
    except ValueError as exc:  # DecodeError and UnicodeDecodeError are ValueErrors
        raise ProtocolError(f"malformed frame: {exc}") from None
    return dict(doc)


def decode(frame: bytes) -> Message:
    """The Message in `frame`. Raises `ProtocolError` on anything malformed."""
    doc = _raw_decode(frame)
    return _from_doc(doc)


def _from_doc(doc: Mapping[str, str]) -> Message:
    unknown = sorted(set(doc) - _KNOWN_FIELDS, key=lambda f: (len(f), f))
    _check(not unknown, f"unexpected field {unknown[0] if unknown else ''}")
    for name in _REQUIRED_FIELDS:
        _check(name in doc, f"missing field {name}")
    mti = doc["t"]
    _check(mti in ALL_MTIS, f"unknown MTI {mti!r}")
    proc = _text(doc["3"], _DIGITS, 6, "processing code")
    amount = _int_value(doc["4"], 12, "amount")
    stan = _int_value(doc["11"], 6, "stan")
    terminal_id = _padded(doc["41"], "terminal id")
    merchant_id = _padded(doc["42"], "merchant id")
    currency = _text(doc["49"], _DIGITS, 3, "currency")
    pan = ""
    if "2" in doc:
        pan = doc["2"]
        _check(1 <= len(pan) <= 19 and _DIGITS.fullmatch(pan) is not None, "bad pan")
    rrn = _text(doc.get("37", ""), _ALNUM, 12, "rrn")
    auth_code = _text(doc.get("38", ""), _ALNUM, 6, "auth code")
    rc = _text(doc.get("39", ""), _ALNUM, 2, "rc")
    private = _parse_tlv(doc.get("48", ""), _TAGS_48, "48")
    idem_key = _nonempty_key(private.get(_TAG_IDEM_KEY), "idempotency key")
    orig_key = _nonempty_key(private.get(_TAG_ORIG_KEY), "orig key")
    repeat_text = private.get(_TAG_REPEAT)
    _check(repeat_text in (None, "1"), "bad repeat flag")
    orig_stan = 0
    if _TAG_ORIG_STAN in private:
        orig_stan = _int_value(private[_TAG_ORIG_STAN], 6, "orig stan")
    totals = _parse_tlv(doc.get("63", ""), _TAGS_63, "63")
    numbers = {
        name: _int_value(totals[tag], TOTAL_DIGITS_MAX, name) if tag in totals else 0
        for tag, name in _TOTALS
    }
    items: tuple[BatchItem, ...] = ()
    if "62" in doc:
        parsed = []
        for part in doc["62"].split(";"):
            m = _ITEM.fullmatch(part)
            _check(m is not None, "bad batch item")
            assert m is not None
            parsed.append(BatchItem(int(m[1]), int(m[2]), m[3]))
        items = tuple(parsed)
    mac = ""
    if "64" in doc:
        mac = _text(doc["64"], _HEX16, 16, "mac")
    return Message(
        mti=mti,
        terminal_id=terminal_id,
        merchant_id=merchant_id,
        stan=stan,
        pan=pan,
        processing_code=proc,
        amount=amount,
        currency=currency,
        rrn=rrn,
        rc=rc,
        auth_code=auth_code,
        idem_key=idem_key,
        repeat=repeat_text == "1",
        orig_stan=orig_stan,
        orig_key=orig_key,
        items=items,
        mac=mac,
        **numbers,
    )


def _padded(text: str, name: str) -> str:
    """A space-padded letters/digits field, unpadded."""
    value = text.rstrip(" ")
    _check(_ALNUM.fullmatch(value) is not None, f"bad {name}")
    return value


def _nonempty_key(text: str | None, name: str) -> str:
    if text is None:
        return ""
    _check(
        1 <= len(text) <= IDEM_KEY_MAX_LEN and _PRINTABLE.fullmatch(text) is not None,
        f"bad {name}",
    )
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
    mti = doc.get("t", "")
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
    return Message.from_dict(obj)
