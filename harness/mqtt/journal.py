"""Terminal journals in SQLite, written with group commit.

The firmware's rule is journal-before-effect: once it emits `JournalAppend`, no
later effect (a send, a print, a display) may happen until the record is on
disk. Committing every record with its own fsync costs about 0.3 ms of wall
time each on this machine, three times per purchase, and stalls every other
terminal of the process meanwhile.

`JournalFile` is one SQLite file (WAL) that many terminals share, one
`Journal` each. A write is *submitted* with a callback. At the end of the
event loop's current iteration every write submitted so far is committed in
one transaction with synchronous=NORMAL (written to the WAL: it survives kill
-9), the WAL is fsynced once (it survives power loss), and then the callbacks
run: the classic group commit. Each terminal driver holds back its later
effects until its callback runs, so the rule holds exactly as with one fsync
per record, and one fsync serves every terminal that wrote meanwhile.

The fsync runs on the event loop. A helper thread for it was measured and
lost: the thread must take the GIL back from a busy loop to report, and those
hand-overs doubled p50 latency (21 -> 43 ms at 1,000 purchases/s) and cost
more CPU than the 0.3 ms the loop waits per group (bench/RESULTS.md).

A file of one terminal (`posharness terminal run --journal F`) is the same
thing with one `Journal`. Rows carry the terminal id; `records()` returns one
terminal's records, oldest first.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
from collections.abc import Callable, Mapping
from typing import Any

log = logging.getLogger("posharness.mqtt.journal")

SQL_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS journal ("
    "seq INTEGER PRIMARY KEY, record TEXT NOT NULL, tid TEXT NOT NULL DEFAULT '')"
)
SQL_INDEX = "CREATE INDEX IF NOT EXISTS journal_tid ON journal (tid, seq)"
SQL_APPEND = "INSERT INTO journal (tid, record) VALUES (?, ?)"
SQL_TRIM = (
    "DELETE FROM journal WHERE seq IN (SELECT seq FROM journal WHERE tid = ? ORDER BY seq LIMIT ?)"
)
# Most writes one commit carries (a bound on one transaction's size, not on throughput).
GROUP_MAX = 4096

# A write: (tid, record JSON) appends, (tid, count) trims.
Write = tuple[str, str | int]
Done = Callable[[bool], None]


class JournalFile:
    """One journal file shared by the terminals of a process, written with group commit."""

    def __init__(self, path: str, durable: bool = True) -> None:
        self.path = path
        self.durable = durable and path not in ("", ":memory:")
        self._db = sqlite3.connect(path, isolation_level=None)
        if self.durable:
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL: a COMMIT writes the WAL without fsync; `_flush` fsyncs it once per group.
            self._db.execute("PRAGMA synchronous=NORMAL")
        else:
            self._db.execute("PRAGMA journal_mode=MEMORY")
            self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute(SQL_SCHEMA)
        cols = {row[1] for row in self._db.execute("PRAGMA table_info(journal)")}
        if "tid" not in cols:  # a file from before journals were shared
            self._db.execute("ALTER TABLE journal ADD COLUMN tid TEXT NOT NULL DEFAULT ''")
        self._db.execute(SQL_INDEX)
        self._wal = path + "-wal"
        self._queued: list[Write] = []
        self._waiters: list[Done] = []
        self._writing = False
        self._closed = False
        self.commits = 0
        self.writes = 0
        self.failed: BaseException | None = None

    def journal(self, tid: str) -> Journal:
        """The journal of terminal `tid` in this file."""
        return Journal(self, tid)

    def records(self, tid: str) -> tuple[dict[str, Any], ...]:
        """Every committed record of terminal `tid`, oldest first."""
        rows = self._db.execute("SELECT record FROM journal WHERE tid = ? ORDER BY seq", (tid,))
        return tuple(json.loads(r[0]) for r in rows)

    def submit(self, write: Write, done: Done) -> None:
        """Queue one write; `done(True)` runs on the loop once it is durable.

        `done(False)` if the file could not be written (disk full, I/O error): the
        terminal must treat that as a crash. Call from the event loop's thread.
        """
        if self._closed or self.failed is not None:
            done(False)
            return
        self._queued.append(write)
        self._waiters.append(done)
        if not self._writing:
            self._writing = True
            # Let the rest of this loop iteration add its writes to the same commit.
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """Commit and fsync every queued write, then confirm them (in submission order)."""
        writes, waiters = self._queued[:GROUP_MAX], self._waiters[:GROUP_MAX]
        del self._queued[:GROUP_MAX], self._waiters[:GROUP_MAX]
        if not writes:
            self._writing = False
            return
        if self._closed:  # shutting down: what was not yet committed is lost, as in a crash
            self._fail(waiters, RuntimeError("journal closed"))
            return
        try:
            self.commit(writes)
            if self.durable:
                fsync_path(self._wal)
        except (sqlite3.Error, OSError) as exc:
            self._fail(waiters, exc)
            return
        self.commits += 1
        self.writes += len(waiters)
        for done in waiters:
            done(True)
        if self._queued:  # more than GROUP_MAX, or written by the callbacks just run
            asyncio.get_running_loop().call_soon(self._flush)
        else:
            self._writing = False

    def commit(self, writes: list[Write]) -> None:
        """Every write in one transaction (durable once the WAL is fsynced)."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            for tid, what in writes:
                if isinstance(what, str):
                    db.execute(SQL_APPEND, (tid, what))
                else:
                    db.execute(SQL_TRIM, (tid, what))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _fail(self, waiters: list[Done], exc: BaseException) -> None:
        """A write or fsync failed: the file's state is unknown, so nothing is confirmed again."""
        if not self._closed:
            self.failed = exc
            log.error("journal %s: write failed: %s", self.path, exc)
        waiters = waiters + self._waiters
        self._queued.clear()
        self._waiters.clear()
        self._writing = False
        for done in waiters:
            done(False)

    def close(self) -> None:
        """Close the file (writes still queued are lost, as in a crash)."""
        self._closed = True
        self._db.close()


def fsync_path(path: str) -> None:
    """fsync the file at `path` (its data and size reach the disk)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Journal:
    """One terminal's journal: `Journal(path)` opens a file of its own.

    `append`/`trim` without a callback commit at once, on the caller's thread
    (tests and tools); the terminal driver passes a callback and gets group commit.
    """

    def __init__(self, where: str | JournalFile, tid: str = "", *, durable: bool = True) -> None:
        self._owns = not isinstance(where, JournalFile)
        self.file = JournalFile(where, durable) if isinstance(where, str) else where
        self.tid = tid
        self.path = self.file.path

    def records(self) -> tuple[dict[str, Any], ...]:
        """Every committed record, oldest first."""
        return self.file.records(self.tid)

    def append(self, record: Mapping[str, Any], done: Done | None = None) -> None:
        """Append `record`; durable before `done(True)` runs (or before returning)."""
        self._write((self.tid, json.dumps(dict(record), sort_keys=True)), done)

    def trim(self, count: int, done: Done | None = None) -> None:
        """Delete this terminal's oldest `count` records."""
        self._write((self.tid, int(count)), done)

    def _write(self, write: Write, done: Done | None) -> None:
        if done is not None:
            self.file.submit(write, done)
            return
        self.file.commit([write])
        if self.file.durable:
            fsync_path(self.file._wal)

    def close(self) -> None:
        """Close the file if this journal opened it."""
        if self._owns:
            self.file.close()
