"""PostgreSQL storage for the mock acquirer: every difference from the SQLite dialect.

`acquirer.store` holds the schema and every statement, written for SQLite. This
module turns them into PostgreSQL, so the two stores run the same SQL text apart
from the few rewrites below, and a `PgConnection` answers the calls the host
makes on a `sqlite3.Connection` (`execute`, `executemany`, `close`).

Concurrency (several host processes on one database, docs/scale-out.md): every
request is one transaction at READ COMMITTED, and

- uniqueness stays with the database: an idempotency claim is
  `INSERT ... ON CONFLICT DO NOTHING`, which waits for a concurrent claim of the
  same key to commit or roll back, so exactly one claim wins;
- rows a decision depends on are locked before it is taken: the idempotency
  record (`SELECT ... FOR UPDATE`: a repeat waits for its original's outcome and
  replays it; two reversals of one sale take turns) and the card's balance;
- the ledger trigger locks the accounts it moves in account order (a
  statement-level trigger), so postings never deadlock each other;
- the transaction id comes from a sequence (ids stay unique, not gap-free);
- an outcome replaces only its own idempotency claim (`ClaimLost` otherwise), so a
  claim another instance cleared as a dead one's and took over is never charged
  twice;
- what the database refuses anyway (a tombstone or settlement inserted twice by
  racing requests, a deadlock) raises one of `retryable()`, and
  `acquirer.shared.SharedAcquirer` runs the whole request again: it then sees
  the winner's row and answers as a repeat.
"""

from __future__ import annotations

import functools
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from acquirer import store

# Statements that lock what they read (see the module docstring). `SQL_BALANCE` is
# also used by read-only queries outside a transaction, where the lock ends at once.
_PG_FORMS = {
    store.SQL_DEDUP_GET: store.SQL_DEDUP_GET + " FOR UPDATE",
    store.SQL_BALANCE: store.SQL_BALANCE + " FOR UPDATE",
    # Two instances moving due wallet orders take disjoint ones.
    store.SQL_WALLET_DUE: store.SQL_WALLET_DUE + " FOR UPDATE SKIP LOCKED",
    # A completion or tip adjust changes the hold or sale it read: two take turns.
    store.SQL_TXN_LOCK: store.SQL_TXN_LOCK + " FOR UPDATE",
    # Milliseconds and minor units outgrow PostgreSQL's 32-bit INTEGER (as in `ddl`).
    store.SQL_TXN_ADD_TIP: store.SQL_TXN_ADD_TIP.replace("INTEGER", "BIGINT"),
}

_BEGIN = {"BEGIN IMMEDIATE": "BEGIN"}

# A request's outcome replaces its own claim only: another instance may have cleared
# a claim it thought dead and claimed the key again (harness.mqtt.hostdb.CLAIM_LEASE_MS).
# A claim is told from another by when it was made; `execute` raises ClaimLost when
# the outcome replaced nothing, and the request is rolled back uncharged.
_OWN_CLAIM = " WHERE dedup.state <> 'progress' OR dedup.created_ms = excluded.created_ms"
_PG_FORMS[store.SQL_DEDUP_DONE] = store.SQL_DEDUP_DONE + _OWN_CLAIM


class ClaimLost(Exception):
    """The request's idempotency claim is no longer its own: nothing may be charged."""


SQL_NEXT_TXN_ID = "SELECT nextval('txn_ids')"
# A store written before tip adjusts lacks `txns.tip` (store.SQL_TXN_ADD_TIP).
# Every table and index the schema creates, and how many of them exist already.
SCHEMA_OBJECTS = tuple(
    re.findall(r"CREATE (?:UNIQUE )?(?:TABLE|INDEX) IF NOT EXISTS (\w+)", store.SCHEMA)
)
SQL_HAVE_OBJECTS = (
    "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = current_schema() AND c.relname = ANY(%s)"
)
SQL_HAS_TIP = (
    "SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() "
    "AND table_name = 'txns' AND column_name = 'tip'"
)

_TRIGGER_SQLITE = """CREATE TRIGGER IF NOT EXISTS ledger_balance AFTER INSERT ON ledger BEGIN
    UPDATE accounts SET balance = balance + NEW.amount WHERE account = NEW.account;
END;"""

_TRIGGER_PG = """CREATE OR REPLACE FUNCTION ledger_balance() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM accounts WHERE account IN (SELECT account FROM new_rows)
        ORDER BY account FOR UPDATE;
    UPDATE accounts a SET balance = a.balance + s.amount
        FROM (SELECT account, SUM(amount) AS amount FROM new_rows GROUP BY account) s
        WHERE a.account = s.account;
    RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER ledger_balance AFTER INSERT ON ledger
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ledger_balance();
CREATE SEQUENCE IF NOT EXISTS txn_ids;"""

