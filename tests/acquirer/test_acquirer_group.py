"""Group transactions (the MQTT host's group commit): same answers, failures isolated."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acquirer import protocol as p
from acquirer.catalogue import CardAccount
from acquirer.host import Acquirer, HostConfig
from acquirer.testing import TerminalMessages

KEY = b"terminal-1-key"
PAN = "4111111111111111"
T1 = TerminalMessages("T1", "M1", KEY)


def make_host(db_path: str = ":memory:") -> Acquirer:
    return Acquirer(HostConfig(mac_keys={"T1": KEY}, db_path=db_path), [CardAccount(PAN, 5_000)])


def books(acq: Acquirer) -> tuple[Any, ...]:
    return (list(acq.transactions()), acq.balance(PAN), acq.ledger_sum())


# One request: (kind, key number, amount). Keys repeat on purpose (retries, reversals).
requests = st.lists(
    st.tuples(
        st.sampled_from(["purchase", "purchase", "reversal", "refund", "batch"]),
        st.integers(1, 4),
        st.sampled_from([100, 1250, 500, 9100, 6000]),
    ),
    max_size=25,
)


def build(n: int, kind: str, key: int, amount: int) -> p.Message:
    if kind == "purchase":
        return T1.purchase(n, amount, PAN, f"k{key}")
    if kind == "refund":
        return T1.refund(n, amount, PAN, f"r{key}", orig_key=f"k{key}")
    if kind == "reversal":
        return T1.reversal(n, orig_key=f"k{key}")
    return T1.batch(n, key)


@settings(max_examples=150, deadline=None)
@given(requests, st.lists(st.booleans(), min_size=25, max_size=25))
def test_grouped_requests_get_the_same_answers_and_books_as_one_by_one(
    reqs: list[tuple[str, int, int]], cut_after: list[bool]
) -> None:
    plain, grouped = make_host(), make_host()
    try:
        for n, (kind, key, amount) in enumerate(reqs, 1):
            msg = build(n, kind, key, amount)
            if not grouped.in_group:
                grouped.begin_group()
            assert grouped.handle(msg, n * 1000) == plain.handle(msg, n * 1000)
            if cut_after[n - 1]:
                grouped.commit_group()
        if grouped.in_group:
            grouped.commit_group()
        assert books(grouped) == books(plain)
    finally:
        plain.close()
        grouped.close()


def test_nothing_in_a_group_is_visible_or_durable_before_it_commits(tmp_path: Path) -> None:
    path = str(tmp_path / "host.db")
    acq = make_host(path)
    other = sqlite3.connect(path)
    try:
        acq.begin_group()
        assert acq.handle(T1.purchase(1, 1250, PAN, "k1"), 0).rc == p.RC_APPROVED
        assert other.execute("SELECT COUNT(*) FROM txns").fetchone()[0] == 0
        acq.commit_group()
        assert other.execute("SELECT COUNT(*) FROM txns").fetchone()[0] == 1
    finally:
        other.close()
        acq.close()


def test_a_request_that_fails_inside_a_group_is_undone_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    acq = make_host()
    try:
        acq.begin_group()
        assert acq.handle(T1.purchase(1, 1000, PAN, "k1"), 0).rc == p.RC_APPROVED
        real_post = acq._post
        calls = 0

        def failing_post(*args: Any) -> None:
            nonlocal calls
            calls += 1
            real_post(*args)  # the debit is written, then the "disk" fails
            raise sqlite3.OperationalError("disk I/O error")

        monkeypatch.setattr(acq, "_post", failing_post)
        with pytest.raises(sqlite3.OperationalError):
            acq.handle(T1.purchase(2, 700, PAN, "k2"), 1)
        monkeypatch.setattr(acq, "_post", real_post)
        assert calls == 1
        assert acq.handle(T1.purchase(3, 300, PAN, "k3"), 2).rc == p.RC_APPROVED
        acq.commit_group()
        assert acq.balance(PAN) == 5_000 - 1000 - 300
        assert acq.ledger_sum() == 0
        assert [t.amount for t in acq.transactions()] == [1000, 300]
        # As without groups, the claim (its own operation) stays: a retry is "in progress"
        # until the host restarts (hostdb.clear_in_progress).
        assert acq.handle(T1.purchase(4, 700, PAN, "k2"), 3).rc == "09"
    finally:
        acq.close()


def test_groups_do_not_nest() -> None:
    acq = make_host()
    try:
        acq.begin_group()
        with pytest.raises(RuntimeError):
            acq.begin_group()
        acq.commit_group()
        with pytest.raises(RuntimeError):
            acq.commit_group()
    finally:
        acq.close()
