"""The mock acquirer: a sans-I/O card-payment host backed by SQLite.

The host never reads a clock, draws a random number or touches a socket. The
driver (the simulator or a real transport) passes virtual time in as `now_ms`
and carries the returned messages. A request is handled in two steps so the
driver can model processing time and crashes in between:

- `begin` validates the request and, for a payment, claims its idempotency
  record (state IN PROGRESS) in one transaction. It returns either a `Ticket`
  (work accepted, call `finish` at `ticket.finish_at_ms`) or an immediate answer
  (format error, replay of a stored answer, "in progress", duplicate).
- `finish` decides and commits the outcome (transaction row, ledger rows and the
  idempotency record in one transaction) and returns the signed response.

`abandon` models a host crash between the two: nothing was committed, so the
IN PROGRESS mark is cleared and a retry is processed afresh.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from types import TracebackType

from acquirer import (
    holds,
    iso8583,
    payments,
    reversals,
    settlement,
    store,
    wallet,
)
from acquirer.catalogue import CATALOGUE_CARDS, CATALOGUE_WALLETS, CardAccount
from acquirer.host_books import HostBooks
from acquirer.host_model import HOLDS_ACCOUNT
from acquirer.host_model import (
    KIND_PURCHASE as KIND_PURCHASE,
)
from acquirer.host_model import (
    KIND_REFUND as KIND_REFUND,
)
from acquirer.host_model import (
    HostAction as HostAction,
)
from acquirer.host_model import (
    HostConfig as HostConfig,
)
from acquirer.host_model import (
    HostTxn as HostTxn,
)
from acquirer.host_model import (
    Settlement as Settlement,
)
from acquirer.host_model import (
    Ticket as Ticket,
)
from acquirer.payments import DAY_MS as DAY_MS
from acquirer.payments import dedup_key
from acquirer.protocol import (
    MTI_ADVICE,
    MTI_BATCH,
    MTI_ECHO,
    MTI_INQUIRY,
    MTI_PREAUTH,
    MTI_PURCHASE,
    MTI_REVERSAL,
    MTI_REVERSAL_ADVICE,
    RC_APPROVED,
    RC_FORMAT_ERROR,
    RC_PARTIAL,
    RC_STALE,
    REQUEST_MTIS,
    BatchItem,
    Message,
    ProtocolError,
    field_problem,
    request_problem,
    response_mti,
    sign,
    verify,
)

__all__ = [
    "DAY_MS",
    "Acquirer",
    "CardAccount",
    "HostAction",
    "HostConfig",
    "HostTxn",
    "Settlement",
    "Ticket",
]

# The classic duplicate rule identifies a transaction by (terminal, STAN, day).
# Expired idempotency records are pruned at most this often (virtual time), a
# bounded batch at a time; lookups treat an expired record as absent anyway.
PRUNE_INTERVAL_MS = 1_000


_RESPONSE_MTI = {mti: response_mti(mti) for mti in REQUEST_MTIS}


def _safe_response_mti(mti: str) -> str:
    """The answering MTI, tolerating a malformed request MTI (answered as-is)."""
    known = _RESPONSE_MTI.get(mti)
    if known is not None:
        return known
    if len(mti) == 4 and mti.isascii() and mti.isdigit() and mti[2] in "02468":
        return response_mti(mti)
    return mti


class Acquirer(HostBooks):
    """The mock acquirer host. Not thread-safe: one driver calls it."""

    def __init__(self, config: HostConfig, cards: Sequence[CardAccount]) -> None:
        self._config = config
        self._keys: dict[str, bytes] = dict(config.mac_keys)
        # Scenario cards override catalogue cards with the same PAN.
        self._cards: dict[str, CardAccount] = {
            c.pan: c for c in CATALOGUE_CARDS + CATALOGUE_WALLETS
        }
        for card in cards:
            self._cards[card.pan] = card
        if config.merchant_account in self._cards or config.merchant_account == HOLDS_ACCOUNT:
            raise ValueError("merchant_account must not be a card PAN or the holds account")
        self._db = store.connect(config.db_path)
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                store.SQL_ACCOUNT_UPSERT,
                [(c.pan, c.balance, c.balance) for c in self._cards.values()]
                + [(config.merchant_account, 0, 0), (HOLDS_ACCOUNT, 0, 0)],
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        # Transaction ids (and so RRNs) are a plain sequence: deterministic. A store
        # shared by several processes (PostgreSQL) hands them out itself.
        self._next_txn_id: int = db.execute(store.SQL_MAX_TXN).fetchone()[0] + 1
        self._ids_from_store = not isinstance(db, sqlite3.Connection)
        # When the next waiting wallet order is due (-1: none); see `wallet_advance`.
        self.wallet_due_ms = wallet.next_due(self)
        # The simulated customers' phones (None: each account's own `confirm_ms`):
        # given a wallet pay and the delay its account says (> 0), the delay that
        # happens (-1: the customer never confirms). The simulator sets it.
        self.phone: Callable[[Message, int], int] | None = None
        self._next_prune_ms = 0
        # A stored outcome must outlive every request that could replay it.
        self._window_ms = min(config.freshness_window_ms, config.idempotency_retention_ms // 2)
        # True while a group transaction is open (`begin_group`): each operation then
        # runs in a savepoint inside it, and `commit_group` commits them all at once.
        self._grouped = False

    # -- write side -------------------------------------------------------------

    def begin(self, msg: Message, now_ms: int) -> tuple[Ticket | Message, HostAction | None]:
        """Accept `msg` for processing (a Ticket, no action) or answer it at once.

        A request that fails authentication (unknown terminal, bad or missing MAC,
        or fields too malformed to check one) is answered RC 30 *unsigned*: the
        host never signs anything an attacker chose, so no refused frame can be
        spliced into a signed answer.
        """
        problem = field_problem(msg)
        reason = problem if problem is not None else request_problem(msg)
        key = self._keys.get(msg.terminal_id) if problem is None else None
        authentic = key is not None and verify(msg, key)
        if not authentic and self._config.verify_mac:
            if problem is not None:
                why = problem
            else:
                why = "bad MAC" if key is not None else "unknown terminal"
            return self._reject(msg, why, signed=False)
        if reason is not None:
            return self._reject(msg, reason, signed=authentic)
        window = self._window_ms
        if window and abs(now_ms - msg.sent_ms) > window:
            # Authentic but stale (a replay, or a copy held back): nothing charged,
            # nothing stored; a genuine terminal resends with a fresh time.
            return self._reply(msg, RC_STALE), HostAction(
                "reject-stale",
                RC_STALE,
                amount=msg.amount,
                detail=f"Transmission time {msg.sent_ms} is outside the {window} ms window.",
            )
        if 0 <= self.wallet_due_ms <= now_ms:
            self.wallet_advance(now_ms)
        if msg.mti == MTI_PURCHASE or msg.mti == MTI_ADVICE or msg.mti == MTI_PREAUTH:
            return payments.begin(self, msg, now_ms)
        if msg.mti == MTI_INQUIRY:
            return wallet.inquire(self, msg, now_ms)
        return Ticket(msg, now_ms, now_ms + self._config.processing_ms), None

    def wallet_advance(self, now_ms: int) -> list[tuple[HostTxn, HostAction]]:
        """Apply the wallet confirmations and closes due by `now_ms` (each with the
        order as it was and what was done); see `acquirer.wallet`."""
        return wallet.advance(self, now_ms)

    def _authentic(self, msg: Message) -> bool:
        """Is `msg` well-formed and signed with its terminal's key?"""
        if field_problem(msg) is not None:
            return False
        key = self._keys.get(msg.terminal_id)
        return key is not None and verify(msg, key)

    def finish(self, ticket: Ticket, now_ms: int) -> tuple[Message, HostAction]:
        """Decide and commit the outcome of `ticket`; return the signed response."""
        req = ticket.request
        mti = req.mti
        if mti == MTI_PURCHASE:
            return payments.finish(self, req, ticket.started_ms, now_ms)
        if mti in (MTI_REVERSAL, MTI_REVERSAL_ADVICE):
            return self._finish_reversal(req, ticket.started_ms, now_ms)
        if mti in (MTI_ADVICE, MTI_PREAUTH):
            return holds.finish(self, req, ticket.started_ms, now_ms)
        if mti == MTI_BATCH:
            return self._finish_batch(req, now_ms)
        if mti == MTI_ECHO:
            return self._reply(req, RC_APPROVED), HostAction("echo", RC_APPROVED)
        # begin only issues tickets for the MTIs above.
        raise AssertionError(f"ticket for unexpected MTI {mti!r}")

    def handle(self, msg: Message, now_ms: int) -> Message:
        """Begin and finish at once (tests and real transports)."""
        return self._handle(msg, now_ms)[0]

    def respond_error(self, msg: Message, rc: str) -> Message:
        """A response carrying `rc`; nothing is stored (injected RC 91/96 bursts, and
        frames that do not decode). Signed only when `msg` itself is authentic."""
        return self._reply(msg, rc, signed=self._authentic(msg))

    def handle_frame(self, frame: bytes, now_ms: int) -> bytes:
        """Handle one ISO 8583 frame. Never raises.

        A malformed frame is answered RC 30 when its MTI and terminal id could be
        read, else with b"" (nothing to address). A "charge-no-reply" outcome is
        answered with b"": on a real transport the answer is really lost.
        """
        try:
            msg = iso8583.decode(frame)
        except ProtocolError as exc:
            partial = iso8583.decode_address(frame)
            if partial is None:
                return b""
            resp: Message = self._reject(partial, str(exc), signed=False)[0]
        else:
            resp, action = self._handle(msg, now_ms)
            if action is not None and action.action == "charge-no-reply":
                return b""
        try:
            return iso8583.encode(resp)
        except ProtocolError:
            return b""

    def abandon(self, ticket: Ticket) -> None:
        """The host crashed before finishing `ticket`: clear its IN PROGRESS mark."""
        req = ticket.request
        if req.mti != MTI_PURCHASE and req.mti != MTI_ADVICE and req.mti != MTI_PREAUTH:
            return
        key = dedup_key(req, ticket.started_ms // DAY_MS)
        db = self._db
        self._tx_begin()
        try:
            db.execute(store.SQL_DEDUP_DELETE_PROGRESS, (req.terminal_id, key))
            self._tx_commit()
        except BaseException:
            self._tx_rollback()
            raise

    def close(self) -> None:
        """Close the database (a group still open is rolled back, as in a crash). An
        in-memory store goes back to `store`'s pool, emptied, for the next host; this
        host keeps a closed one, so any later use fails as before and a second close
        does nothing."""
        db, self._db = self._db, store.CLOSED
        if db is not store.CLOSED:
            store.release(db, self._config.db_path)

    # -- transactions -------------------------------------------------------------

    def begin_group(self) -> None:
        """Open one transaction for the next operations (the MQTT host's group commit).

        Until `commit_group`, every operation runs in a savepoint of it: an
        operation that fails is undone alone, and nothing is durable, or visible to
        other connections, before the group commits. Answers computed inside a
        group must not leave before `commit_group` (and, on a file with
        synchronous=NORMAL, an fsync of the WAL) has returned.
        """
        if self._grouped:
            raise RuntimeError("a group transaction is already open")
        self._db.execute("BEGIN IMMEDIATE")
        self._grouped = True

    def commit_group(self) -> None:
        """Commit the open group transaction (one commit for all its operations)."""
        if not self._grouped:
            raise RuntimeError("no group transaction is open")
        self._grouped = False
        self._db.execute("COMMIT")

    @property
    def in_group(self) -> bool:
        return self._grouped

    def _tx_begin(self) -> None:
        self._db.execute("SAVEPOINT op" if self._grouped else "BEGIN IMMEDIATE")

    def _tx_commit(self) -> None:
        self._db.execute("RELEASE op" if self._grouped else "COMMIT")

    def _tx_rollback(self) -> None:
        if self._grouped:
            self._db.execute("ROLLBACK TO op")
            self._db.execute("RELEASE op")
        else:
            self._db.execute("ROLLBACK")

    def __enter__(self) -> Acquirer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals --------------------------------------------------------------

    def _handle(self, msg: Message, now_ms: int) -> tuple[Message, HostAction | None]:
        started, action = self.begin(msg, now_ms)
        if isinstance(started, Message):
            return started, action
        return self.finish(started, now_ms)

    def _reply(
        self,
        req: Message,
        rc: str,
        rrn: str = "",
        auth_code: str = "",
        items: tuple[BatchItem, ...] = (),
        signed: bool = True,
        amount: int = -1,
    ) -> Message:
        """The response to `req`, signed when the terminal has a key and `signed`;
        `amount` (a partial approval's) replaces the request's amount.

        Equal to `sign(dataclasses.replace(req, mti=..., rc=..., ...), key)`, built
        field by field because `replace` costs ~10 us on a 22-field message.
        """
        resp = Message(
            _safe_response_mti(req.mti),
            req.terminal_id,
            req.merchant_id,
            req.stan,
            req.pan,
            req.processing_code,
            req.amount if amount < 0 else amount,
            req.currency,
            rrn,
            rc,
            auth_code,
            req.idem_key,
            False,
            req.orig_stan,
            req.orig_key,
            req.debit_count,
            req.debit_amount,
            req.credit_count,
            req.credit_amount,
            req.batch_no,
            items,
            0,
            req.sent_ms,
            "",
        )
        if not signed:
            return resp
        key = self._keys.get(req.terminal_id)
        return sign(resp, key) if key is not None else resp

    def _reject(self, msg: Message, reason: str, signed: bool) -> tuple[Message, HostAction]:
        """RC 30 for `msg`; signed only for an authentic request (see `begin`)."""
        amount = msg.amount if type(msg.amount) is int else 0
        detail = f"Format error: {reason}." if signed else f"Refused unsigned: {reason}."
        return self._reply(msg, RC_FORMAT_ERROR, signed=signed), HostAction(
            "reject", RC_FORMAT_ERROR, amount=amount, detail=detail
        )

    def _prune(self, now_ms: int) -> None:
        """Delete a bounded batch of expired idempotency records (inside a transaction)."""
        deleted = self._db.execute(
            store.SQL_DEDUP_PRUNE, (now_ms - self._config.idempotency_retention_ms,)
        ).rowcount
        # A full batch means more may be waiting: prune again on the next request.
        self._next_prune_ms = (
            now_ms if deleted >= store.PRUNE_BATCH_MAX else (now_ms + PRUNE_INTERVAL_MS)
        )

    def _dedup_get(self, terminal_id: str, key: str, now_ms: int) -> store.DedupRow | None:
        """The live idempotency record for (terminal, key); an expired one is deleted."""
        row = self._db.execute(store.SQL_DEDUP_GET, (terminal_id, key)).fetchone()
        if row is None:
            return None
        rec = store.DedupRow(*row)
        if rec.created_ms < now_ms - self._config.idempotency_retention_ms:
            self._db.execute(store.SQL_DEDUP_DELETE, (terminal_id, key))
            return None
        return rec

    def _insert_txn(
        self,
        msg: Message,
        now_ms: int,
        rc: str,
        status: str = "",
        amount: int = -1,
    ) -> tuple[int, str]:
        """Store a transaction row with the next id; the caller advances the id after
        commit. `amount`: what was approved when it is not the request's (RC 10)."""
        if self._ids_from_store:
            self._next_txn_id = self._db.next_txn_id()  # type: ignore[attr-defined]
        txn_id = self._next_txn_id
        rrn = f"{txn_id:012d}"
        kind = holds.kind_of(msg)
        status = status or ("approved" if rc in (RC_APPROVED, RC_PARTIAL) else "declined")
        self._db.execute(
            store.SQL_TXN_INSERT,
            (
                txn_id,
                rrn,
                msg.terminal_id,
                msg.stan,
                now_ms // DAY_MS,
                msg.idem_key,
                kind,
                msg.pan,
                msg.amount if amount < 0 else amount,
                rc,
                status,
                now_ms,
            ),
        )
        return txn_id, rrn

    def _post(self, txn_id: int, debit: str, credit: str, amount: int, now_ms: int) -> None:
        """One double-entry posting: `debit` loses `amount`, `credit` gains it."""
        self._db.execute(
            store.SQL_LEDGER_POST, (txn_id, debit, -amount, now_ms, txn_id, credit, amount, now_ms)
        )

    def _finish_reversal(
        self, req: Message, started_ms: int, now_ms: int
    ) -> tuple[Message, HostAction]:
        tid = req.terminal_id
        day = started_ms // DAY_MS
        key = "k:" + req.orig_key if req.orig_key else f"s:{day}:{req.orig_stan}"
        self._tx_begin()
        try:
            answer = reversals.reverse(self, req, tid, key, day, now_ms)
            self._tx_commit()
        except BaseException:
            self._tx_rollback()
            raise
        return answer

    def _finish_batch(self, req: Message, now_ms: int) -> tuple[Message, HostAction]:
        return settlement.finish_batch(self, req, now_ms)
