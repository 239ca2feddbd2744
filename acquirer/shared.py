"""The mock acquirer on a database several host processes share (PostgreSQL).

`SharedAcquirer` is `Acquirer` with each request run again from the start when
the database refused it because a concurrent request on another connection won a
race (`acquirer.pgstore.retryable`): the retry then finds the winner's committed
row and answers as a repeat does. Nothing else differs; the locking that makes
the answers right is in `acquirer.pgstore`, and docs/scale-out.md says what it
guarantees.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from acquirer import pgstore, store, wallet
from acquirer.host import Acquirer, CardAccount, HostAction, HostConfig, HostTxn, Ticket
from acquirer.protocol import RC_IN_PROGRESS, Message

T = TypeVar("T")

# A request that loses this many races in a row is a bug (or a storm), not bad luck.
RETRIES_MAX = 8


class SharedAcquirer(Acquirer):
    """`Acquirer` on a PostgreSQL URL, safe to run in several processes at once."""

    def __init__(self, config: HostConfig, cards: Sequence[CardAccount]) -> None:
        if not store.is_url(config.db_path):
            raise ValueError(f"{config.db_path!r}: a shared host needs a postgresql:// URL")
        super().__init__(config, cards)
        self._retryable = pgstore.retryable()
        # Requests run again after losing a race (bench/postgres.py reports them).
        self.retries = 0

    def _again(self, op: Callable[[], T]) -> T:
        for _ in range(RETRIES_MAX - 1):
            try:
                return op()
            except self._retryable:
                # The operation rolled its transaction (or savepoint) back already.
                self.retries += 1
        return op()

    def begin(self, msg: Message, now_ms: int) -> tuple[Ticket | Message, HostAction | None]:
        return self._again(lambda: Acquirer.begin(self, msg, now_ms))

    def finish(self, ticket: Ticket, now_ms: int) -> tuple[Message, HostAction]:
        try:
            return self._again(lambda: Acquirer.finish(self, ticket, now_ms))
        except pgstore.ClaimLost as exc:
            # Rolled back: nothing charged. Another instance owns the key now.
            return self._reply(ticket.request, RC_IN_PROGRESS), HostAction(
                "in-progress", RC_IN_PROGRESS, detail=f"{exc}; nothing charged."
            )

    def abandon(self, ticket: Ticket) -> None:
        self._again(lambda: Acquirer.abandon(self, ticket))

    def wallet_advance(self, now_ms: int) -> list[tuple[HostTxn, HostAction]]:
        return self._again(lambda: Acquirer.wallet_advance(self, now_ms))

    def clear_stale_claims(self, before_ms: int) -> int:
        """Delete `progress` claims made before `before_ms`: those of a host process
        that died mid-request (harness.mqtt.hostdb.clear_in_progress); how many."""
        return int(self._db.execute(store.SQL_DEDUP_CLEAR_STALE, (before_ms,)).rowcount)

    def refresh_wallet_due(self) -> int:
        """Re-read when the next waiting wallet order is due: another process may
        have taken an order since this one last looked."""
        self.wallet_due_ms = wallet.next_due(self)
        return self.wallet_due_ms


def open_host(config: HostConfig, cards: Sequence[CardAccount]) -> Acquirer:
    """The acquirer for `config.db_path`: shared on a PostgreSQL URL, else the plain one."""
    if store.is_url(config.db_path):
        return SharedAcquirer(config, cards)
    return Acquirer(config, cards)
