"""The TCP fault proxy (harness/tcp/proxy.py): the plan's faults on a TCP link, with TCP's
own (reset, half-open connection, slow reader), and a fleet that keeps its invariants
through them (or, with a flawed firmware, does not)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from acquirer import iso8583
from acquirer import protocol as p
from acquirer.testing import fixed_test_mac_key
from faults import FaultSpecError, build_fault
from harness.cli import main
from harness.mqtt import realclock, wire
from harness.mqtt.hostdb import provision
from harness.mqtt.proxy import plan_of
from harness.tcp.framing import FrameReader, encode_frame
from harness.tcp.proxy import TcpFaultProxy
from harness.tcp.server import TcpHost, TcpOptions

SAFETY_S = 20  # a hang becomes a failure after this long; nothing waits for it to pass


def sale(stan: int) -> bytes:
    key = fixed_test_mac_key("T0001")
    msg = p.Message(
        p.MTI_PURCHASE, "T0001", "M000000000001", stan, pan="4000000000000002", amount=500 + stan,
        idem_key=f"T0001-k-{stan}",
    )  # fmt: skip
    return iso8583.encode(p.stamp(p.sign(msg, key), key, realclock.wall_ms()))


async def answers(port: int, frames: list[bytes], want: int) -> list[p.Message] | str:
    """Send `frames` on one connection; the first `want` answers, or how it ended."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"".join(encode_frame(f, "2b") for f in frames))
    framer, got = FrameReader("2b"), []
    try:
        while len(got) < want:
            data = await reader.read(65536)
            if not data:
                return "closed"
            got += [wire.decode(m)[0] for _, m in framer.feed(data)]
    except ConnectionResetError:
        return "reset"
    finally:
        writer.close()
    return got


async def through_proxy(
    tmp_path: Path, faults: list[dict[str, dict[str, object]]], *runs: tuple[int, int]
) -> list[object]:
    """Through a proxy with `faults` to a TCP host: each run sends its number of sales on
    a connection of its own and reads its number of answers; then the proxy's counts."""
    db = str(tmp_path / "host.db")
    provision(db, {"T0001": fixed_test_mac_key("T0001")})
    plan = plan_of([build_fault(k, v) for f in faults for k, v in f.items()])
    out: list[object] = []
    async with (
        asyncio.timeout(SAFETY_S),
        TcpHost(db, TcpOptions(port=0)) as host,
        TcpFaultProxy(("127.0.0.1", host.port), plan) as proxy,
    ):
        stan = 0
        for n, want in runs:
            frames = [sale(stan + i + 1) for i in range(n)]
            stan += n
            out.append(await answers(proxy.port, frames, want))
        out.append(dict(proxy.stats))
    return out


@pytest.mark.asyncio
async def test_frames_pass_unchanged_and_a_duplicate_is_answered_from_the_store(
    tmp_path: Path,
) -> None:
    dup = {"duplicate": {"direction": "to_host", "mti": "0200", "nth": 1, "gap_ms": 0}}
    got, stats = await through_proxy(tmp_path, [dup], (2, 3))
    assert isinstance(got, list)
    # Three answers to three frames: sale 1, its copy (the stored answer), sale 2.
    assert [(a.stan, a.rc) for a in got] == [(1, "00"), (1, "00"), (2, "00")]
    assert got[0].rrn == got[1].rrn != got[2].rrn
    assert stats["duplicate"] == 1 and stats["connections"] == 1  # type: ignore[index]


@pytest.mark.asyncio
async def test_a_reset_kills_the_connection_and_the_next_one_is_served(tmp_path: Path) -> None:
    reset = {"reset": {"direction": "to_terminal", "mti": "0210", "nth": 1}}
    first, second, stats = await through_proxy(tmp_path, [reset], (1, 1), (1, 1))
    assert first in ("reset", "closed")
    assert isinstance(second, list) and [(a.stan, a.rc) for a in second] == [(2, "00")]
    assert stats["reset"] == 1 and stats["connections"] == 2  # type: ignore[index]


@pytest.mark.asyncio
async def test_a_slow_reader_delays_without_reordering(tmp_path: Path) -> None:
    slow = {"slow_reader": {"direction": "to_terminal", "nth": 1, "pause_ms": 300}}
    got, stats = await through_proxy(tmp_path, [slow], (3, 3))
    assert isinstance(got, list) and [a.stan for a in got] == [1, 2, 3]  # stream order kept
    assert stats["slow_reader"] == 1  # type: ignore[index]


@pytest.mark.asyncio
async def test_a_half_open_connection_answers_nothing_then_closes(tmp_path: Path) -> None:
    silent = {"half_open": {"direction": "to_host", "mti": "0200", "nth": 1, "hold_ms": 200}}
    got, stats = await through_proxy(tmp_path, [silent], (1, 1))
    assert got == "closed"  # nothing answered, then closed once held
    assert stats["half_open"] == 1  # type: ignore[index]


def test_half_open_is_bounded() -> None:
    with pytest.raises(FaultSpecError, match="hold_ms"):
        build_fault("half_open", {"hold_ms": 3_600_000})


# One cashier (one terminal, one sale at a time), so the third answer is the third
# sale's, charged: the half-open connection swallows an approval the host booked.
PLAN = """
[[faults]]
reset = {direction = "to_host", mti = "0200", nth = 2}
[[faults]]
half_open = {direction = "to_terminal", mti = "0210", nth = 3, hold_ms = 6000}
"""
FLEET = ["fleet", "--transport", "tcp", "--terminals", "1", "--rate", "5", "--duration", "2"]


@pytest.mark.parametrize("firmware", ["reference", "zoo:no-reversal"])
def test_a_tcp_fleet_through_tcp_faults_is_judged_by_the_books(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], firmware: str
) -> None:
    """A reset connection (the second sale's request lost with it) and a half-open one that
    swallows the third sale's approval: the reference notices the silence (after twice
    its 1 s timeout), reconnects and reverses; a firmware that does not reverse leaves a
    charged customer told FAILED."""
    plan = tmp_path / "plan.toml"
    plan.write_text(PLAN)
    args = [*FLEET, "--timeout-ms", "1000", "--faults", str(plan), "--json", "--firmware", firmware]
    code = main(args)
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["faults"]["reset"] == report["faults"]["half_open"] == 1
    if firmware == "reference":
        assert code == 0, report["invariants"]
        assert report["completed"] == 10
    else:
        assert code == 1
        assert report["invariants"]["no-charge-on-failure"]
