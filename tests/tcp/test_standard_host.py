"""The terminal's side of a plain ISO 8583:1987 link (harness/tcp/standard_host.py): what
it writes for each request and what it makes of each answer. The same against a host
nobody here wrote: tests/tcp/test_interop_iso8583sim.py."""

from __future__ import annotations

from dataclasses import replace

from acquirer import iso87, iso8583
from acquirer import protocol as p
from acquirer.testing import fixed_test_mac_key
from harness.mqtt import wire
from harness.tcp.standard import StandardTerminal
from harness.tcp.standard_host import StandardHostLink

X919 = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
KEY = fixed_test_mac_key("T0001")
SENT_MS = 1_796_389_200_000  # 2026-12-04 13:00:00 UTC


def link(mac: str = "none") -> StandardHostLink:
    terminal = (
        StandardTerminal("T0001", "x919", X919)
        if mac == "x919"
        else StandardTerminal("T0001", "none")
    )
    return StandardHostLink({"T0001": terminal}, {"T0001": KEY})


def sale(**kw: object) -> p.Message:
    msg = p.Message(
        p.MTI_PURCHASE, "T0001", "M000000000001", 7, pan="4000000000000002", amount=1250,
        idem_key="T0001-k-7", sent_ms=SENT_MS,
    )  # fmt: skip
    return p.sign(replace(msg, **kw), KEY)  # type: ignore[arg-type]


def test_requests_become_plain_1987_messages() -> None:
    out = link().outgoing(iso8583.encode(sale()))
    assert out is not None
    assert iso87.decode(out) == ("ascii-hex", {
        "t": "0200", "2": "4000000000000002", "3": "000000", "4": "000000001250",
        "11": "000007", "41": "T0001   ", "42": "M000000000001  ", "49": "978",
    })  # fmt: skip
    resend = iso87.decode(link().outgoing(iso8583.encode(sale(repeat=True))) or b"")[1]
    assert resend["t"] == "0201"
    reversal = sale(mti=p.MTI_REVERSAL, idem_key="", orig_stan=7, orig_key="T0001-k-7")
    rev = iso87.decode(link().outgoing(iso8583.encode(reversal)) or b"")[1]
    assert (rev["t"], rev["90"]) == ("0400", "0200000007" + "0" * 32)
    inquiry = sale(mti=p.MTI_INQUIRY, idem_key="", orig_key="T0001-k-7")
    assert link().outgoing(iso8583.encode(inquiry)) is None  # no plain 1987 form


def answer_to(out: bytes, rc: str = "00", **extra: str) -> dict[str, str]:
    return iso87.answer_fields(iso87.decode(out)[1], rc, auth="A00007") | extra


def test_an_answer_comes_back_as_this_protocols_signed_answer_to_the_request() -> None:
    lk = link()
    out = lk.outgoing(iso8583.encode(sale()))
    assert out is not None
    got = lk.incoming(iso87.encode(answer_to(out), "ascii-hex"))
    assert got is not None
    msg = wire.decode(got)[0]
    assert (msg.mti, msg.rc, msg.auth_code, msg.idem_key, msg.amount) == (
        "0210", "00", "A00007", "T0001-k-7", 1250,
    )  # fmt: skip
    assert p.verify(msg, KEY)  # the firmware accepts it
    # What the host echoed reaches the firmware, which compares it with its request.
    changed = lk.incoming(iso87.encode(answer_to(out, **{"4": "000000000001"}), "ascii-hex"))
    assert changed is not None and wire.decode(changed)[0].amount == 1


def test_answers_the_link_cannot_vouch_for_are_dropped() -> None:
    lk = link("x919")
    out = lk.outgoing(iso8583.encode(sale()))
    assert out is not None and iso87.verify(iso87.decode(out)[1], X919)  # signed request
    unsigned = iso87.encode(answer_to(out), "ascii-hex")
    assert lk.incoming(unsigned) is None  # an x919 link takes no unsigned answer
    assert lk.incoming(iso87.encode(iso87.sign(answer_to(out), X919), "ascii-hex")) is not None
    stranger = iso87.encode(answer_to(out, **{"11": "000099"}), "ascii-hex")
    assert link().incoming(stranger) is None  # answers no request
    assert link().incoming(b"garbage") is None
    assert lk.stats["dropped_bad_mac"] == 1
