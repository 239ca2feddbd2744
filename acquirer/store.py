"""SQLite storage for the mock acquirer: schema, pragmas and every SQL statement.

The same statements run on PostgreSQL, rewritten by `acquirer.pgstore`.

The host keeps its state the way a production acquirer does: uniqueness is
enforced by the database (PRIMARY KEY / UNIQUE), and each request runs inside one
`BEGIN IMMEDIATE ... COMMIT` transaction. All SQL text lives here as constants so
sqlite3's statement cache prepares each statement once per connection.

Tables:
- `accounts`: cards and the merchant account; `balance` is kept equal to
  `initial` plus the account's ledger entries by a trigger.
- `ledger`: double-entry rows; the rows of one posting sum to zero.
- `txns`: every stored purchase, refund, pre-authorisation or completion outcome
  (approved, declined, reversed; a pre-authorisation also completed); `amount` is
  the current total, `tip` what a tip adjust added to it.
- `dedup`: the idempotency store. One row per (terminal, key), where the key is
  `k:<idempotency key>` or, for key-less requests, `s:<day>:<stan>` (the classic
  duplicate rule). States: `progress`, `done`, `tomb` (reversed before seen).
- `completions`: which pre-authorisation a completion captured (one per hold).
- `settlements`: one row per (terminal, batch number).
"""

from __future__ import annotations

import functools
import sqlite3
import threading
from dataclasses import dataclass

from acquirer.protocol import BatchItem

SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    account TEXT PRIMARY KEY,
    initial INTEGER NOT NULL,
    balance INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ledger (
    id INTEGER PRIMARY KEY,
    txn_id INTEGER NOT NULL,
    account TEXT NOT NULL,
    amount INTEGER NOT NULL,
    at_ms INTEGER NOT NULL
);
CREATE TRIGGER IF NOT EXISTS ledger_balance AFTER INSERT ON ledger BEGIN
    UPDATE accounts SET balance = balance + NEW.amount WHERE account = NEW.account;
