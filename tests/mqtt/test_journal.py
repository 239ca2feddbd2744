"""Group-committed terminal journals and the driver's journal-before-effect rule (no broker)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import aiomqtt
import pytest

from acquirer.catalogue import PAN_APPROVE
from acquirer.host import HostAction
from acquirer.protocol import MTI_PURCHASE, Message, sign
from acquirer.testing import fixed_test_mac_key
from harness.mqtt import realclock, wire
from harness.mqtt.broker import PrivateBroker
from harness.mqtt.host_service import HostCore, HostService, Reply, WalSync
from harness.mqtt.hostdb import open_acquirer, provision
from harness.mqtt.journal import Journal, JournalFile
from harness.mqtt.terminal_driver import TerminalDriver, terminal_config
from terminal.reference import ReferenceFirmware

pytestmark = pytest.mark.asyncio


async def _settled(jf: JournalFile) -> None:
    """Wait until every write submitted so far is confirmed (writes are confirmed in order)."""
    marker: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    jf.submit(("_marker", 0), marker.set_result)
    async with asyncio.timeout(10):
        await marker


async def test_writes_of_many_terminals_share_commits_and_stay_apart(tmp_path: Path) -> None:
    jf = JournalFile(str(tmp_path / "j.db"))
    confirmed: list[tuple[str, int]] = []
    try:

        def confirm(tid: str, n: int) -> Callable[[bool], None]:
            def done(ok: bool) -> None:
                if ok:
                    confirmed.append((tid, n))

            return done

        for n in range(20):
            for tid in ("T0001", "T0002"):
                jf.journal(tid).append({"n": n}, confirm(tid, n))
        await _settled(jf)
        assert sorted(confirmed) == sorted((t, n) for n in range(20) for t in ("T0001", "T0002"))
        # Every write of one loop iteration went into a single commit.
        assert jf.commits == 1 and jf.writes == 41  # with _settled's marker
        assert [r["n"] for r in jf.records("T0001")] == list(range(20))
        assert [r["n"] for r in jf.records("T0002")] == list(range(20))
        jf.journal("T0001").trim(15, lambda ok: None)
        await _settled(jf)
        assert [r["n"] for r in jf.records("T0001")] == [15, 16, 17, 18, 19]
        assert len(jf.records("T0002")) == 20
    finally:
        jf.close()


async def test_a_callback_runs_only_after_its_write_is_committed(tmp_path: Path) -> None:
    path = str(tmp_path / "j.db")
    jf = JournalFile(path)
    seen_on_disk: list[int] = []

    def done(ok: bool) -> None:
        assert ok
        # Another connection sees the committed row when the callback runs.
        other = sqlite3.connect(path)
        try:
            seen_on_disk.append(other.execute("SELECT COUNT(*) FROM journal").fetchone()[0])
        finally:
            other.close()

    try:
        jf.journal("T0001").append({"type": "sale"}, done)
        assert seen_on_disk == []  # nothing confirmed synchronously
        await _settled(jf)
        assert seen_on_disk == [1]
    finally:
        jf.close()


async def test_a_failed_commit_confirms_nothing_then_or_later(tmp_path: Path) -> None:
    jf = JournalFile(str(tmp_path / "j.db"))
    results: list[bool] = []
    try:
        jf._db.execute("DROP TABLE journal")  # the next commit fails, as on a broken disk
        failed: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        jf.journal("T0001").append({"type": "sale"}, failed.set_result)
        async with asyncio.timeout(10):
            results.append(await failed)
        assert results == [False]
        assert jf.failed is not None
        jf.journal("T0001").append({"type": "sale"}, results.append)
        assert results == [False, False]
    finally:
        jf.close()


async def test_a_file_from_before_shared_journals_is_read_as_one_terminal(tmp_path: Path) -> None:
    path = str(tmp_path / "old.db")
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE journal (seq INTEGER PRIMARY KEY, record TEXT NOT NULL)")
    conn.execute("INSERT INTO journal (record) VALUES (?)", (json.dumps({"type": "sale"}),))
    conn.commit()
    conn.close()
    journal = Journal(path)
    try:
        assert journal.records() == ({"type": "sale"},)
        journal.append({"type": "approved"})  # no callback: committed before returning
        assert [r["type"] for r in journal.records()] == ["sale", "approved"]
    finally:
        journal.close()


async def test_the_driver_holds_every_effect_after_a_journal_write_until_it_is_durable(
    tmp_path: Path,
) -> None:
    """The sale's request leaves only once the journal holds the sale; a reboot on the same
    file then knows it (the rule a power cut between the two relies on)."""
    host_db = str(tmp_path / "host.db")
    provision(host_db, {t: fixed_test_mac_key(t) for t in ["T0001"]})
    core = HostCore(open_acquirer(host_db))
    jf = JournalFile(str(tmp_path / "j.db"))
    cfg = terminal_config("T0001", fixed_test_mac_key("T0001"))
    sent_after: list[int] = []  # journal rows on disk when each request was published
    loop = asyncio.get_running_loop()
    drivers: list[TerminalDriver] = []

    def publish(payload: bytes) -> bool:
        sent_after.append(len(jf.records("T0001")))
        out = core.handle("T0001", payload)
        if isinstance(out, Reply):
            loop.call_soon(drivers[0].receive, out.payload)
        return True

    driver = TerminalDriver(ReferenceFirmware(cfg), cfg, jf.journal("T0001"), publish)
    drivers.append(driver)
    try:
        driver.boot()
        intent = await asyncio.wait_for(driver.purchase(1250, PAN_APPROVE), 10)
        async with asyncio.timeout(10):
            await driver.idle.wait()
        assert intent.outcome == "approved"
        assert sent_after and sent_after[0] >= 1  # the sale record was on disk first
        kinds = [r["type"] for r in jf.records("T0001")]
        assert kinds[0] == "sale" and "approved" in kinds
    finally:
        jf.close()
        core.acquirer.close()


async def test_the_host_publishes_a_reply_only_after_a_wal_fsync_that_began_after_it(
    broker: PrivateBroker, host_db: str
) -> None:
    """Group commit at the host: every answer sent is on disk (as with one fsync each)."""
    events: list[tuple[str, str]] = []
    async with asyncio.timeout(20):
        svc = HostService(broker.address("acquirer"), host_db)
        assert svc.core.wal is not None
        real_publish = svc.session.publish

        class RecordingWal(WalSync):
            __slots__ = ()

            def sync(self) -> None:
                events.append(("sync-start", ""))
                super().sync()

        def publish(topic: str, payload: bytes, retain: bool = False) -> bool:
            events.append(("publish", topic))
            return real_publish(topic, payload, retain)

        svc.core.wal = RecordingWal(svc.core.wal.path)
        svc.session.publish = publish  # type: ignore[method-assign]
        handled = 0

        def on_action(req: Message, action: HostAction) -> None:
            nonlocal handled
            handled += 1
            events.append(("handled", req.idem_key))

        svc.core.on_action = on_action
        got = asyncio.Event()
        a = broker.address("T0001")
        async with (
            svc,
            aiomqtt.Client(a.host, a.port, username=a.username, password=a.password) as term,
        ):
            await term.subscribe(wire.topic("T0001", "resp"), qos=1)
            for n in range(1, 6):
                msg = Message(
                    MTI_PURCHASE,
                    "T0001",
                    "M000000000001",
                    n,
                    pan=PAN_APPROVE,
                    amount=1250,
                    idem_key=f"T0001-gc-{n}",
                    sent_ms=realclock.wall_ms(),
                )
                frame = wire.encode(sign(msg, fixed_test_mac_key("T0001")), "iso8583")
                await term.publish(wire.topic("T0001", "req"), frame, qos=1)
            replies = 0
            async for _ in term.messages:
                replies += 1
                if replies == 5:
                    got.set()
                    break
    assert got.is_set() and handled == 5
    # Replies leave in order: the k-th publish answers the k-th request handled, and a
    # WAL fsync must have started between the two.
    handled_at = [i for i, (k, _) in enumerate(events) if k == "handled"]
    published_at = [i for i, (k, _) in enumerate(events) if k == "publish"]
    assert len(handled_at) == len(published_at) == 5
    for h, p in zip(handled_at, published_at, strict=True):
        assert ("sync-start", "") in events[h + 1 : p], events
