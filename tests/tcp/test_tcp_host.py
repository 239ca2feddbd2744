"""`acquirer serve --listen tcp://...`: the same host core over length-prefixed TCP."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from acquirer import iso8583
from acquirer import protocol as p
from acquirer.testing import fixed_test_mac_key
from harness import conformance
from harness.cli import main
from harness.mqtt import realclock, wire
from harness.mqtt.hostdb import provision
from harness.tcp.framing import FrameReader, encode_frame
from harness.tcp.server import TcpHost, TcpOptions

SAFETY_S = 20  # a hang becomes a failure after this long; nothing waits for it to pass
PAN = "4000000000000002"


@pytest.fixture
def host_db(tmp_path: Path) -> str:
    path = str(tmp_path / "host.db")
    provision(path, {t: fixed_test_mac_key(t) for t in ("T0001", "T0002")})
    return path


def sale(tid: str, stan: int, amount: int = 1250, **kw: object) -> p.Message:
    key = fixed_test_mac_key(tid)
    msg = p.Message(
        p.MTI_PURCHASE, tid, "M000000000001", stan, pan=PAN, amount=amount,
        idem_key=f"{tid}-k-{stan}", **kw,  # type: ignore[arg-type]
    )  # fmt: skip
    return p.stamp(p.sign(msg, key), key, realclock.wall_ms())


class Conn:
    """One TCP connection to the host, framed."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, header: str):
        self.reader, self.writer, self.header = reader, writer, header
        self.framer = FrameReader(header, tpdu=False)
        self.got: list[bytes] = []

    def send(self, *frames: bytes) -> None:
        self.writer.write(b"".join(encode_frame(f, self.header) for f in frames))

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()

    async def answer(self) -> p.Message:
        while not self.got:
            data = await self.reader.read(65536)
            assert data, "the host closed the connection"
            self.got += [m for _, m in self.framer.feed(data)]
        return wire.decode(self.got.pop(0))[0]


async def connect(host: TcpHost, header: str) -> Conn:
    reader, writer = await asyncio.open_connection("127.0.0.1", host.port)
    return Conn(reader, writer, header)


def books(db: str) -> tuple[int, list[tuple[str, int, str]]]:
    conn = sqlite3.connect(db)
    try:
        ledger = conn.execute("SELECT COALESCE(SUM(amount), 0) FROM ledger").fetchone()[0]
        txns = conn.execute("SELECT idem_key, amount, status FROM txns ORDER BY id").fetchall()
    finally:
        conn.close()
    return ledger, txns


@pytest.mark.asyncio
# Not "2a": 2 ASCII digits say at most 99 bytes, too short for a signed 0200
# (tests/tcp/test_framing.py covers that header).
@pytest.mark.parametrize("header", ["2b", "4b", "4a"])
async def test_a_purchase_and_its_resend_are_answered_alike_and_charged_once(
    host_db: str, header: str
) -> None:
    async with asyncio.timeout(SAFETY_S), TcpHost(host_db, TcpOptions(port=0, header=header)) as h:
        c = await connect(h, header)
        c.send(iso8583.encode(sale("T0001", 1)))
        first = await c.answer()
        c.send(iso8583.encode(sale("T0001", 1, repeat=True)))
        again = await c.answer()
        await c.close()
    assert (first.mti, first.rc) == ("0210", p.RC_APPROVED)
    assert p.verify(first, fixed_test_mac_key("T0001"))
    assert again.rrn == first.rrn
    assert books(host_db) == (0, [("T0001-k-1", 1250, "approved")])


