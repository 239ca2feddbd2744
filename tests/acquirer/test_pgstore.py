"""The PostgreSQL dialect of the store's statements (acquirer.pgstore)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from acquirer import pgstore, store
from harness.mqtt.hostdb import SQL_KEYS_SCHEMA


def test_every_schema_rewrite_still_applies_to_the_sqlite_schema() -> None:
    text = store.SCHEMA + SQL_KEYS_SCHEMA
    for old, new in pgstore._DDL_REWRITES:  # in order: each sees the ones before
        assert old in text, old
        text = text.replace(old, new)
    pg = pgstore.ddl(store.SCHEMA)
    assert "WITHOUT ROWID" not in pg and " INTEGER" not in pg and "AS IDENTITY" in pg


def test_statements_get_postgres_placeholders_and_locks() -> None:
    assert pgstore.statement(store.SQL_DEDUP_GET).endswith(
        "WHERE terminal_id = %s AND key = %s FOR UPDATE"
    )
    assert pgstore.statement("BEGIN IMMEDIATE") == "BEGIN"
    assert "?" not in pgstore.statement(store.SQL_SETTLEMENT_INSERT)


def test_store_urls_are_told_from_files() -> None:
    assert store.is_url("postgresql://h/db") and store.is_url("postgres://h/db")
    assert not store.is_url("host.db") and not store.is_url(":memory:")


_TXNS_BEFORE_TIPS = """CREATE TABLE txns (
    id INTEGER PRIMARY KEY, rrn TEXT NOT NULL, terminal_id TEXT NOT NULL,
    stan INTEGER NOT NULL, day INTEGER NOT NULL, idem_key TEXT NOT NULL,
    kind TEXT NOT NULL, pan TEXT NOT NULL, amount INTEGER NOT NULL, rc TEXT NOT NULL,
    status TEXT NOT NULL, created_ms INTEGER NOT NULL,
    reversed_ms INTEGER NOT NULL DEFAULT -1, batch_no INTEGER NOT NULL DEFAULT 0
)"""
_OLD_SALE = (
    "INSERT INTO txns VALUES (1, '000000000001', 'T1', 1, 0, 'sale', 'purchase', "
    "'4111111111111111', 4000, '00', 'approved', 0, -1, 0)"
)


def _reads_the_old_sale_with_no_tip(db: str) -> None:
    from acquirer.host import Acquirer, HostConfig, HostTxn

    host = Acquirer(HostConfig(mac_keys={}, db_path=db), [])
    try:
        assert list(host.transactions()) == [
            HostTxn(1, "000000000001", "T1", 1, "sale", "purchase", "4111111111111111", 4000,
                    "00", "approved", 0, -1, 0, 0)
        ]  # fmt: skip
    finally:
        host.close()


def test_a_sqlite_store_written_before_tips_gains_the_column(tmp_path: Path) -> None:
    db = str(tmp_path / "old.db")
    conn = sqlite3.connect(db)
    conn.execute(_TXNS_BEFORE_TIPS)
    conn.execute(_OLD_SALE)
    conn.commit()
    conn.close()
    _reads_the_old_sale_with_no_tip(db)
    _reads_the_old_sale_with_no_tip(db)  # and opens again once it has it


def test_a_postgres_store_written_before_tips_gains_the_column(pg_url: str) -> None:
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(pgstore.ddl(_TXNS_BEFORE_TIPS))
        conn.execute(_OLD_SALE)
    _reads_the_old_sale_with_no_tip(pg_url)
    _reads_the_old_sale_with_no_tip(pg_url)
    assert "BIGINT" in pgstore.statement(store.SQL_TXN_ADD_TIP)
