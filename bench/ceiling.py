"""The ceiling: the same terminal/host exchange as a plain Python loop, and the
simulator's ratio to it, measured in the same process.

Per purchase the loop does what a purchase needs in any implementation: the
terminal journals the intent, builds a purchase request with an idempotency key
and signs it (HMAC-SHA256); the host verifies the MAC, checks the idempotency
store, debits the card and credits the merchant (two ledger entries), stores the
outcome under the key and signs an answer; the terminal verifies it, journals the
approval and prints a receipt. No scheduler, no trace, no faults, no invariants:
what is left of the simulator's cost is the price of those.

    python bench/ceiling.py [--purchases 20000]

Rates are per CPU second of this process (`time.process_time`), so that a machine
shared with other jobs gives comparable numbers.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.throughput import bench_scenario  # noqa: E402
from harness.runner import run_scenario  # noqa: E402

KEY = b"posharness-mac-T0001"


def _mac(fields: tuple[object, ...]) -> str:
    payload = "|".join(str(f) for f in fields).encode()
    return hmac.digest(KEY, payload, hashlib.sha256).hex()[:16]


def plain_loop(purchases: int) -> float:
    """Purchases per second of the plain exchange."""
    pans = [f"40000000000{i:05d}" for i in range(8)]
    balances = dict.fromkeys(pans, 10**12)
    merchant = 0
    ledger: list[tuple[str, int]] = []
    idem: dict[str, tuple[str, str]] = {}
    journal: list[tuple[str, int, str]] = []
    receipts: list[tuple[int, str, str]] = []
    started = time.process_time()
    for i in range(purchases):
        pan, amount, stan = pans[i % 8], 100 + i % 4_000, i + 1
        key = f"T0001-{stan:06d}"
        journal.append(("pending", stan, key))
        request = ("0200", stan, pan, amount, key)
        mac = _mac(request)
        # host
        if not hmac.compare_digest(mac, _mac(request)):
            raise AssertionError("bad MAC")
        if key in idem:
            rc, rrn = idem[key]
        else:
            if balances[pan] < amount:
                rc, rrn = "51", ""
            else:
                balances[pan] -= amount
                merchant += amount
                ledger.append((pan, -amount))
                ledger.append(("merchant", amount))
                rc, rrn = "00", f"{stan:012d}"
            idem[key] = (rc, rrn)
        answer = ("0210", stan, amount, rc, rrn, key)
        answer_mac = _mac(answer)
        # terminal
        if not hmac.compare_digest(answer_mac, _mac(answer)):
            raise AssertionError("bad MAC")
        journal.append(("approved" if rc == "00" else "declined", stan, rrn))
        receipts.append((amount, rrn, pan[-4:]))
        if len(journal) > 2_000:  # the batch close trims the journal
            journal.clear()
    elapsed = time.process_time() - started
    assert sum(a for _, a in ledger) == 0 and merchant > 0
    return purchases / elapsed


def simulator(purchases: int) -> float:
    """Purchases per second of the simulator on the bench's clean scenario (no
    trace file, every invariant on)."""
    sc = bench_scenario(purchases, faulty=False)
    started = time.process_time()
    result = run_scenario(sc)
    elapsed = time.process_time() - started
    assert not result.violated(), result.violated()
    return result.purchases / elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--purchases", type=int, default=20_000)
    args = ap.parse_args()
    ceiling = plain_loop(args.purchases)
    sim = simulator(args.purchases)
    print(f"plain loop (ceiling): {ceiling:10,.0f} purchases per CPU second")
    print(f"simulator:            {sim:10,.0f} purchases per CPU second (invariants on, no trace)")
    print(f"simulator / ceiling:  {sim / ceiling:10.3f} (1/{ceiling / sim:.0f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
