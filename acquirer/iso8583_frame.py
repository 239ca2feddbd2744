"""The frame layer of the ISO 8583 codec (acquirer/iso8583.py): the field map as a
pyiso8583 spec, pyiso8583 itself, and the hand-written fast path.

`_fast_frame` and `_fast_doc`, derived from `SPEC`, build exactly the bytes
`iso8583.encode` would and parse exactly the document `iso8583.decode` would; on
anything else (an over-long field, non-ASCII data, a secondary bitmap, a field
outside the map, bad length digits, a truncated or over-long frame, ...) they give
up and pyiso8583 runs, so errors keep pyiso8583's wording.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import iso8583
import iso8583.specs

from acquirer.protocol import ProtocolError

_ANY_CASE_HEX = "0123456789ABCDEFabcdef"

# Largest frame either side accepts; anything longer is refused before parsing.
FRAME_MAX_BYTES = 8192

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


# -- Frame layer: pyiso8583 and the fast path -----------------------------------------


def _frame_reference(doc: dict[str, str]) -> bytes:
    """`doc` as a frame, by pyiso8583."""
    try:
        frame, _ = iso8583.encode(doc, SPEC)
    except iso8583.EncodeError as exc:
        raise ProtocolError(f"cannot encode: {exc}") from None
    return bytes(frame)


def _doc_reference(frame: bytes | bytearray) -> dict[str, str]:
    """The document in `frame`, by pyiso8583."""
    try:
        doc, _ = iso8583.decode(bytes(frame), SPEC)
    except ValueError as exc:  # DecodeError and UnicodeDecodeError are ValueErrors
        raise ProtocolError(f"malformed frame: {exc}") from None
    return dict(doc)


def _build_layout() -> tuple[tuple[str, int, int, int], ...]:
    """(field, bitmap bit, length digits, max length) of every data field of the map,
    in field-number order: what the fast path may write and read."""
    assert SPEC["h"]["max_len"] == 0, "fast path: no header"
    assert SPEC["t"]["data_enc"] == "ascii" and SPEC["p"]["data_enc"] == "ascii"
    layout = []
    for key in sorted(_KNOWN_FIELDS - {"h", "t", "p"}, key=int):
        spec = SPEC[key]
        number, len_type, max_len = int(key), spec["len_type"], spec["max_len"]
        assert 2 <= number <= 64, "fast path: primary bitmap fields only"
        assert spec["data_enc"] == "ascii" and spec["len_enc"] == "ascii"
        assert spec.get("len_count", "bytes") == "bytes"
        assert max_len < 10**len_type or len_type == 0, "length must fit its prefix"
        layout.append((key, 1 << (64 - number), len_type, max_len))
    return tuple(layout)


_LAYOUT = _build_layout()
_LAYOUT_BITS = sum(bit for _, bit, _, _ in _LAYOUT)


def _fast_frame(doc: Mapping[str, str]) -> bytes | None:
    """What `iso8583.encode(doc, SPEC)` makes of `doc`, or None for pyiso8583 to handle:
    MTI, primary bitmap as upper-case ASCII hex, then each field in number order,
    variable ones after their ASCII decimal length."""
    mti = doc.get("t")
    if mti is None or len(mti) != 4:
        return None
    bitmap = 0
    parts = []
    present = 1
    for key, bit, len_type, max_len in _LAYOUT:
        value = doc.get(key)
        if value is None:
            continue
        present += 1
        length = len(value)
        if len_type:
            if length > max_len:
                return None
            parts.append(str(length).zfill(len_type))
        elif length != max_len:
            return None
        parts.append(value)
        bitmap |= bit
    if present != len(doc):  # a field the fast path does not know
        return None
    text = mti + format(bitmap, "016X") + "".join(parts)
    if not text.isascii():
        return None
    return text.encode("ascii")


def _fast_doc(frame: bytes | bytearray) -> dict[str, str] | None:
    """What `iso8583.decode(frame, SPEC)` makes of `frame`, or None for pyiso8583 to
    handle (which includes every frame it refuses)."""
    if not frame.isascii():
        return None
    text = frame.decode("ascii")
    size = len(text)
    if size < 20:
        return None
    bitmap_text = text[4:20]
    if bitmap_text.strip(_ANY_CASE_HEX):
        return None
    bitmap = int(bitmap_text, 16)
    if bitmap & ~_LAYOUT_BITS:  # secondary bitmap, or a field outside the map
        return None
    doc = {"t": text[:4], "p": bitmap_text}
    pos = 20
    for key, bit, len_type, max_len in _LAYOUT:
        if not bitmap & bit:
            continue
        if len_type:
            end = pos + len_type
            digits = text[pos:end]
            if len(digits) != len_type or not digits.isdigit():
                return None
            length = int(digits)
            if length > max_len:
                return None
            pos = end
        else:
            length = max_len
        end = pos + length
        if end > size:
            return None
        doc[key] = text[pos:end]
        pos = end
    if pos != size:
        return None
    return doc
