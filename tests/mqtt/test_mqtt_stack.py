"""The MQTT stack against a real mosquitto: host service, terminal driver, proxy, fleet.

Every wait is on an event (a host action, a final display, a message); the
`asyncio.timeout` blocks are safety nets that turn a hang into a failure.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from acquirer.catalogue import AMOUNT_NO_REPLY, PAN_APPROVE
from acquirer.host import HostAction
from acquirer.protocol import MTI_PURCHASE, MTI_PURCHASE_RESP, Message, sign, stamp
from acquirer.testing import fixed_test_mac_key
from faults.network import Corrupt, Drop
from harness.mqtt import realclock, wire
from harness.mqtt.broker import PrivateBroker
from harness.mqtt.fleet import FleetOptions, run_fleet
from harness.mqtt.host_service import HOST_CLIENT_ID, HostService
from harness.mqtt.hostdb import load_keys
from harness.mqtt.journal import Journal
from harness.mqtt.proxy import FaultProxy, plan_of
from harness.mqtt.terminal_driver import single_terminal, terminal_config
from terminal.reference import ReferenceFirmware

pytestmark = pytest.mark.asyncio
SAFETY_S = 20  # a hang becomes a failure after this long; nothing waits for it to pass


class Actions:
    """Host actions as they happen, with a way to wait for one."""

    def __init__(self) -> None:
        self.seen: list[tuple[Message, HostAction]] = []
        self._changed = asyncio.Event()

    def __call__(self, req: Message, action: HostAction) -> None:
        self.seen.append((req, action))
        self._changed.set()

    async def wait_for(self, pred: Callable[[HostAction], bool]) -> HostAction:
        while True:
            for _, action in self.seen:
                if pred(action):
                    return action
            self._changed.clear()
            await self._changed.wait()

    def count(self, name: str) -> int:
        return sum(1 for _, a in self.seen if a.action == name)


def books(db: str) -> tuple[int, int, list[tuple[str, int, str]]]:
    """(ledger sum, approve-card balance, [(key, amount, status)]) from the host's file."""
    conn = sqlite3.connect(db)
    try:
        ledger = conn.execute("SELECT COALESCE(SUM(amount), 0) FROM ledger").fetchone()[0]
        bal = conn.execute(
            "SELECT balance - initial FROM accounts WHERE account = ?", (PAN_APPROVE,)
        ).fetchone()[0]
        txns = conn.execute("SELECT idem_key, amount, status FROM txns ORDER BY id").fetchall()
    finally:
        conn.close()
    return ledger, bal, txns


def signed_purchase(tid: str, stan: int, key: str, amount: int = 1250) -> Message:
    """A signed 0200 stamped with the wall clock (the host refuses stale requests)."""
    msg = Message(
        MTI_PURCHASE, tid, "M000000000001", stan, pan=PAN_APPROVE, amount=amount, idem_key=key
    )
    return stamp(sign(msg, fixed_test_mac_key(tid)), fixed_test_mac_key(tid), realclock.wall_ms())


async def test_approval_end_to_end(broker: PrivateBroker, host_db: str, tmp_path: Path) -> None:
    """A purchase over the broker is approved, charged once, journaled and printed."""
    async with asyncio.timeout(SAFETY_S), HostService(broker.address("acquirer"), host_db):
        cfg = terminal_config("T0001", fixed_test_mac_key("T0001"))
        journal = Journal(str(tmp_path / "t.db"))
        client, drv = single_terminal(
            broker.address("T0001"), ReferenceFirmware(cfg), cfg, journal, codec="json"
        )
        async with client:
            drv.boot()
            intent = await drv.purchase(1250, PAN_APPROVE)
            await drv.idle.wait()
        assert intent.outcome == "approved"
        assert [r.amount for r in drv.receipts] == [1250]
        assert any(r["type"] == "approved" for r in journal.records())
        journal.close()
    ledger, charged, txns = books(host_db)
    assert (ledger, charged) == (0, -1250)
    assert [t[2] for t in txns] == ["approved"]
    assert drv.receipts[0].rrn == "000000000001"


async def _raw_round_trips(
    broker: PrivateBroker, frames: list[bytes], tid: str, answers: int
) -> list[Message]:
    """Publish `frames` on tid's req topic; collect `answers` responses from its resp topic."""
    a = broker.address("fleet")
    got: list[Message] = []
    async with aiomqtt.Client(a.host, a.port, username=a.username, password=a.password) as c:
        await c.subscribe(wire.topic(tid, "resp"), qos=1)
        for f in frames:
            await c.publish(wire.topic(tid, "req"), f, qos=1)
        async for m in c.messages:
            assert isinstance(m.payload, bytes)
            got.append(wire.decode(m.payload)[0])
            if len(got) == answers:
                return got
    raise AssertionError("unreachable")


