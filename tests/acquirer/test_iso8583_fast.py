"""The ISO 8583 fast path is the slow path, only faster.

Three implementations are compared call for call:

- `codec.encode` / `codec.decode`: the fast frame layer, pyiso8583 as fallback;
- `codec._encode_reference` / `codec._decode_reference`: pyiso8583 only;
- `_oracle_encode` / `_oracle_decode` below: a frozen copy of the codec before the fast
  path (regex checks, pyiso8583), so the faster checks must also keep every verdict,
  and every error message, of the original ones.

They must agree byte for byte on what they accept and word for word on what they refuse.
"""

from __future__ import annotations

import dataclasses
import re
import string
from collections.abc import Callable, Mapping
from typing import Any

import iso8583
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from acquirer import iso8583 as codec
from acquirer import protocol as p

_settings = settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])

# -- The oracle: the codec as it was before the fast path ---------------------------

_O_DIGITS = re.compile(r"[0-9]*")
_O_ALNUM = re.compile(r"[A-Za-z0-9]*")
_O_HEX16 = re.compile(r"[0-9a-f]{16}")
_O_PRINTABLE = re.compile(r"[\x20-\x7e]*")
_O_ITEM = re.compile(r"([0-9]{1,6}),([0-9]{1,12}),([A-Za-z0-9]{0,12})")
_O_TAG = re.compile(r"[A-Z]{2}")
_O_TOTALS = (
    ("BN", "batch_no"),
    ("DC", "debit_count"),
    ("DA", "debit_amount"),
    ("CC", "credit_count"),
    ("CA", "credit_amount"),
)


def _o_check(ok: bool, reason: str) -> None:
    if not ok:
        raise p.ProtocolError(reason)


def _o_fixed_digits(value: int, width: int, name: str, maximum: int) -> str:
    _o_check(0 <= value <= maximum, f"{name} out of range")
    return f"{value:0{width}d}"


def _o_text(value: str, pattern: re.Pattern[str], max_len: int, name: str) -> str:
    _o_check(len(value) <= max_len and pattern.fullmatch(value) is not None, f"bad {name}")
    return value


def _o_tlv(pairs: list[tuple[str, str]]) -> str:
    return "".join(f"{tag}{len(value):03d}{value}" for tag, value in pairs)


def _o_parse_tlv(text: str, allowed: frozenset[str], field: str) -> dict[str, str]:
    out: dict[str, str] = {}
    pos = 0
    while pos < len(text):
        tag, length = text[pos : pos + 2], text[pos + 2 : pos + 5]
        _o_check(_O_TAG.fullmatch(tag) is not None, f"field {field}: bad tag at {pos}")
        _o_check(len(length) == 3 and length.isdigit(), f"field {field}: bad length at {pos}")
        end = pos + 5 + int(length)
        _o_check(end <= len(text), f"field {field}: tag {tag} truncated")
        _o_check(tag in allowed, f"field {field}: unknown tag {tag}")
        _o_check(tag not in out, f"field {field}: repeated tag {tag}")
        out[tag] = text[pos + 5 : end]
        pos = end
    return out


def _o_int_value(text: str, max_digits: int, name: str) -> int:
    _o_check(1 <= len(text) <= max_digits and _O_DIGITS.fullmatch(text) is not None, f"bad {name}")
    return int(text)


