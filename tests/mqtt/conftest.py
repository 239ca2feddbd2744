"""Fixtures: a private mosquitto per test on a free loopback port, with auth and ACLs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from acquirer.testing import fixed_test_mac_key
from harness.mqtt.broker import SETUP_HINT, PrivateBroker, find_mosquitto
from harness.mqtt.hostdb import provision, terminal_id

TERMINALS = tuple(terminal_id(n) for n in range(1, 6))


@pytest.fixture
def broker() -> Iterator[PrivateBroker]:
    """mosquitto with a generated config (users, passwords, per-terminal ACLs)."""
    if find_mosquitto() is None:
        pytest.skip(SETUP_HINT)
    with PrivateBroker(terminal_users=TERMINALS) as b:
        yield b


@pytest.fixture
def host_db(tmp_path: Path) -> str:
    """A host database file with T0001..T0005 provisioned."""
    path = str(tmp_path / "host.db")
    provision(path, {t: fixed_test_mac_key(t) for t in TERMINALS})
    return path
