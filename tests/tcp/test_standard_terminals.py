"""Standard terminals on the TCP host: plain ISO 8583:1987 peers (harness/tcp/standard.py),
driven here with frames built by acquirer/iso87.py (tests/tcp/test_interop_iso8583sim.py
drives them with a tool nobody here wrote)."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acquirer import iso87, iso8583
from acquirer import protocol as p
from acquirer.testing import fixed_test_mac_key
from harness.cli import main
from harness.mqtt import realclock, wire
from harness.mqtt.hostdb import provision
from harness.mqtt.keys import KeyFileError
from harness.tcp.framing import FrameReader, encode_frame
from harness.tcp.server import TcpHost, TcpOptions
from harness.tcp.standard import StandardGateway, StandardTerminal, load_standard_terminals

SAFETY_S = 20  # a hang becomes a failure after this long; nothing waits for it to pass
X919 = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
TERMINALS = {
    "TERM0001": StandardTerminal("TERM0001", "none"),
    "POS00001": StandardTerminal("POS00001", "x919", X919),
}


def sale(
    tid: str, stan: int, amount: int = 1000, mti: str = "0200", **extra: str
) -> dict[str, str]:
    return {
        "t": mti, "2": "4111111111111111", "3": "000000", "4": f"{amount:012d}",
        "11": f"{stan:06d}", "41": tid.ljust(8), "42": "MERCHANT123456 ", "49": "840", **extra,
    }  # fmt: skip


class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.framer = FrameReader("2b", tpdu=False)
        self.got: list[bytes] = []

    def send(self, *frames: bytes) -> None:
        self.writer.write(b"".join(encode_frame(f, "2b") for f in frames))

    async def frame(self) -> bytes:
        while not self.got:
            data = await self.reader.read(65536)
            assert data, "the host closed the connection"
            self.got += [m for _, m in self.framer.feed(data)]
        return self.got.pop(0)

    async def answer(self) -> tuple[iso87.Format, dict[str, str]]:
        return iso87.decode(await self.frame())


async def exchange(db: str, *frames: bytes) -> list[bytes]:
    """Send `frames` one at a time on one connection; the answers' frames."""
    async with asyncio.timeout(SAFETY_S), TcpHost(db, TcpOptions(port=0), TERMINALS) as h:
        reader, writer = await asyncio.open_connection("127.0.0.1", h.port)
        c = Conn(reader, writer)
        out = []
        for f in frames:
            c.send(f)
            out.append(await c.frame())
        writer.close()
        await writer.wait_closed()
    return out


def books(db: str) -> tuple[int, list[tuple[str, int, str]]]:
    conn = sqlite3.connect(db)
    try:
        ledger = conn.execute("SELECT COALESCE(SUM(amount), 0) FROM ledger").fetchone()[0]
        txns = conn.execute("SELECT terminal_id, amount, status FROM txns ORDER BY id").fetchall()
    finally:
        conn.close()
    return ledger, txns


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = str(tmp_path / "host.db")
    provision(path, {"T0001": fixed_test_mac_key("T0001")})
    return path


@pytest.mark.asyncio
@pytest.mark.parametrize("fmt", iso87.FORMATS)
async def test_an_unsigned_terminal_is_approved_once_and_its_resend_gets_the_same_answer(
    db: str, fmt: iso87.Format
) -> None:
    first, resend = await exchange(
        db,
        iso87.encode(sale("TERM0001", 7, mti="0100"), fmt),
        iso87.encode(sale("TERM0001", 7, mti="0101"), fmt),  # a repeat: same STAN, no date
    )
    got_fmt, answer = iso87.decode(first)
    assert got_fmt == fmt
    assert (answer["t"], answer["39"], answer["11"], answer["4"]) == (
        "0110",
        "00",
        "000007",
        "000000001000",
    )
    assert "64" not in answer  # an unsigned terminal gets unsigned answers
    again = iso87.decode(resend)[1]
    assert (again["39"], again["37"], again["38"]) == ("00", answer["37"], answer["38"])
    assert books(db) == (0, [("TERM0001", 1000, "approved")])


@pytest.mark.asyncio
async def test_field_7_tells_a_new_sale_from_a_resend_under_a_reused_stan(db: str) -> None:
    frames = [
        iso87.encode(sale("TERM0001", 1, **{"7": when}), "ascii-hex")
        for when in ("1204130501", "1204130501", "1204140000")
    ]
    answers = [iso87.decode(a)[1] for a in await exchange(db, *frames)]
    assert [a["39"] for a in answers] == ["00", "00", "00"]
    assert answers[0]["37"] == answers[1]["37"] != answers[2]["37"]
    assert books(db) == (0, [("TERM0001", 1000, "approved")] * 2)


