"""The ISO 8583 codec and JSON debug encoding: exact round trips, malformed input refused."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acquirer import iso8583 as codec
from acquirer import protocol as p
from acquirer.catalogue import PAN_APPROVE
from acquirer.host import Acquirer, HostConfig
from acquirer.testing import TerminalMessages

T1 = TerminalMessages("T1", "M1", b"k")


def _re(pattern: str) -> st.SearchStrategy[str]:
    return st.from_regex(pattern, fullmatch=True)


_alnum = "[A-Za-z0-9]"
_total = st.integers(0, 10**codec.TOTAL_DIGITS_MAX - 1)

valid_messages = st.builds(
    p.Message,
    mti=st.sampled_from(p.ALL_MTIS),
    terminal_id=_re(f"{_alnum}{{0,8}}"),
    merchant_id=_re(f"{_alnum}{{0,15}}"),
    stan=st.integers(0, p.STAN_MAX),
    pan=_re("[0-9]{0,19}"),
    processing_code=_re("[0-9]{6}"),
    amount=st.integers(0, p.AMOUNT_MAX_WIRE),
    currency=_re("[0-9]{3}"),
    rrn=st.one_of(st.just(""), _re(f"{_alnum}{{12}}")),
    rc=st.one_of(st.just(""), _re(f"{_alnum}{{2}}")),
    auth_code=st.one_of(st.just(""), _re(f"{_alnum}{{6}}")),
    idem_key=_re(r"[\x20-\x7e]{0,64}"),
    repeat=st.booleans(),
    orig_stan=st.integers(0, p.STAN_MAX),
    orig_key=_re(r"[\x20-\x7e]{0,64}"),
    debit_count=_total,
    debit_amount=_total,
    credit_count=_total,
    credit_amount=_total,
    batch_no=_total,
    items=st.lists(
        st.builds(
            p.BatchItem,
            st.integers(0, p.STAN_MAX),
            st.integers(0, p.AMOUNT_MAX_WIRE),
            _re(f"{_alnum}{{0,12}}"),
        ),
        max_size=30,
    ).map(tuple),
    mac=st.one_of(st.just(""), _re("[0-9a-f]{16}")),
)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(valid_messages)
def test_every_valid_message_round_trips_exactly_through_iso8583(msg: p.Message) -> None:
    frame = codec.encode(msg)
    assert len(frame) <= codec.FRAME_MAX_BYTES
    assert codec.decode(frame) == msg


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(valid_messages)
def test_every_valid_message_round_trips_exactly_through_json(msg: p.Message) -> None:
    data = codec.to_json(msg)
    assert codec.from_json(data) == msg
    assert codec.to_json(codec.from_json(data)) == data  # keys sorted: stable bytes


def test_a_purchase_frame_uses_the_standard_fields() -> None:
    frame = codec.encode(T1.purchase(1, 1234, PAN_APPROVE, key="k"))
    assert frame.startswith(b"0200")
    assert b"000000001234" in frame  # field 4: 12 digits, minor units
    assert b"16" + PAN_APPROVE.encode() in frame  # field 2: LLVAR


def _decode_or_protocol_error(frame: bytes) -> None:
    try:
        codec.decode(frame)
    except p.ProtocolError as exc:
        assert str(exc) and "\n" not in str(exc)


@given(st.binary(max_size=300))
def test_random_bytes_never_raise_anything_but_protocol_error(frame: bytes) -> None:
    _decode_or_protocol_error(frame)
    codec.decode_address(frame)  # never raises either


@given(st.binary(max_size=300).map(lambda b: b"0200" + b))
def test_random_bodies_after_a_valid_mti_never_raise_anything_but_protocol_error(
    frame: bytes,
) -> None:
    _decode_or_protocol_error(frame)
    codec.decode_address(frame)


@st.composite
def mutated_frames(draw: st.DrawFn) -> bytes:
    frame = bytearray(codec.encode(draw(valid_messages)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        pos = draw(st.integers(0, max(len(frame) - 1, 0)))
        if kind == "flip" and frame:
            frame[pos] = draw(st.integers(0, 255))
        elif kind == "cut":
            del frame[pos:]
        elif kind == "insert":
            frame[pos:pos] = draw(st.binary(min_size=1, max_size=4))
        elif frame:
            del frame[pos]
    return bytes(frame)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(mutated_frames())
def test_mutated_valid_frames_never_raise_anything_but_protocol_error(frame: bytes) -> None:
    try:
        msg = codec.decode(frame)
    except p.ProtocolError:
        return
    # Whatever still decodes is a valid message: it encodes back without error.
    assert codec.decode(codec.encode(msg)) == msg


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (codec.encode(T1.echo(1)).replace(b"0800", b"0300", 1), "unknown MTI"),
        (
            codec.encode(T1.purchase(1, 5, PAN_APPROVE)).replace(b"000000000005", b"0000000000x5"),
            "amount",
        ),
        (codec.encode(T1.purchase(1, 5, PAN_APPROVE))[:-3], "malformed"),
        (codec.encode(T1.echo(1)) + b"junk", "malformed"),
        (b"0200" + b"0" * (codec.FRAME_MAX_BYTES + 1), "too large"),
        (b"\xff\xfe garbage", "malformed"),
        (b"", "malformed"),
    ],
)
def test_malformed_frames_are_refused_with_a_one_line_reason(frame: bytes, reason: str) -> None:
    with pytest.raises(p.ProtocolError, match=reason):
        codec.decode(frame)


def test_fields_outside_the_map_are_refused() -> None:
    import iso8583

    doc = {"t": "0800", "3": "000000", "4": "0" * 12, "11": "000001", "41": "T1".ljust(8)}
    doc |= {"42": "M1".ljust(15), "49": "978", "5": "0" * 12}
    frame = bytes(iso8583.encode(doc, codec.SPEC)[0])
    with pytest.raises(p.ProtocolError, match="unexpected field 5"):
        codec.decode(frame)


@pytest.mark.parametrize(
    "msg",
    [
        p.Message("0200", "T1", "M1", 1, amount=-1),
        p.Message("0200", "T1", "M1", 1, amount=p.AMOUNT_MAX_WIRE + 1),
        p.Message("0200", "T1", "M1", p.STAN_MAX + 1),
        p.Message("0200", "T1 X", "M1", 1),
        p.Message("0200", "T1", "M1", 1, pan="4111-1111"),
        p.Message("0200", "T1", "M1", 1, rrn="short"),
        p.Message("0200", "T1", "M1", 1, idem_key="é"),
        p.Message("0200", "T1", "M1", 1, idem_key="x" * 65),
        p.Message("0200", "T1", "M1", 1, mac="XYZ"),
        p.Message("0200", "T1", "M1", 1, items=(p.BatchItem(1, -5),)),
        p.Message("0200", "T1", "M1", 1, items=tuple(p.BatchItem(i, 10**11) for i in range(600))),
        p.Message("9999", "T1", "M1", 1),
    ],
)
def test_encode_refuses_messages_the_wire_cannot_carry_exactly(msg: p.Message) -> None:
    with pytest.raises(p.ProtocolError):
        codec.encode(msg)


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"[]",
        b'{"mti": "0200"}',
        b'{"mti": "0200", "terminal_id": "T", "merchant_id": "M", "stan": "1"}',
        b'{"mti": "0200", "terminal_id": "T", "merchant_id": "M", "stan": 1, "bogus": 1}',
        b'{"mti": "0200", "terminal_id": "T", "merchant_id": "M", "stan": 1, "items": [[1]]}',
        b'{"mti": "0200", "terminal_id": "T", "merchant_id": "M", "stan": 1, "repeat": 1}',
        b"[" * 5000,
    ],
)
def test_malformed_json_is_refused_with_protocol_error(data: bytes) -> None:
    with pytest.raises(p.ProtocolError):
        codec.from_json(data)


@given(st.binary(max_size=200))
def test_random_json_bytes_never_raise_anything_but_protocol_error(data: bytes) -> None:
    with contextlib.suppress(p.ProtocolError):
        codec.from_json(data)


_host = Acquirer(HostConfig(mac_keys={"T1": b"k"}), [])


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=300), mutated_frames()), st.integers(0, 10**9))
def test_handle_frame_never_raises(frame: bytes, now_ms: int) -> None:
    out = _host.handle_frame(frame, now_ms)
    if out:
        assert codec.decode(out).mti in p.RESPONSE_MTIS
    assert _host.ledger_sum() == 0
