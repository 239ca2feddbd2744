"""A reversal's reason (field 39 of the 0400): accepted when it is 96, 98 or A0, kept
with the reversed transaction; anything else, or an rc on another request, is RC 30."""

from __future__ import annotations

from acquirer import protocol as p
from acquirer.catalogue import CardAccount
from acquirer.host import Acquirer, HostConfig, Message
from acquirer.iso8583 import decode, encode

KEY = b"terminal-1-key"
TID, MID = "T1", "M1"
PAN = "4000000000000002"


def make_host() -> Acquirer:
    return Acquirer(
        HostConfig(mac_keys={TID: KEY}, freshness_window_ms=0), [CardAccount(PAN, 10_000)]
    )


def sale_and_reversal(host: Acquirer, reason: str) -> tuple[Message, Message]:
    sale = Message(p.MTI_PURCHASE, TID, MID, 1, pan=PAN, amount=2_500, idem_key="k1")
    approved = host.handle(p.sign(sale, KEY), 0)
    rev = Message(
        p.MTI_REVERSAL, TID, MID, 1, pan=PAN, amount=2_500, rc=reason, orig_stan=1, orig_key="k1"
    )
    return approved, host.handle(p.sign(rev, KEY), 10)


def test_a_reversal_with_reason_96_is_done_and_its_reason_kept() -> None:
    host = make_host()
    approved, answer = sale_and_reversal(host, p.REVERSAL_NOT_COMPLETED)
    assert answer.rc == p.RC_APPROVED
    assert host.balance(PAN) == 10_000
    assert host.reversal_reason(approved.rrn) == "96"


def test_a_reversal_without_a_reason_keeps_none() -> None:
    host = make_host()
    approved, answer = sale_and_reversal(host, "")
    assert answer.rc == p.RC_APPROVED
    assert host.reversal_reason(approved.rrn) == ""


def test_an_unknown_reason_or_an_rc_on_a_purchase_is_a_format_error() -> None:
    host = make_host()
    approved, answer = sale_and_reversal(host, "05")
    assert answer.rc == p.RC_FORMAT_ERROR
    assert host.balance(PAN) == 7_500  # not reversed
    assert host.reversal_reason(approved.rrn) == ""
    sale = Message(p.MTI_PURCHASE, TID, MID, 2, pan=PAN, amount=100, idem_key="k2", rc="96")
    assert "must not carry" in (p.validate_request(sale) or "")


def test_the_reason_travels_in_field_39_of_the_iso8583_frame() -> None:
    rev = Message(p.MTI_REVERSAL, TID, MID, 1, amount=2_500, rc="A0", orig_key="k1")
    assert decode(encode(rev)).rc == "A0"