def _oracle_encode(msg: p.Message) -> bytes:
    _o_check(msg.mti in p.ALL_MTIS, f"unknown MTI {msg.mti!r}")
    doc: dict[str, str] = {
        "t": msg.mti,
        "3": _o_text(msg.processing_code, _O_DIGITS, 6, "processing code"),
        "4": _o_fixed_digits(msg.amount, 12, "amount", p.AMOUNT_MAX_WIRE),
        "11": _o_fixed_digits(msg.stan, 6, "stan", p.STAN_MAX),
        "41": _o_text(msg.terminal_id, _O_ALNUM, 8, "terminal id").ljust(8),
        "42": _o_text(msg.merchant_id, _O_ALNUM, 15, "merchant id").ljust(15),
        "49": _o_text(msg.currency, _O_DIGITS, 3, "currency"),
    }
    _o_check(len(msg.processing_code) == 6, "bad processing code")
    _o_check(len(msg.currency) == 3, "bad currency")
    if msg.pan:
        doc["2"] = _o_text(msg.pan, _O_DIGITS, 19, "pan")
    if msg.rrn:
        _o_check(len(msg.rrn) == 12, "bad rrn")
        doc["37"] = _o_text(msg.rrn, _O_ALNUM, 12, "rrn")
    if msg.auth_code:
        _o_check(len(msg.auth_code) == 6, "bad auth code")
        doc["38"] = _o_text(msg.auth_code, _O_ALNUM, 6, "auth code")
    if msg.rc:
        _o_check(len(msg.rc) == 2, "bad rc")
        doc["39"] = _o_text(msg.rc, _O_ALNUM, 2, "rc")
    private: list[tuple[str, str]] = []
    if msg.idem_key:
        private.append(("IK", _o_text(msg.idem_key, _O_PRINTABLE, p.IDEM_KEY_MAX_LEN, "key")))
    if msg.repeat:
        private.append(("RP", "1"))
    if msg.orig_stan:
        private.append(("OS", _o_fixed_digits(msg.orig_stan, 6, "orig stan", p.STAN_MAX)))
    if msg.orig_key:
        private.append(("OK", _o_text(msg.orig_key, _O_PRINTABLE, p.IDEM_KEY_MAX_LEN, "orig key")))
    if private:
        doc["48"] = _o_tlv(private)
    totals: list[tuple[str, str]] = []
    for tag, name in _O_TOTALS:
        value = getattr(msg, name)
        _o_check(0 <= value < 10**codec.TOTAL_DIGITS_MAX, f"{name} out of range")
        if value:
            totals.append((tag, str(value)))
    if totals:
        doc["63"] = _o_tlv(totals)
    if msg.items:
        parts = []
        for item in msg.items:
            _o_check(0 <= item.stan <= p.STAN_MAX, "item stan out of range")
            _o_check(0 <= item.amount <= p.AMOUNT_MAX_WIRE, "item amount out of range")
            _o_text(item.rrn, _O_ALNUM, 12, "item rrn")
            parts.append(f"{item.stan},{item.amount},{item.rrn}")
        doc["62"] = ";".join(parts)
    if msg.mac:
        doc["64"] = _o_text(msg.mac, _O_HEX16, 16, "mac")
    try:
        frame, _ = iso8583.encode(doc, codec.SPEC)
    except iso8583.EncodeError as exc:
        raise p.ProtocolError(f"cannot encode: {exc}") from None
    _o_check(len(frame) <= codec.FRAME_MAX_BYTES, "frame too large")
    return bytes(frame)


def _oracle_decode(frame: bytes) -> p.Message:
    if not isinstance(frame, (bytes, bytearray)):
        raise p.ProtocolError("frame is not bytes")
    _o_check(len(frame) <= codec.FRAME_MAX_BYTES, "frame too large")
    try:
        doc, _ = iso8583.decode(bytes(frame), codec.SPEC)
    except ValueError as exc:
        raise p.ProtocolError(f"malformed frame: {exc}") from None
    return _oracle_from_doc(dict(doc))


def _o_padded(text: str, name: str) -> str:
    value = text.rstrip(" ")
    _o_check(_O_ALNUM.fullmatch(value) is not None, f"bad {name}")
    return value


def _o_nonempty_key(text: str | None, name: str) -> str:
    if text is None:
        return ""
    _o_check(
        1 <= len(text) <= p.IDEM_KEY_MAX_LEN and _O_PRINTABLE.fullmatch(text) is not None,
        f"bad {name}",
    )
    return text