@pytest.mark.asyncio
async def test_an_x919_terminal_is_served_only_with_its_mac_and_its_answers_are_signed(
    db: str,
) -> None:
    signed = iso87.sign(sale("POS00001", 1, 2500), X919)
    forged = {**signed, "4": "000000099999"}  # the MAC of another amount
    unsigned = sale("POS00001", 2, 2500)
    answers = await exchange(
        db, *(iso87.encode(d, "ascii-hex") for d in (forged, unsigned, signed))
    )
    refused, missing, served = (iso87.decode(a)[1] for a in answers)
    assert (refused["39"], missing["39"]) == (p.RC_FORMAT_ERROR, p.RC_FORMAT_ERROR)
    assert "64" not in refused and "64" not in missing  # nothing a forger chose is signed
    assert served["39"] == "00" and iso87.verify(served, X919)
    assert books(db) == (0, [("POS00001", 2500, "approved")])


@pytest.mark.asyncio
async def test_what_a_standard_terminal_cannot_ask_is_refused_and_books_nothing(db: str) -> None:
    answers = await exchange(
        db,
        iso87.encode(sale("TERM0001", 1, mti="0400"), "ascii-hex"),  # a reversal without 90
        iso87.encode(sale("TERM0001", 2, **{"3": "310000"}), "ascii-hex"),  # balance inquiry
        iso87.encode(sale("TERM0001", 3, **{"2": "123"}), "ascii-hex"),  # PAN too short
        iso87.encode({"t": "0800", "11": "000004", "41": "TERM0001"}, "ascii-hex"),
    )
    rcs = [(d["t"], d["39"]) for d in (iso87.decode(a)[1] for a in answers)]
    assert rcs == [
        ("0410", p.RC_FORMAT_ERROR),
        ("0210", "12"),
        ("0210", p.RC_FORMAT_ERROR),
        ("0810", "00"),
    ]
    assert books(db) == (0, [])


@pytest.mark.asyncio
async def test_this_protocols_terminals_are_served_beside_standard_ones(db: str) -> None:
    key = fixed_test_mac_key("T0001")
    msg = p.Message(
        p.MTI_PURCHASE, "T0001", "M000000000001", 1, pan="4000000000000002", amount=700,
        idem_key="T0001-k-1",
    )  # fmt: skip
    ours = iso8583.encode(p.stamp(p.sign(msg, key), key, realclock.wall_ms()))
    theirs = iso87.encode(sale("TERM0001", 1), "ascii-hex")
    a, b = await exchange(db, ours, theirs)
    assert wire.decode(a)[0].rc == "00" and iso87.decode(b)[1]["39"] == "00"
    assert books(db) == (0, [("T0001", 700, "approved"), ("TERM0001", 1000, "approved")])


def write(tmp_path: Path, obj: object, mode: int = 0o600) -> Path:
    path = tmp_path / "std.json"
    path.write_text(json.dumps(obj))
    os.chmod(path, mode)
    return path


def test_the_config_file_is_read_strictly(tmp_path: Path) -> None:
    good = {"TERM0001": {"mac": "none"}, "POS00001": {"mac": "x919", "key": X919.hex()}}
    assert load_standard_terminals(write(tmp_path, good)) == TERMINALS
    for bad, says in [
        ({"TERM0001": {"mac": "hmac"}}, "mac must be one of"),
        ({"TERM0001": {"mac": "x919", "key": "00"}}, "32 hex digits"),
        ({"TERM0001": {"mac": "none", "key": X919.hex()}}, "has no key"),
        ({"TERM0001": {"mac": "x919"}}, "32 hex digits"),
        ({"TERM0001": {"mac": "none", "extra": 1}}, "expected"),
        ({"TERMINAL-9": {"mac": "none"}}, "not a terminal id"),
        ([], "JSON object"),
    ]:
        with pytest.raises(KeyFileError, match=says) as err:
            load_standard_terminals(write(tmp_path, bad))
        assert str(tmp_path) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_standard_terminals(write(tmp_path, good, 0o644))