async def test_duplicate_publish_is_charged_once(broker: PrivateBroker, host_db: str) -> None:
    """The same request delivered twice (a QoS 1 redelivery) gets the same answer, one charge."""
    frame = wire.encode(signed_purchase("T0002", 7, "T0002-dup"), "iso8583")
    async with asyncio.timeout(SAFETY_S), HostService(broker.address("acquirer"), host_db):
        answers = await _raw_round_trips(broker, [frame, frame], "T0002", 2)
    assert [m.rc for m in answers] == ["00", "00"]
    assert answers[0].rrn == answers[1].rrn
    ledger, charged, txns = books(host_db)
    assert (ledger, charged, len(txns)) == (0, -1250, 1)


async def test_host_restart_keeps_ledger_and_idempotency(
    broker: PrivateBroker, host_db: str
) -> None:
    """A host restarted on the same SQLite file replays the stored answer; requests sent
    while it was down wait in its persistent session and are answered after the restart."""
    first = wire.encode(signed_purchase("T0003", 1, "T0003-a"), "iso8583")
    second = wire.encode(signed_purchase("T0003", 2, "T0003-b", 2000), "iso8583")
    async with asyncio.timeout(SAFETY_S):
        async with HostService(broker.address("acquirer"), host_db):
            (a1,) = await _raw_round_trips(broker, [first], "T0003", 1)
        # Host down: `second` is queued by the broker for the host's persistent session.
        collect = asyncio.create_task(_raw_round_trips(broker, [first, second], "T0003", 2))
        async with HostService(broker.address("acquirer"), host_db):
            answers = await collect
    by_stan = {m.stan: m for m in answers}
    assert by_stan[1].rrn == a1.rrn and by_stan[1].rc == "00"
    assert by_stan[2].rc == "00" and by_stan[2].rrn != a1.rrn
    ledger, charged, txns = books(host_db)
    assert (ledger, charged, len(txns)) == (0, -3250, 2)


async def test_terminal_killed_mid_sale_reverses_after_restart(
    broker: PrivateBroker, host_db: str, tmp_path: Path
) -> None:
    """Killed after the host charged but before any answer: the rebooted terminal finds the
    unresolved sale in its journal file, reverses it, and the books end balanced."""
    actions = Actions()
    path = str(tmp_path / "t.db")
    cfg = terminal_config("T0004", fixed_test_mac_key("T0004"))
    async with (
        asyncio.timeout(SAFETY_S),
        HostService(broker.address("acquirer"), host_db, on_action=actions),
    ):
        journal = Journal(path)
        client, drv = single_terminal(broker.address("T0004"), ReferenceFirmware(cfg), cfg, journal)
        await client.start()
        drv.boot()
        sale = asyncio.create_task(drv.purchase(AMOUNT_NO_REPLY, PAN_APPROVE))
        await actions.wait_for(lambda a: a.action == "charge-no-reply")
        drv.kill()  # power cut: timers, volatile state and the connection are gone
        await client.stop()
        journal.close()
        with pytest.raises(asyncio.CancelledError):
            await sale
        assert books(host_db)[1] == -AMOUNT_NO_REPLY

        journal = Journal(path)
        client, drv = single_terminal(broker.address("T0004"), ReferenceFirmware(cfg), cfg, journal)
        async with client:
            drv.boot()
            await actions.wait_for(lambda a: a.action == "reverse")
            await drv.idle.wait()
        assert any(r["type"] == "reversed" for r in journal.records())
        journal.close()
    ledger, charged, txns = books(host_db)
    assert (ledger, charged) == (0, 0)
    assert [t[2] for t in txns] == ["reversed"]
    assert drv.receipts == []


async def _purchase_through_proxy(
    broker: PrivateBroker,
    host_db: str,
    tmp_path: Path,
    faults_: list[Any],
    tid: str,
    amount: int,
) -> tuple[Any, Any, dict[str, int]]:
    """One purchase by `tid` through the wire fault proxy running `faults_`.
    Returns the intent, the driver and the proxy's fault counts."""
    cfg = terminal_config(tid, fixed_test_mac_key(tid), response_timeout_ms=300, max_sends=8)
    async with (
        asyncio.timeout(SAFETY_S),
        HostService(broker.address("acquirer"), host_db),
        FaultProxy(broker.address("proxy"), plan_of(faults_)) as proxy,
    ):
        client, drv = single_terminal(
            broker.address(tid),
            ReferenceFirmware(cfg),
            cfg,
            Journal(str(tmp_path / "t.db")),
            via_proxy=True,
        )
        async with client:
            drv.boot()
            intent = await drv.purchase(amount, PAN_APPROVE)
            await drv.idle.wait()
        return intent, drv, dict(proxy.stats)


