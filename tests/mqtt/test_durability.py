"""Kill -9 durability in small: bench/durability.py with 5 SIGKILLs of terminal or host.

The full run (100 kills) is `python bench/durability.py`; this one proves the checks
hold on a few restarts and that the checker itself can fail.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

import pytest

from harness.mqtt.broker import SETUP_HINT, find_mosquitto

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import durability


@pytest.mark.skipif(find_mosquitto() is None, reason=SETUP_HINT)
def test_five_kills_lose_nothing() -> None:
    """After 5 seeded SIGKILLs of the terminal, the host or the broker, each after the
    terminal finished a purchase since the last restart: every journal approval is
    charged at the host with the same amount, every unsettled host charge is in the
    journal, every display agrees with the host, the ledger balances, nothing is left
    pending or in progress and both files pass integrity_check."""
    report = durability.run(kills=5, seed=3)
    assert report.problems == []
    assert report.kills == 5
    assert report.displays_checked >= 5  # one purchase at least before each kill
    assert report.journal_approvals == report.host_purchases_approved


def _files(tmp_path: Path, journal: list[dict[str, object]]) -> tuple[str, str]:
    from harness.mqtt.hostdb import open_acquirer

    host = str(tmp_path / "host.db")
    open_acquirer(host).close()  # the host's schema, no transactions
    jpath = str(tmp_path / "j.db")
    conn = sqlite3.connect(jpath)
    conn.execute("CREATE TABLE journal (seq INTEGER PRIMARY KEY, record TEXT NOT NULL)")
    conn.executemany("INSERT INTO journal (record) VALUES (?)", [(json.dumps(r),) for r in journal])
    conn.commit()
    conn.close()
    return host, jpath


def test_checker_finds_a_lost_ledger_entry_and_a_pending_reversal(tmp_path: Path) -> None:
    """A journal approval the host never charged, and a reversal never resolved, are
    both reported: the check can fail."""
    host, jpath = _files(
        tmp_path,
        [
            {"type": "approved", "key": "T0001-1", "amount": 100},
            {"type": "reversal_pending", "key": "T0001-2"},
        ],
    )
    report = durability.Report()
    durability.check(host, jpath, report)
    assert len(report.problems) == 3
    assert any("not charged at the host" in p for p in report.problems)
    assert any("reversal(s) still pending" in p for p in report.problems)
    assert any("receipt(s) still pending" in p for p in report.problems)


def test_checker_finds_wrong_displays_and_work_left_in_progress(tmp_path: Path) -> None:
    """A display of APPROVED with no charge, and an idempotency record left in
    progress at the host, are reported."""
    host, jpath = _files(tmp_path, [])
    conn = sqlite3.connect(host)
    conn.execute(
        "INSERT INTO dedup (terminal_id, key, state, fp, created_ms) "
        "VALUES ('T0001', 'T0001-9', 'progress', 'fp', 0)"
    )
    conn.commit()
    conn.close()
    report = durability.Report()
    durability.check(host, jpath, report, [("T0001-1", "approved", 100), ("T0001-2", "failed", 5)])
    assert report.displays_checked == 2
    assert report.problems == [
        "1 idempotency record(s) left in progress",
        "T0001-1: shown approved for 100, host charge None",
    ]


def test_host_restart_clears_requests_a_killed_host_left_in_progress(tmp_path: Path) -> None:
    """A `progress` idempotency record (host killed between begin and charge) is cleared
    when the host opens its file again, so the terminal's resend and reversal are
    processed instead of being answered "09 in progress" forever."""
    from harness.mqtt.hostdb import clear_in_progress, open_acquirer

    host = str(tmp_path / "host.db")
    open_acquirer(host).close()
    conn = sqlite3.connect(host)
    conn.execute(
        "INSERT INTO dedup (terminal_id, key, state, fp, created_ms) "
        "VALUES ('T0001', 'T0001-1', 'progress', 'fp', 0)"
    )
    conn.commit()
    conn.close()
    assert clear_in_progress(host) == 1
    assert clear_in_progress(host) == 0
