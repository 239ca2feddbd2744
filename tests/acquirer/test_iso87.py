"""Plain ISO 8583:1987 frames and the X9.19 retail MAC (acquirer/iso87.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from acquirer import iso87

KEY = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")


def test_retail_mac_matches_the_published_x919_vector() -> None:
    # ANSI X9.19 / ISO 9797-1 algorithm 3 test vector (key 0123456789ABCDEF FEDCBA9876543210).
    assert iso87.retail_mac(b"Now is the time for all ", KEY) == "A1C72E74EA3FA9B6"


def test_retail_mac_pads_with_zeros_and_refuses_other_key_lengths() -> None:
    assert iso87.retail_mac(b"abc", KEY) == iso87.retail_mac(b"abc\0\0\0\0\0", KEY)
    assert iso87.retail_mac(b"", KEY) == iso87.retail_mac(b"\0" * 8, KEY)
    with pytest.raises(ValueError, match="16 bytes"):
        iso87.retail_mac(b"abc", KEY[:8])


def sale(**extra: str) -> dict[str, str]:
    return {
        "t": "0100", "2": "4111111111111111", "3": "000000", "4": "000000001000",
        "11": "000007", "14": "2612", "22": "051", "24": "001", "25": "00",
        "41": "TERM0001", "42": "MERCHANT123456 ", "49": "840", **extra,
    }  # fmt: skip


# What iso8583sim 1.6.0 writes for its sample authorisation (STAN 000007), signed with
# KEY: ascii-hex, then ascii-binary (the bitmap and field 64 as binary bytes).
SIGNED_HEX = (
    b"01007024058000C08001164111111111111111000000000000001000000007261205100100"
    b"TERM0001MERCHANT123456 840C8A8EAD8AFFE87AB"
)


def test_reads_an_outside_tools_frame_in_both_formats_and_checks_its_mac() -> None:
    fmt, doc = iso87.decode(SIGNED_HEX)
    assert fmt == "ascii-hex"
    assert doc == iso87.sign(sale(), KEY)
    assert iso87.verify(doc, KEY)
    binary = SIGNED_HEX[:4] + bytes.fromhex("7024058000C08001") + SIGNED_HEX[20:-16]
    binary += bytes.fromhex("C8A8EAD8AFFE87AB")
    fmt, doc = iso87.decode(binary)
    assert (fmt, doc["64"], iso87.verify(doc, KEY)) == ("ascii-binary", "C8A8EAD8AFFE87AB", True)
    assert iso87.encode(doc, "ascii-binary") == binary
    assert iso87.encode(doc, "ascii-hex") == SIGNED_HEX


def test_a_changed_field_or_mac_does_not_verify() -> None:
    signed = iso87.sign(sale(), KEY)
    assert not iso87.verify({**signed, "4": "000000009999"}, KEY)
    assert not iso87.verify({**signed, "64": "0" * 16}, KEY)
    assert not iso87.verify(sale(), KEY)  # no MAC at all
    assert iso87.verify({**signed, "64": signed["64"].lower()}, KEY)  # hex in either case


@given(
    stan=st.integers(0, 999_999),
    amount=st.integers(0, 999_999_999_999),
    pan=st.from_regex(r"[0-9]{12,19}", fullmatch=True),
    fmt=st.sampled_from(iso87.FORMATS),
    signed=st.booleans(),
)
def test_any_sale_round_trips_in_either_format(
    stan: int, amount: int, pan: str, fmt: iso87.Format, signed: bool
) -> None:
    doc = sale(**{"11": f"{stan:06d}", "4": f"{amount:012d}", "2": pan})
    if signed:
        doc = iso87.sign(doc, KEY)
    assert iso87.decode(iso87.encode(doc, fmt)) == (fmt, doc)


@pytest.mark.parametrize(
    "frame",
    [b"", b"0100", b"0100ZZZZZZZZZZZZZZZZ", SIGNED_HEX[:-3], SIGNED_HEX + b"extra", b"x" * 9000],
)
def test_anything_else_is_one_error(frame: bytes) -> None:
    with pytest.raises(iso87.StandardFrameError) as err:
        iso87.decode(frame)
    assert "\n" not in str(err.value)


def test_answers_echo_the_request_and_add_rrn_approval_and_rc() -> None:
    got = iso87.answer_fields(sale(**{"7": "1204130501"}), "00", "000000000042", "A00042")
    assert got == {
        "t": "0110", "2": "4111111111111111", "3": "000000", "4": "000000001000",
        "7": "1204130501", "11": "000007", "41": "TERM0001", "42": "MERCHANT123456 ",
        "49": "840", "37": "000000000042", "38": "A00042", "39": "00",
    }  # fmt: skip
    assert iso87.answer_mti("0201") == "0210" and iso87.answer_mti("0800") == "0810"