def _oracle_from_doc(doc: Mapping[str, str]) -> p.Message:
    unknown = sorted(set(doc) - codec._KNOWN_FIELDS, key=lambda f: (len(f), f))
    _o_check(not unknown, f"unexpected field {unknown[0] if unknown else ''}")
    for name in ("t", "3", "4", "11", "41", "42", "49"):
        _o_check(name in doc, f"missing field {name}")
    mti = doc["t"]
    _o_check(mti in p.ALL_MTIS, f"unknown MTI {mti!r}")
    proc = _o_text(doc["3"], _O_DIGITS, 6, "processing code")
    amount = _o_int_value(doc["4"], 12, "amount")
    stan = _o_int_value(doc["11"], 6, "stan")
    terminal_id = _o_padded(doc["41"], "terminal id")
    merchant_id = _o_padded(doc["42"], "merchant id")
    currency = _o_text(doc["49"], _O_DIGITS, 3, "currency")
    pan = ""
    if "2" in doc:
        pan = doc["2"]
        _o_check(1 <= len(pan) <= 19 and _O_DIGITS.fullmatch(pan) is not None, "bad pan")
    rrn = _o_text(doc.get("37", ""), _O_ALNUM, 12, "rrn")
    auth_code = _o_text(doc.get("38", ""), _O_ALNUM, 6, "auth code")
    rc = _o_text(doc.get("39", ""), _O_ALNUM, 2, "rc")
    private = _o_parse_tlv(doc.get("48", ""), frozenset({"IK", "RP", "OS", "OK"}), "48")
    idem_key = _o_nonempty_key(private.get("IK"), "idempotency key")
    orig_key = _o_nonempty_key(private.get("OK"), "orig key")
    repeat_text = private.get("RP")
    _o_check(repeat_text in (None, "1"), "bad repeat flag")
    orig_stan = 0
    if "OS" in private:
        orig_stan = _o_int_value(private["OS"], 6, "orig stan")
    totals = _o_parse_tlv(doc.get("63", ""), frozenset(tag for tag, _ in _O_TOTALS), "63")
    numbers = {
        name: _o_int_value(totals[tag], codec.TOTAL_DIGITS_MAX, name) if tag in totals else 0
        for tag, name in _O_TOTALS
    }
    items: tuple[p.BatchItem, ...] = ()
    if "62" in doc:
        parsed = []
        for part in doc["62"].split(";"):
            m = _O_ITEM.fullmatch(part)
            _o_check(m is not None, "bad batch item")
            assert m is not None
            parsed.append(p.BatchItem(int(m[1]), int(m[2]), m[3]))
        items = tuple(parsed)
    mac = ""
    if "64" in doc:
        mac = _o_text(doc["64"].lower(), _O_HEX16, 16, "mac")
    return p.Message(
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


# -- Comparing outcomes -------------------------------------------------------------


def _outcome(fn: Callable[[Any], Any], arg: Any) -> tuple[str, Any]:
    """("ok", result) or ("error", message); anything but ProtocolError propagates."""
    try:
        return "ok", fn(arg)
    except p.ProtocolError as exc:
        return "error", str(exc)


def _assert_same_encoding(msg: p.Message) -> tuple[str, Any]:
    fast = _outcome(codec.encode, msg)
    assert fast == _outcome(codec._encode_reference, msg)
    assert fast == _outcome(_oracle_encode, msg)
    return fast


def _assert_same_decoding(frame: bytes) -> tuple[str, Any]:
    fast = _outcome(codec.decode, frame)
    assert fast == _outcome(codec._decode_reference, frame)
    assert fast == _outcome(_oracle_decode, frame)
    # The frame layer alone: the fast parser gives pyiso8583's document or gives up.
    doc = codec._fast_doc(frame) if len(frame) <= codec.FRAME_MAX_BYTES else None
    try:
        reference = iso8583.decode(bytes(frame), codec.SPEC)[0]
    except ValueError:
        assert doc is None
    else:
        assert doc is None or doc == reference
    return fast


# -- Strategies ---------------------------------------------------------------------


_DIGITS = "0123456789"
_ALNUMS = string.ascii_letters + _DIGITS
_PRINTABLES = "".join(map(chr, range(0x20, 0x7F)))


def _text(alphabet: str, min_size: int, max_size: int | None = None) -> st.SearchStrategy[str]:
    size = min_size if max_size is None else max_size
    return st.text(st.sampled_from(alphabet), min_size=min_size, max_size=size)


_terminal_id = _text(_ALNUMS, 0, 8)
_merchant_id = _text(_ALNUMS, 0, 15)
_pan = _text(_DIGITS, 1, 19)
_proc = _text(_DIGITS, 6)
_currency = _text(_DIGITS, 3)
_rrn = _text(_ALNUMS, 12)
_rc = _text(_ALNUMS, 2)
_auth_code = _text(_ALNUMS, 6)
_key = _text(_PRINTABLES, 1, 64)
_mac = _text("0123456789abcdef", 16)
_item_rrn = _text(_ALNUMS, 0, 12)
_total = st.one_of(st.just(0), st.integers(0, 10**codec.TOTAL_DIGITS_MAX - 1))
_items = st.lists(
    st.builds(
        p.BatchItem,
        st.integers(0, p.STAN_MAX),
        st.integers(0, p.AMOUNT_MAX_WIRE),
        _item_rrn,
    ),
    max_size=20,
).map(tuple)

valid_messages = st.builds(
    p.Message,
    mti=st.sampled_from(p.ALL_MTIS),
    terminal_id=_terminal_id,
    merchant_id=_merchant_id,
    stan=st.integers(0, p.STAN_MAX),
    pan=st.one_of(st.just(""), _pan),
    processing_code=st.one_of(st.sampled_from([p.PROC_PURCHASE, p.PROC_REFUND]), _proc),
    amount=st.integers(0, p.AMOUNT_MAX_WIRE),
    currency=_currency,
    rrn=st.one_of(st.just(""), _rrn),
    rc=st.one_of(st.just(""), st.sampled_from(sorted(p.RESPONSE_CODES)), _rc),
    auth_code=st.one_of(st.just(""), _auth_code),
    idem_key=st.one_of(st.just(""), _key),
    repeat=st.booleans(),
    orig_stan=st.one_of(st.just(0), st.integers(0, p.STAN_MAX)),
    orig_key=st.one_of(st.just(""), _key),
    debit_count=_total,
    debit_amount=_total,
    credit_count=_total,
    credit_amount=_total,
    batch_no=_total,
    items=st.one_of(st.just(()), _items),
    mac=st.one_of(st.just(""), _mac),
)

# Characters that trip each check: non-ASCII digits and letters (which str.isdigit and
# str.isalnum accept), controls, DEL, upper-case hex, separators.
_tricky = st.text(st.sampled_from("09aZf F-;,\x00\x1f\x7f\xa0é٣²ⅫＡ"), max_size=20)


def _or_bad_text(good: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(good, good.map(lambda s: s + "0"), good.map(lambda s: s[1:]), _tricky)


def _or_bad_int(good: st.SearchStrategy[int], high: int) -> st.SearchStrategy[int]:
    return st.one_of(good, st.sampled_from([-1, high + 1, -(10**20), 10**20]))


@st.composite
def maybe_bad_messages(draw: st.DrawFn) -> p.Message:
    """A valid message with a few of its fields replaced by doubtful values."""
    msg = draw(valid_messages)
    bad = {
        "mti": st.sampled_from(["0300", "", "02000", "0２00", "0210 "]),
        "terminal_id": _or_bad_text(_terminal_id),
        "merchant_id": _or_bad_text(_merchant_id),
        "stan": _or_bad_int(st.integers(0, p.STAN_MAX), p.STAN_MAX),
        "pan": _or_bad_text(_pan),
        "processing_code": _or_bad_text(_proc),
        "amount": _or_bad_int(st.integers(0, p.AMOUNT_MAX_WIRE), p.AMOUNT_MAX_WIRE),
        "currency": _or_bad_text(_currency),
        "rrn": _or_bad_text(_rrn),
        "rc": _or_bad_text(_rc),
        "auth_code": _or_bad_text(_auth_code),
        "idem_key": _or_bad_text(_key),
        "orig_stan": _or_bad_int(st.integers(0, p.STAN_MAX), p.STAN_MAX),
        "orig_key": _or_bad_text(_key),
        "debit_count": _or_bad_int(_total, 10**codec.TOTAL_DIGITS_MAX - 1),
        "debit_amount": _or_bad_int(_total, 10**codec.TOTAL_DIGITS_MAX - 1),
        "credit_count": _or_bad_int(_total, 10**codec.TOTAL_DIGITS_MAX - 1),
        "credit_amount": _or_bad_int(_total, 10**codec.TOTAL_DIGITS_MAX - 1),
        "batch_no": _or_bad_int(_total, 10**codec.TOTAL_DIGITS_MAX - 1),
        "items": st.lists(
            st.builds(
                p.BatchItem,
                _or_bad_int(st.integers(0, p.STAN_MAX), p.STAN_MAX),
                _or_bad_int(st.integers(0, p.AMOUNT_MAX_WIRE), p.AMOUNT_MAX_WIRE),
                _or_bad_text(_item_rrn),
            ),
            min_size=1,
            max_size=3,
        ).map(tuple),
        "mac": _or_bad_text(_mac),
    }
    names = draw(st.lists(st.sampled_from(sorted(bad)), min_size=1, max_size=4, unique=True))
    changes: dict[str, Any] = {name: draw(bad[name]) for name in names}
    return dataclasses.replace(msg, **changes)


@st.composite
def mutated_frames(draw: st.DrawFn) -> bytes:
    """A valid frame, damaged: random bytes, or the length digits, bitmap or MTI."""
    frame = bytearray(codec.encode(draw(valid_messages)))
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "delete", "digit", "bitmap"]))
        pos = draw(st.integers(0, max(len(frame) - 1, 0)))
        if kind == "flip" and frame:
            frame[pos] = draw(st.integers(0, 255))
        elif kind == "cut":
            del frame[pos:]
        elif kind == "insert":
            frame[pos:pos] = draw(st.binary(min_size=1, max_size=4))
        elif kind == "delete" and frame:
            del frame[pos]
        elif kind == "digit" and frame:  # a digit for a digit: shifts length prefixes
            frame[pos] = draw(st.sampled_from(b"0123456789 +_-"))
        elif kind == "bitmap" and len(frame) >= 20:
            frame[draw(st.integers(4, 19))] = draw(st.sampled_from(b"0123456789ABCDEFabcdefGg x"))
    return bytes(frame)


