"""ISO 8583 repeat MTIs (0201, 0401, 0421): a resend in the standard form.

The docs said a resend is "the same MTI with `repeat` set (ISO 8583 0201/0401)", but the
host logged "unknown MTI '0201'" and answered nothing: only 0200 with RP=1 in field 48
worked. Both codecs now read a repeat MTI as its request MTI with `repeat` set, the one
canonical form that the MAC, the host and the trace see.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from acquirer import iso8583 as codec
from acquirer import protocol as p
from acquirer.host import Acquirer

from .test_acquirer_host import KEY, PAN, PAN_BALANCE, host, purchase, reversal  # noqa: F401


def repeat_frame(msg: p.Message, mti: bytes) -> bytes:
    """`msg` (a resend: `repeat` set, MAC over that canonical form) as an ISO frame in
    the repeat-MTI form: MTI `mti`, no RP tag in field 48."""
    assert msg.repeat
    frame = codec.encode(replace(msg, repeat=False))
    assert b"RP0011" not in frame
    return mti + frame[4:]


@pytest.mark.parametrize(("mti", "base"), [("0201", "0200"), ("0401", "0400"), ("0421", "0420")])
def test_iso_repeat_mti_decodes_as_the_request_with_repeat_set(mti: str, base: str) -> None:
    msg = replace(purchase(5, 100, key="k5"), mti=base, repeat=True)
    assert b"RP0011" in codec.encode(msg)  # the other form, still accepted
    assert codec.decode(repeat_frame(msg, mti.encode())) == msg


def test_json_repeat_mti_decodes_as_the_request_with_repeat_set() -> None:
    msg = purchase(5, 100, key="k5", repeat=True)
    text = codec.to_json(msg).replace(b'"mti":"0200"', b'"mti":"0201"')
    assert codec.from_json(text) == msg
    without_flag = text.replace(b',"repeat":true', b"")
    assert b"repeat" not in without_flag
    assert codec.from_json(without_flag) == msg


def test_json_repeat_mti_with_repeat_false_is_refused() -> None:
    text = codec.to_json(purchase(5, 100, key="k5")).replace(b'"mti":"0200"', b'"mti":"0201"')
    text = text[:-1] + b',"repeat":false}'
    with pytest.raises(p.ProtocolError, match="repeat MTI with repeat false"):
        codec.from_json(text)


def test_host_answers_a_0201_resend_with_the_stored_outcome_charging_once(
    host: Acquirer,  # noqa: F811
) -> None:
    first = codec.decode(host.handle_frame(codec.encode(purchase(1, 700, key="r1")), 0))
    assert first.rc == p.RC_APPROVED
    resend = repeat_frame(purchase(1, 700, key="r1", repeat=True), b"0201")
    out = codec.decode(host.handle_frame(resend, 10))
    assert (out.mti, out.rc, out.rrn) == ("0210", p.RC_APPROVED, first.rrn)
    assert p.verify(out, KEY)
    assert host.balance(PAN) == PAN_BALANCE - 700
    assert host.ledger_sum() == 0


def test_host_answers_a_0401_resend_of_a_reversal(host: Acquirer) -> None:  # noqa: F811
    sale = host.handle(purchase(1, 700, key="r1"), 0)
    assert sale.rc == p.RC_APPROVED
    first = host.handle(reversal(2, orig_key="r1", orig_stan=1, amount=700), 10)
    assert first.rc == p.RC_APPROVED
    resend = repeat_frame(reversal(2, orig_key="r1", orig_stan=1, amount=700, repeat=True), b"0401")
    out = codec.decode(host.handle_frame(resend, 20))
    assert (out.mti, out.rc) == ("0410", p.RC_APPROVED) and p.verify(out, KEY)
    assert host.balance(PAN) == PAN_BALANCE
    assert host.ledger_sum() == 0


def test_a_repeat_mti_of_an_unknown_kind_is_still_unknown() -> None:
    frame = codec.encode(purchase(5, 100, key="k5"))
    with pytest.raises(p.ProtocolError, match="unknown MTI '0501'"):
        codec.decode(b"0501" + frame[4:])


def test_an_upper_case_field_64_is_the_same_mac() -> None:
    """Tools that hold field 64 as 8 binary bytes (iso8583sim's ascii-hex format) print it
    in upper case; the host used to refuse such a frame as "bad mac"."""
    msg = purchase(5, 100, key="k5")
    frame = codec.encode(msg)
    upper = frame[:-16] + frame[-16:].upper()
    assert upper != frame and codec.decode(upper) == msg
    assert p.verify(codec.decode(upper), KEY)
