"""Fixtures shared by every test directory."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from acquirer import pgtesting


@pytest.fixture(scope="session")
def pg_available() -> None:
    """Skip, saying why, when no PostgreSQL server answers (acquirer.pgtesting)."""
    reason = pgtesting.unavailable()
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture
def pg_url(pg_available: None) -> Iterator[str]:
    """A postgresql:// URL on a private schema, dropped after the test."""
    with pgtesting.scratch_schema() as url:
        yield url