_ascii_text = st.text(st.characters(max_codepoint=127), max_size=30)


_tlv_text = st.lists(
    st.tuples(
        st.sampled_from(["IK", "RP", "OS", "OK", "BN", "DC", "DA", "CC", "CA", "ZZ", "ik", "I"]),
        st.text(st.sampled_from("0159 aZ\x7f"), max_size=20),
        st.integers(-1, 2),
    ),
    max_size=4,
).map(lambda parts: "".join(f"{t}{len(v) + d:03d}{v}" for t, v, d in parts))


@st.composite
def doctored_frames(draw: st.DrawFn) -> bytes:
    """Well-formed ISO 8583 (pyiso8583 writes it) carrying doubtful field values, missing
    fields or fields outside the map: these reach the field checks."""
    doc = codec._to_doc(draw(valid_messages))
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from([*sorted(codec._KNOWN_FIELDS - {"h", "p"}), "5", "70", "x"]))
        action = draw(st.sampled_from(["replace", "remove"]))
        if action == "remove":
            doc.pop(key, None)
            continue
        spec = codec.SPEC.get(key, codec.SPEC["2"])
        if key == "t" or spec["len_type"] == 0:
            size = 4 if key == "t" else spec["max_len"]
            value = draw(
                st.text(
                    st.characters(min_codepoint=32, max_codepoint=126), min_size=size, max_size=size
                )
            )
        elif key in ("48", "63"):
            value = draw(st.one_of(_ascii_text, _tlv_text))
        else:
            value = draw(_ascii_text)
        doc[key] = value
    try:
        return bytes(iso8583.encode(doc, codec.SPEC)[0])
    except (iso8583.EncodeError, KeyError):
        return codec.encode(draw(valid_messages))


