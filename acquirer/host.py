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

from acquirer import catalogue, holds, iso8583, refunds, reversals, settlement, store, wallet
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
from acquirer.protocol import (
    MTI_ADVICE,
    MTI_BATCH,
    MTI_ECHO,
    MTI_INQUIRY,
    MTI_PREAUTH,
    MTI_PURCHASE,
    MTI_REVERSAL,
    MTI_REVERSAL_ADVICE,
    PROC_PURCHASE_PARTIAL,
    PROC_REFUND,
    PROC_WALLET,
    RC_APPROVED,
    RC_DO_NOT_HONOUR,
    RC_DUPLICATE,
    RC_FORMAT_ERROR,
    RC_IN_PROGRESS,
    RC_INSUFFICIENT_FUNDS,
    RC_INVALID_AMOUNT,
    RC_PARTIAL,
    RC_REVERSAL_REFUSED,
    RC_STALE,
    REQUEST_MTIS,
    RESPONSE_CODES,
    TRANSIENT_RCS,
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
DAY_MS = 86_400_000
# Expired idempotency records are pruned at most this often (virtual time), a
# bounded batch at a time; lookups treat an expired record as absent anyway.
PRUNE_INTERVAL_MS = 1_000


def _dedup_key(msg: Message, day: int) -> str:
    """The idempotency record's key: the idempotency key, else the classic identity.

    `validate_request` now refuses key-less purchases and reversals without
    `orig_key`, so only the first form is stored; the second stays for records
    written by earlier versions.
    """
    if msg.idem_key:
        return "k:" + msg.idem_key
    return f"s:{day}:{msg.stan}"


def _fingerprint(msg: Message) -> str:
    """What must match for a resend to count as the same request."""
    # An advice is the sale its 0200 asked for: the same fingerprint, the same key (a
    # completion or tip adjust, a 0220 naming its original, is a request of its own).
    mti = MTI_PURCHASE if msg.mti == MTI_ADVICE and not msg.orig_key else msg.mti
    fp = f"{mti}|{msg.processing_code}|{msg.pan}|{msg.amount}|{msg.currency}|{msg.merchant_id}"
    # A refund's original is part of the request (appended only when set, so records
    # stored before refunds could name one keep their fingerprints).
    return f"{fp}|{msg.orig_key}" if msg.orig_key else fp


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
            return self._begin_payment(msg, now_ms)
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
            return self._finish_payment(req, ticket.started_ms, now_ms)
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
        key = _dedup_key(req, ticket.started_ms // DAY_MS)
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

    def _begin_payment(
        self, msg: Message, now_ms: int
    ) -> tuple[Ticket | Message, HostAction | None]:
        tid = msg.terminal_id
        key = _dedup_key(msg, now_ms // DAY_MS)
        fp = _fingerprint(msg)
        db = self._db
        self._tx_begin()
        try:
            if now_ms >= self._next_prune_ms:
                self._prune(now_ms)
            # The primary key decides who owns the key: a claim that inserts
            # nothing means a record already exists.
            claimed = db.execute(store.SQL_DEDUP_CLAIM, (tid, key, fp, now_ms)).rowcount == 1
            if not claimed and self._dedup_get(tid, key, now_ms) is None:
                claimed = db.execute(store.SQL_DEDUP_CLAIM, (tid, key, fp, now_ms)).rowcount == 1
            if claimed:
                self._tx_commit()
                return Ticket(msg, now_ms, self._finish_at_ms(msg, now_ms)), None
            rec = self._dedup_get(tid, key, now_ms)
            assert rec is not None  # the claim above failed, so the row exists
            answer = self._answer_existing(msg, rec, key, fp, now_ms)
            self._tx_commit()
        except BaseException:
            self._tx_rollback()
            raise
        return answer

    def _finish_at_ms(self, msg: Message, now_ms: int) -> int:
        if holds.names_original(msg):  # a completion or tip adjust asks no issuer
            return now_ms + self._config.processing_ms
        card = self._cards.get(msg.pan)
        at_ms = now_ms + self._config.processing_ms + (card.slow_ms if card else 0)
        if (
            self._config.test_amounts
            and msg.processing_code != PROC_REFUND
            and msg.amount == catalogue.AMOUNT_SLOW
        ):
            at_ms += catalogue.AMOUNT_SLOW_EXTRA_MS
        return at_ms

    def _answer_existing(
        self, msg: Message, rec: store.DedupRow, key: str, fp: str, now_ms: int
    ) -> tuple[Message, HostAction]:
        """Answer a payment whose idempotency record already exists."""
        if rec.state == store.DEDUP_PROGRESS:
            return self._reply(msg, RC_IN_PROGRESS), HostAction(
                "in-progress",
                RC_IN_PROGRESS,
                amount=msg.amount,
                detail="The same request is still being processed.",
            )
        if rec.state == store.DEDUP_TOMB:
            # The reversal overtook its purchase: never charge it.
            txn_id, rrn = self._insert_txn(msg, now_ms, RC_DO_NOT_HONOUR)
            self._db.execute(
                store.SQL_DEDUP_DONE,
                (msg.terminal_id, key, fp, now_ms, RC_DO_NOT_HONOUR, rrn, "", txn_id),
            )
            self._next_txn_id += 1
            return self._reply(msg, RC_DO_NOT_HONOUR, rrn), HostAction(
                "decline", RC_DO_NOT_HONOUR, rrn, msg.amount, "previously reversed"
            )
        if rec.fp != fp:
            return self._reply(msg, RC_DUPLICATE), HostAction(
                "reject",
                RC_DUPLICATE,
                amount=msg.amount,
                detail="Key reused with a different request.",
            )
        if msg.processing_code == PROC_WALLET and rec.txn_id is not None:
            # A wallet order changes after its answer (the customer confirms, it
            # closes): a repeat of the pay is answered with where it stands now.
            row = self._db.execute(store.SQL_TXN_GET, (rec.txn_id,)).fetchone()
            if row is not None:
                return wallet.answer_of(self, msg, HostTxn(*row), "replay")
        amount = -1
        if rec.rc == RC_PARTIAL and rec.txn_id is not None:
            row = self._db.execute(store.SQL_TXN_GET, (rec.txn_id,)).fetchone()
            amount = HostTxn(*row).amount if row is not None else -1
        return self._reply(msg, rec.rc, rec.rrn, rec.auth_code, amount=amount), HostAction(
            "replay", rec.rc, rec.rrn, msg.amount, "Stored response replayed, nothing charged."
        )

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

    def _decide(self, msg: Message, refund: bool, now_ms: int) -> tuple[str, str, int]:
        """The response code for a payment, why, and the amount approved (inside the
        finish transaction)."""
        card = self._cards.get(msg.pan)
        if card is None:
            return RC_DO_NOT_HONOUR, "Unknown card.", 0
        if msg.amount == 0:
            return RC_INVALID_AMOUNT, "Zero amount.", 0
        if card.rc:
            return card.rc, "Card rule.", 0
        if refund:
            mismatch = self._refund_mismatch(msg, now_ms)
            if mismatch:
                return RC_REVERSAL_REFUSED, mismatch, 0
            return RC_APPROVED, "", msg.amount
        if self._config.test_amounts:
            forced = catalogue.amount_rule(msg.amount)
            if forced is not None:
                taken = msg.amount if forced == RC_APPROVED else 0
                return forced, "Catalogue amount rule.", taken
        balance = self._db.execute(store.SQL_BALANCE, (msg.pan,)).fetchone()[0]
        if balance < msg.amount:
            if card.partial and balance > 0 and msg.processing_code == PROC_PURCHASE_PARTIAL:
                return RC_PARTIAL, "Partial approval: the balance left.", balance
            return RC_INSUFFICIENT_FUNDS, "Insufficient funds.", 0
        return RC_APPROVED, "", msg.amount

    def _refund_mismatch(self, msg: Message, now_ms: int) -> str:
        """Why a refund does not fit its original (`orig_key`) ("" if it does).

        A refund must name an approved purchase of this terminal, on the same card,
        for at least the refunded amount, or it is refused (RC 12) and nothing is
        credited. A refund that names no sale is refused too, unless the host is
        configured with `unreferenced_refunds` (then it is a stand-alone credit).
        """
        if not msg.orig_key:
            if self._config.unreferenced_refunds:
                return ""
            return "Refund names no sale (orig_key); unreferenced refunds are not accepted."
        txn = refunds.original_of(self, msg, now_ms)
        if txn is None:
            return "Refund names no sale of this terminal."
        if txn.kind not in holds.SALE_KINDS or txn.status != "approved":
            return f"Refund names a {txn.status} {txn.kind}, not an approved purchase."
        if txn.pan != msg.pan:
            return "Refund card differs from the original's."
        return refunds.over_sale(self, txn, msg.amount)

    def _finish_payment(
        self, req: Message, started_ms: int, now_ms: int
    ) -> tuple[Message, HostAction]:
        tid = req.terminal_id
        key = _dedup_key(req, started_ms // DAY_MS)
        if req.processing_code == PROC_WALLET:
            return wallet.finish_pay(self, req, key, _fingerprint(req), started_ms, now_ms)
        refund = req.processing_code == PROC_REFUND
        db = self._db
        self._tx_begin()
        try:
            rc, why, taken = self._decide(req, refund, now_ms)
            if rc in TRANSIENT_RCS:
                # Nothing charged: forget the key so a retry is processed afresh.
                db.execute(store.SQL_DEDUP_DELETE_PROGRESS, (tid, key))
                self._tx_commit()
                return self._reply(req, rc), HostAction(
                    "decline", rc, amount=req.amount, detail=f"{why} Transient, not stored."
                )
            approved = rc in (RC_APPROVED, RC_PARTIAL)
            txn_id, rrn = self._insert_txn(req, now_ms, rc, amount=taken)
            auth_code = f"{txn_id % 1_000_000:06d}" if approved else ""
            if approved:
                card, merchant = req.pan, holds.credit_account(self._config.merchant_account, req)
                if refund:
                    self._post(txn_id, merchant, card, taken, now_ms)
                    refunds.link(self, txn_id, req, now_ms)
                else:
                    self._post(txn_id, card, merchant, taken, now_ms)
            db.execute(
                store.SQL_DEDUP_DONE,
                (tid, key, _fingerprint(req), started_ms, rc, rrn, auth_code, txn_id),
            )
            self._tx_commit()
        except BaseException:
            self._tx_rollback()
            raise
        self._next_txn_id += 1
        resp = self._reply(req, rc, rrn, auth_code, amount=taken if rc == RC_PARTIAL else -1)
        if not approved:
            return resp, HostAction("decline", rc, rrn, req.amount, why or RESPONSE_CODES[rc])
        if refund:
            return resp, HostAction("refund", rc, rrn, req.amount, "Card credited.")
        if self._config.test_amounts and req.amount == catalogue.AMOUNT_NO_REPLY:
            return resp, HostAction(
                "charge-no-reply", rc, rrn, req.amount, "Charged; the response must be dropped."
            )
        if rc == RC_PARTIAL:
            return resp, HostAction(
                "charge", rc, rrn, taken, f"Card charged {taken} of {req.amount} (partial)."
            )
        return resp, HostAction("charge", rc, rrn, req.amount, "Card charged.")

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
