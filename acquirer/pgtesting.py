"""Test helpers for the PostgreSQL store: a private schema per test, or why there is none.

The tests use the server in $POSHARNESS_PG_URL (default
postgresql://postgres@127.0.0.1:5432/test; scripts/setup-postgres installs one).
Each test gets its own schema, dropped afterwards, so tests never see each
other's rows and may run while others use the same database.
"""

from __future__ import annotations

import os
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


@contextmanager
def scratch_schema(prefix: str = "t") -> Iterator[str]:
    """A new, empty schema on the test server for the duration; yields its URL."""
    from acquirer import pgstore

    with pgstore.scratch_schema(base_url(), prefix) as url:
        yield url