_DDL_REWRITES = (
    (" WITHOUT ROWID", ""),
    # Milliseconds and minor units outgrow PostgreSQL's 32-bit INTEGER.
    ("INTEGER", "BIGINT"),
    # SQLite numbers rows itself; PostgreSQL needs to be told.
    (
        "CREATE TABLE IF NOT EXISTS ledger (\n    id BIGINT PRIMARY KEY",
        "CREATE TABLE IF NOT EXISTS ledger (\n"
        "    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
    ),
    (_TRIGGER_SQLITE, _TRIGGER_PG),
    ("BLOB", "BYTEA"),
)


def ddl(sqlite_ddl: str) -> str:
    """`sqlite_ddl` rewritten for PostgreSQL (tests/acquirer/test_pgstore.py checks
    that every rewrite still applies to `store.SCHEMA`)."""
    out = sqlite_ddl
    for old, new in _DDL_REWRITES:
        out = out.replace(old, new)
    return out


@functools.cache
def statement(sql: str) -> str:
    """One statement of `acquirer.store` in PostgreSQL's dialect (cached)."""
    sql = _BEGIN.get(sql, _PG_FORMS.get(sql, sql))
    if "CREATE " in sql:
        sql = ddl(sql)
    # No statement in acquirer.store contains a literal '?' or '%'.
    return re.sub(r"\?", "%s", sql)


def retryable() -> tuple[type[Exception], ...]:
    """Errors after which a request is run again from the start (module docstring)."""
    from psycopg import errors

    return (errors.UniqueViolation, errors.DeadlockDetected, errors.SerializationFailure)


class PgConnection:
    """A psycopg connection that takes `acquirer.store`'s SQLite statements."""

    def __init__(self, url: str) -> None:
        try:
            import psycopg
        except ImportError:
            raise RuntimeError(
                f"{url}: psycopg is not installed (pip install 'posharness[postgres]')"
            ) from None
        # autocommit: the host issues BEGIN / COMMIT / SAVEPOINT itself, as on SQLite.
        self._conn = psycopg.connect(url, autocommit=True)
        # One schema at a time: two processes creating it at once would collide.
        self._conn.execute("SELECT pg_advisory_lock(5432016)")
        try:
            # Once the schema is complete, no DDL at all: CREATE ... IF NOT EXISTS still
            # locks each table, and beside a host writing its books that can deadlock.
            row = self._conn.execute(SQL_HAVE_OBJECTS, (list(SCHEMA_OBJECTS),)).fetchone()
            if row is None or row[0] != len(SCHEMA_OBJECTS):
                self._conn.execute(statement(store.SCHEMA))
            if self._conn.execute(SQL_HAS_TIP).fetchone() is None:
                self._conn.execute(statement(store.SQL_TXN_ADD_TIP))
        finally:
            self._conn.execute("SELECT pg_advisory_unlock(5432016)")

    def execute(self, sql: str, params: Any = ()) -> Any:
        cur = self._conn.execute(statement(sql), params)
        if sql == store.SQL_DEDUP_DONE and cur.rowcount == 0:
            raise ClaimLost(f"claim of {params[0]} {params[1]} was cleared or taken over")
        return cur

    def executemany(self, sql: str, rows: Any) -> None:
        with self._conn.cursor() as cur:
            cur.executemany(statement(sql), rows)

    def next_txn_id(self) -> int:
        """A new transaction id (unique across every process on the database)."""
        row = self._conn.execute(SQL_NEXT_TXN_ID).fetchone()
        assert row is not None
        return int(row[0])

    def close(self) -> None:
        self._conn.close()


def connect(url: str) -> PgConnection:
    """Open the PostgreSQL store at `url` and create the schema if needed.

    Durability is the server's (synchronous_commit, fsync); a schema other than
    `public` is chosen in the URL: `?options=-csearch_path%3DNAME`.
    """
    return PgConnection(url)


def with_schema(url: str, schema: str) -> str:
    """`url` with `schema` as the search path."""
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}"


@contextmanager
def scratch_schema(url: str, prefix: str) -> Iterator[str]:
    """A new, empty schema in the database at `url` for the duration, dropped after;
    yields the URL that uses it (tests, and `posharness fleet --db`)."""
    import psycopg

    schema = f"{prefix}_{secrets.token_hex(6)}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield with_schema(url, schema)
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