# -- Tests --------------------------------------------------------------------------


@_settings
@given(valid_messages)
@example(p.Message(p.MTI_ECHO, "T1", "M1", 1))
def test_valid_messages_encode_to_the_same_bytes_and_round_trip(msg: p.Message) -> None:
    doc = codec._to_doc(msg)
    fast = codec._fast_frame(doc)
    assert fast is not None  # the fast path is taken for every message the wire carries
    assert fast == bytes(iso8583.encode(doc, codec.SPEC)[0])
    frame = codec.encode(msg)
    assert frame == fast == codec._encode_reference(msg) == _oracle_encode(msg)
    assert codec._fast_doc(frame) == iso8583.decode(frame, codec.SPEC)[0]
    assert codec.decode(frame) == msg == _oracle_decode(frame)
    assert codec.decode(bytearray(frame)) == msg  # type: ignore[arg-type]


@_settings
@given(maybe_bad_messages())
def test_doubtful_messages_get_the_same_bytes_or_the_same_error(msg: p.Message) -> None:
    kind, value = _assert_same_encoding(msg)
    if kind == "ok":
        assert codec.decode(value) == msg


# A 0500 from T1/M1 without items is 73 bytes; each item "1,1," adds 5 (with its ";").
@pytest.mark.parametrize(
    ("count", "outcome"),
    [
        (1, "ok"),
        (1623, "ok"),  # 8188 bytes
        (1624, "frame too large"),  # field 62 fits its 8192 bytes, the frame does not
        (1638, "frame too large"),
        (1639, "cannot encode: Field data is 8194 bytes, larger than maximum 8192: field 62"),
    ],
)
def test_oversized_batches_get_the_same_error(count: int, outcome: str) -> None:
    msg = p.Message(p.MTI_BATCH, "T1", "M1", 1, items=(p.BatchItem(1, 1),) * count)
    kind, value = _assert_same_encoding(msg)
    assert (kind, value if kind == "error" else "ok") == (
        "ok" if outcome == "ok" else "error",
        outcome,
    )


