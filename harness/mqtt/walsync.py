"""Durable commits for the MQTT host, with fewer fsyncs: lazy claims and group commit.

See `_LazyClaim` and `WalSync` (moved here unchanged from host_service.py, which uses them).
"""

from __future__ import annotations

import sqlite3

from acquirer.host import Acquirer, HostAction, Ticket
from acquirer.protocol import Message

from .journal import fsync_path


class _LazyClaim:
    """Begin a purchase without its own fsync; the charge's commit makes it durable.

    `Acquirer.begin` commits the idempotency claim (`progress`) and `finish` commits
    the charge with the claim turned `done`, each with a full fsync (WAL,
    synchronous=FULL): two fsyncs per purchase, most of the host's time (py-spy).
    The claim alone needs no fsync: it exists so that a duplicate arriving while
    the sale is processed is answered "in progress", and a host that dies before
    the charge has its `progress` claims cleared at start-up anyway
    (`clear_in_progress`). So the claim is committed with synchronous=NORMAL (the
    WAL is written, not fsynced: it survives kill -9, and at worst a power loss
    forgets a claim that charged nothing), and the charge's FULL commit then fsyncs
    the WAL, claim included. When `begin` instead answers at once (a replay, a
    refusal, a sale reversed before it arrived), the WAL is fsynced before that
    answer leaves, so every answer sent is on disk exactly as before.
    """

    __slots__ = ("_acquirer", "_db", "_wal")

    def __init__(self, acquirer: Acquirer, db: sqlite3.Connection, wal: str) -> None:
        self._acquirer = acquirer
        self._db = db
        self._wal = wal

    @staticmethod
    def of(acquirer: Acquirer) -> _LazyClaim | None:
        """The fast path for an acquirer on a WAL file with synchronous=FULL, else None."""
        found = _wal_of(acquirer)
        if found is None:
            return None
        db, wal = found
        if db.execute("PRAGMA synchronous").fetchone()[0] != 2:  # 2 = FULL
            return None
        return _LazyClaim(acquirer, db, wal)

    def begin(self, msg: Message, now_ms: int) -> tuple[Ticket | Message, HostAction | None]:
        db = self._db
        db.execute("PRAGMA synchronous=NORMAL")
        try:
            result, action = self._acquirer.begin(msg, now_ms)
        finally:
            db.execute("PRAGMA synchronous=FULL")
        if not isinstance(result, Ticket):
            fsync_path(self._wal)
        return result, action


def _wal_of(acquirer: Acquirer) -> tuple[sqlite3.Connection, str] | None:
    """The acquirer's connection and WAL file path when it keeps a WAL-mode file, else None."""
    db = getattr(acquirer, "_db", None)
    if not isinstance(db, sqlite3.Connection):
        return None
    mode = db.execute("PRAGMA journal_mode").fetchone()[0]
    path = db.execute("PRAGMA database_list").fetchone()[2]
    if mode != "wal" or not path:
        return None
    return db, path + "-wal"


class WalSync:
    """Group commit for an acquirer on a WAL file: commit without fsync, fsync once for many.

    The acquirer's connection is switched to synchronous=NORMAL: a COMMIT writes
    the transaction to the WAL file (so it survives kill -9: the data is in the
    OS) but does not fsync it. `sync()` fsyncs the WAL file, making durable every
    transaction committed before the call. A reply may leave only after a
    `sync()` that began after its transaction committed; then every answer sent
    is on disk, exactly as with one fsync per commit, and one fsync covers every
    request handled meanwhile.
    """

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = path

    @staticmethod
    def of(acquirer: Acquirer) -> WalSync | None:
        """Group commit for an acquirer on a WAL file, or None (nothing to sync)."""
        found = _wal_of(acquirer)
        if found is None:
            return None
        db, wal = found
        db.execute("PRAGMA synchronous=NORMAL")
        return WalSync(wal)

    def sync(self) -> None:
        """fsync the WAL: every transaction committed before this call is durable after it."""
        fsync_path(self.path)