async def test_proxy_drops_first_response_retry_charged_once(
    broker: PrivateBroker, host_db: str, tmp_path: Path
) -> None:
    """The first 0210 is lost at the wire: the terminal resends with the same key and the
    host replays its stored answer: approved, one charge, one receipt."""
    drop = Drop(direction="to_terminal", mti=MTI_PURCHASE_RESP, nth=1)
    intent, drv, stats = await _purchase_through_proxy(
        broker, host_db, tmp_path, [drop], "T0005", 1250
    )
    assert stats["drop"] == 1
    assert intent.outcome == "approved"
    assert drv.wire.retries >= 1
    assert len(drv.receipts) == 1
    ledger, charged, txns = books(host_db)
    assert (ledger, charged, len(txns)) == (0, -1250, 1)


async def test_tampered_response_never_reaches_the_printer(
    broker: PrivateBroker, host_db: str, tmp_path: Path
) -> None:
    """A 0210 whose MAC was damaged in flight is refused; only the genuine answer prints."""
    corrupt = Corrupt(direction="to_terminal", mti=MTI_PURCHASE_RESP, nth=1, field="rc")
    # The host declines 500 (RC 05); the corrupted copy says "00" (approved).
    intent, drv, stats = await _purchase_through_proxy(
        broker, host_db, tmp_path, [corrupt], "T0001", 500
    )
    assert stats["corrupt"] == 1
    # The terminal must show the genuine decline.
    assert intent.outcome == "declined"
    assert all(r.status != "approved" for r in drv.receipts)
    assert books(host_db)[:2] == (0, 0)


async def test_broker_acl_confines_a_terminal_to_its_own_topics(broker: PrivateBroker) -> None:
    """Terminal T0001 cannot read T0002's responses (per-terminal ACL in the generated config)."""
    a = broker.address("T0001")
    async with asyncio.timeout(SAFETY_S):
        async with aiomqtt.Client(a.host, a.port, username=a.username, password=a.password) as c:
            await c.subscribe(wire.topic("T0002", "resp"), qos=1)
            await c.subscribe(wire.topic("T0001", "resp"), qos=1)
            b = broker.address("fleet")
            async with aiomqtt.Client(
                b.host, b.port, username=b.username, password=b.password
            ) as other:
                await other.publish(wire.topic("T0002", "resp"), b"secret", qos=1)
                await other.publish(wire.topic("T0001", "resp"), b"mine", qos=1)
            async for m in c.messages:
                # The broker orders one publisher's messages: had T0002's been allowed
                # through, it would have arrived first.
                assert m.topic.value == wire.topic("T0001", "resp")
                assert m.payload == b"mine"
                break


async def test_small_fleet_keeps_every_invariant(broker: PrivateBroker, host_db: str) -> None:
    """3 terminals, 20 purchases: all complete and the verdicts hold."""
    opts = FleetOptions(terminals=3, rate_per_s=40, duration_s=0.5)
    async with asyncio.timeout(SAFETY_S * 2), HostService(broker.address("acquirer"), host_db):
        report = await run_fleet(
            broker.address("fleet"), host_db, opts, mac_keys=load_keys(host_db)
        )
    assert report.completed == 20
    assert report.invariants_ok, report.invariants
    assert report.outcomes == {"approved": 20}
    assert set(report.to_json()) >= {
        "throughput_per_s",
        "latency_ms",
        "retries",
        "reversals",
        "invariants_ok",
    }


async def test_shell_script_terminal_gets_approval_and_safe_retry(
    broker: PrivateBroker, host_db: str
) -> None:
    """docs/mqtt-terminal.sh (mosquitto_rr + openssl) is approved; its retry gets the
    same RRN and nothing more is charged."""
    import shutil

    missing = [t for t in ("mosquitto_rr", "openssl") if not shutil.which(t)]
    if missing:
        pytest.skip(
            f"{', '.join(missing)} not installed: scripts/setup-mqtt installs mosquitto-clients"
        )
    script = Path(__file__).parents[2] / "docs" / "mqtt-terminal.sh"
    a = broker.address("T0002")
    async with asyncio.timeout(SAFETY_S), HostService(broker.address("acquirer"), host_db):
        proc = await asyncio.create_subprocess_exec(
            "bash",
            str(script),
            a.host,
            str(a.port),
            a.username or "",
            "T0002",
            stdout=asyncio.subprocess.PIPE,
            env={
                **os.environ,
                "POSH_PASSWORD": a.password or "",
                "POSH_MAC_KEY": fixed_test_mac_key("T0002").hex(),
            },
        )
        out, _ = await proc.communicate()
    assert proc.returncode == 0
    first, retry = out.decode().splitlines()
    assert first.startswith("first rc=00 rrn=0000")
    assert retry == first.replace("first", "retry")
    ledger, charged, txns = books(host_db)
    assert (ledger, charged, len(txns)) == (0, -1250, 1)