def test_the_command_line_says_what_is_wrong(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write(tmp_path, {"TERM0001": {"mac": "none"}})
    db = str(tmp_path / "h.db")
    assert main(["acquirer", "serve", "--db", db, "--standard-terminals", str(cfg)]) == 2
    assert "needs --listen" in capsys.readouterr().err
    bad = write(tmp_path, {"TERM0001": {"mac": "x"}})
    args = ["acquirer", "serve", "--db", db, "--listen", "tcp://127.0.0.1:0"]
    assert main([*args, "--standard-terminals", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "mac must be one of" in err and "\n" not in err


def original(stan: int, when: str = "0" * 10) -> str:
    """Field 90 naming sale `stan` (sent with field 7 `when`, zeros for none)."""
    return "0200" + f"{stan:06d}" + when + "0" * 22


@pytest.mark.asyncio
async def test_a_reversal_names_its_sale_by_field_90(db: str) -> None:
    with_date = {"7": "1204130501"}
    frames = [
        sale("TERM0001", 1),  # no field 7
        sale("TERM0001", 2, **with_date),
        sale("TERM0001", 3, mti="0400", **{"90": original(1)}),
        sale("TERM0001", 4, mti="0400", **{"90": original(2, "1204130501")}),
        sale("TERM0001", 5, mti="0401", **{"90": original(2, "1204130501")}),  # a resend
        sale("TERM0001", 6, mti="0400", **{"90": original(9)}),  # no such sale
    ]
    answers = await exchange(db, *(iso87.encode(f, "ascii-hex") for f in frames))
    got = [(d["t"], d["39"]) for d in (iso87.decode(a)[1] for a in answers)]
    assert got == [("0210", "00"), ("0210", "00"), ("0410", "00"), ("0410", "00"), ("0410", "00"),
                   ("0410", p.RC_UNABLE_TO_LOCATE)]  # fmt: skip
    assert books(db) == (0, [("TERM0001", 1000, "reversed")] * 2)


@pytest.mark.asyncio
async def test_a_posharness_terminal_and_host_over_plain_iso_8583_both_ways(
    db: str, tmp_path: Path
) -> None:
    """The reference firmware through the terminal-side link (standard_host.py) to the host
    through the gateway (standard.py), X9.19 on the link: approvals, and the catalogue's
    9800 (approved and booked, the answer never sent) timed out and, with one send
    allowed, reversed by field 90: FAILED, nothing kept."""
    from acquirer.catalogue import PAN_APPROVE
    from harness.mqtt.journal import Journal
    from harness.mqtt.terminal_driver import TerminalDriver, terminal_config
    from harness.tcp.client import TcpTerminalClient
    from harness.tcp.standard_host import StandardHostLink
    from terminal.reference import ReferenceFirmware

    key = fixed_test_mac_key("POS00001")
    cfg = terminal_config(
        "POS00001", key, response_timeout_ms=300, max_sends=1, status_inquiry=False
    )
    link = StandardHostLink({"POS00001": TERMINALS["POS00001"]}, {"POS00001": key})
    journal = Journal(str(tmp_path / "j.db"))
    async with asyncio.timeout(SAFETY_S), TcpHost(db, TcpOptions(port=0), TERMINALS) as h:
        client = TcpTerminalClient("127.0.0.1", h.port, link=link)
        driver = client.add(lambda pub: TerminalDriver(ReferenceFirmware(cfg), cfg, journal, pub))
        async with client:
            driver.boot()
            outcomes = [(await driver.purchase(a, PAN_APPROVE)).outcome for a in (700, 9800, 800)]
            await driver.idle.wait()
    journal.close()
    assert outcomes == ["approved", "failed", "approved"]
    ledger, txns = books(db)
    assert ledger == 0
    assert [(t[1], t[2]) for t in txns] == [
        (700, "approved"),
        (9800, "reversed"),
        (800, "approved"),
    ]
    assert link.stats["sent_0400"] >= 1 and link.stats["answered_0410"] == 1


@given(frame=st.binary(max_size=400), flip=st.integers(0, 10_000), bit=st.integers(0, 7))
@settings(max_examples=300, deadline=None)
def test_an_attackers_frames_never_reach_the_books_unsigned(
    frame: bytes, flip: int, bit: int
) -> None:
    """Any bytes, and a signed x919 sale with any one bit flipped: the gateway never raises,
    and nothing a forger made reaches the host core (no payload to book) unless it is the
    intact signed frame itself."""
    gateway = StandardGateway(TERMINALS)
    assert gateway.route(frame, 0) is None or not gateway.route(frame, 0).payload  # type: ignore[union-attr]
    signed = iso87.encode(iso87.sign(sale("POS00001", 1), X919), "ascii-hex")
    i = flip % len(signed)
    forged = signed[:i] + bytes([signed[i] ^ (1 << bit)]) + signed[i + 1 :]
    routed = gateway.route(forged, 0)
    if routed is not None and routed.payload:
        # Only a flip the MAC does not cover can pass: the hex case of field 64 itself.
        assert iso87.decode(forged)[1] | {"64": ""} == iso87.decode(signed)[1] | {"64": ""}
