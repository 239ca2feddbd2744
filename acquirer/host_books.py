"""The host's books, read side: transactions, pre-authorisations and their completions,
balances, settlements, the size of the idempotency store (moved out of acquirer/host.py;
`Acquirer` derives from `HostBooks`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

from acquirer import store
from acquirer.host_model import HostTxn, Settlement
from acquirer.protocol import RC_APPROVED


class HostBooks:
    """Reads of the host's store (`_db`: a DB-API connection, set by `Acquirer`)."""

    _db: sqlite3.Connection

    # -- read side --------------------------------------------------------------

    def transactions(self) -> Iterator[HostTxn]:
        """Every stored transaction, ordered by id, streamed from the database."""
        for row in self._db.execute(store.SQL_TXN_ALL):
            yield HostTxn(*row)

    def transactions_between(
        self, after_id: int, created_before_ms: int, limit: int = 10_000
    ) -> list[HostTxn]:
        """At most `limit` transactions with id > `after_id` created before
        `created_before_ms`, ordered by id: the incremental read of a long run."""
        rows = self._db.execute(store.SQL_TXN_RANGE, (after_id, created_before_ms, limit))
        return [HostTxn(*row) for row in rows]

    def transaction_by_rrn(self, rrn: str) -> HostTxn | None:
        """The transaction with this RRN, or None (RRNs are the zero-padded id)."""
        if len(rrn) != 12 or not rrn.isdigit():
            return None
        row = self._db.execute(store.SQL_TXN_BY_ID, (int(rrn),)).fetchone()
        return HostTxn(*row) if row else None

    def preauths(self) -> list[HostTxn]:
        """Every pre-authorisation (any status: approved is an open hold, declined,
        reversed is released, completed), oldest first (a partial index holds them)."""
        return [HostTxn(*row) for row in self._db.execute(store.SQL_TXN_PREAUTHS)]

    def completion_of(self, preauth_txn_id: int) -> HostTxn | None:
        """The completion that captured pre-authorisation `preauth_txn_id`, or None
        (at most one: `completions.preauth_txn_id` is UNIQUE)."""
        row = self._db.execute(store.SQL_COMPLETION_OF, (preauth_txn_id,)).fetchone()
        return HostTxn(*row) if row else None

    def reversal_reason(self, rrn: str) -> str:
        """The reason (field 39 of its 0400) the transaction with this RRN was reversed
        for: "96", "98", "A0"; "" when its reversal gave none, or it is not reversed."""
        txn = self.transaction_by_rrn(rrn)
        if txn is None:
            return ""
        row = self._db.execute(store.SQL_REVERSAL_REASON_GET, (txn.id,)).fetchone()
        return str(row[0]) if row else ""

    def ledger_sum(self) -> int:
        """Sum of all ledger entries: 0 when the books balance."""
        return int(self._db.execute(store.SQL_LEDGER_SUM).fetchone()[0])

    def balance(self, account: str) -> int:
        """Current balance of a card (by PAN) or the merchant account."""
        return self._account(store.SQL_BALANCE, account)

    def initial_balance(self, account: str) -> int:
        """Balance of `account` before any transaction."""
        return self._account(store.SQL_INITIAL, account)

    def _account(self, sql: str, account: str) -> int:
        row = self._db.execute(sql, (account,)).fetchone()
        if row is None:
            raise KeyError(f"unknown account {account!r}")
        return int(row[0])

    def settlements(self) -> list[Settlement]:
        """Every batch close, in the order they happened."""
        out = []
        for (
            tid,
            batch_no,
            t_count,
            t_amount,
            h_count,
            h_amount,
            rc,
            diff,
            at_ms,
        ) in self._db.execute(store.SQL_SETTLEMENT_ALL):
            out.append(
                Settlement(
                    tid,
                    batch_no,
                    t_count,
                    t_amount,
                    h_count,
                    h_amount,
                    rc == RC_APPROVED,
                    store.decode_items(diff),
                    at_ms,
                )
            )
        return out

    def idempotency_records(self) -> int:
        """How many idempotency records are held (retention is bounded)."""
        return int(self._db.execute(store.SQL_DEDUP_COUNT).fetchone()[0])