END;
CREATE TABLE IF NOT EXISTS txns (
    id INTEGER PRIMARY KEY,
    -- rrn is a function of id (the primary key), so it is unique without an index.
    rrn TEXT NOT NULL,
    terminal_id TEXT NOT NULL,
    stan INTEGER NOT NULL,
    day INTEGER NOT NULL,
    idem_key TEXT NOT NULL,
    kind TEXT NOT NULL,
    pan TEXT NOT NULL,
    amount INTEGER NOT NULL,
    rc TEXT NOT NULL,
    status TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    reversed_ms INTEGER NOT NULL DEFAULT -1,
    batch_no INTEGER NOT NULL DEFAULT 0,
    tip INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS txns_identity ON txns (terminal_id, day, stan);
-- The pre-authorisations (HostBooks.preauths), without indexing every other row.
CREATE INDEX IF NOT EXISTS txns_preauth ON txns (id) WHERE kind = 'preauth';
-- A refund names its sale by key long after the key's idempotency record expired.
CREATE INDEX IF NOT EXISTS txns_key ON txns (terminal_id, idem_key);
CREATE TABLE IF NOT EXISTS dedup (
    terminal_id TEXT NOT NULL,
    key TEXT NOT NULL,
    state TEXT NOT NULL,
    fp TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    rc TEXT NOT NULL DEFAULT '',
    rrn TEXT NOT NULL DEFAULT '',
    auth_code TEXT NOT NULL DEFAULT '',
    txn_id INTEGER,
    PRIMARY KEY (terminal_id, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dedup_age ON dedup (created_ms);
-- Wallet orders waiting for the customer (txns.status = 'paying'): when the phone
-- confirms (-1: never) and when the order closes unpaid; `due_ms` is the earlier.
CREATE TABLE IF NOT EXISTS wallet_waiting (
    txn_id INTEGER PRIMARY KEY,
    confirm_ms INTEGER NOT NULL,
    close_ms INTEGER NOT NULL,
    due_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS wallet_due ON wallet_waiting (due_ms);
-- Why the terminal reversed a sale, when its reversal said (field 39 of the 0400).
CREATE TABLE IF NOT EXISTS reversal_reasons (
    txn_id INTEGER PRIMARY KEY,
    reason TEXT NOT NULL
);
-- Which sale an approved refund refunds (acquirer/refunds.py).
CREATE TABLE IF NOT EXISTS refund_links (
    refund_txn_id INTEGER PRIMARY KEY,
    orig_txn_id INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS refund_links_orig ON refund_links (orig_txn_id);
-- Which pre-authorisation a completion captured (acquirer/holds.py): the database
-- itself forbids two completions of one hold.
CREATE TABLE IF NOT EXISTS completions (
    completion_txn_id INTEGER PRIMARY KEY,
    preauth_txn_id INTEGER NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS settlements (
    terminal_id TEXT NOT NULL,
    batch_no INTEGER NOT NULL,
    terminal_count INTEGER NOT NULL,
    terminal_amount INTEGER NOT NULL,
    host_count INTEGER NOT NULL,
    host_amount INTEGER NOT NULL,
    rc TEXT NOT NULL,
    differing TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    seq INTEGER NOT NULL UNIQUE,
    PRIMARY KEY (terminal_id, batch_no)
);
"""

DEDUP_PROGRESS = "progress"
DEDUP_DONE = "done"
DEDUP_TOMB = "tomb"

# Most expired idempotency rows one request deletes: pruning is spread over many
# requests so no single request pays for a whole day of expiries.
PRUNE_BATCH_MAX = 256

SQL_ACCOUNT_UPSERT = (
    "INSERT INTO accounts (account, initial, balance) VALUES (?, ?, ?) "
    "ON CONFLICT (account) DO NOTHING"
)
SQL_BALANCE = "SELECT balance FROM accounts WHERE account = ?"
SQL_INITIAL = "SELECT initial FROM accounts WHERE account = ?"
SQL_LEDGER_POST = (
    "INSERT INTO ledger (txn_id, account, amount, at_ms) VALUES (?, ?, ?, ?), (?, ?, ?, ?)"
)
SQL_LEDGER_SUM = "SELECT COALESCE(SUM(amount), 0) FROM ledger"
SQL_MAX_TXN = "SELECT COALESCE(MAX(id), 0) FROM txns"

SQL_DEDUP_CLAIM = (
    "INSERT INTO dedup (terminal_id, key, state, fp, created_ms) VALUES (?, ?, 'progress', ?, ?) "
    "ON CONFLICT (terminal_id, key) DO NOTHING"
)
SQL_DEDUP_GET = (
    "SELECT state, fp, created_ms, rc, rrn, auth_code, txn_id FROM dedup "
    "WHERE terminal_id = ? AND key = ?"
)
SQL_DEDUP_DELETE = "DELETE FROM dedup WHERE terminal_id = ? AND key = ?"
SQL_DEDUP_DELETE_PROGRESS = (
    "DELETE FROM dedup WHERE terminal_id = ? AND key = ? AND state = 'progress'"
)
SQL_DEDUP_DONE = (
    "INSERT INTO dedup (terminal_id, key, state, fp, created_ms, rc, rrn, auth_code, txn_id) "
    "VALUES (?, ?, 'done', ?, ?, ?, ?, ?, ?) ON CONFLICT (terminal_id, key) DO UPDATE SET "
    "state = 'done', fp = excluded.fp, rc = excluded.rc, rrn = excluded.rrn, "
    "auth_code = excluded.auth_code, txn_id = excluded.txn_id"
)
SQL_DEDUP_TOMB = (
    "INSERT INTO dedup (terminal_id, key, state, fp, created_ms) VALUES (?, ?, 'tomb', '', ?)"
)
SQL_DEDUP_PRUNE = (
    "DELETE FROM dedup WHERE (terminal_id, key) IN (SELECT terminal_id, key FROM dedup "
    f"WHERE created_ms < ? ORDER BY created_ms LIMIT {PRUNE_BATCH_MAX})"
)
SQL_DEDUP_CLEAR_STALE = "DELETE FROM dedup WHERE state = 'progress' AND created_ms < ?"
SQL_DEDUP_COUNT = "SELECT COUNT(*) FROM dedup"

SQL_TXN_INSERT = (
    "INSERT INTO txns (id, rrn, terminal_id, stan, day, idem_key, kind, pan, amount, rc, "
    "status, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
TXN_COLUMNS = (
    "id, rrn, terminal_id, stan, idem_key, kind, pan, amount, rc, status, created_ms, "
    "reversed_ms, batch_no, tip"
)
SQL_TXN_GET = f"SELECT {TXN_COLUMNS} FROM txns WHERE id = ?"
SQL_TXN_BY_STAN = (
    f"SELECT {TXN_COLUMNS} FROM txns WHERE terminal_id = ? AND day = ? AND stan = ? "
    "ORDER BY id DESC LIMIT 1"
)
# The newest sale (purchase or completion) of a terminal under a key: the sale a refund
# or tip adjust names once the key's idempotency record has expired (acquirer/refunds.py,
# acquirer/holds.py).
SQL_TXN_SALE_BY_KEY = (
    f"SELECT {TXN_COLUMNS} FROM txns WHERE terminal_id = ? AND idem_key = ? "
    "AND kind IN ('purchase', 'completion') ORDER BY id DESC LIMIT 1"
)
# The same for the pre-authorisation a completion names.
SQL_TXN_PREAUTH_BY_KEY = (
    f"SELECT {TXN_COLUMNS} FROM txns WHERE terminal_id = ? AND idem_key = ? "
    "AND kind = 'preauth' ORDER BY id DESC LIMIT 1"
)
# A transaction a completion or tip adjust is about to change (PostgreSQL locks it).
SQL_TXN_LOCK = f"SELECT {TXN_COLUMNS} FROM txns WHERE id = ? AND terminal_id = ?"
SQL_TXN_PREAUTHS = f"SELECT {TXN_COLUMNS} FROM txns WHERE kind = 'preauth' ORDER BY id"
SQL_TXN_COMPLETE = "UPDATE txns SET status = 'completed' WHERE id = ?"
SQL_TXN_SET_TOTAL = "UPDATE txns SET amount = ?, tip = ? WHERE id = ?"
SQL_COMPLETION_LINK = "INSERT INTO completions (completion_txn_id, preauth_txn_id) VALUES (?, ?)"
SQL_COMPLETION_OF = (
    f"SELECT {TXN_COLUMNS} FROM completions JOIN txns ON id = completion_txn_id "
    "WHERE preauth_txn_id = ?"
)
# Stores written before tip adjusts have no `tip` column: added when opened.
SQL_TXN_ADD_TIP = "ALTER TABLE txns ADD COLUMN tip INTEGER NOT NULL DEFAULT 0"
SQL_TXN_ALL = f"SELECT {TXN_COLUMNS} FROM txns ORDER BY id"
SQL_TXN_RANGE = (
    f"SELECT {TXN_COLUMNS} FROM txns WHERE id > ? AND created_ms < ? ORDER BY id LIMIT ?"
)
SQL_TXN_BY_ID = f"SELECT {TXN_COLUMNS} FROM txns WHERE id = ?"
SQL_TXN_REVERSE = "UPDATE txns SET status = 'reversed', reversed_ms = ? WHERE id = ?"
SQL_REVERSAL_REASON_INSERT = (
    "INSERT INTO reversal_reasons (txn_id, reason) VALUES (?, ?) ON CONFLICT (txn_id) DO NOTHING"
)
SQL_REVERSAL_REASON_GET = "SELECT reason FROM reversal_reasons WHERE txn_id = ?"
# A pre-authorisation is in no batch: it is settled by its completion, or released.
SQL_TXN_UNSETTLED = (
    "SELECT id, stan, amount, rrn, kind FROM txns WHERE terminal_id = ? AND batch_no = 0 "
    "AND status = 'approved' AND kind <> 'preauth' ORDER BY id"
)
# A wallet order still waiting for its customer is not in the batch being closed: if it
# is paid later, it belongs to the next one.
SQL_TXN_STAMP = (
    "UPDATE txns SET batch_no = ? WHERE terminal_id = ? AND batch_no = 0 AND status <> 'paying' "
    "AND kind <> 'preauth'"
)
SQL_TXN_SET_STATUS = "UPDATE txns SET status = ?, rc = ? WHERE id = ?"
SQL_TXN_CLOSE = "UPDATE txns SET status = 'closed', rc = 'CL', reversed_ms = ? WHERE id = ?"

SQL_WALLET_WAIT = (
    "INSERT INTO wallet_waiting (txn_id, confirm_ms, close_ms, due_ms) VALUES (?, ?, ?, ?)"
)
SQL_WALLET_DUE = (
    "SELECT txn_id, confirm_ms, close_ms FROM wallet_waiting WHERE due_ms <= ? "
    "ORDER BY due_ms, txn_id LIMIT 256"
)
SQL_WALLET_NEXT = "SELECT MIN(due_ms) FROM wallet_waiting"
SQL_WALLET_DONE = "DELETE FROM wallet_waiting WHERE txn_id = ?"

SQL_SETTLEMENT_GET = "SELECT rc, differing FROM settlements WHERE terminal_id = ? AND batch_no = ?"
SQL_SETTLEMENT_INSERT = (
    "INSERT INTO settlements (terminal_id, batch_no, terminal_count, terminal_amount, "
    "host_count, host_amount, rc, differing, at_ms, seq) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM settlements))"
)
SQL_SETTLEMENT_ALL = (
    "SELECT terminal_id, batch_no, terminal_count, terminal_amount, host_count, host_amount, "
    "rc, differing, at_ms FROM settlements ORDER BY seq"
)


@dataclass(frozen=True, slots=True)
class DedupRow:
    """One idempotency record as read back from `dedup`."""

    state: str
    fp: str
    created_ms: int
    rc: str
    rrn: str
    auth_code: str
    txn_id: int | None


URL_PREFIXES = ("postgresql://", "postgres://")


def is_url(db: str) -> bool:
    """Does `db` name a PostgreSQL database rather than a SQLite file?"""
    return db.startswith(URL_PREFIXES)


@functools.cache
def _empty_image() -> bytes:
    """An in-memory database with the schema and nothing else, serialised."""
    conn = sqlite3.connect(":memory:")
    conn.executescript(SCHEMA)
    image = conn.serialize()
    conn.close()
    return image


# In-memory stores kept open for the next host of the same thread, emptied: a fuzz
# campaign opens one per example, and a fresh one prepares each statement again
# (about 0.6 ms of a one-purchase run). At most this many wait per thread.
MEMORY_POOL_MAX = 2
_POOLS = threading.local()


# What a closed host holds instead of its store: any use raises ProgrammingError.
CLOSED = sqlite3.connect(":memory:")
CLOSED.close()


def _pool() -> list[sqlite3.Connection]:
    pool: list[sqlite3.Connection] | None = getattr(_POOLS, "conns", None)
    if pool is None:
        pool = _POOLS.conns = []
    return pool


def _tables(conn: sqlite3.Connection) -> tuple[str, ...]:
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
    return tuple(name for (name,) in rows)


@functools.cache
def _memory_tables() -> tuple[str, ...]:
    conn = sqlite3.connect(":memory:")
    conn.deserialize(_empty_image())
    names = _tables(conn)
    conn.close()
    return names


def release(conn: sqlite3.Connection, db_path: str) -> None:
    """Close the store of a host that is done, or, for an in-memory one, empty it
    (an open transaction rolled back first, as in a crash) and keep it for the next
    `connect(":memory:")` of this thread: the same empty schema, its statements
    already prepared. Row ids restart at 1 in an empty table (no AUTOINCREMENT), so
    a run on a reused store is the run on a fresh one."""
    pool = _pool() if db_path == ":memory:" and isinstance(conn, sqlite3.Connection) else None
    if pool is None or len(pool) >= MEMORY_POOL_MAX:
        conn.close()
        return
    try:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.execute("BEGIN IMMEDIATE")
        for name in _memory_tables():
            conn.execute(f"DELETE FROM {name}")  # names from the schema
        conn.execute("COMMIT")
    except sqlite3.Error:
        conn.close()
        return
    pool.append(conn)


def connect(db_path: str) -> sqlite3.Connection:
    """Open the store and create the schema (a postgresql:// URL: `acquirer.pgstore`,
    which takes the same statements and calls).

    ":memory:" and "" (a private temporary file) hold nothing worth keeping, so
    they trade durability for speed; a real file gets WAL and full fsync, as a
    production host would.
    """
    if is_url(db_path):
        from acquirer import pgstore

        # Duck-typed: the host calls only execute, executemany and close.
        return pgstore.connect(db_path)  # type: ignore[return-value]
    # isolation_level=None: we issue BEGIN IMMEDIATE / COMMIT ourselves.
    if db_path == ":memory:" and _pool():
        return _pool().pop()
    conn = sqlite3.connect(db_path, isolation_level=None, cached_statements=256)
    if db_path == ":memory:":
        # The simulator opens one host per run, thousands per fuzz campaign:
        # loading a prepared empty image is ten times cheaper than the DDL.
        conn.deserialize(_empty_image())
        conn.execute("PRAGMA journal_mode=MEMORY")
        conn.execute("PRAGMA synchronous=OFF")
        return conn
    if db_path == "":
        conn.execute("PRAGMA journal_mode=MEMORY")
        conn.execute("PRAGMA synchronous=OFF")
    else:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
    conn.executescript(SCHEMA)
    if "tip" not in {row[1] for row in conn.execute("PRAGMA table_info(txns)")}:
        conn.execute(SQL_TXN_ADD_TIP)
    return conn


def encode_items(items: tuple[BatchItem, ...]) -> str:
    """Batch items as compact text for a settlement row."""
    return ";".join(f"{i.stan},{i.amount},{i.rrn}" for i in items)


def decode_items(text: str) -> tuple[BatchItem, ...]:
    """Inverse of `encode_items`."""
    if not text:
        return ()
    out = []
    for part in text.split(";"):
        stan, amount, rrn = part.split(",", 2)
        out.append(BatchItem(int(stan), int(amount), rrn))
    return tuple(out)