@_settings
@given(st.one_of(st.binary(max_size=300), st.binary(max_size=300).map(lambda b: b"0200" + b)))
def test_arbitrary_bytes_decode_the_same(frame: bytes) -> None:
    _assert_same_decoding(frame)


@_settings
@given(mutated_frames())
def test_damaged_frames_decode_the_same(frame: bytes) -> None:
    _assert_same_decoding(frame)


@_settings
@given(doctored_frames())
def test_frames_with_doubtful_fields_decode_the_same(frame: bytes) -> None:
    _assert_same_decoding(frame)


def _purchase() -> bytes:
    msg = p.Message(p.MTI_PURCHASE, "T1", "M1", 7, pan="4111111111111111", amount=5, idem_key="k")
    return codec.encode(p.sign(msg, b"key"))


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"0200",
        _purchase()[:19],
        _purchase()[:20],
        _purchase()[:-1],
        _purchase() + b"0",
        _purchase()[:4] + _purchase()[4:20].lower() + _purchase()[20:],  # lower-case bitmap
        _purchase()[:4] + b"C" + _purchase()[5:],  # secondary bitmap bit
        _purchase()[:4] + b"F" + _purchase()[5:],  # the same, the rest of the frame intact
        _purchase()[:4] + b" " + _purchase()[5:],
        _purchase().replace(b"16411", b"1 411", 1),  # length digits
        _purchase().replace(b"16411", b"+6411", 1),
        _purchase().replace(b"16411", b"99411", 1),  # longer than the field allows
        _purchase().replace(b"164111111111111111", b"2041111111111111110000", 1),
        _purchase().replace(b"16411", b"00411", 1),  # empty field
        _purchase().replace(b"IK001k", b"IK001\xe9", 1),  # non-ASCII
        _purchase().replace(b"M1", b"M\xd9\xa3", 1),
        _purchase().replace(b"0200", b"\xd9\xa3200", 1),
        b"0800" + b"0" * 16,  # no fields at all
        b"0200" + b"F" * 16 + b"0" * 200,
        b"0" * (codec.FRAME_MAX_BYTES + 1),
    ],
)
def test_edge_frames_decode_the_same(frame: bytes) -> None:
    _assert_same_decoding(frame)
    _assert_same_decoding(bytearray(frame))  # type: ignore[arg-type]


