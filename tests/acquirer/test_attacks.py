"""The attacks of issue 9, each reproduced against the reference host and terminal.

An on-path attacker sees and can rewrite every frame, but does not hold the
terminal's MAC key. Each test plays one attack from the issue and checks that
it no longer works; the Hypothesis properties at the end generalise them: no
frame built without the key (by mutation, by splicing signed frames, at the
field level or the byte level) is ever accepted by the host or the terminal.

`ATTACK_EXAMPLES` (environment, default 150) sets how many attacker plans each
property draws; `FRAMES_TRIED` counts the frames the properties fed in.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import fields, replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acquirer import iso8583
from acquirer import protocol as p
from acquirer.catalogue import CardAccount
from acquirer.host import Acquirer, HostConfig
from acquirer.host_model import HOLDS_ACCOUNT
from acquirer.protocol import Message
from terminal.firmware import (
    BatchCloseRequested,
    FirmwareConfig,
    MessageReceived,
    Outcome,
    PrintFinished,
    PrintStatus,
    RefundRequested,
    TimerExpired,
    VoidRequested,
)
from terminal.reference import RESPONSE_TIMER, ReferenceFirmware
from terminal.testing import Rig, displays, journaled, prints, sends

KEY = b"attack-test-key-T0001"
CONFIG = FirmwareConfig(mac_key=KEY)
TID = CONFIG.terminal_id
PAN = "4000000000000002"
ATTACK_EXAMPLES = int(os.environ.get("ATTACK_EXAMPLES", "150"))
FRAMES_TRIED: Counter[str] = Counter()


def make_host() -> Acquirer:
    return Acquirer(HostConfig(mac_keys={TID: KEY}), [CardAccount(PAN, 1_000_000)])


@pytest.fixture
def host() -> Iterator[Acquirer]:
    acq = make_host()
    yield acq
    acq.close()


def start_sale(r: Rig, amount: int = 1250) -> Message:
    (request,) = sends(r.purchase(amount, PAN))
    return request


def acted(effects: list[Any]) -> bool:
    """Did the terminal do anything visible or durable?"""
    return bool(journaled(effects) or prints(effects) or displays(effects) or sends(effects))


# -- the attacks of the issue, one by one -------------------------------------------


def test_spliced_rc30_answer_cannot_become_an_approval(host: Acquirer) -> None:
    """Headline attack: the attacker rewrites a signed 0200 so that free-text fields
    carry separators, gets the host's RC 30 answer and re-reads it as an approval.
    Now the refusal is unsigned, and no re-reading of it verifies at the terminal."""
    r = Rig(ReferenceFirmware, CONFIG)
    request = start_sale(r)
    injected = "978|rrn=000000000666|rc=00|auth_code=666666"
    for tampered in (
        replace(request, currency=injected),
        replace(request, idem_key=request.idem_key + "|rc=00"),
        replace(request, orig_key="x|rc=00|auth_code=666666"),
    ):
        answer = host.handle(tampered, 0)
        assert answer.rc == p.RC_FORMAT_ERROR and answer.mac == ""
        # Every forged approval the attacker can assemble from that answer.
        for forged in (
            replace(answer, rc="00", rrn="000000000666", auth_code="666666", currency="978"),
            replace(answer, rc="00", currency="978"),
            answer,
        ):
            assert r.feed(MessageReceived(forged)) == []
    assert [t for t in host.transactions()] == []
    # The genuine request still goes through, and only then does the terminal approve.
    effects = r.feed(MessageReceived(host.handle(request, 10)))
    assert [d.outcome for d in displays(effects)] == [Outcome.APPROVED]


def test_the_reported_splice_exactly_no_longer_forges_an_approval(host: Acquirer) -> None:
    """The attack as reported, byte for byte: under the old "name=value|" MAC input the
    tampered currency and a padded orig_key made the host's signed RC 30 answer verify
    as an approval (APPROVED, receipt, no host transaction). This test fails on that
    code; now the refusal is unsigned and the forgery verifies under no reading."""
    r = Rig(ReferenceFirmware, CONFIG)
    request = start_sale(r)
    k = request.idem_key
    head = (
        f"978|rrn=000000000666|rc=00|auth_code=666666|idem_key={k}"
        "|repeat=False|orig_stan=0|orig_key="
    )
    tail = f"|rrn=|rc=30|auth_code=|idem_key={k}|repeat=False|orig_stan=0|orig_key="
    answer = host.handle(replace(request, currency=head), 0)
    forged = replace(
        answer, currency="978", rrn="000000000666", rc="00", auth_code="666666", orig_key=tail
    )
    assert not p.verify(forged, KEY)
    assert not acted(r.feed(MessageReceived(forged)))
    assert list(host.transactions()) == []


def test_the_reported_forced_decline_exactly_is_ignored(host: Acquirer) -> None:
    """The same splice with RC 05: on the old MAC input the terminal showed DECLINED
    while its sale was still in flight. Now the forgery verifies under no reading."""
    r = Rig(ReferenceFirmware, CONFIG)
    request = start_sale(r)
    k = request.idem_key
    head = f"978|rrn=|rc=05|auth_code=|idem_key={k}|repeat=False|orig_stan=0|orig_key="
    tail = f"|rrn=|rc=30|auth_code=|idem_key={k}|repeat=False|orig_stan=0|orig_key="
    answer = host.handle(replace(request, currency=head), 0)
    forged = replace(answer, currency="978", rc="05", orig_key=tail)
    assert not p.verify(forged, KEY)
    assert not acted(r.feed(MessageReceived(forged)))


def test_the_reported_forged_0410_exactly_is_ignored(host: Acquirer) -> None:
    """The splice on a reversal: the tampered 0400's RC 30 answer, re-read as a 0410
    RC 00, made the old terminal journal `reversed` for a sale the host still had
    charged. Now nothing is journaled and the reversal stays owed."""
    r = Rig(ReferenceFirmware, replace(CONFIG, max_sends=1))
    host.handle(start_sale(r), 0)  # charged; the answer is lost
    (reversal,) = sends(r.feed(TimerExpired(RESPONSE_TIMER)))
    answer = host.handle(replace(reversal, currency="978|rrn=|rc=00|auth_code=|idem_key="), 10)
    forged = replace(answer, currency="978", rc="00", idem_key="|rrn=|rc=30|auth_code=|idem_key=")
    assert not p.verify(forged, KEY)
    assert not acted(r.feed(MessageReceived(forged)))
    assert host.balance(PAN) == 1_000_000 - 1250


def test_forged_0410_cannot_make_the_terminal_record_a_reversal(host: Acquirer) -> None:
    """The attacker turns a refused frame into a 0410 for a sale being reversed."""
    r = Rig(ReferenceFirmware, replace(CONFIG, max_sends=1, status_inquiry=False))
    request = start_sale(r)
    host.handle(request, 0)  # charged; the answer is lost
    (reversal,) = sends(r.feed(TimerExpired(RESPONSE_TIMER)))
    tampered = replace(reversal, currency="978|rc=00")
    answer = host.handle(tampered, 10)
    assert answer.mac == "" and answer.mti == p.MTI_REVERSAL_RESP
    assert r.feed(MessageReceived(replace(answer, rc="00", currency="978"))) == []
    assert host.balance(PAN) == 1_000_000 - 1250  # still charged: the reversal is owed
    effects = r.feed(MessageReceived(host.handle(reversal, 20)))
    assert {"type": "reversed", "key": request.idem_key} in journaled(effects)
    assert host.balance(PAN) == 1_000_000


def test_forced_decline_from_a_refusal_is_ignored(host: Acquirer) -> None:
    """A refusal of a tampered request, re-read as a decline, changes nothing."""
    r = Rig(ReferenceFirmware, CONFIG)
    request = start_sale(r)
    answer = host.handle(replace(request, amount=request.amount + 1), 0)
    assert answer.mac == ""
    assert r.feed(MessageReceived(replace(answer, rc="05", amount=request.amount))) == []
    effects = r.feed(MessageReceived(host.handle(request, 10)))
    assert [d.outcome for d in displays(effects)] == [Outcome.APPROVED]


def test_signed_answer_for_another_sale_is_not_taken(host: Acquirer) -> None:
    """Echo checks: a genuine signed approval of a different amount, card or key
    (a replayed old answer) is not an answer to the sale in flight."""
    r = Rig(ReferenceFirmware, CONFIG)
    request = start_sale(r, 1250)
    for other in (
        replace(request, amount=999, mac=""),
        replace(request, idem_key="T0001-other", mac=""),
        replace(request, stan=request.stan + 1, mac=""),
    ):
        genuine_other = host.handle(p.sign(other, KEY), 0)
        assert p.verify(genuine_other, KEY) and genuine_other.rc in ("00", "94")
        assert r.feed(MessageReceived(genuine_other)) == []


def test_json_and_iso_frames_carry_the_same_mac(host: Acquirer) -> None:
    """The MAC is over the message's canonical form, not a codec's bytes."""
    msg = p.sign(Message(p.MTI_ECHO, TID, CONFIG.merchant_id, 7, idem_key="a|b=c"), KEY)
    assert iso8583.decode(iso8583.encode(msg)) == msg == iso8583.from_json(iso8583.to_json(msg))


# -- properties -----------------------------------------------------------------------

_FREE = st.text(st.sampled_from('0123456789|=;,:abcXYZ \\"{}'), max_size=24)
_FIELD_NAMES = [f.name for f in fields(Message) if f.name not in ("mac", "items", "repeat")]
_STR_FIELDS = [f.name for f in fields(Message) if f.type == "str" and f.name != "mac"]


def _signed_corpus() -> list[Message]:
    """Genuine signed frames an attacker could have recorded: requests and answers."""
    acq = make_host()
    r = Rig(ReferenceFirmware, CONFIG)
    out: list[Message] = []
    for amount in (100, 1250):
        request = start_sale(r, amount)
        answer = acq.handle(request, 0)
        for job in prints(r.feed(MessageReceived(answer))):
            r.feed(PrintFinished(job.job_id, PrintStatus.OK))
        out += [request, answer]
    refused = acq.handle(replace(out[0], stan=999), 0)  # tampered: refused unsigned
    out.append(refused)
    # The cashier's credits and the day's close: a refund of the first sale, a void of
    # the second, the batch (every signed message type a terminal and host exchange).
    for event in (RefundRequested(out[1].rrn, 40), VoidRequested(out[3].rrn)):
        (request,) = sends(r.feed(event))
        answer = acq.handle(request, 10)
        r.feed(MessageReceived(answer))
        out += [request, answer]
    (batch,) = sends(r.feed(BatchCloseRequested()))
    out += [batch, acq.handle(batch, 20)]
    acq.close()
    return out


CORPUS = _signed_corpus()


@st.composite
def forged_messages(draw: st.DrawFn) -> Message:
    """A message built without the key: a corpus frame, fields replaced by free text
    (with separators) or spliced from another frame, the MAC taken from any frame."""
    base = draw(st.sampled_from(CORPUS))
    changes: dict[str, Any] = {}
    for _ in range(draw(st.integers(1, 4))):
        name = draw(st.sampled_from(_FIELD_NAMES))
        donor = draw(st.sampled_from(CORPUS))
        if name in _STR_FIELDS and draw(st.booleans()):
            changes[name] = draw(_FREE)
        elif name == "mti":
            changes[name] = draw(st.sampled_from(p.ALL_MTIS))
        else:
            changes[name] = getattr(donor, name)
    changes["mac"] = draw(st.sampled_from(CORPUS)).mac
    forged = replace(base, **changes)
    return forged


def _is_genuine(msg: Message) -> bool:
    return any(msg == c for c in CORPUS if c.mac)


@settings(max_examples=ATTACK_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(forged_messages())
def test_no_forged_message_is_accepted_by_the_host_or_the_terminal(forged: Message) -> None:
    """Whatever an attacker splices together without the key: the host answers it
    unsigned and stores nothing; the terminal takes no action on it."""
    if _is_genuine(forged):
        return  # an exact replay of a genuine frame is not a forgery
    FRAMES_TRIED["field-level"] += 1
    acq = make_host()
    answer = acq.handle(forged, 0)
    assert answer.mac == "" or not p.verify(answer, KEY)
    assert list(acq.transactions()) == [] and acq.idempotency_records() == 0
    acq.close()
    r = Rig(ReferenceFirmware, CONFIG)
    request = start_sale(r)
    effects = r.feed(MessageReceived(forged)) + r.feed(
        MessageReceived(replace(forged, stan=request.stan, idem_key=request.idem_key))
    )
    assert not acted(effects)


@settings(max_examples=ATTACK_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from([c for c in CORPUS if c.mac]),
    st.sampled_from([c for c in CORPUS if c.mac]),
    st.integers(0, 400),
    st.integers(0, 400),
    st.binary(max_size=40),
)
def test_no_byte_level_splice_of_signed_frames_verifies(
    a: Message, b: Message, cut: int, length: int, junk: bytes
) -> None:
    """Frames cut from two signed frames and glued (with junk) never decode to a
    message that verifies, unless they decode to one of the genuine messages."""
    fa, fb = iso8583.encode(a), iso8583.encode(b)
    for frame in (fa[:cut] + fb[cut:], fa[:cut] + junk + fa[cut + length :], fb[:cut] + fa[cut:]):
        FRAMES_TRIED["byte-level"] += 1
        try:
            msg = iso8583.decode(frame)
        except p.ProtocolError:
            continue
        assert _is_genuine(msg) or not p.verify(msg, KEY)


@given(
    st.builds(
        Message,
        mti=st.sampled_from(p.ALL_MTIS),
        terminal_id=_FREE,
        merchant_id=_FREE,
        currency=_FREE,
        auth_code=_FREE,
        idem_key=_FREE,
        orig_key=_FREE,
        items=st.lists(
            st.builds(p.BatchItem, st.integers(0, 99), st.integers(0, 99), _FREE), max_size=2
        ).map(tuple),
    ),
    st.builds(
        Message,
        mti=st.sampled_from(p.ALL_MTIS),
        terminal_id=_FREE,
        merchant_id=_FREE,
        currency=_FREE,
        auth_code=_FREE,
        idem_key=_FREE,
        orig_key=_FREE,
        items=st.lists(
            st.builds(p.BatchItem, st.integers(0, 99), st.integers(0, 99), _FREE), max_size=2
        ).map(tuple),
    ),
)
def test_the_mac_input_is_injective(a: Message, b: Message) -> None:
    """Two different messages never have the same MAC input, whatever separators
    their free-text fields hold: no message can be re-read as another."""
    FRAMES_TRIED["payload-pairs"] += 1
    if a != b:
        assert p.mac_payload(a) != p.mac_payload(b)


_ADJACENT = [
    (x.name, y.name)
    for x, y in zip(fields(Message), fields(Message)[1:], strict=False)
    if x.type == "str" and y.type == "str" and "mac" not in (x.name, y.name)
]


@given(st.sampled_from(_ADJACENT), _FREE, _FREE, st.integers(0, 24))
def test_moving_text_between_adjacent_fields_changes_the_mac_input(
    pair: tuple[str, str], left: str, right: str, cut: int
) -> None:
    """The separator-injection shape exactly: text moved from the end of one field to
    the start of the next keeps the old "name=value|" join ambiguous; not this one."""
    FRAMES_TRIED["payload-pairs"] += 1
    x, y = pair
    base = Message(p.MTI_PURCHASE_RESP, TID, "M1", 1)
    a = replace(base, **{x: left, y: right})
    cut = min(cut, len(left))
    b = replace(base, **{x: left[:cut], y: left[cut:] + right})
    if a != b:
        assert p.mac_payload(a) != p.mac_payload(b)


# -- keys after a lost journal ----------------------------------------------------------


def _approve(r: Rig, host: Acquirer, amount: int, now_ms: int) -> Message:
    request = start_sale(r, amount)
    r.feed(MessageReceived(host.handle(request, now_ms)))
    return request


def test_counter_keys_after_a_lost_journal_never_reverse_the_earlier_sale(
    host: Acquirer,
) -> None:
    """Attack: a device booted on a fresh journal without a nonce reuses key #1. Its
    sale gets RC 94, it reverses "its" key, and the host used to reverse the earlier,
    legitimate sale. Now the reversal's amount differs: refused with RC 12, nothing
    moves, and the terminal hands it to a human."""
    old = Rig(ReferenceFirmware, CONFIG, boot_nonces=False)
    first = _approve(old, host, 1250, 0)
    new = Rig(ReferenceFirmware, replace(CONFIG, max_sends=1), boot_nonces=False)
    request = start_sale(new, 700)
    assert request.idem_key == first.idem_key  # the collision (no nonce)
    answer = host.handle(request, 1_000)
    assert answer.rc == p.RC_DUPLICATE
    (reversal,) = sends(new.feed(MessageReceived(answer)))
    refusal = host.handle(reversal, 2_000)
    assert refusal.rc == p.RC_REVERSAL_REFUSED and p.verify(refusal, KEY)
    assert host.balance(PAN) == 1_000_000 - 1250  # the earlier sale stays charged
    effects = new.feed(MessageReceived(refusal))
    assert {"type": "reversal_manual", "key": request.idem_key} in journaled(effects)


def test_boot_nonce_keys_keep_a_replaced_device_from_replaying_an_old_approval(
    host: Acquirer,
) -> None:
    """Attack: same amount and card on the replacement device. With counter keys the
    host replayed the old approval (APPROVED, nothing charged); with the boot nonce
    the new sale has its own key and is charged."""
    old = Rig(ReferenceFirmware, CONFIG)
    first = _approve(old, host, 1250, 0)
    new = Rig(ReferenceFirmware, CONFIG, device="replacement")
    second = _approve(new, host, 1250, 1_000)
    assert first.idem_key != second.idem_key
    assert host.balance(PAN) == 1_000_000 - 2 * 1250


# -- freshness --------------------------------------------------------------------------

DAY_MS = 86_400_000


def _stamped_sale(now_ms: int, amount: int = 1250) -> Message:
    r = Rig(ReferenceFirmware, CONFIG)
    return p.stamp(start_sale(r, amount), KEY, now_ms)


def test_keyless_purchase_sent_twice_2s_apart_charges_nothing(host: Acquirer) -> None:
    """Attack: a keyless 0200 replayed 2 s later was charged twice. Keyless
    purchases are now refused outright (RC 30, signed: the request is authentic)."""
    keyless = p.stamp(p.sign(replace(_stamped_sale(0), idem_key="", mac=""), KEY), KEY, 0)
    for now_ms in (0, 2_000):
        answer = host.handle(keyless, now_ms)
        assert answer.rc == p.RC_FORMAT_ERROR
    assert list(host.transactions()) == [] and host.balance(PAN) == 1_000_000


def test_keyed_replay_after_24h_and_1ms_is_refused_stale(host: Acquirer) -> None:
    """Attack: a keyed 0200 replayed once its idempotency record had expired was
    charged again. Its MAC-covered transmission time is now 24 h old: RC 63."""
    sale = _stamped_sale(1_000)
    assert host.handle(sale, 1_000).rc == p.RC_APPROVED
    replay = host.handle(sale, 1_000 + DAY_MS + 1)
    assert replay.rc == p.RC_STALE and p.verify(replay, KEY)
    assert host.balance(PAN) == 1_000_000 - 1250
    assert [t.status for t in host.transactions()] == ["approved"]


@pytest.mark.parametrize("delay_ms", [1, 60_000, p.FRESHNESS_WINDOW_MS])
def test_replay_inside_the_window_gets_the_stored_outcome(host: Acquirer, delay_ms: int) -> None:
    """Inside the window the idempotency record is always still held: a replay is
    answered from it, never charged again."""
    sale = _stamped_sale(1_000)
    first = host.handle(sale, 1_000)
    again = host.handle(sale, 1_000 + delay_ms)
    assert (again.rc, again.rrn) == (first.rc, first.rrn)
    assert host.balance(PAN) == 1_000_000 - 1250


@pytest.mark.parametrize("skew_ms", [-p.FRESHNESS_WINDOW_MS - 1, p.FRESHNESS_WINDOW_MS + 1])
def test_transmission_time_outside_the_window_either_way_is_refused(
    host: Acquirer, skew_ms: int
) -> None:
    sale = _stamped_sale(DAY_MS + skew_ms)
    answer = host.handle(sale, DAY_MS)
    assert answer.rc == p.RC_STALE
    assert list(host.transactions()) == []


def test_the_window_never_outlasts_half_the_retention() -> None:
    """A short retention shrinks the window: a record outlives every replay."""
    acq = Acquirer(
        HostConfig(mac_keys={TID: KEY}, idempotency_retention_ms=10_000),
        [CardAccount(PAN, 1_000_000)],
    )
    sale = _stamped_sale(0)
    assert acq.handle(sale, 0).rc == p.RC_APPROVED
    assert acq.handle(sale, 5_000).rc == p.RC_APPROVED  # replayed from the record
    assert acq.handle(sale, 5_001).rc == p.RC_STALE  # record may be gone: refused
    assert acq.balance(PAN) == 1_000_000 - 1250
    acq.close()


# -- any signed hostile request ----------------------------------------------------------

_HOSTILE = st.builds(
    Message,
    mti=st.sampled_from((*p.ALL_MTIS, "0300", "9200")),
    terminal_id=st.just(TID),
    merchant_id=st.sampled_from([CONFIG.merchant_id, "M|1", ""]),
    stan=st.integers(-1, 2_000_000),
    pan=st.sampled_from([PAN, "", "4000|", "1" * 20]),
    processing_code=st.sampled_from(
        [p.PROC_PURCHASE, p.PROC_REFUND, p.PROC_ADJUST, "999999", "00000"]
    ),
    amount=st.integers(-(2**63), 2**64),
    currency=st.sampled_from(["978", "97", "9|8", "ABC"]),
    idem_key=st.text(st.sampled_from("ab|=;,"), max_size=70),
    orig_stan=st.integers(-(2**63), 2**64),
    orig_key=st.text(st.sampled_from("ab|=;,"), max_size=70),
    debit_count=st.integers(-1, 2**64),
    debit_amount=st.integers(-(2**63), 2**64),
    batch_no=st.integers(-(2**63), 2**64),
    items=st.lists(
        st.builds(
            p.BatchItem,
            st.integers(-1, 2_000_000),
            st.integers(-(2**63), 2**64),
            st.text(st.sampled_from("0123456789;,|"), max_size=14),
        ),
        max_size=3,
    ).map(tuple),
)


@settings(max_examples=ATTACK_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_HOSTILE, min_size=1, max_size=6))
def test_any_signed_hostile_request_is_answered_and_leaves_the_ledger_balanced(
    requests: list[Message],
) -> None:
    """A malicious terminal login holds its own key and signs anything: every such
    request gets an answer (no exception escapes), money is conserved, and a batch
    close with odd RRNs never wedges the terminal's later batch closes."""
    acq = make_host()

    def total() -> int:  # a hold (0100) moves money to the holds account
        return acq.balance(PAN) + acq.balance("MERCHANT") + acq.balance(HOLDS_ACCOUNT)

    start = total()
    for i, msg in enumerate(requests):
        FRAMES_TRIED["hostile-signed"] += 1
        answer = acq.handle(p.sign(msg, KEY), i)
        assert answer.rc
        assert acq.ledger_sum() == 0
        assert total() == start
    close = p.sign(Message(p.MTI_BATCH, TID, CONFIG.merchant_id, 1, batch_no=10**6), KEY)
    assert acq.handle(close, len(requests)).rc in (p.RC_APPROVED, p.RC_RECONCILE_ERROR)
    acq.close()


def test_the_mac_input_example_in_docs_protocol_md_is_exact() -> None:
    """docs/protocol.md spells out one MAC input: it must be what the code builds."""
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "protocol.md").read_text()
    example = p.mac_payload(Message(p.MTI_ECHO, "T1", "M1", 7)).decode()
    assert "`" + example.replace("\n", "\\n") + "`" in doc


def test_a_signed_message_verifies_only_with_its_key_and_only_unchanged() -> None:
    """`sign` remembers the messages it made so that verifying them again costs
    nothing; that shortcut must never accept another key or a changed copy."""
    signed = p.sign(p.Message("0200", "T1", "M1", 7, amount=1_250, idem_key="k1"), b"key")
    assert p.verify(signed, b"key")
    assert not p.verify(signed, b"other key")
    assert not p.verify(replace(signed, amount=1_251), b"key")
    # An equal copy (decoded from the wire) verifies by computing the MAC.
    copy = p.Message(**{f.name: getattr(signed, f.name) for f in fields(signed)})
    assert copy is not signed and p.verify(copy, b"key")
    assert not p.verify(replace(copy, mac="0" * 16), b"key")
