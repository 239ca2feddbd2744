"""`terminal run --host tcp://...`: terminal drivers on a TCP connection to the host."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from acquirer.catalogue import PAN_APPROVE
from acquirer.testing import fixed_test_mac_key
from harness.mqtt.hostdb import provision
from harness.mqtt.journal import Journal
from harness.mqtt.terminal_driver import TerminalDriver, terminal_config
from harness.tcp.client import TcpTerminalClient
from harness.tcp.server import TcpHost, TcpOptions
from terminal.reference import ReferenceFirmware

from .serving import tcp_host_process
from .test_tcp_host import books

SAFETY_S = 30  # a hang becomes a failure after this long; nothing waits for it to pass
ROOT = Path(__file__).resolve().parents[2]
TIDS = ("T0001", "T0002")


@pytest.fixture
def host_db(tmp_path: Path) -> str:
    path = str(tmp_path / "host.db")
    provision(path, {t: fixed_test_mac_key(t) for t in TIDS})
    return path


def add_terminal(client: TcpTerminalClient, tid: str, tmp: Path) -> TerminalDriver:
    cfg = terminal_config(tid, fixed_test_mac_key(tid))
    journal = Journal(str(tmp / f"{tid}.journal.db"))
    return client.add(lambda publish: TerminalDriver(ReferenceFirmware(cfg), cfg, journal, publish))


@pytest.mark.asyncio
async def test_two_terminals_on_one_connection_are_each_approved(
    host_db: str, tmp_path: Path
) -> None:
    async with asyncio.timeout(SAFETY_S), TcpHost(host_db, TcpOptions(port=0)) as h:
        client = TcpTerminalClient("127.0.0.1", h.port)
        drivers = [add_terminal(client, t, tmp_path) for t in TIDS]
        async with client:
            for d in drivers:
                d.boot()
            intents = await asyncio.gather(*(d.purchase(1250, PAN_APPROVE) for d in drivers))
            await asyncio.gather(*(d.idle.wait() for d in drivers))
    assert [i.outcome for i in intents] == ["approved", "approved"]
    assert all(len(d.receipts) == 1 for d in drivers)
    ledger, txns = books(host_db)
    assert ledger == 0 and len(txns) == 2


@pytest.mark.asyncio
async def test_the_terminal_reconnects_when_the_host_comes_back(
    host_db: str, tmp_path: Path
) -> None:
    """The host restarts on the same port: the client reconnects with backoff, and the
    next purchase is approved."""
    async with asyncio.timeout(SAFETY_S):
        first = TcpHost(host_db, TcpOptions(port=0))
        await first.start()
        port = first.port
        client = TcpTerminalClient("127.0.0.1", port)
        driver = add_terminal(client, "T0001", tmp_path)
        async with client:
            driver.boot()
            assert (await driver.purchase(1250, PAN_APPROVE)).outcome == "approved"
            await first.stop()
            while client.connected.is_set():  # the loss is noticed (no timer: an event)
                await client.wait_disconnected()
            async with TcpHost(host_db, TcpOptions(port=port)):
                await client.connected.wait()
                await driver.idle.wait()
                assert (await driver.purchase(300, PAN_APPROVE)).outcome == "approved"
    ledger, txns = books(host_db)
    assert ledger == 0 and [t[1] for t in txns] == [1250, 300]


def _terminal_run(
    tmp_path: Path, script_text: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    """`posharness terminal run --host` against a TCP host process, with a script."""
    db = tmp_path / "host.db"
    with tcp_host_process(db) as url:
        script = tmp_path / "script.txt"
        script.write_text(script_text)
        argv = ["terminal", "run", "--host", url, "--keys", f"{db}.keys.json", "--id", "T0001"]
        argv += ["--script", str(script), "--journal", str(tmp_path / "t.db"), *extra]
        return subprocess.run(
            [sys.executable, "-m", "harness.mqtt", *argv],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=SAFETY_S,
        )


def test_terminal_run_host_tcp_from_the_command_line(tmp_path: Path) -> None:
    run = _terminal_run(tmp_path, f"1250 {PAN_APPROVE}\nBATCH\n")
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert lines[0]["outcome"] == "approved"
    assert lines[1] == {"batch_close": "done"}
    assert lines[2]["receipt"]["amount"] == 1250


def test_terminal_run_takes_a_partial_approval_when_told_to(tmp_path: Path) -> None:
    """`terminal run --partial-approval`: the test card 4000000000000010 covers 20.00 of
    a 50.00 sale; the terminal prints 20.00 (without the flag it would be declined)."""
    run = _terminal_run(tmp_path, "5000 4000000000000010\n", "--partial-approval")
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert lines[0]["outcome"] == "approved", lines
    assert "PARTIAL" in lines[0]["text"]
    assert lines[1]["receipt"]["amount"] == 2000


def test_terminal_run_reverses_a_chip_declined_approval(tmp_path: Path) -> None:
    """`terminal run --chip`: a script line's card that declines the host's approval is
    shown DECLINED and reversed with reason 96; the next card completes and prints."""
    db = tmp_path / "host.db"
    with tcp_host_process(db) as url:
        script = tmp_path / "script.txt"
        script.write_text("2500 4000000000000002 decline\n1000 4000000000000010\n")
        argv = ["terminal", "run", "--host", url, "--keys", f"{db}.keys.json", "--id", "T0001"]
        argv += ["--script", str(script), "--journal", str(tmp_path / "t.db"), "--chip"]
        run = subprocess.run(
            [sys.executable, "-m", "harness.mqtt", *argv],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=SAFETY_S,
        )
        ledger, txns = books(str(db))
        with closing(sqlite3.connect(db)) as conn:
            reasons = conn.execute("SELECT reason FROM reversal_reasons").fetchall()
    assert run.returncode == 1, run.stderr  # one purchase not approved
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert (lines[0]["outcome"], lines[0]["text"]) == ("declined", "DECLINED - CARD DECLINED")
    assert lines[1]["outcome"] == "approved"
    assert [line["receipt"]["amount"] for line in lines[2:]] == [1000]
    assert ledger == 0 and [(a, s) for _k, a, s in txns] == [(2500, "reversed"), (1000, "approved")]
    assert reasons == [("96",)]


def test_terminal_run_voids_and_refunds_named_payments(tmp_path: Path) -> None:
    """`terminal run` script lines VOID N and REFUND N [AMOUNT]: the second payment is
    voided (a 0400), the first refunded in part (a 0200 with processing code 200000),
    and a refund of the voided one is refused by the terminal without a message."""
    db = tmp_path / "host.db"
    with tcp_host_process(db) as url:
        script = tmp_path / "script.txt"
        script.write_text(
            "5000 4000000000000002\n3000 4000000000000002\nREFUND 1 1000\nVOID 2\nREFUND 2\n"
        )
        argv = ["terminal", "run", "--host", url, "--keys", f"{db}.keys.json", "--id", "T0001"]
        argv += ["--script", str(script), "--journal", str(tmp_path / "t.db")]
        run = subprocess.run(
            [sys.executable, "-m", "harness.mqtt", *argv],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=SAFETY_S,
        )
        ledger, txns = books(str(db))
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert (lines[2]["refund"], lines[2]["outcome"], lines[2]["amount"]) == (1, "refunded", 1000)
    assert (lines[3]["void"], lines[3]["outcome"], lines[3]["amount"]) == (2, "voided", 3000)
    assert (lines[4]["refund"], lines[4]["text"]) == (2, "REFUND REFUSED - SALE VOIDED")
    assert ledger == 0
    assert [(a, s) for _k, a, s in txns] == [
        (5000, "approved"),
        (3000, "reversed"),
        (1000, "approved"),
    ]
