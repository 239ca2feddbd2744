"""Test helpers for the PostgreSQL store: a private schema per test, or why there is none.

The tests use the server in $POSHARNESS_PG_URL (default
postgresql://postgres@127.0.0.1:5432/test; scripts/setup-postgres installs one).
Each test gets its own schema, dropped afterwards, so tests never see each
other's rows and may run while others use the same database.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

PG_URL_ENV = "POSHARNESS_PG_URL"
PG_URL_DEFAULT = "postgresql://postgres@127.0.0.1:5432/test"


def base_url() -> str:
    return os.environ.get(PG_URL_ENV) or PG_URL_DEFAULT


def unavailable() -> str | None:
    """Why the PostgreSQL tests cannot run here (None: they can)."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed: pip install 'posharness[postgres]'"
    try:
        with psycopg.connect(base_url(), connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return (
            f"no PostgreSQL at {base_url()} ({first}); run scripts/setup-postgres "
            f"or set ${PG_URL_ENV}"
        )
    return None


def schema_url(schema: str) -> str:
    """The base URL with `schema` as the search path."""
    sep = "&" if "?" in base_url() else "?"
    return f"{base_url()}{sep}options=-csearch_path%3D{schema}"


@contextmanager
def scratch_schema(prefix: str = "t") -> Iterator[str]:
    """A new, empty schema for the duration; yields the URL that uses it."""
    import psycopg

    schema = f"{prefix}_{secrets.token_hex(6)}"
    with psycopg.connect(base_url(), autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield schema_url(schema)
    finally:
        with psycopg.connect(base_url(), autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