def test_a_frame_that_is_not_bytes_is_refused_the_same() -> None:
    not_bytes: Any = "0200"
    assert _outcome(codec.decode, not_bytes) == _outcome(_oracle_decode, not_bytes)


def test_typical_frames_take_the_fast_path_both_ways() -> None:
    frame = _purchase()
    doc = codec._fast_doc(frame)
    assert doc is not None
    doc.pop("p")  # the bitmap: pyiso8583 recomputes it, the fast path does not take it
    assert codec._fast_frame(doc) == frame


def test_the_str_predicates_match_the_regexes_they_replace() -> None:
    checks = [
        (codec._is_digits, _O_DIGITS),
        (codec._is_alnum, _O_ALNUM),
        (codec._is_printable, _O_PRINTABLE),
    ]
    for char in map(chr, range(0x3100)):
        for predicate, pattern in checks:
            assert predicate(char) == (pattern.fullmatch(char) is not None), (predicate, char)
    for predicate, pattern in checks:
        assert predicate("") == (pattern.fullmatch("") is not None)


@_settings
@given(st.text(st.sampled_from("0a9fFgz \x00\x7f٣é"), max_size=20))
def test_str_predicates_match_on_strings(text: str) -> None:
    assert codec._is_digits(text) == (_O_DIGITS.fullmatch(text) is not None)
    assert codec._is_alnum(text) == (_O_ALNUM.fullmatch(text) is not None)
    assert codec._is_printable(text) == (_O_PRINTABLE.fullmatch(text) is not None)
    assert codec._is_hex16(text) == (_O_HEX16.fullmatch(text) is not None)
    assert codec._is_hex16(text[:16].ljust(16, "a")) == (
        _O_HEX16.fullmatch(text[:16].ljust(16, "a")) is not None
    )


# -- Every check, in the original order ---------------------------------------------
#
# Pairs of bad values: when two fields are wrong, the error must name the one the
# original checked first.

_FULL = p.Message(
    p.MTI_BATCH,
    "T1",
    "M1",
    1,
    pan="4111111111111111",
    amount=5,
    rrn="000000000001",
    rc="00",
    auth_code="A1B2C3",
    idem_key="k",
    repeat=True,
    orig_stan=3,
    orig_key="ok",
    debit_count=1,
    debit_amount=2,
    credit_count=3,
    credit_amount=4,
    batch_no=5,
    items=(p.BatchItem(1, 2, "R"),),
    mac="0123456789abcdef",
)

_TOTAL_MAX = 10**codec.TOTAL_DIGITS_MAX - 1
_BAD_FIELDS: list[tuple[str, Any]] = [
    *(("mti", v) for v in ["0300", "", "0200 "]),
    *(("terminal_id", v) for v in ["T 1", "T12345678", "Té", ""]),
    *(("merchant_id", v) for v in ["M-1", "M" * 16]),
    *(("stan", v) for v in [-1, p.STAN_MAX + 1, p.STAN_MAX]),
    *(("pan", v) for v in ["4111-1111", "1" * 20, "٣"]),
    *(("processing_code", v) for v in ["12345", "1234567", "12345x", "²" * 6]),
    *(("amount", v) for v in [-1, p.AMOUNT_MAX_WIRE + 1, p.AMOUNT_MAX_WIRE]),
    *(("currency", v) for v in ["97", "9781", "97x", ""]),
    *(("rrn", v) for v in ["short", "x" * 13, "é" * 12]),
    *(("rc", v) for v in ["0", "0 ", "Ⅻ1"]),
    *(("auth_code", v) for v in ["A1", "A1B2C "]),
    *(("idem_key", v) for v in ["é", "x" * 65, "\x00", "x" * 64]),
    *(("orig_stan", v) for v in [-1, p.STAN_MAX + 1]),
    *(("orig_key", v) for v in ["\x7f", "x" * 65]),
    *(
        (name, v)
        for name in ("batch_no", "debit_count", "credit_amount")
        for v in [-1, _TOTAL_MAX + 1]
    ),
    ("debit_amount", -1),
    ("credit_count", _TOTAL_MAX),
    *(
        ("items", (item,))
        for item in [
            p.BatchItem(-1, 1),
            p.BatchItem(p.STAN_MAX + 1, 1),
            p.BatchItem(1, -1),
            p.BatchItem(1, 1, "R-"),
            p.BatchItem(1, 1, "R" * 13),
        ]
    ),
    *(("mac", v) for v in ["XYZ", "0123456789ABCDEF", "0123456789abcde", "0123456789abcdef0"]),
]