async def test_shell_script_terminal_says_why_when_refused(
    broker: PrivateBroker, host_db: str
) -> None:
    """With a wrong MAC key the script used to exit 1 with no output; now it says that
    the request was refused or not answered, on stderr."""
    import shutil

    missing = [t for t in ("mosquitto_rr", "openssl") if not shutil.which(t)]
    if missing:
        pytest.skip(
            f"{', '.join(missing)} not installed: scripts/setup-mqtt installs mosquitto-clients"
        )
    script = Path(__file__).parents[2] / "docs" / "mqtt-terminal.sh"
    a = broker.address("T0002")
    async with asyncio.timeout(SAFETY_S), HostService(broker.address("acquirer"), host_db):
        proc = await asyncio.create_subprocess_exec(
            "bash",
            str(script),
            a.host,
            str(a.port),
            a.username or "",
            "T0002",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            # A well-formed key, not this terminal's.
            env={**os.environ, "POSH_PASSWORD": a.password or "", "POSH_MAC_KEY": "00" * 32},
        )
        _, err = await proc.communicate()
    assert proc.returncode == 1
    assert "refused" in err.decode() or "no answer" in err.decode()
    _, charged, txns = books(host_db)
    assert (charged, len(txns)) == (0, 0)


async def test_shell_script_terminal_puts_no_secret_on_a_command_line(
    broker: PrivateBroker, host_db: str, tmp_path: Path
) -> None:
    """The script used to take the password and MAC key as arguments and pass them on
    (`mosquitto_rr -P`, `openssl -macopt hexkey:`), readable by anyone in
    /proc/PID/cmdline. Every program it starts is recorded here by a wrapper: neither
    secret is in any argv, and the purchase is still approved."""
    import shutil

    real = {t: shutil.which(t) for t in ("mosquitto_rr", "openssl")}
    if not all(real.values()):
        pytest.skip("mosquitto_rr or openssl not installed: scripts/setup-mqtt installs them")
    bindir, argv_log = tmp_path / "bin", tmp_path / "argv.log"
    bindir.mkdir()
    for name, path in real.items():
        shim = bindir / name
        shim.write_text(f'#!/bin/sh\nprintf "%s\\n" "$0 $*" >>{argv_log}\nexec {path} "$@"\n')
        shim.chmod(0o755)
    script = Path(__file__).parents[2] / "docs" / "mqtt-terminal.sh"
    a = broker.address("T0002")
    key_hex = fixed_test_mac_key("T0002").hex()
    env = {
        **os.environ,
        "PATH": f"{bindir}:{os.environ['PATH']}",
        "POSH_PASSWORD": a.password or "",
        "POSH_MAC_KEY": key_hex,
    }
    async with asyncio.timeout(SAFETY_S), HostService(broker.address("acquirer"), host_db):
        proc = await asyncio.create_subprocess_exec(
            "bash", str(script), a.host, str(a.port), a.username or "", "T0002",
            stdout=asyncio.subprocess.PIPE, env=env,
        )  # fmt: skip
        out, _ = await proc.communicate()
    assert proc.returncode == 0, out
    argvs = argv_log.read_text()
    assert "mosquitto_rr" in argvs and "openssl" in argvs  # the wrappers did record
    assert a.password and a.password not in argvs
    assert key_hex not in argvs and key_hex.upper() not in argvs


async def test_a_terminal_login_cannot_take_over_the_hosts_client_id(
    broker: PrivateBroker, host_db: str, tmp_path: Path
) -> None:
    """A terminal connecting with the host's client id (and the fleet's) used to knock
    them off the broker; with `use_username_as_clientid` its client id is its own
    user name, so the host keeps serving and the other terminal is approved."""
    a = broker.address("T0002")
    async with (
        asyncio.timeout(SAFETY_S),
        HostService(broker.address("acquirer"), host_db) as host,
    ):
        for stolen in (HOST_CLIENT_ID, "acquirer", "posh-T0001"):
            async with aiomqtt.Client(
                a.host, a.port, username=a.username, password=a.password, identifier=stolen
            ):
                pass
        cfg = terminal_config("T0001", fixed_test_mac_key("T0001"))
        journal = Journal(str(tmp_path / "t.db"))
        client, drv = single_terminal(broker.address("T0001"), ReferenceFirmware(cfg), cfg, journal)
        async with client:
            drv.boot()
            intent = await drv.purchase(1250, PAN_APPROVE)
            await drv.idle.wait()
        journal.close()
        # The host's one connection was never broken (the old config: it was, and the
        # host's persistent session with its queued requests was discarded).
        assert host.session.connects == 1
    assert intent.outcome == "approved"
