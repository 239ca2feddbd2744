"""SQLite and PostgreSQL hosts give the same answers and keep the same books.

Random request sequences (purchases, resends, key reuse, refunds, reversals,
wallet payments, batch closes, requests left in progress) go to a host on each
store; every answer, every action, and at the end the transactions, balances,
ledger, settlements and idempotency records must be equal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acquirer import catalogue
from acquirer import protocol as p
from acquirer.catalogue import CardAccount
from acquirer.host import Acquirer, HostConfig, Message, Ticket
from acquirer.pgtesting import scratch_schema
from acquirer.shared import SharedAcquirer
from acquirer.testing import TerminalMessages, fixed_test_mac_key

TERMINALS = tuple(TerminalMessages(tid, "M1", fixed_test_mac_key(tid)) for tid in ("T1", "T2"))
# Small balances, so declines for insufficient funds and partial approvals happen.
CARDS = (
    CardAccount("4111111111111111", 3_000),
    CardAccount("4222222222222222", 1_500, partial=True),
)
PANS = (*(c.pan for c in CARDS), catalogue.PAN_DO_NOT_HONOUR, "4999999999999999")
WALLETS = (catalogue.CODE_PAYS, catalogue.CODE_CONFIRMS, catalogue.CODE_NEVER)
KEYS = tuple(f"K{i}" for i in range(6))
ACCOUNTS = PANS[:3] + WALLETS + ("MERCHANT",)


@dataclass(frozen=True)
class Op:
    kind: str
    term: int
    key: int
    other: int
    pan: int
    amount: int


ops = st.builds(
    Op,
    kind=st.sampled_from(
        [
            "purchase",
            "purchase",
            "partial",
            "refund",
            "reversal",
            "wallet",
            "batch",
            "begin",
            "finish",
            "wait",
        ]
    ),
    term=st.integers(0, len(TERMINALS) - 1),
    key=st.integers(0, len(KEYS) - 1),
    other=st.integers(0, len(KEYS) - 1),
    pan=st.integers(0, len(PANS) - 1),
    amount=st.sampled_from([0, 100, 700, 1_000, 2_000]),
)


def make(db_path: str) -> Acquirer:
    config = HostConfig(
        mac_keys={t.terminal_id: t.key for t in TERMINALS},
        db_path=db_path,
        freshness_window_ms=0,
        test_amounts=False,
        wallet_close_ms=5_000,
    )
    cls = SharedAcquirer if db_path.startswith("postgresql") else Acquirer
    return cls(config, CARDS)


def request(op: Op, stan: int) -> Message:
    t = TERMINALS[op.term]
    key = KEYS[op.key]
    if op.kind in ("purchase", "begin"):
        return t.purchase(stan, op.amount, PANS[op.pan], key)
    if op.kind == "partial":
        return t.purchase(
            stan, op.amount, PANS[op.pan], key, processing_code=p.PROC_PURCHASE_PARTIAL
        )
    if op.kind == "refund":
        return t.refund(stan, op.amount, PANS[op.pan], key + "r", orig_key=KEYS[op.other])
    if op.kind == "reversal":
        return t.reversal(stan, key, amount=op.amount, pan=PANS[op.pan])
    if op.kind == "wallet":
        code = WALLETS[op.pan % len(WALLETS)]
        return t.purchase(stan, op.amount, code, key + "w", processing_code=p.PROC_WALLET)
    return t.batch(stan, op.key + 1, debit_count=op.other, debit_amount=op.amount)


def books(host: Acquirer) -> tuple[Any, ...]:
    return (
        list(host.transactions()),
        [host.balance(a) for a in ACCOUNTS],
        host.ledger_sum(),
        host.settlements(),
        host.idempotency_records(),
    )


def run_both(sequence: list[Op]) -> None:
    with scratch_schema("diff") as url:
        hosts = (make(":memory:"), make(url))
        try:
            pending: list[tuple[Ticket, Ticket]] = []
            now = 1_000
            for stan, op in enumerate(sequence, start=1):
                now += 700
                if op.kind == "wait":
                    now += op.amount * 10
                    assert [h.wallet_advance(now) for h in hosts[:1]] == [
                        h.wallet_advance(now) for h in hosts[1:]
                    ]
                    continue
                if op.kind == "finish":
                    if pending:
                        a, b = pending.pop(0)
                        assert hosts[0].finish(a, now) == hosts[1].finish(b, now), op
                    continue
                msg = request(op, stan)
                if op.kind == "begin":
                    began = [h.begin(msg, now) for h in hosts]
                    assert began[0] == began[1], op
                    if isinstance(began[0][0], Ticket) and isinstance(began[1][0], Ticket):
                        pending.append((began[0][0], began[1][0]))
                    continue
                assert hosts[0]._handle(msg, now) == hosts[1]._handle(msg, now), op
            assert books(hosts[0]) == books(hosts[1])
            assert hosts[1].ledger_sum() == 0
        finally:
            for h in hosts:
                h.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ops, min_size=1, max_size=30))
def test_sqlite_and_postgres_hosts_agree(pg_available: None, sequence: list[Op]) -> None:
    run_both(sequence)


@pytest.mark.slow
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ops, min_size=1, max_size=80))
def test_sqlite_and_postgres_hosts_agree_long(pg_available: None, sequence: list[Op]) -> None:
    run_both(sequence)
