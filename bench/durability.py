"""Durability under kill -9: no journal or ledger entry is lost across N SIGKILLs.

Runs the acquirer (`python -m harness.mqtt acquirer serve`) and one terminal
(`python -m harness.mqtt terminal run --script`) as separate processes against a
private mosquitto, on SQLite files. The terminal buys continuously and closes its
batch every BATCH_EVERY purchases (so it never reaches its batch cap). Each kill
lands mid-work: after a (re)start the bench waits until the terminal has finished a
purchase since, then a seeded 0-0.3 s more, then SIGKILLs the terminal, the host or
the broker (seeded choice; the broker is restarted on the same port, losing its
sessions and queues: persistence is off) and starts it again on the same files.
After N kills the terminal is started once more with no purchases so that it
resumes pending reversals and receipts and exits when idle. Then the checks:

* both files pass `PRAGMA integrity_check`;
* the host ledger sums to zero (double entry); every settlement matched;
* every approval in the terminal journal is an approved, unreversed purchase at the
  host with the same idempotency key and amount (no lost ledger entry);
* every approved, unreversed, unsettled purchase at the host is an approval in the
  journal (no lost journal entry: the terminal knows about every charge), so no
  sale is charged without the terminal's knowledge and none twice (the host's
  UNIQUE key); settled ones were trimmed from the journal by the batch close;
* no reversal pending, no receipt pending (approved but never printed), and no
  idempotency record left "in progress" at the host;
* every display the terminal reported: APPROVED is an approved host charge of that
  key and amount; any other outcome has no approved charge.

    python bench/durability.py [--kills 100] [--seed 1] [--json]

Exit 0 when every check holds, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.mqtt.broker import PrivateBroker  # noqa: E402
from harness.mqtt.hostdb import fleet_pan  # noqa: E402
from harness.mqtt.keys import generate, write_key_file  # noqa: E402

TID = "T0001"
# Purchases in one terminal run: more than a run between two kills can get through.
SCRIPT_PURCHASES = 5_000
# A batch close after every this many purchases of the script (a run between two
# kills gets through a few purchases only, and each run starts the script again).
BATCH_EVERY = 3
# Wall seconds after the first purchase finished since a (re)start until the kill.
KILL_AFTER_S = (0.0, 0.3)
# Wall seconds to wait for that first purchase; longer is reported as a problem.
PROGRESS_TIMEOUT_S = 60.0
# Probability of killing the terminal, else the host, else the broker.
P_TERMINAL, P_HOST = 0.4, 0.4
# Wall seconds the final, purchase-free terminal run may take to go idle.
FINAL_TIMEOUT_S = 120.0
HOST_READY_TIMEOUT_S = 30.0


@dataclass
class Report:
    kills: int = 0
    kills_terminal: int = 0
    kills_host: int = 0
    kills_broker: int = 0
    purchases_reported: int = 0
    batches_closed: int = 0
    displays_checked: int = 0
    host_settled: int = 0
    journal_records: int = 0
    journal_approvals: int = 0
    host_purchases_approved: int = 0
    host_reversed: int = 0
    ledger_sum: int = 0
    problems: list[str] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems


class Stack:
    """The host and terminal processes, killable and restartable."""

    def __init__(self, broker: PrivateBroker, work: Path) -> None:
        self.broker = broker
        self.host_db = str(work / "host.db")
        self.journal = str(work / f"{TID}.journal.db")
        self.script = work / "purchases.txt"
        self.empty = work / "empty.txt"
        pan = fleet_pan(1)
        self.script.write_text(
            "".join(
                f"{100 + n % 900} {pan}\n"
                + ("BATCH\n" if (n + 1) % BATCH_EVERY == 0 else "")
                + ("BATCH\n" if n % BATCH_EVERY == BATCH_EVERY - 1 else "")
                for n in range(SCRIPT_PURCHASES)
            )
        )
        self.empty.write_text("")
        # A key file as `acquirer serve` writes it (random keys, mode 0600); both
        # processes read it (never a key on a command line).
        self.keys = str(work / "keys.json")
        write_key_file(self.keys, generate([TID]))
        self.host: subprocess.Popen[bytes] | None = None
        self.term: subprocess.Popen[bytes] | None = None
        self.purchases_reported = 0
        self.batches_closed = 0
        # (key, outcome, amount) of every purchase the terminal reported.
        self.displays: list[tuple[str, str, int]] = []
        self.progress = threading.Condition()
        # One stdout reader per process (by pid); joined when the process is gone, so
        # every pipe is closed by its reader.
        self._readers: dict[int, threading.Thread] = {}

    def _url(self, user: str) -> str:
        return self.broker.address(user).url(show_password=True)

    def _env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(ROOT), "POSHARNESS_LOG": "ERROR"}

    def start_host(self) -> None:
        cmd = [sys.executable, "-m", "harness.mqtt", "acquirer", "serve"]
        cmd += ["--broker", self._url("acquirer"), "--db", self.host_db, "--keys", self.keys]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=self._env())
        assert proc.stdout is not None
        ready = threading.Event()

        def read() -> None:
            assert proc.stdout is not None
            with proc.stdout as out:
                for line in out:
                    if line.strip() == b"ready":
                        ready.set()
            ready.set()  # EOF: the wait below then finds the process dead

        t = threading.Thread(target=read, daemon=True)
        t.start()
        self._readers[proc.pid] = t
        if not ready.wait(HOST_READY_TIMEOUT_S) or proc.poll() is not None:
            raise RuntimeError("acquirer did not start")
        self.host = proc

    def start_terminal(self, script: Path) -> None:
        cmd = [sys.executable, "-m", "harness.mqtt", "terminal", "run", "--id", TID]
        cmd += ["--broker", self._url(TID), "--journal", self.journal, "--script", str(script)]
        cmd += ["--keys", self.keys]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=self._env())

        def read() -> None:
            assert proc.stdout is not None
            with proc.stdout as out:
                for line in out:
                    if line.startswith(b'{"amount"'):
                        rec = json.loads(line)
                        with self.progress:
                            shown = f"{rec['outcome']} ({rec['text']})"
                            self.displays.append((rec["key"], shown, rec["amount"]))
                            self.purchases_reported += 1
                            self.progress.notify_all()
                    elif line.startswith(b'{"batch_close"'):
                        self.batches_closed += 1

        t = threading.Thread(target=read, daemon=True)
        t.start()
        self._readers[proc.pid] = t
        self.term = proc

    def wait_progress(self, since: int, timeout_s: float) -> bool:
        """Wait until more than `since` purchases were reported; False on timeout."""
        with self.progress:
            return self.progress.wait_for(lambda: self.purchases_reported > since, timeout_s)

    def kill_broker(self) -> None:
        """SIGKILL mosquitto and start it again on the same port (sessions and queues lost)."""
        proc = self.broker.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        self.broker.stop()
        self.broker.start()

    def _reap(self, proc: subprocess.Popen[bytes]) -> None:
        proc.wait()
        reader = self._readers.pop(proc.pid, None)
        if reader is not None:
            reader.join()

    def kill(self, proc: subprocess.Popen[bytes] | None) -> None:
        """SIGKILL `proc` (kill -9: no handler runs, no file is closed cleanly)."""
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        self._reap(proc)

    def stop(self) -> None:
        for proc in (self.term, self.host):
            if proc is None:
                continue
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
            self._reap(proc)


def run(kills: int, seed: int, keep: Path | None = None) -> Report:
    """`kills` seeded SIGKILLs, then the checks. `keep`: leave the SQLite files there."""
    rng = random.Random(seed)
    report = Report()
    started = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="posharness-durability-") as tmp,
        PrivateBroker(terminal_users=(TID,)) as broker,
    ):
        work = Path(tmp)
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            work = keep
        stack = Stack(broker, work)
        try:
            stack.start_host()
            stack.start_terminal(stack.script)
            gate = threading.Event()  # never set: a wait with a timeout, not a sleep
            since = 0
            for _ in range(kills):
                # Mid-work: the terminal has finished a purchase since the last restart.
                if not stack.wait_progress(since, PROGRESS_TIMEOUT_S):
                    report.problems.append(
                        f"no purchase finished within {PROGRESS_TIMEOUT_S:g} s after "
                        f"kill {report.kills}"
                    )
                    break
                gate.wait(rng.uniform(*KILL_AFTER_S))
                victim = rng.random()
                if victim < P_TERMINAL:
                    stack.kill(stack.term)
                    report.kills_terminal += 1
                    stack.start_terminal(stack.script)
                elif victim < P_TERMINAL + P_HOST:
                    stack.kill(stack.host)
                    report.kills_host += 1
                    stack.start_host()
                else:
                    stack.kill_broker()
                    report.kills_broker += 1
                report.kills += 1
                since = stack.purchases_reported
            # Last run: no purchases, resume whatever is pending, exit when idle.
            stack.kill(stack.term)
            stack.start_terminal(stack.empty)
            assert stack.term is not None
            try:
                stack.term.wait(FINAL_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                report.problems.append("the final terminal run did not go idle")
            stack.kill(stack.term)  # reaps it (it has exited) and joins its reader
        finally:
            stack.stop()
        report.purchases_reported = stack.purchases_reported
        report.batches_closed = stack.batches_closed
        check(stack.host_db, stack.journal, report, stack.displays)
    report.wall_s = time.perf_counter() - started
    return report


def check(
    host_db: str,
    journal_db: str,
    report: Report,
    displays: list[tuple[str, str, int]] | None = None,
) -> None:
    """The checks of the module docstring; `displays`: (key, outcome, amount) reported."""
    for path in (host_db, journal_db):
        conn = sqlite3.connect(path)
        try:
            result = conn.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            conn.close()
        if result != "ok":
            report.problems.append(f"{Path(path).name}: integrity_check says {result}")

    conn = sqlite3.connect(journal_db)
    try:
        records = [
            json.loads(r[0]) for r in conn.execute("SELECT record FROM journal ORDER BY seq")
        ]
    finally:
        conn.close()
    report.journal_records = len(records)
    approved: dict[str, int] = {}
    pending: set[str] = set()
    printed: set[str] = set()
    for rec in records:
        kind, key = rec.get("type"), rec.get("key", "")
        if kind == "approved":
            approved[key] = rec["amount"]
        elif kind == "reversal_pending":
            pending.add(key)
        elif kind in ("reversed", "reversal_manual"):
            pending.discard(key)
        elif kind == "printed":
            printed.add(key)
    report.journal_approvals = len(approved)
    if pending:
        report.problems.append(f"{len(pending)} reversal(s) still pending: {sorted(pending)[:3]}")
    owed = sorted(set(approved) - printed)
    if owed:
        report.problems.append(f"{len(owed)} receipt(s) still pending: {owed[:3]}")

    conn = sqlite3.connect(host_db)
    try:
        report.ledger_sum = conn.execute("SELECT COALESCE(SUM(amount), 0) FROM ledger").fetchone()[
            0
        ]
        rows: list[Any] = conn.execute(
            "SELECT idem_key, amount, status, batch_no FROM txns "
            "WHERE terminal_id = ? AND kind = 'purchase'",
            (TID,),
        ).fetchall()
        in_progress = conn.execute(
            "SELECT COUNT(*) FROM dedup WHERE state = 'progress'"
        ).fetchone()[0]
        unmatched = conn.execute("SELECT COUNT(*) FROM settlements WHERE rc != '00'").fetchone()[0]
    finally:
        conn.close()
    if in_progress:
        report.problems.append(f"{in_progress} idempotency record(s) left in progress")
    if unmatched:
        report.problems.append(f"{unmatched} batch settlement(s) did not match")
    settled = {key for key, _, status, batch_no in rows if status == "approved" and batch_no}
    report.host_settled = len(settled)
    # A settled sale's approval stays in the journal while its receipt is owed (the
    # terminal re-appends it at the batch close): count the unsettled ones, which
    # must equal the host's unsettled charges.
    report.journal_approvals = sum(1 for k in approved if k not in settled)
    host_approved = {key: amount for key, amount, status, _ in rows if status == "approved"}
    for key, outcome, amount in displays or []:
        report.displays_checked += 1
        approved_shown = outcome.split()[0] == "approved"
        if approved_shown and host_approved.get(key) != amount:
            report.problems.append(
                f"{key or 'no key'}: shown {outcome} for {amount}, "
                f"host charge {host_approved.get(key)}"
            )
        elif not approved_shown and key in host_approved:
            report.problems.append(f"{key}: shown {outcome}, but charged at the host")
    rows = [(k, a, s) for k, a, s, batch_no in rows if not batch_no]
    if report.ledger_sum != 0:
        report.problems.append(f"host ledger sums to {report.ledger_sum}, not 0")
    charged = {key: amount for key, amount, status in rows if status == "approved"}
    report.host_purchases_approved = len(charged)
    report.host_reversed = sum(1 for _, _, status in rows if status == "reversed")
    twice = [k for k, n in Counter(k for k, _, s in rows if s == "approved").items() if n > 1]
    if twice:
        report.problems.append(f"{len(twice)} sale(s) charged twice: {twice[:3]}")
    # Settled sales count too: an approval the terminal re-journaled after a batch
    # close (its receipt still printing) belongs to a sale the host settled.
    lost_at_host = [k for k in approved if k not in charged and k not in host_approved]
    if lost_at_host:
        report.problems.append(
            f"{len(lost_at_host)} journal approval(s) not charged at the host: {lost_at_host[:3]}"
        )
    wrong = [k for k, a in approved.items() if k in charged and charged[k] != a]
    if wrong:
        report.problems.append(f"{len(wrong)} approval(s) with a different amount: {wrong[:3]}")
    unknown = [k for k in charged if k not in approved]
    if unknown:
        report.problems.append(
            f"{len(unknown)} host charge(s) the journal does not know: {unknown[:3]}"
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--kills", type=int, default=100, help="SIGKILLs in total (default 100)")
    p.add_argument("--seed", type=int, default=1, help="seeds which process dies and when")
    p.add_argument("--json", action="store_true")
    p.add_argument("--keep", metavar="DIR", help="keep the host and journal files in DIR")
    args = p.parse_args(argv)
    report = run(args.kills, args.seed, Path(args.keep) if args.keep else None)
    out: dict[str, Any] = {k: v for k, v in vars(report).items()}
    out["ok"] = report.ok
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:24s} {v}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
