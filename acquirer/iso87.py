"""Plain ISO 8583:1987 for terminals and tools nobody here wrote (sans-I/O).

This protocol's own frames (acquirer.iso8583) carry an idempotency key, a
transmission time and an HMAC in private fields an outside tool cannot make.
A *standard terminal* speaks the 1987 messages as common tools and test hosts
do (iso8583sim, jPOS-style clients): ASCII fields, a primary bitmap written as 16
hexadecimal characters (`ascii-hex`) or as 8 binary bytes (`ascii-binary`), and
either no MAC or an ISO 9797-1 MAC in field 64. This module reads and writes those
frames and computes that MAC; harness/tcp/standard.py maps them onto the host.

Fields read: MTI, 2 (PAN), 3 (processing code), 4 (amount), 7 (transmission
date and time), 11 (STAN), 41 (terminal), 42 (merchant), 49 (currency), 64 (MAC),
90 (a reversal's original); any other field of the 1987 map is read and ignored.
An answer echoes 2, 3, 4, 7, 11, 12, 13, 41, 42, 49 and 90 and adds 37 (RRN),
38 (approval code) and 39 (response code), as iso8583sim's host does (it does not
echo 90).

MAC (`x919`): ISO 9797-1 MAC algorithm 3 (the ANSI X9.19 "retail MAC": single
DES CBC under the key's left half, the last block decrypted under the right half
and encrypted again under the left), padding method 1, a 16-byte key, over the
message in its `ascii-hex` form up to field 64, written as 16 upper-case hex
digits. That is what iso8583sim's `sign_message` computes; tests check it against
iso8583sim's own implementation and a published test vector.
"""

from __future__ import annotations

import copy
import hmac
from collections.abc import Mapping
from typing import Any, Literal

import iso8583
import iso8583.specs
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

Format = Literal["ascii-hex", "ascii-binary"]
FORMATS: tuple[Format, ...] = ("ascii-hex", "ascii-binary")

FRAME_MAX_BYTES = 8192
X919_KEY_BYTES = 16
MAC_HEX_DIGITS = 16
ECHOED_FIELDS = ("2", "3", "4", "7", "11", "12", "13", "41", "42", "49", "90")


class StandardFrameError(ValueError):
    """A frame is not a readable ISO 8583:1987 message. One line, naming the problem."""


def _specs() -> dict[Format, dict[str, dict[str, Any]]]:
    text: dict[str, dict[str, Any]] = copy.deepcopy(dict(iso8583.specs.default_ascii))
    text["64"] = {**text["64"], "data_enc": "ascii", "max_len": MAC_HEX_DIGITS}
    binary = copy.deepcopy(text)
    for bitmap in ("p", "1"):
        binary[bitmap] = {**binary[bitmap], "data_enc": "b", "max_len": 8}
    binary["64"] = {**binary["64"], "data_enc": "b", "max_len": 8}
    return {"ascii-hex": text, "ascii-binary": binary}


SPECS = _specs()


def decode(frame: bytes) -> tuple[Format, dict[str, str]]:
    """The message in `frame` and the format it was written in.

    `ascii-hex` is tried first, then `ascii-binary`: a frame only one of them
    reads whole is that one's (field lengths must account for every byte, so a
    frame read whole both ways would be a coincidence; it is read as ascii-hex).
    Raises `StandardFrameError`.
    """
    if len(frame) > FRAME_MAX_BYTES:
        raise StandardFrameError(f"frame of {len(frame)} bytes, over {FRAME_MAX_BYTES}")
    problem = ""
    for fmt in FORMATS:
        try:
            doc = iso8583.decode(bytes(frame), SPECS[fmt])[0]
        except (iso8583.DecodeError, ValueError) as exc:
            problem = problem or f"{fmt}: {exc}"
            continue
        # Field 64 as text, whatever the wire: the hex digits, as ascii-hex writes them.
        return fmt, {k: str(v) for k, v in doc.items() if k not in ("p", "1")}
    raise StandardFrameError(f"not an ISO 8583:1987 message ({problem})")


def encode(fields: Mapping[str, str], fmt: Format) -> bytes:
    """`fields` (MTI as "t", fields by number; field 64 as 16 hex digits) as a frame."""
    doc = dict(fields)  # pyiso8583 takes binary fields as hex digits too
    try:
        return bytes(iso8583.encode(doc, SPECS[fmt])[0])
    except (iso8583.EncodeError, ValueError) as exc:
        raise StandardFrameError(f"cannot write the answer: {exc}") from None


def mac_input(fields: Mapping[str, str]) -> bytes:
    """What the MAC covers: the message in ascii-hex form, up to field 64."""
    doc = {k: v for k, v in fields.items() if k != "64"}
    doc["64"] = "0" * MAC_HEX_DIGITS  # the bitmap says field 64 is there
    return encode(doc, "ascii-hex")[:-MAC_HEX_DIGITS]


def _des(key: bytes) -> Any:
    return Cipher(TripleDES(key * 3), modes.ECB())


def retail_mac(data: bytes, key: bytes) -> str:
    """ISO 9797-1 MAC algorithm 3, padding method 1 (ANSI X9.19), 16 hex digits."""
    if len(key) != X919_KEY_BYTES:
        raise ValueError(f"an X9.19 key is {X919_KEY_BYTES} bytes, not {len(key)}")
    padded = data + b"\x00" * ((8 - len(data) % 8) % 8 if data else 8)
    left = _des(key[:8]).encryptor()
    state = bytes(8)
    for i in range(0, len(padded), 8):
        block = padded[i : i + 8]
        state = left.update(bytes(a ^ b for a, b in zip(state, block, strict=True)))
    state = _des(key[8:]).decryptor().update(state)
    mac: bytes = _des(key[:8]).encryptor().update(state)
    return mac.hex().upper()


def sign(fields: Mapping[str, str], key: bytes) -> dict[str, str]:
    """`fields` with field 64 set to their X9.19 MAC."""
    out = dict(fields)
    out["64"] = retail_mac(mac_input(fields), key)
    return out


def verify(fields: Mapping[str, str], key: bytes) -> bool:
    """True when field 64 is the X9.19 MAC of the rest (either case of hex)."""
    mac = fields.get("64", "")
    expected = retail_mac(mac_input(fields), key)
    return len(mac) == MAC_HEX_DIGITS and hmac.compare_digest(
        mac.upper().encode(), expected.encode()
    )


def answer_mti(mti: str) -> str:
    """The answer's MTI: 0100/0101 -> 0110, 0200/0201 -> 0210, 0800 -> 0810."""
    return mti[:2] + "10"


def answer_fields(
    request: Mapping[str, str], rc: str, rrn: str = "", auth: str = ""
) -> dict[str, str]:
    """The answer to `request`: its echoed fields, then 37, 38 and 39."""
    out = {"t": answer_mti(request.get("t", "0200"))}
    for name in ECHOED_FIELDS:
        if name in request:
            out[name] = request[name]
    if rrn:
        out["37"] = rrn
    if auth:
        out["38"] = auth
    out["39"] = rc
    return out
