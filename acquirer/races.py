"""Two host instances on one PostgreSQL database, racing on one request.

Used by tests/acquirer/test_pg_races.py and bench/postgres.py. `Pair` holds two
`SharedAcquirer`s (as two `acquirer serve --share` processes would) and a way to
see that one of them is blocked by the other's open transaction, so a race is
forced into its hardest interleaving by a lock, not by timing.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

from acquirer.catalogue import CardAccount
from acquirer.host import HostConfig
from acquirer.shared import SharedAcquirer
from acquirer.testing import TerminalMessages, fixed_test_mac_key

T = TypeVar("T")

TERMINAL = TerminalMessages("T1", "M1", fixed_test_mac_key("T1"))
PAN = "4111111111111111"
BALANCE = 10**9
# How long a blocked instance is waited for (a bound, not an expectation: it is
# normally seen blocked within milliseconds).
BLOCK_WAIT_S = 20.0


class Pair:
    """Instances `a` and `b` on the database at `url` (a private schema)."""

    def __init__(self, url: str) -> None:
        tag = secrets.token_hex(4)
        self.b_name = f"race_b_{tag}"
        config = HostConfig(
            mac_keys={TERMINAL.terminal_id: TERMINAL.key}, freshness_window_ms=0, db_path=url
        )
        cards = [CardAccount(PAN, BALANCE)]
        self.a = SharedAcquirer(config, cards)
        b_config = HostConfig(
            mac_keys=config.mac_keys,
            freshness_window_ms=0,
            db_path=f"{url}&application_name={self.b_name}",
        )
        self.b = SharedAcquirer(b_config, cards)
        self._watch = SharedAcquirer(config, cards)
        self._pool = ThreadPoolExecutor(max_workers=2)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        for host in (self.a, self.b, self._watch):
            host.close()

    def in_b(self, call: Callable[[], T]) -> Future[T]:
        """Run `call` on a thread (for instance b), returning at once."""
        return self._pool.submit(call)

    def b_blocked(self) -> bool:
        """Is instance b waiting for a row lock held by another transaction?"""
        row = self._watch._db.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE application_name = ? AND wait_event_type = 'Lock'",
            (self.b_name,),
        ).fetchone()
        return bool(row[0])

    def wait_until_b_blocked(self, pending: Future[Any]) -> None:
        """Return once b waits for a's lock (fails if b finished or never blocks)."""
        seen = threading.Event()
        for _ in range(int(BLOCK_WAIT_S / 0.005)):
            if pending.done():
                raise AssertionError(f"instance b was never blocked: {pending.result()!r}")
            if self.b_blocked():
                return
            seen.wait(0.005)  # a poll of a condition, never an assertion on time
        raise AssertionError(f"instance b not blocked within {BLOCK_WAIT_S} s")

    def b_waits_for_a(self, call: Callable[[], T]) -> T:
        """Run `call` (on b) while a's group transaction is open: see b blocked on
        a's lock, commit a's group, and return what b then answers."""
        pending = self.in_b(call)
        self.wait_until_b_blocked(pending)
        self.a.commit_group()
        return pending.result()

    def charges(self) -> int:
        """Approved, unreversed purchases held."""
        return sum(1 for t in self.a.transactions() if t.status == "approved")


@contextmanager
def pair(url: str) -> Iterator[Pair]:
    p = Pair(url)
    try:
        yield p
    finally:
        p.close()
