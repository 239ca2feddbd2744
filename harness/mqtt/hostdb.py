"""The MQTT/TCP host's database: terminal keys, fleet cards, opening the acquirer.

`--db` is a SQLite file (the zero-setup default) or a postgresql:// URL, which
several host processes may share (docs/scale-out.md). Moved here from
host_service.py, which re-exports every name.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Mapping
from typing import Any

from acquirer import store
from acquirer.host import Acquirer, CardAccount, HostConfig
from acquirer.shared import open_host

from . import realclock

log = logging.getLogger("posharness.mqtt.host")

# On a shared database a `progress` claim older than this is taken for one of a host
# process that died mid-request, and cleared (see `clear_in_progress`). A live
# instance slower than this loses nothing either: its outcome may only replace its own
# claim (acquirer.pgstore.ClaimLost), so it is rolled back uncharged if the claim was
# cleared and taken. The lease only decides how long a dead instance's requests are
# answered "in progress".
CLAIM_LEASE_MS = 10_000


def open_db(db_path: str) -> Any:
    """A connection to the host's database: sqlite3 for a file, else PostgreSQL."""
    if store.is_url(db_path):
        from acquirer import pgstore

        return pgstore.connect(db_path)
    return sqlite3.connect(db_path, isolation_level=None)


SQL_KEYS_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS terminal_keys ("
    "terminal_id TEXT PRIMARY KEY, mac_key BLOB NOT NULL) WITHOUT ROWID"
)


def terminal_id(n: int) -> str:
    """The n-th terminal's id: T0001, T0002, ..."""
    return f"T{n:04d}"


def provision(db_path: str, keys: Mapping[str, bytes]) -> None:
    """Add terminals with their MAC keys to the host's terminal table.

    The keys given win: a terminal already there gets its key replaced (the key
    file is the source of truth, so a rotated key takes effect at the next start).
    A new database file is created 0600 (it holds the keys; SQLite gives its WAL
    and shared-memory files the same mode)."""
    shared = store.is_url(db_path)
    if not shared and not os.path.exists(db_path):
        os.close(os.open(db_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    conn = open_db(db_path)
    try:
        if not shared:
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(SQL_KEYS_SCHEMA)
        rows = sorted(keys.items())
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO terminal_keys VALUES (?, ?) "
            "ON CONFLICT (terminal_id) DO UPDATE SET mac_key = excluded.mac_key",
            rows,
        )
        conn.execute("COMMIT")
    finally:
        conn.close()


def load_keys(db_path: str) -> dict[str, bytes]:
    """Every terminal's MAC key from the host's terminal table."""
    conn = open_db(db_path)
    try:
        conn.execute(SQL_KEYS_SCHEMA)
        return {str(t): bytes(k) for t, k in conn.execute("SELECT * FROM terminal_keys")}
    finally:
        conn.close()


# Fleet cards: one per terminal slot, each with a balance no load run exhausts,
# so fleet outcomes are decided by faults, not by cards running dry.
FLEET_CARDS_MAX = 1000
FLEET_CARD_BALANCE = 10**15


def fleet_pan(n: int) -> str:
    """The n-th fleet card's PAN (16 digits)."""
    return f"5{n % FLEET_CARDS_MAX:015d}"


FLEET_CARDS = tuple(CardAccount(fleet_pan(n), FLEET_CARD_BALANCE) for n in range(FLEET_CARDS_MAX))

# The networks' public test card numbers that outside tools send by default
# (iso8583sim's sample messages among them): approved, with a fleet card's balance,
# on the real host only (the simulation has its own catalogue). docs/test-cards.md.
PUBLIC_TEST_PANS = (
    "4111111111111111",  # Visa
    "5555555555554444",  # Mastercard
    "378282246310005",  # American Express
    "6011111111111117",  # Discover
    "3530111333300000",  # JCB
    "6200000000000005",  # UnionPay
)
PUBLIC_TEST_CARDS = tuple(CardAccount(pan, FLEET_CARD_BALANCE) for pan in PUBLIC_TEST_PANS)


def fleet_code(n: int) -> str:
    """The n-th fleet wallet's payment code (18 digits; pays at once)."""
    return f"2899{n % FLEET_CARDS_MAX:014d}"  # apart from the catalogue's 2800...


FLEET_WALLETS = tuple(
    CardAccount(fleet_code(n), FLEET_CARD_BALANCE) for n in range(FLEET_CARDS_MAX)
)


def open_acquirer(db_path: str, *, processing_ms: int = 0) -> Acquirer:
    """The acquirer on a durable SQLite file (WAL, synchronous FULL: see acquirer.store),
    or on a PostgreSQL URL (`acquirer.shared.SharedAcquirer`).

    Cards: the test-card and test-wallet catalogues plus the fleet cards and wallets.
    Keys: the terminal table.
    """
    if db_path in ("", ":memory:"):
        raise ValueError("the MQTT host needs a database file, not an in-memory store")
    keys = load_keys(db_path)
    clear_in_progress(db_path, realclock.wall_ms() if store.is_url(db_path) else None)
    config = HostConfig(mac_keys=keys, db_path=db_path, processing_ms=processing_ms)
    return open_host(config, FLEET_CARDS + FLEET_WALLETS + PUBLIC_TEST_CARDS)


def clear_in_progress(db_path: str, now_ms: int | None = None) -> int:
    """Forget unfinished requests of host processes that died; returns how many.

    A request's idempotency record is written as `progress` when the host begins
    it and becomes `done` in the same transaction that charges the card. A
    `progress` record found at start-up therefore belongs to a host that was
    killed between the two (kill -9, power loss) and charged nothing. Left in
    place it would answer every resend "09 in progress" and every reversal of it
    "09" forever (bench/durability.py found exactly that); cleared, the resend is
    processed afresh, as `Acquirer.abandon` does for a simulated host crash.

    On a SQLite file one host process owns the file, so every such record is
    cleared. On a shared PostgreSQL database other processes' live claims are
    there too: only claims older than CLAIM_LEASE_MS before `now_ms` are cleared
    (at start; the MQTT service then every WALLET_TICK_MS).
    """
    shared = store.is_url(db_path)
    conn = open_db(db_path)
    try:
        if shared:
            if now_ms is None:
                raise ValueError("clearing claims on a shared database needs now_ms")
            cur = conn.execute(store.SQL_DEDUP_CLEAR_STALE, (now_ms - CLAIM_LEASE_MS,))
        else:
            found = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'dedup'"
            ).fetchone()
            if found is None:
                return 0
            cur = conn.execute(f"DELETE FROM dedup WHERE state = '{store.DEDUP_PROGRESS}'")
        if cur.rowcount:
            log.warning(
                "acquirer: cleared %d request(s) a killed host left unfinished", cur.rowcount
            )
        return int(cur.rowcount)
    finally:
        conn.close()


def serve_db_problem(
    db: str, share: str | None, listen: str | None, keys: str | None, provision_n: int
) -> str:
    """What is wrong with `acquirer serve`'s --db, --share and --keys ("" if nothing)."""
    if share is not None:
        if not store.is_url(db):
            return "--share needs --db postgresql://...: a SQLite file has one host process"
        if not share or any(c in share for c in "/+#"):
            return f"--share {share!r}: a group name without '/', '+' or '#'"
        if listen is not None:
            return "--share is for MQTT; TCP instances share a database without it"
    if store.is_url(db) and keys is None and provision_n != 0:
        return "--db postgresql://... needs --keys FILE (the key file all instances share)"
    return ""