def test_encode_names_the_same_first_problem_for_every_pair_of_bad_fields() -> None:
    for i, (name, value) in enumerate(_BAD_FIELDS):
        _assert_same_encoding(dataclasses.replace(_FULL, **{name: value}))
        for other, other_value in _BAD_FIELDS[i + 1 :]:
            if other != name:
                _assert_same_encoding(
                    dataclasses.replace(_FULL, **{name: value, other: other_value})
                )


_DELETE = None
_BAD_DOC_VALUES: list[tuple[str, str | None]] = [
    *(("t", v) for v in ["0300", "", "0200 ", _DELETE]),
    *(("3", v) for v in ["12345", "1234567", "12345x", _DELETE]),
    *(("4", v) for v in ["", "1" * 13, "12x", "-1", _DELETE]),
    *(("11", v) for v in ["", "1234567", "1x", _DELETE]),
    *(("41", v) for v in ["T 1     ", "        ", "Té      ", "T1-", "T1\t     ", _DELETE]),
    *(("42", v) for v in ["M 1", "M-", "M1\n".ljust(15), _DELETE]),
    *(("49", v) for v in ["97", "9781", "9x8", _DELETE]),
    *(("2", v) for v in ["", "1" * 20, "41x", _DELETE]),
    *(("37", v) for v in ["x" * 13, "abc-", ""]),
    *(("38", v) for v in ["A1B2C3D", "A1-"]),
    *(("39", v) for v in ["000", "0-"]),
    *(
        ("48", v)
        for v in [
            "IK",
            "IK00",
            "IK001",
            "IK005ab",
            "ZZ001a",
            "IK001aIK001a",
            "IK000",
            "IK065" + "x" * 65,
            "RP0012",
            "RP0010",
            "OS003abc",
            "OS0071234567",
            "OS000",
            "OK001\x7f",
            "ik001a",
            "",
        ]
    ),
    *(
        ("63", v)
        for v in ["BN", "BN001", "BNxyz", "BN0011BN0011", "ZZ0011", "BN000", "BN019" + "1" * 19]
    ),
    *(("63", v) for v in ["DC002-1", "CA001x", ""]),
    *(("62", v) for v in ["", "1,2", "1,2,R;", "1234567,1,R", "1,1,R-", "1,1,R;2,2,"]),
    # Upper case is read (tools print a binary MAC so); other letters are not.
    *(("64", v) for v in ["0123456789ABCDEG", "abc", ""]),
    *(("5", v) for v in ["x"]),
    *(("70", v) for v in ["y"]),
    *(("h", v) for v in [""]),
]


def _doc_with(changes: dict[str, str | None]) -> dict[str, str]:
    doc = dict(iso8583.decode(codec.encode(_FULL), codec.SPEC)[0])
    for key, value in changes.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    return doc


def _assert_same_doc_verdict(doc: dict[str, str]) -> None:
    assert _outcome(codec._from_doc, doc) == _outcome(_oracle_from_doc, doc)
    try:
        frame = bytes(iso8583.encode(dict(doc), codec.SPEC)[0])
    except iso8583.EncodeError:
        return  # pyiso8583 cannot write it (fixed-length field of another length)
    _assert_same_decoding(frame)


def test_decode_names_the_same_first_problem_for_every_pair_of_bad_fields() -> None:
    for i, (key, value) in enumerate(_BAD_DOC_VALUES):
        _assert_same_doc_verdict(_doc_with({key: value}))
        for other, other_value in _BAD_DOC_VALUES[i + 1 :]:
            if other != key:
                _assert_same_doc_verdict(_doc_with({key: value, other: other_value}))
