"""Offline advices (0220 -> 0230): booked once by the sale's key, a late decline
charges nothing, an advice past its deadline is refused (RC EX), and the field that
carries the offline time survives the ISO 8583 codec and the MAC."""

from __future__ import annotations

from dataclasses import replace

from acquirer import protocol as p
from acquirer.catalogue import CardAccount
from acquirer.host import Acquirer, HostConfig, Message
from acquirer.iso8583 import decode, encode

KEY = b"terminal-1-key"
TID, MID = "T1", "M1"
PAN = "4000000000000002"
POOR = "4000000000000010"


def make_host(deadline_ms: int = 600_000) -> Acquirer:
    return Acquirer(
        HostConfig(mac_keys={TID: KEY}, freshness_window_ms=0, advice_deadline_ms=deadline_ms),
        [CardAccount(PAN, 10_000), CardAccount(POOR, 100)],
    )


def advice(key: str = "k1", pan: str = PAN, amount: int = 2_500, at_ms: int = 1_000) -> Message:
    msg = Message(
        p.MTI_ADVICE, TID, MID, 7, pan=pan, amount=amount, rc="Y3", idem_key=key, offline_ms=at_ms
    )
    return p.sign(msg, KEY)


def test_an_advice_is_charged_once_and_its_resend_replayed() -> None:
    host = make_host()
    first = host.handle(advice(), 5_000)
    assert (first.mti, first.rc) == (p.MTI_ADVICE_RESP, p.RC_APPROVED)
    again = host.handle(p.sign(replace(advice(), repeat=True, mac=""), KEY), 9_000)
    assert (again.rc, again.rrn) == (p.RC_APPROVED, first.rrn)
    assert host.balance(PAN) == 10_000 - 2_500
    assert [t.status for t in host.transactions()] == ["approved"]


def test_an_advice_after_its_0200_charged_gets_that_answer() -> None:
    host = make_host()
    sale = p.sign(Message(p.MTI_PURCHASE, TID, MID, 7, pan=PAN, amount=2_500, idem_key="k1"), KEY)
    charged = host.handle(sale, 0)
    answer = host.handle(advice(), 30_000)
    assert (answer.rc, answer.rrn) == (p.RC_APPROVED, charged.rrn)
    assert host.balance(PAN) == 10_000 - 2_500


def test_a_late_decline_charges_nothing() -> None:
    host = make_host()
    answer = host.handle(advice(pan=POOR), 5_000)
    assert answer.rc == p.RC_INSUFFICIENT_FUNDS
    assert host.balance(POOR) == 100
    assert [t.status for t in host.transactions()] == ["declined"]


def test_an_advice_past_its_deadline_is_refused_and_stays_refused() -> None:
    host = make_host(deadline_ms=60_000)
    answer = host.handle(advice(at_ms=1_000), 61_001 + 1)
    assert answer.rc == p.RC_ADVICE_EXPIRED
    again = host.handle(advice(at_ms=1_000), 70_000)
    assert (again.rc, again.rrn) == (p.RC_ADVICE_EXPIRED, answer.rrn)
    assert host.balance(PAN) == 10_000
    assert host.ledger_sum() == 0


def test_an_advice_needs_its_offline_time_and_only_an_advice_carries_one() -> None:
    host = make_host()
    assert host.handle(advice(at_ms=0), 5_000).rc == p.RC_FORMAT_ERROR
    sale = Message(p.MTI_PURCHASE, TID, MID, 7, pan=PAN, amount=2_500, idem_key="k9", offline_ms=5)
    assert host.handle(p.sign(sale, KEY), 0).rc == p.RC_FORMAT_ERROR


def test_offline_ms_survives_the_codec_and_is_covered_by_the_mac() -> None:
    msg = advice(at_ms=123_456)
    back = decode(encode(msg))
    assert back == msg and p.verify(back, KEY)
    assert not p.verify(replace(msg, offline_ms=123_457), KEY)
    assert not p.verify(replace(msg, offline_ms=0), KEY)