@pytest.mark.asyncio
async def test_one_connection_carries_two_terminals_interleaved(host_db: str) -> None:
    """Answers go back on the connection they came on and are matched by terminal and
    STAN (a shared connection, as a gateway's): four requests in one write."""
    async with asyncio.timeout(SAFETY_S), TcpHost(host_db, TcpOptions(port=0)) as h:
        c = await connect(h, "2b")
        c.send(*(iso8583.encode(sale(t, n)) for n in (1, 2) for t in ("T0001", "T0002")))
        answers = [await c.answer() for _ in range(4)]
        c.send(wire.encode(sale("T0002", 3), "json"))
        json_answer = await c.answer()
        await c.close()
    got = sorted((a.terminal_id, a.stan, a.rc) for a in answers)
    assert got == [(t, n, "00") for t in ("T0001", "T0002") for n in (1, 2)]
    assert all(p.verify(a, fixed_test_mac_key(a.terminal_id)) for a in answers)
    assert (json_answer.stan, json_answer.rc) == (3, "00")  # JSON frames work too
    ledger, txns = books(host_db)
    assert ledger == 0 and len(txns) == 5


@pytest.mark.asyncio
async def test_bad_frames_get_no_signed_answer_and_the_connection_keeps_serving(
    host_db: str,
) -> None:
    async with asyncio.timeout(SAFETY_S), TcpHost(host_db, TcpOptions(port=0)) as h:
        c = await connect(h, "2b")
        forged = iso8583.encode(replace(sale("T0001", 1), amount=99))  # MAC kept: forged
        c.send(b"\x00garbage naming no terminal", forged, iso8583.encode(sale("T0001", 2)))
        refused = await c.answer()  # the garbage got nothing, the forgery an unsigned 30
        served = await c.answer()
        await c.close()
    assert (refused.stan, refused.rc, refused.mac) == (1, p.RC_FORMAT_ERROR, "")
    assert (served.stan, served.rc) == (2, p.RC_APPROVED)
    assert h.core.stats["dropped"] == 1


@pytest.mark.asyncio
async def test_a_broken_length_header_closes_only_that_connection(host_db: str) -> None:
    async with asyncio.timeout(SAFETY_S), TcpHost(host_db, TcpOptions(port=0, header="4a")) as h:
        bad = await connect(h, "4a")
        bad.writer.write(b"12x4" + b"0" * 20)
        assert await bad.reader.read(100) == b""  # closed by the host
        await bad.close()
        good = await connect(h, "4a")
        good.send(iso8583.encode(sale("T0001", 1)))
        assert (await good.answer()).rc == p.RC_APPROVED
        await good.close()
    assert h.core.stats["broken_streams"] == 1


@pytest.mark.asyncio
async def test_a_tpdu_is_answered_with_its_addresses_swapped(host_db: str) -> None:
    async with asyncio.timeout(SAFETY_S), TcpHost(host_db, TcpOptions(port=0, tpdu=True)) as h:
        reader, writer = await asyncio.open_connection("127.0.0.1", h.port)
        writer.write(encode_frame(iso8583.encode(sale("T0001", 1)), "2b", b"\x60\x00\x03\x00\x07"))
        framer = FrameReader("2b", tpdu=True)
        out: list[tuple[bytes, bytes]] = []
        while not out:
            out = framer.feed(await reader.read(65536))
        writer.close()
        await writer.wait_closed()
    tpdu, frame = out[0]
    assert tpdu == b"\x60\x00\x07\x00\x03"
    assert iso8583.decode(frame).rc == p.RC_APPROVED


def test_a_bad_listen_address_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "h.db")
    assert main(["acquirer", "serve", "--db", db, "--listen", "udp://x:1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "expected tcp://HOST:PORT" in err


@pytest.mark.asyncio
@pytest.mark.parametrize("codec", ["iso8583", "json"])
async def test_the_tcp_host_passes_every_conformance_case(host_db: str, codec: wire.Codec) -> None:
    """The conformance suite, over TCP: the same semantics as over MQTT."""
    async with asyncio.timeout(60), TcpHost(host_db, TcpOptions(port=0)) as h:
        target = conformance.TcpTarget("127.0.0.1", h.port)
        results = await conformance.run_cases(target, "T0001", fixed_test_mac_key("T0001"), codec)
    assert len(results) == len(conformance.CASES)
    assert [(r.name, r.detail) for r in results if not r.ok] == []
