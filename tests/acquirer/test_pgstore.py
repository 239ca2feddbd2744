"""The PostgreSQL dialect of the store's statements (acquirer.pgstore)."""

from __future__ import annotations

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
